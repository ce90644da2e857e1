/* Threads writing one file until killed, and the check of what recovery left (tests/threads.rs).
 * The file has 256 blocks of 4 KiB. In the first 128, thread t owns lane t of every block
 * (bytes t*512 to t*512+511); of the last 128, blocks 128+16t to 128+16t+15, written 1 to 4
 * at a time. Every write fills its region with one 8-byte stamp, (t+1) << 48 | its sequence
 * number, so that a torn write shows as a region of mixed stamps. Every 8th write of a thread
 * is followed by fsync and the line "seq\n" appended to SIDE/t (outside the managed directory):
 * everything the thread wrote up to seq is durable.
 *   lanes_crash run FILE SIDE [S] sets the file up (SIDE/ready once it is durable), then writes
 *                                 with 8 threads until killed (or for S seconds, then exits)
 *   lanes_crash check FILE SIDE   after recovery: every region holds one stamp, of its owner, no
 *                                 older than the owner's last write to it that an fsync covered
 *                                 (each thread's choices are replayed); prints "ok N" (N: the
 *                                 regions checked) or what is wrong, and exits 1 then. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lanes.h"

static int fd;
static const char *side;

/* Thread t's write number seq: its offset and length (the same in run and check). */
static void region(uint64_t *rng, int t, long *off, long *len)
{
	if (next(rng) % 2) {
		*off = (long)(next(rng) % (BLOCKS / 2)) * BLOCK + t * LANE;
		*len = LANE;
	} else {
		long first = next(rng) % 16, count = 1 + next(rng) % 4;
		if (first + count > 16)
			count = 16 - first;
		*off = (long)(BLOCKS / 2 + t * 16 + first) * BLOCK;
		*len = count * BLOCK;
	}
}

static uint64_t seed(int t)
{
	return 0x9e3779b97f4a7c15ull * (t + 1);
}

static void *writer(void *arg)
{
	int t = (int)(long)arg;
	char path[4096];
	snprintf(path, sizeof path, "%s/%d", side, t);
	int log = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	uint64_t rng = seed(t), words[4 * BLOCK / 8];
	for (uint64_t seq = 1;; seq++) {
		long off, len;
		region(&rng, t, &off, &len);
		uint64_t stamp = (uint64_t)(t + 1) << 48 | seq;
		for (long i = 0; i < len / 8; i++)
			words[i] = stamp;
		if (pwrite(fd, words, len, off) != len)
			exit(3);
		if (seq % 8 == 0) {
			if (fsync(fd) != 0)
				exit(4);
			char line[32];
			int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)seq);
			if (write(log, line, n) != n)
				exit(5);
		}
	}
	return 0;
}

/* The last whole line of SIDE/t: the thread's last write an fsync covered (0: none). */
static uint64_t synced(int t)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%d", side, t);
	int f = open(path, O_RDONLY);
	struct stat st;
	if (f < 0 || fstat(f, &st) != 0)
		return 0;
	char *buf = calloc(st.st_size + 1, 1);
	ssize_t n = buf ? pread(f, buf, st.st_size, 0) : -1;
	close(f);
	uint64_t last = 0;
	char *end = n > 0 ? strrchr(buf, '\n') : 0;
	if (end) {
		*end = 0;
		char *start = strrchr(buf, '\n');
		last = strtoull(start ? start + 1 : buf, 0, 10);
	}
	free(buf);
	return last;
}

static int check(void)
{
	static uint64_t image[FILE_SIZE / 8];
	struct stat st;
	char path[4096];
	snprintf(path, sizeof path, "%s/ready", side);
	if (stat(path, &st) != 0) {
		printf("ok 0 (killed during set-up)\n");
		return 0;
	}
	if (fstat(fd, &st) != 0 || st.st_size != FILE_SIZE || pread(fd, image, FILE_SIZE, 0) != FILE_SIZE) {
		printf("the file is %lld bytes, not %d\n", (long long)st.st_size, FILE_SIZE);
		return 1;
	}
	/* The oldest stamp each region may hold: its owner's last write to it up to `synced`. */
	static uint64_t floor_at[FILE_SIZE / 8];
	for (int t = 0; t < THREADS; t++) {
		uint64_t rng = seed(t), s = synced(t);
		for (uint64_t seq = 1; seq <= s; seq++) {
			long off, len;
			region(&rng, t, &off, &len);
			for (long i = off / 8; i < (off + len) / 8; i++)
				floor_at[i] = seq;
		}
	}
	long regions = 0;
	for (long b = 0; b < BLOCKS; b++) {
		for (int part = 0; part < (b < BLOCKS / 2 ? THREADS : 1); part++) {
			long from = (b * BLOCK + part * (b < BLOCKS / 2 ? LANE : 0)) / 8;
			long words = (b < BLOCKS / 2 ? LANE : BLOCK) / 8;
			int owner = b < BLOCKS / 2 ? part : (int)(b - BLOCKS / 2) / 16;
			uint64_t stamp = image[from];
			for (long i = 1; i < words; i++)
				if (image[from + i] != stamp) {
					printf("block %ld part %d torn: %llx and %llx\n", b, part, (unsigned long long)stamp,
					       (unsigned long long)image[from + i]);
					return 1;
				}
			uint64_t who = stamp >> 48, seq = stamp & ((1ull << 48) - 1);
			if (stamp != 0 && who != (uint64_t)owner + 1) {
				printf("block %ld part %d: stamp %llx is not its owner's\n", b, part, (unsigned long long)stamp);
				return 1;
			}
			if (seq < floor_at[from]) {
				printf("block %ld part %d: write %llu of thread %d lost (holds %llu)\n", b, part,
				       (unsigned long long)floor_at[from], owner, (unsigned long long)seq);
				return 1;
			}
			regions++;
		}
	}
	printf("ok %ld\n", regions);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5)
		return 2;
	side = argv[3];
	if (strcmp(argv[1], "check") == 0) {
		fd = open(argv[2], O_RDONLY);
		return fd < 0 ? 2 : check();
	}
	fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
	static uint64_t zeros[FILE_SIZE / 8];
	if (fd < 0 || pwrite(fd, zeros, FILE_SIZE, 0) != FILE_SIZE || fsync(fd) != 0)
		return 2;
	char path[4096];
	snprintf(path, sizeof path, "%s/ready", side);
	close(open(path, O_WRONLY | O_CREAT, 0644));
	pthread_t threads[THREADS];
	for (long t = 0; t < THREADS; t++)
		pthread_create(&threads[t], 0, writer, (void *)t);
	if (argc == 5) {
		usleep((useconds_t)(atof(argv[4]) * 1e6));
		exit(0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(threads[t], 0);
	return 0;
}
