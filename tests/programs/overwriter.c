/* A writer for undo-logging tests: call c (0, 1, 2...) overwrites a region of a file that already
 * exists (so most bytes it changes are below the committed size: undo images), with 8-byte words
 * that carry c; every 53rd call truncates the file instead (it shrinks, and later writes extend
 * it again). Every 5th call reads a region back into a running hash; every 7th call is followed
 * by fsync and the line "c\n" appended to a side file (outside the managed directory), naming
 * the last call the fsync covered. tests/undo.rs replays the same calls in a model.
 * usage: overwriter DATA SIDE COUNT   (COUNT 0: run until killed; else print the hash at the end) */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#define FILE_SIZE (1u << 20)
#define MAGIC 0xabcdull

static uint64_t buf[2048];

int main(int argc, char **argv)
{
	int fd = open(argv[1], O_RDWR);
	int side = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
	uint64_t count = strtoull(argv[3], 0, 10);
	if (fd < 0 || side < 0)
		return 1;
	uint64_t hash = 1469598103934665603ull;
	for (uint64_t c = 0; count == 0 || c < count; c++) {
		if (c % 53 == 52) {
			if (ftruncate(fd, FILE_SIZE - 8192 * ((c / 53) % 3)) != 0)
				return 4;
		} else {
			uint64_t words = 125 + (c * 2654435761u) % 1900;
			uint64_t len = words * 8;
			uint64_t off = ((c * 7919 * 8) % (FILE_SIZE - len)) & ~7ull;
			for (uint64_t j = 0; j < words; j++)
				buf[j] = (MAGIC << 48) | ((c & 0xffffffffull) << 16) | (j & 0xffff);
			ssize_t n;
			if (c % 11 == 5) {
				struct iovec iov[2] = { { buf, len / 2 }, { (char *)buf + len / 2, len - len / 2 } };
				n = pwritev(fd, iov, 2, (off_t)off);
			} else {
				n = pwrite(fd, buf, len, (off_t)off);
			}
			if (n != (ssize_t)len)
				return 2;
		}
		if (c % 5 == 2) {
			unsigned char r[3000];
			ssize_t n = pread(fd, r, sizeof r, (off_t)((c * 104729) % FILE_SIZE));
			for (ssize_t i = 0; i < n; i++)
				hash = (hash ^ r[i]) * 1099511628211ull;
			hash ^= (uint64_t)n;
		}
		if (c % 7 == 6) {
			if (fsync(fd) != 0)
				return 3;
			char line[32];
			int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)c);
			write(side, line, n);
		}
	}
	printf("%016llx\n", (unsigned long long)hash);
	return 0;
}
