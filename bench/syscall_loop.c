/* Tight loops of cheap system calls through libc, for measuring interposition overhead.
 * usage: syscall_loop getppid|pread|fstat|stat|lseek ITERATIONS [FILE]; prints nanoseconds per call. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s getppid|pread|fstat|stat|lseek N [FILE]\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	int fd = -1;
	if (argc > 3 && (fd = open(argv[3], O_RDONLY)) < 0) {
		perror(argv[3]);
		return 1;
	}
	char buf[64];
	struct stat st;
	struct timespec a, b;
	long sink = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		if (strcmp(argv[1], "getppid") == 0)
			sink += getppid();
		else if (strcmp(argv[1], "pread") == 0)
			sink += pread(fd, buf, 1, (i * 64) & 4095);
		else if (strcmp(argv[1], "stat") == 0)
			sink += stat(argv[3], &st);
		else if (strcmp(argv[1], "lseek") == 0)
			sink += lseek(fd, i & 4095, SEEK_SET);
		else
			sink += fstat(fd, &st);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("%.1f\n", ns / n + 0 * sink);
	return 0;
}
