/* A writer for crash tests: record i is 4 KiB at offset i * 4096 (sometimes two records in one
 * writev), each filled with a pattern of i and ending with a checksum. Every few records it
 * calls fsync, then appends "i\n" to a side file (outside the managed directory) naming the last
 * record the fsync covered. It runs until killed. usage: crash_writer DATA SIDE */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define REC 4096

static void fill(unsigned char *b, uint32_t i)
{
	uint32_t sum = 0;
	for (int k = 0; k < REC - 4; k++) {
		b[k] = (unsigned char)(i * 131 + k * 7);
		sum = sum * 31 + b[k];
	}
	memcpy(b + REC - 4, &sum, 4);
}

int main(int argc, char **argv)
{
	int fd = open(argv[1], O_RDWR | O_CREAT, 0644);
	int side = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0 || side < 0)
		return 1;
	unsigned char a[REC], b[REC];
	for (uint32_t i = 0;; i++) {
		if (i % 5 == 3) {
			fill(a, i);
			fill(b, i + 1);
			struct iovec iov[2] = { { a, REC }, { b, REC } };
			if (pwritev(fd, iov, 2, (off_t)i * REC) != 2 * REC)
				return 2;
			i++;
		} else {
			fill(a, i);
			if (pwrite(fd, a, REC, (off_t)i * REC) != REC)
				return 2;
		}
		if (i % 7 == 6) {
			if (fsync(fd) != 0)
				return 3;
			char line[32];
			int n = snprintf(line, sizeof line, "%u\n", i);
			write(side, line, n);
		}
	}
}
