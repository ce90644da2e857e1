/* Threads writing one file at once (tests/threads.rs). The file has 256 blocks of 4 KiB,
 * written whole and fsynced first. In the first 128 blocks, thread t owns lane t of every
 * block (bytes t*512 to t*512+511): the threads' writes share blocks, so a write that drops
 * another's bytes in the same block is caught. Of the last 128 blocks, thread t owns blocks
 * 128+16t to 128+16t+15, which it writes whole, 1 to 4 at a time (pwritev in pieces).
 * Each thread writes random parts of what it owns, reads each write back at once (pread) and
 * checks it, and fsyncs now and then; at the end the main thread reads the whole file and
 * checks it against every thread's record, and writes that expected image to EXPECTED (a file
 * outside the managed directory) for the test to compare with the file as the kernel has it.
 * usage: lanes FILE EXPECTED ROUNDS   prints "ok" and exits 0, or says what is wrong. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lanes.h"

static int fd;
static long rounds;
static unsigned char expect[FILE_SIZE];
static int failed;

static void fail(const char *what, int t, long r, long off)
{
	fprintf(stderr, "thread %d round %ld: %s at offset %ld\n", t, r, what, off);
	__atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
}

/* Writes len bytes of expect[] at off (in up to three pieces), then reads them back. */
static void write_checked(int t, long r, long off, long len, uint64_t *rng)
{
	struct iovec iov[3];
	int n = 0;
	long at = 0;
	while (at < len && n < 3) {
		long piece = n == 2 ? len - at : 1 + (long)(next(rng) % (uint64_t)(len - at));
		iov[n].iov_base = expect + off + at;
		iov[n].iov_len = piece;
		at += piece;
		n++;
	}
	ssize_t w = n == 1 ? pwrite(fd, expect + off, len, off) : pwritev(fd, iov, n, off);
	if (w != len)
		return fail("short write", t, r, off);
	unsigned char back[4 * BLOCK];
	if (pread(fd, back, len, off) != len || memcmp(back, expect + off, len) != 0)
		return fail("read back differs", t, r, off);
}

static void *worker(void *arg)
{
	int t = (int)(long)arg;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (t + 1);
	for (long r = 0; r < rounds && !__atomic_load_n(&failed, __ATOMIC_SEQ_CST); r++) {
		long off, len;
		if (next(&rng) % 2) {
			/* Part of this thread's lane in one of the shared blocks. */
			long block = next(&rng) % (BLOCKS / 2);
			long from = next(&rng) % LANE;
			len = 1 + next(&rng) % (LANE - from);
			off = block * BLOCK + t * LANE + from;
		} else {
			/* 1 to 4 of this thread's own blocks, whole. */
			long first = next(&rng) % 16;
			long count = 1 + next(&rng) % 4;
			if (first + count > 16)
				count = 16 - first;
			off = (long)(BLOCKS / 2 + t * 16 + first) * BLOCK;
			len = count * BLOCK;
		}
		for (long i = 0; i < len; i++)
			expect[off + i] = (unsigned char)next(&rng);
		write_checked(t, r, off, len, &rng);
		if (r % 97 == 96 && fsync(fd) != 0)
			fail("fsync", t, r, 0);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	rounds = atol(argv[3]);
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return 2;
	for (long i = 0; i < FILE_SIZE; i++)
		expect[i] = (unsigned char)(i * 7 + i / BLOCK);
	if (pwrite(fd, expect, FILE_SIZE, 0) != FILE_SIZE || fsync(fd) != 0)
		return 2;
	pthread_t threads[THREADS];
	for (long t = 0; t < THREADS; t++)
		pthread_create(&threads[t], 0, worker, (void *)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(threads[t], 0);
	if (failed)
		return 1;
	static unsigned char all[FILE_SIZE];
	if (pread(fd, all, FILE_SIZE, 0) != FILE_SIZE)
		return fail("short read of the whole file", -1, 0, 0), 1;
	for (long i = 0; i < FILE_SIZE; i++)
		if (all[i] != expect[i])
			return fail("the file differs from the threads' records", -1, 0, i), 1;
	int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (out < 0 || write(out, expect, FILE_SIZE) != FILE_SIZE || close(out) != 0 || close(fd) != 0)
		return 2;
	printf("ok\n");
	return 0;
}
