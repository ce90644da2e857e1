/* A writer for full file systems (tests/full_disk.rs). Data written by operation number `id`
 * at file offset `pos` is byte_of(id, pos), so that a checker can rebuild any state. SIZES is
 * "mixed" (writes of 100 B, 4 KiB and 100 KiB) or "one-block" (the same, each cut at the end of
 * the 4 KiB block it starts in).
 *
 * fill full DATA FILLER FILLER_KIB MODEL SEED SIZES
 *   Writes FILLER (FILLER_KIB KiB, fsynced, closed), then DATA: appends (write on an O_APPEND
 *   descriptor, pwrite at the end) and overwrites (pwrite, lseek + write; some across the end),
 *   an fsync every few, keeping DATA's expected contents in memory. Every call is checked at
 *   once: a failure must be ENOSPC and leave the file as it was (size and bytes read back); a
 *   short count may change only the bytes it counts. After 12 failures FILLER is removed and
 *   writing goes on: now every write and fsync must succeed. At the end DATA is closed, the
 *   expected contents are written to MODEL, and a line of counts printed. Exit status 0, or 1
 *   with the reason on stderr.
 *
 * fill crash DATA FILLDIR SIDE SEED SIZES
 *   Fills the file system with 64 KiB files in FILLDIR (leaving about 256 KiB), then writes
 *   DATA until killed: writes as above, an ftruncate now and then, an fsync every few. Before
 *   each call it appends what it is about to do to SIDE, after it the result:
 *     "w ID OFF LEN" / "t ID SIZE"  an operation starts;  "ok ID N" / "e ID ERRNO"  its result
 *     "f ID"  an fsync starts (ID: the last operation);  "s ID" / "fe ID ERRNO"  its result
 *   After three failures in a row it removes a filler file (or, with none left, truncates DATA
 *   to half), and every 25 operations it fills the file system up again, so that ENOSPC keeps
 *   coming, in writes and in fsyncs. It exits (status 1, with "bad ERRNO" or "torn ID" last in
 *   SIDE) only on an error other than ENOSPC, or a failed write that changed the file. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE (64u << 20)

static uint64_t rng;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static unsigned char byte_of(uint32_t id, uint64_t pos)
{
	uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15u ^ (pos >> 3) * 0xc2b2ae3d27d4eb4fu;
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9u;
	x ^= x >> 32;
	return (unsigned char)(x >> (8 * (pos & 7)));
}

static void fill_bytes(unsigned char *buf, uint32_t id, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = byte_of(id, off + i);
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fill: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static const size_t SIZES[] = { 100, 4096, 100 * 1024 };

/* "one-block": every write is cut at the end of the 4 KiB block it starts in. */
static int one_block;

static size_t clamp_len(uint64_t off, size_t len)
{
	size_t room = 4096 - (size_t)(off % 4096);
	return one_block && len > room ? room : len;
}

/* ---- full ---- */

static unsigned char *model;
static uint64_t msize;
static unsigned char *scratch;

static uint64_t file_size(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		die("fstat: %s", strerror(errno));
	return (uint64_t)st.st_size;
}

/* The file's bytes at [off, off + len) must be the model's (and nothing past its size). */
static void check_range(int fd, uint64_t off, size_t len, const char *after)
{
	uint64_t size = file_size(fd);
	if (size != msize)
		die("after %s: size %llu, expected %llu", after, (unsigned long long)size, (unsigned long long)msize);
	ssize_t n = pread(fd, scratch, len, (off_t)off);
	size_t want = off >= msize ? 0 : (size_t)(msize - off < len ? msize - off : len);
	if (n != (ssize_t)want)
		die("after %s: pread of %zu at %llu gave %zd %s, expected %zu", after, len, (unsigned long long)off, n,
		    n < 0 ? strerrorname_np(errno) : "", want);
	for (size_t i = 0; i < want; i++)
		if (scratch[i] != model[off + i])
			die("after %s: byte %llu is %u, expected %u", after, (unsigned long long)(off + i), scratch[i],
			    model[off + i]);
}

static void check_all(int fd, const char *after)
{
	for (uint64_t off = 0; off < msize + 1; off += 1 << 20)
		check_range(fd, off, 1 << 20, after);
}

struct counts {
	unsigned writes, short_writes, write_enospc, fsyncs, fsync_enospc;
};

/* One write of operation `id`; returns 0, or the errno of a failure (ENOSPC only). */
static int one_write(int fd, int afd, uint32_t id, int must_succeed, struct counts *c)
{
	size_t len = SIZES[next() % 3];
	unsigned kind = next() % 6;
	uint64_t off;
	if (kind <= 1 || msize < len) /* append */
		off = msize;
	else if (kind == 2) /* across the end */
		off = msize - len / 2;
	else
		off = next() % (msize - len + 1);
	len = clamp_len(off, len);
	static unsigned char buf[100 * 1024];
	fill_bytes(buf, id, off, len);
	ssize_t n;
	const char *how;
	if (kind == 0) {
		how = "append (O_APPEND write)";
		n = write(afd, buf, len);
	} else if (kind == 4) {
		how = "lseek + write";
		if (lseek(fd, (off_t)off, SEEK_SET) != (off_t)off)
			die("lseek: %s", strerror(errno));
		n = write(fd, buf, len);
	} else {
		how = kind == 1 ? "append (pwrite at the end)" : "pwrite";
		n = pwrite(fd, buf, len, (off_t)off);
	}
	int err = errno;
	char what[160];
	snprintf(what, sizeof what, "op %u: %s of %zu at %llu (file size %llu) = %zd %s", id, how, len,
		 (unsigned long long)off, (unsigned long long)msize, n, n < 0 ? strerrorname_np(err) : "");
	if (n < 0) {
		if (err != ENOSPC)
			die("%s failed with %s, expected ENOSPC", what, strerrorname_np(err));
		if (must_succeed)
			die("%s failed with ENOSPC after room was made", what);
		c->write_enospc++;
		check_range(fd, off, len, what);
		return err;
	}
	if ((size_t)n < len) {
		if (must_succeed)
			die("%s wrote %zd bytes after room was made", what, n);
		c->short_writes++;
	}
	c->writes++;
	memcpy(model + off, buf, (size_t)n);
	if (off + (uint64_t)n > msize)
		msize = off + (uint64_t)n;
	check_range(fd, off, len, what);
	return 0;
}

static int one_fsync(int fd, int must_succeed, struct counts *c)
{
	if (fsync(fd) == 0) {
		c->fsyncs++;
		return 0;
	}
	int err = errno;
	if (err != ENOSPC)
		die("fsync failed with %s, expected ENOSPC", strerrorname_np(err));
	if (must_succeed)
		die("fsync failed with ENOSPC after room was made");
	c->fsync_enospc++;
	check_all(fd, "a failed fsync");
	return err;
}

static int run_full(char **argv)
{
	const char *data = argv[0], *filler = argv[1], *model_path = argv[3];
	size_t filler_len = (size_t)strtoull(argv[2], NULL, 10) << 10;
	rng = strtoull(argv[4], NULL, 10) * 2 + 1;
	model = calloc(MAX_FILE, 1);
	scratch = malloc(1 << 20);
	if (!model || !scratch)
		die("out of memory");

	int ffd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (ffd < 0)
		die("open %s: %s", filler, strerror(errno));
	static unsigned char chunk[64 << 10];
	memset(chunk, 0x5a, sizeof chunk);
	for (size_t done = 0; done < filler_len; done += sizeof chunk)
		if (write(ffd, chunk, sizeof chunk) != (ssize_t)sizeof chunk)
			die("writing the filler: %s", strerror(errno));
	if (fsync(ffd) != 0 || close(ffd) != 0)
		die("filler: %s", strerror(errno));

	int fd = open(data, O_RDWR | O_CREAT | O_TRUNC, 0644);
	int afd = open(data, O_WRONLY | O_APPEND);
	if (fd < 0 || afd < 0)
		die("open %s: %s", data, strerror(errno));
	struct counts c = { 0 };
	uint32_t id = 1;
	unsigned failures = 0;
	/* Until the file system is full. */
	while (failures < 12) {
		if (id > 20000 || msize > MAX_FILE - (1 << 20))
			die("no ENOSPC after %u operations (%llu bytes)", id, (unsigned long long)msize);
		if (one_write(fd, afd, id++, 0, &c))
			failures++;
		if (next() % 4 == 0 && one_fsync(fd, 0, &c))
			failures++;
	}
	check_all(fd, "the file system ran full");
	if (unlink(filler) != 0)
		die("unlink %s: %s", filler, strerror(errno));
	/* Room again: about 200 KiB more, every call must succeed. */
	for (uint64_t grown = msize; msize < grown + (200 << 10);) {
		one_write(fd, afd, id++, 1, &c);
		if (next() % 3 == 0)
			one_fsync(fd, 1, &c);
	}
	one_fsync(fd, 1, &c);
	check_all(fd, "room was made");
	if (close(afd) != 0 || close(fd) != 0)
		die("close: %s", strerror(errno));

	int mfd = open(model_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (mfd < 0 || write(mfd, model, msize) != (ssize_t)msize || close(mfd) != 0)
		die("writing the model: %s", strerror(errno));
	printf("size %llu writes %u short %u write-enospc %u fsyncs %u fsync-enospc %u\n", (unsigned long long)msize,
	       c.writes, c.short_writes, c.write_enospc, c.fsyncs, c.fsync_enospc);
	return 0;
}

/* ---- crash ---- */

static int side_fd;

static void note(const char *fmt, ...)
{
	char line[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (write(side_fd, line, (size_t)n) != n)
		die("side file: %s", strerror(errno));
}

static const char *fill_dir;
static unsigned fillers_made, fillers_gone;

/* Writes 64 KiB filler files until the file system is full. */
static void fill_up(void)
{
	static unsigned char chunk[64 << 10];
	for (;;) {
		char path[4096];
		snprintf(path, sizeof path, "%s/f%u", fill_dir, fillers_made++);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		ssize_t n = write(fd, chunk, sizeof chunk);
		int err = errno;
		close(fd);
		if (n != (ssize_t)sizeof chunk) {
			if (n < 0 && err != ENOSPC)
				die("filler %s: %s", path, strerror(err));
			return;
		}
	}
}

/* Removes one filler file; false if none is left. */
static int free_some(void)
{
	while (fillers_gone < fillers_made) {
		char path[4096];
		snprintf(path, sizeof path, "%s/f%u", fill_dir, fillers_gone++);
		if (unlink(path) == 0)
			return 1;
	}
	return 0;
}

static void check_errno(int err, const char *what)
{
	if (err != ENOSPC) {
		note("bad %d\n", err);
		die("%s failed with %s, expected ENOSPC", what, strerrorname_np(err));
	}
}

static int run_crash(char **argv)
{
	const char *data = argv[0];
	fill_dir = argv[1];
	rng = strtoull(argv[3], NULL, 10) * 2 + 1;
	side_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	int fd = open(data, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || side_fd < 0)
		die("open: %s", strerror(errno));
	fill_up();
	for (int i = 0; i < 4; i++)
		free_some();
	static unsigned char buf[100 * 1024], before[100 * 1024], after[100 * 1024];
	uint64_t size = 0;
	unsigned streak = 0;
	for (uint32_t id = 1;; id++) {
		int err = 0;
		if (next() % 16 == 0 || size > MAX_FILE - (1 << 20)) {
			uint64_t to = size ? next() % size : 0;
			note("t %u %llu\n", id, (unsigned long long)to);
			if (ftruncate(fd, (off_t)to) == 0) {
				size = to;
				note("ok %u 0\n", id);
			} else {
				err = errno;
				check_errno(err, "ftruncate");
				note("e %u %d\n", id, err);
			}
		} else {
			size_t len = SIZES[next() % 3];
			unsigned kind = next() % 4;
			uint64_t off = kind == 0 || size < len ? size : kind == 1 ? size - len / 2 : next() % (size - len + 1);
			len = clamp_len(off, len);
			fill_bytes(buf, id, off, len);
			/* What a failed write must leave there. */
			ssize_t had = pread(fd, before, len, (off_t)off);
			note("w %u %llu %zu\n", id, (unsigned long long)off, len);
			ssize_t n = pwrite(fd, buf, len, (off_t)off);
			if (n >= 0) {
				if (off + (uint64_t)n > size)
					size = off + (uint64_t)n;
				note("ok %u %zd\n", id, n);
			} else {
				err = errno;
				check_errno(err, "pwrite");
				note("e %u %d\n", id, err);
				if (pread(fd, after, len, (off_t)off) != had || memcmp(before, after, (size_t)had) != 0) {
					note("torn %u\n", id);
					die("call %u: a pwrite of %zu at %llu failed with ENOSPC and changed the file", id, len,
					    (unsigned long long)off);
				}
			}
		}
		if (next() % 4 == 0) {
			note("f %u\n", id);
			if (fsync(fd) == 0) {
				note("s %u\n", id);
			} else {
				int ferr = errno;
				check_errno(ferr, "fsync");
				note("fe %u %d\n", id, ferr);
				err = ferr;
			}
		}
		streak = err ? streak + 1 : 0;
		if (streak >= 3) {
			streak = 0;
			if (!free_some()) {
				uint64_t to = size / 2;
				note("t %u %llu\n", ++id, (unsigned long long)to);
				if (ftruncate(fd, (off_t)to) == 0) {
					size = to;
					note("ok %u 0\n", id);
				} else {
					int terr = errno;
					check_errno(terr, "ftruncate");
					note("e %u %d\n", id, terr);
				}
			}
		}
		if (id % 25 == 0)
			fill_up();
	}
	return 0;
}

int main(int argc, char **argv)
{
	one_block = strcmp(argv[argc - 1], "one-block") == 0;
	if (argc == 8 && strcmp(argv[1], "full") == 0)
		return run_full(argv + 2);
	if (argc == 7 && strcmp(argv[1], "crash") == 0)
		return run_crash(argv + 2);
	fprintf(stderr, "usage: fill full DATA FILLER FILLER_KIB MODEL SEED SIZES | fill crash DATA FILLDIR SIDE SEED SIZES\n"
			"SIZES: mixed (100 B, 4 KiB, 100 KiB) or one-block (each write cut at its block's end)\n");
	return 2;
}
