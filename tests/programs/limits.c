/* Limits and bad inputs on a file, to compare with the kernel: RLIMIT_FSIZE (short counts, EFBIG,
 * SIGXFSZ), transfers of more than 2 GiB (capped at 0x7ffff000 bytes), offsets near INT64_MAX,
 * lseek overflow, and calls that fail on the kind of descriptor (a directory, a pipe, the wrong
 * access mode). `limits SECTION DIR` works on files in DIR and prints one "name result errno"
 * line per call, then the files' sizes and a few bytes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static char path_buf[4096];

static const char *in_dir(const char *dir, const char *name)
{
	snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
	return path_buf;
}

static void show(const char *what, long long r)
{
	printf("%s %lld %s\n", what, r, r < 0 ? strerrorname_np(errno) : "-");
	fflush(stdout);
	errno = 0;
}

static long long size_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (long long)st.st_size : -1;
}

/* The bytes of the file at `fd` as a checksum (FNV-1a), read through the kernel's view. */
static unsigned long long checksum(int fd)
{
	unsigned long long h = 1469598103934665603ULL;
	char buf[65536];
	off_t off = 0;
	ssize_t n;
	while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			h = (h ^ (unsigned char)buf[i]) * 1099511628211ULL;
		off += n;
	}
	return h;
}

static volatile sig_atomic_t xfsz_seen;

static void on_xfsz(int sig)
{
	(void)sig;
	xfsz_seen++;
}

static void set_fsize(rlim_t limit)
{
	struct rlimit rl;
	getrlimit(RLIMIT_FSIZE, &rl);
	rl.rlim_cur = limit;
	setrlimit(RLIMIT_FSIZE, &rl);
}

/* RLIMIT_FSIZE of 10000 bytes: a write crossing it is cut short, one starting at or past it
 * fails with EFBIG and raises SIGXFSZ (ignored, caught, or fatal in a child). */
static void fsize(const char *dir)
{
	char data[20000];
	memset(data, 'a', sizeof data);
	/* Opened before the limit is lowered, and after. */
	int early = open(in_dir(dir, "early"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	set_fsize(10000);
	signal(SIGXFSZ, SIG_IGN);
	show("early-write-12000", write(early, data, 12000));
	show("early-write-past", write(early, data, 10));
	show("early-size", size_of(early));
	int fd = open(in_dir(dir, "late"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	show("write-8000", write(fd, data, 8000));
	show("write-4000-short", write(fd, data, 4000));
	show("write-at-limit", write(fd, data, 1));
	show("size", size_of(fd));
	show("pwrite-crossing", pwrite(fd, "0123456789", 10, 9995));
	show("pwrite-at-limit", pwrite(fd, "x", 1, 10000));
	show("pwrite-far", pwrite(fd, "x", 1, 50000));
	struct iovec iov[2] = { { data, 3000 }, { data, 3000 } };
	show("pwritev-crossing", pwritev(fd, iov, 2, 5000));
	show("ftruncate-past", ftruncate(fd, 20000));
	show("ftruncate-to-limit", ftruncate(fd, 10000));
	show("ftruncate-down", ftruncate(fd, 4000));
	show("size-after-truncate", size_of(fd));
	int app = open(in_dir(dir, "late"), O_WRONLY | O_APPEND);
	show("append-crossing", write(app, data, 7000));
	show("append-at-limit", write(app, data, 1));
	show("lseek-9999", lseek(fd, 9999, SEEK_SET));
	show("write-2-short", write(fd, "YZ", 2));
	show("offset", lseek(fd, 0, SEEK_CUR));
	show("read-past-limit-ok", pread(fd, data, 20000, 0));
	show("signals-while-ignored", xfsz_seen);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_xfsz;
	sigaction(SIGXFSZ, &sa, NULL);
	show("caught-write-at-limit", write(fd, data, 1));
	show("caught-pwrite-far", pwrite(fd, data, 100, 30000));
	show("signals-caught", xfsz_seen);
	show("final-size", size_of(fd));
	printf("checksum %llx %llx\n", checksum(fd), checksum(early));
	close(app);
	close(fd);
	close(early);

	fflush(stdout);
	/* A child with the default action: its write at the limit kills it. */
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGXFSZ, SIG_DFL);
		int c = open(in_dir(dir, "child"), O_RDWR | O_CREAT | O_TRUNC, 0644);
		show("child-write-15000", write(c, data, 15000));
		show("child-write-at-limit", write(c, data, 1));
		_exit(4);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	printf("child exited %d status %d signal %d\n", WIFEXITED(status), WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	       WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	set_fsize(RLIM_INFINITY);
	int c = open(in_dir(dir, "child"), O_RDONLY);
	printf("child file %lld %llx\n", size_of(c), checksum(c));
}

#define BIG (3ULL << 30)
#define CAP 0x7ffff000LL

/* One read and one write of 3 GiB move 0x7ffff000 bytes each, as every transfer does. */
static void big(const char *dir)
{
	char *buf = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (buf == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	madvise(buf, BIG, MADV_HUGEPAGE); /* fewer page faults: the copies take less time */
	int fd = open(in_dir(dir, "sparse"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	show("ftruncate-3g", ftruncate(fd, BIG));
	show("pwrite-marks", pwrite(fd, "R", 1, 5) + pwrite(fd, "S", 1, CAP - 1) + pwrite(fd, "T", 1, CAP));
	buf[CAP] = '?';
	show("read-3g", read(fd, buf, BIG));
	show("offset-after-read", lseek(fd, 0, SEEK_CUR));
	printf("read bytes %c %c %c\n", buf[5], buf[CAP - 1], buf[CAP]);
	show("pread-3g-at-1g", pread(fd, buf, BIG, 1LL << 30));
	struct iovec iov[2] = { { buf, 1ULL << 30 }, { buf + (1ULL << 30), 2ULL << 30 } };
	show("preadv-3g", preadv(fd, iov, 2, 0));
	close(fd);
	unlink(in_dir(dir, "sparse"));

	int w = open(in_dir(dir, "written"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	buf[0] = 'A';
	buf[1ULL << 30] = 'B';
	buf[CAP - 1] = 'C';
	buf[CAP] = 'D';
	show("write-3g", write(w, buf, BIG));
	show("offset-after-write", lseek(w, 0, SEEK_CUR));
	show("size-after-write", size_of(w));
	char m[4] = { 0 };
	pread(w, m, 1, 0);
	pread(w, m + 1, 1, 1LL << 30);
	pread(w, m + 2, 1, CAP - 1);
	printf("written bytes %s\n", m);
	madvise(buf, BIG, MADV_DONTNEED);
	close(w);
	unlink(in_dir(dir, "written"));
}

/* Offsets near INT64_MAX: offset plus count overflowing, and the file system's size limit. */
static void offsets(const char *dir)
{
	char buf[16] = { 0 };
	int fd = open(in_dir(dir, "offsets"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	show("write-data", write(fd, "0123456789", 10));
	show("pwrite-at-max", pwrite(fd, "x", 1, INT64_MAX));
	show("pwrite-2-at-max-1", pwrite(fd, "xy", 2, INT64_MAX - 1));
	show("pwrite-16-overflowing", pwrite(fd, buf, 16, INT64_MAX - 8));
	struct iovec iov = { "x", 1 };
	show("pwritev-at-max", pwritev(fd, &iov, 1, INT64_MAX));
	show("pread-at-max", pread(fd, buf, 10, INT64_MAX));
	show("pread-overflowing", pread(fd, buf, 16, INT64_MAX - 8));
	show("pread-0-at-max", pread(fd, buf, 0, INT64_MAX));
	show("pread-negative", pread(fd, buf, 1, INT64_MIN));
	show("size", size_of(fd));
	show("pread-back", pread(fd, buf, 16, 0));
	printf("content %.10s\n", buf);
	close(fd);
}

/* lseek past what an off_t holds, and past the file system's limit; each from offset 5. */
static void seeks(const char *dir)
{
	char buf[16] = { 0 };
	int fd = open(in_dir(dir, "seeks"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	show("write-data", write(fd, "0123456789", 10));
	static const struct {
		const char *name;
		off_t off;
		int whence;
	} seeks[] = {
		{ "set-max", INT64_MAX, SEEK_SET },	  { "set-2^40", 1LL << 40, SEEK_SET },
		{ "set-negative", -1, SEEK_SET },	  { "cur-max", INT64_MAX, SEEK_CUR },
		{ "cur-min", INT64_MIN, SEEK_CUR },	  { "cur-minus-6", -6, SEEK_CUR },
		{ "end-max", INT64_MAX, SEEK_END },	  { "end-max-minus-10", INT64_MAX - 10, SEEK_END },
		{ "end-min", INT64_MIN, SEEK_END },	  { "end-minus-10", -10, SEEK_END },
		{ "end-minus-11", -11, SEEK_END },	  { "data-past-end", 100, SEEK_DATA },
		{ "hole-past-end", 100, SEEK_HOLE },	  { "data-max", INT64_MAX, SEEK_DATA },
		{ "data-negative", -1, SEEK_DATA },	  { "hole-3", 3, SEEK_HOLE },
		{ "bad-whence", 0, 5 },
	};
	for (size_t i = 0; i < sizeof seeks / sizeof seeks[0]; i++) {
		lseek(fd, 5, SEEK_SET);
		show(seeks[i].name, lseek(fd, seeks[i].off, seeks[i].whence));
		show("  then-offset", lseek(fd, 0, SEEK_CUR));
	}
	/* A read and a write at INT64_MAX (if the file system lets the offset get there). */
	lseek(fd, 5, SEEK_SET);
	show("lseek-to-max", lseek(fd, INT64_MAX, SEEK_SET));
	show("read-there", read(fd, buf, 4));
	show("write-there", write(fd, "x", 1));
	show("offset-after", lseek(fd, 0, SEEK_CUR));
	show("size", size_of(fd));
	close(fd);
}

/* Sizes far beyond memory: sparse writes and ftruncate up to and past the file system's limit. */
static void huge(const char *dir)
{
	char buf[4] = { 0 };
	for (int shift = 36; shift <= 44; shift += 4) {
		int h = open(in_dir(dir, "huge"), O_RDWR | O_CREAT | O_TRUNC, 0644);
		char name[32];
		snprintf(name, sizeof name, "pwrite-at-2^%d", shift);
		show(name, pwrite(h, "x", 1, 1LL << shift));
		show("  size", size_of(h));
		show("  pread-back", pread(h, buf, 4, (1LL << shift) - 1));
		show("  lseek-end", lseek(h, 0, SEEK_END));
		close(h);
		unlink(in_dir(dir, "huge"));
	}
	int fd = open(in_dir(dir, "huge"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	show("write-data", write(fd, "0123456789", 10));
	show("ftruncate-max", ftruncate(fd, INT64_MAX));
	show("  size", size_of(fd));
	show("ftruncate-2^44", ftruncate(fd, 1LL << 44));
	show("  size", size_of(fd));
	show("ftruncate-2^40", ftruncate(fd, 1LL << 40));
	show("  size", size_of(fd));
	show("ftruncate-negative", ftruncate(fd, -1));
	show("truncate-path-negative", truncate(in_dir(dir, "huge"), -1));
	show("ftruncate-back", ftruncate(fd, 12));
	show("  size", size_of(fd));
	show("pread-back", pread(fd, buf, 4, 8));
	close(fd);
}

/* Calls that the kind or mode of a descriptor forbids. */
static void misc(const char *dir)
{
	char buf[16] = { 0 };
	int w = open(in_dir(dir, "file"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	show("write-data", write(w, "0123456789", 10));
	show("read-wronly", read(w, buf, 4));
	show("pread-wronly", pread(w, buf, 4, 0));
	int r = open(in_dir(dir, "file"), O_RDONLY);
	show("write-rdonly", write(r, "x", 1));
	show("pwrite-rdonly", pwrite(r, "x", 1, 0));
	struct iovec iov = { "x", 1 };
	show("writev-rdonly", writev(r, &iov, 1));
	show("ftruncate-rdonly", ftruncate(r, 0));
	show("fsync-rdonly", fsync(r));
	show("read-zero-count", read(r, NULL, 0));
	show("write-zero-count", write(w, NULL, 0));
	show("read-rdonly", read(r, buf, 4));
	int p = open(in_dir(dir, "file"), O_PATH);
	show("read-opath", read(p, buf, 1));
	show("write-opath", write(p, "x", 1));
	show("lseek-opath", lseek(p, 0, SEEK_SET));
	mkdir(in_dir(dir, "sub"), 0755);
	int d = open(in_dir(dir, "sub"), O_RDONLY | O_DIRECTORY);
	show("read-dir", read(d, buf, 4));
	show("pread-dir", pread(d, buf, 4, 0));
	show("write-dir", write(d, "x", 1));
	show("open-dir-wronly", open(in_dir(dir, "sub"), O_WRONLY));
	show("open-file-as-dir", open(in_dir(dir, "file"), O_RDONLY | O_DIRECTORY));
	int pipe_fds[2];
	pipe(pipe_fds);
	show("lseek-pipe", lseek(pipe_fds[0], 0, SEEK_CUR));
	show("pwrite-pipe", pwrite(pipe_fds[1], "x", 1, 0));
	show("ftruncate-pipe", ftruncate(pipe_fds[1], 0));
	close(r);
	show("read-closed", read(r, buf, 4));
	show("write-closed", write(r, "x", 1));
	show("lseek-closed", lseek(r, 0, SEEK_SET));
	int a = open(in_dir(dir, "file"), O_RDWR | O_APPEND);
	show("pwrite-append", pwrite(a, "AP", 2, 0));
	show("append-offset", lseek(a, 0, SEEK_CUR));
	show("size", size_of(a));
	show("pread-back", pread(a, buf, 16, 0));
	printf("content %.12s\n", buf);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: limits fsize|big|offsets|seeks|huge|misc DIR\n");
		return 2;
	}
	if (!strcmp(argv[1], "fsize"))
		fsize(argv[2]);
	else if (!strcmp(argv[1], "big"))
		big(argv[2]);
	else if (!strcmp(argv[1], "offsets"))
		offsets(argv[2]);
	else if (!strcmp(argv[1], "seeks"))
		seeks(argv[2]);
	else if (!strcmp(argv[1], "huge"))
		huge(argv[2]);
	else if (!strcmp(argv[1], "misc"))
		misc(argv[2]);
	else
		return 2;
	return 0;
}
