/* Threads writing one file in a tight loop, for measuring the engine's per-call cost.
 * usage: write_loop DIR N BYTES THREADS; each thread makes N calls on its own descriptor of
 * DIR/f: 128-byte appends (BYTES 128, O_APPEND writes) or BYTES-sized pwrites at random 4 KiB
 * offsets of a 64 MiB file. Prints nanoseconds per call (wall time / all calls). Run it under
 * two builds of the library, alternately, and compare medians. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const char *path;
static long calls;
static int bytes;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *writer(void *arg)
{
	static char buf[1 << 16];
	unsigned seed = (unsigned)(long)arg + 1;
	int append = bytes == 128;
	int fd = open(path, O_RDWR | (append ? O_APPEND : 0));
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	for (long i = 0; i < calls; i++) {
		ssize_t done = append ? write(fd, buf, 128) : pwrite(fd, buf, bytes, (off_t)(rand_r(&seed) % 16384) * 4096);
		if (done < 0) {
			perror("write");
			exit(1);
		}
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s DIR N BYTES THREADS\n", argv[0]);
		return 2;
	}
	static char file[4096], zeros[1 << 20];
	snprintf(file, sizeof file, "%s/f", argv[1]);
	path = file;
	calls = atol(argv[2]);
	bytes = atoi(argv[3]);
	int threads = atoi(argv[4]);
	if (bytes < 1 || bytes > 1 << 16 || threads < 1 || threads > 64)
		return 2;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	for (int i = 0; bytes != 128 && i < 64; i++)
		if (write(fd, zeros, sizeof zeros) < 0)
			return 1;
	close(fd);
	pthread_t t[64];
	double start = now();
	for (long i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, writer, (void *)i);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("%.1f\n", (now() - start) / ((double)calls * threads) * 1e9);
	return 0;
}
