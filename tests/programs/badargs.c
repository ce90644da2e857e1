/* Bad arguments must give the kernel's error numbers, never a crash of the program: bad fds,
 * unmapped and read-only buffers, bad path pointers, bad whence, negative offsets. Prints one
 * "name result errno" line per call. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static void show(const char *what, long r)
{
	printf("%s %ld %s\n", what, r, r < 0 ? strerrorname_np(errno) : "-");
	errno = 0;
}

int main(int argc, char **argv)
{
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *volatile unmapped = (void *)8;
	struct stat st;
	struct iovec bad_iov = { unmapped, 4 };
	show("write-data", write(fd, "0123456789", 10));
	show("write-badfd", write(987, "x", 1));
	show("write-unmapped", write(fd, unmapped, 10));
	show("pwrite-unmapped", pwrite(fd, unmapped, 10, 0));
	show("read-into-readonly", pread(fd, ro, 10, 0));
	show("read-into-unmapped", read(fd, unmapped, 10));
	show("pread-into-unmapped", pread(fd, unmapped, 10, 0));
	show("pread-negative", pread(fd, (char[16]){0}, 10, -1));
	show("lseek-badwhence", lseek(fd, 0, 77));
	show("lseek-negative", lseek(fd, -100, SEEK_SET));
	show("fstat-unmapped", fstat(fd, unmapped));
	show("fstat-badfd", fstat(-5, &st));
	show("stat-unmapped-path", stat(unmapped, &st));
	show("open-unmapped-path", open(unmapped, O_RDONLY));
	show("writev-unmapped", writev(fd, &bad_iov, 1));
	show("raw-pread-unmapped", syscall(SYS_pread64, fd, unmapped, 10, 0));
	show("fsync-badfd", fsync(1234));
	struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	show("fcntl-badfd", fcntl(987, F_GETFL));
	show("fcntl-badcmd", fcntl(fd, 12345));
	show("fcntl-getfl-accmode", fcntl(fd, F_GETFL) & O_ACCMODE);
	show("fcntl-setlk", fcntl(fd, F_SETLK, &lk));
	show("fcntl-setlk-unmapped", fcntl(fd, F_SETLK, unmapped));
	show("fcntl-getlk-own", (fcntl(fd, F_GETLK, &lk), lk.l_type));
	show("fcntl-dupfd-at-least-100", fcntl(fd, F_DUPFD_CLOEXEC, 100) >= 100);
	show("fcntl-setown-group", fcntl(fd, F_SETOWN, -getpgrp()));
	show("fcntl-getown-is-group", fcntl(fd, F_GETOWN) == -getpgrp());
	int p[2];
	pipe(p);
	show("lseek-pipe", lseek(p[0], 0, SEEK_SET));
	show("pread-pipe", pread(p[0], (char[4]){0}, 1, 0));
	show("read-dir", read(open(".", O_RDONLY | O_DIRECTORY), (char[4]){0}, 1));
	/* Path calls that nvmmio also exports as symbols (stat, lstat, fstatat, unlink, close). */
	symlink("f", "badargs-link");
	mkdir("badargs-dir", 0755);
	show("stat-missing", stat("no-such-file", &st));
	show("stat-through-file", stat("f/x", &st));
	show("stat-size", (stat("f", &st), st.st_size));
	show("stat-follows-link", (stat("badargs-link", &st), S_ISREG(st.st_mode)));
	show("lstat-link", (lstat("badargs-link", &st), S_ISLNK(st.st_mode)));
	show("lstat-unmapped", lstat("f", unmapped));
	show("fstatat-badfd", fstatat(987, "f", &st, 0));
	show("fstatat-badflags", fstatat(AT_FDCWD, "f", &st, 0x7000000));
	show("fstatat-nofollow", (fstatat(AT_FDCWD, "badargs-link", &st, AT_SYMLINK_NOFOLLOW), S_ISLNK(st.st_mode)));
	show("fstatat-empty-path", (fstatat(fd, "", &st, AT_EMPTY_PATH), st.st_size));
	show("unlink-missing", unlink("no-such-file"));
	show("unlink-dir", unlink("badargs-dir"));
	show("unlink-unmapped", unlink(unmapped));
	show("unlinkat-badflags", unlinkat(AT_FDCWD, "badargs-dir", 0x4000));
	show("unlinkat-dir", unlinkat(AT_FDCWD, "badargs-dir", AT_REMOVEDIR));
	show("unlink-link", unlink("badargs-link"));
	show("lstat-after-unlink", lstat("badargs-link", &st));
	show("close-badfd", close(987));
	show("close-negative", close(-1));
	int extra = dup(fd);
	show("close-dup", close(extra));
	show("close-dup-again", close(extra));
	show("fstat-closed", fstat(extra, &st));
	char back[11] = { 0 };
	show("read-back", pread(fd, back, 10, 0));
	printf("content %s\n", back);
	return 0;
}
