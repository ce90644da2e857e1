/* Signals arriving in the middle of served calls. An interval timer (SIGALRM every 100 us) and
 * a second thread (pthread_kill SIGUSR1 every ~150 us) interrupt a main loop of data calls on
 * DIR/main.dat: writes of 1 byte to 3 MiB (pwrite, write, writev), reads (pread, read, readv),
 * lseek, fsync, fdatasync and ftruncate, with or without SA_RESTART. The handler itself writes
 * and reads DIR/other.dat and a region of main.dat of its own through a second descriptor, and
 * checks lseek and fstat there. Regular-file calls never fail with EINTR and never come back
 * short; every byte read is checked against a model.
 *
 * Usage: signals_served DIR PHASE...  where PHASE is
 *   restart | norestart : the loop above, handlers with or without SA_RESTART;
 *   malloc              : the main loop allocates and frees (the handler's calls arrive while
 *                         the program is inside malloc);
 *   actions             : sigaction reports the program's own actions; SA_RESETHAND;
 *   fork                : the main loop forks (children exit at once);
 *   early               : the restart loop with handlers installed before any library's
 *                         constructor ran (nvmmio's included: from .preinit_array), as a
 *                         library constructed before nvmmio would install them;
 *   longjmp             : a handler left with siglongjmp 1000 times, then opens, writes, fsyncs
 *                         and closes of another managed file (nvmmio allocates in them).
 * Prints one line per phase and a final line; every count must be the same with and without
 * nvmmio (how many signals arrived is not printed: it differs from run to run). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HREC 64            /* one handler record */
#define HSLOTS 1024        /* handler records: main.dat [0, HAREA) and other.dat */
#define HAREA (HREC * HSLOTS)
#define MAIN_OFF HAREA     /* the main loop's region of main.dat */
#define MAIN_LEN (8 << 20)
#define MAX_IO ((3 << 20) + 5)

static int fd, hfd_main, hfd_other;
static unsigned char model[MAIN_LEN]; /* main.dat from MAIN_OFF */
static long msize;                    /* main.dat's size */
static unsigned char wbuf[MAX_IO], rbuf[MAX_IO];

/* Counted by the handler (which never nests: each handler blocks both signals). */
static volatile long hcount, hbad, heintr;
static long eintr, shortc, bad;

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void record(long k, unsigned char *rec)
{
	for (int j = 0; j < HREC; j++)
		rec[j] = (unsigned char)(k * 131 + j * 7 + 1);
	memcpy(rec, &k, sizeof k);
}

static void hcheck(long r, long want)
{
	if (r == -1 && errno == EINTR)
		heintr++;
	else if (r != want)
		hbad++;
}

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	long k = hcount++;
	off_t at = (off_t)(k % HSLOTS) * HREC;
	unsigned char rec[HREC], back[HREC];
	record(k, rec);
	/* Another managed file. */
	hcheck(pwrite(hfd_other, rec, HREC, at), HREC);
	hcheck(pread(hfd_other, back, HREC, at), HREC);
	if (memcmp(rec, back, HREC))
		hbad++;
	/* The same file as the main loop, through another descriptor, another region. */
	hcheck(pwrite(hfd_main, rec, HREC, at), HREC);
	hcheck(lseek(hfd_main, at, SEEK_SET), at);
	memset(back, 0, HREC);
	hcheck(read(hfd_main, back, HREC), HREC);
	if (memcmp(rec, back, HREC))
		hbad++;
	hcheck(lseek(hfd_main, 0, SEEK_CUR), at + HREC);
	/* Nothing else changes the file while the handler runs: fstat and lseek agree. */
	struct stat st;
	off_t end = lseek(hfd_main, 0, SEEK_END);
	if (fstat(hfd_main, &st) != 0 || st.st_size != end || end < HAREA)
		hbad++;
	errno = saved;
}

static void set_handlers(int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGALRM);
	sigaddset(&sa.sa_mask, SIGUSR1);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
}

/* Phase early: installed before nvmmio's constructor ran. glibc passes (argc, argv, envp). */
static int early_installed;
static void install_early(int argc, char **argv, char **envp)
{
	(void)envp;
	for (int i = 2; i < argc; i++)
		early_installed |= !strcmp(argv[i], "early");
	if (early_installed)
		set_handlers(SA_RESTART);
}
__attribute__((section(".preinit_array"), used)) static void (*const preinit)(int, char **, char **) = install_early;

static pthread_t main_thread;
static volatile int stop_killer;

static void *killer(void *arg)
{
	(void)arg;
	struct timespec pause = { 0, 150000 };
	while (!stop_killer) {
		pthread_kill(main_thread, SIGUSR1);
		nanosleep(&pause, NULL);
	}
	return NULL;
}

static pthread_t killer_thread;

/* flags -1: the handlers installed already stay. */
static void signals_on(int flags)
{
	if (flags >= 0)
		set_handlers(flags);
	stop_killer = 0;
	/* The killer starts with both signals blocked: SIGALRM (sent to the process) goes to the
	 * main thread only, even while nvmmio holds it back there. */
	sigset_t both, old;
	sigemptyset(&both);
	sigaddset(&both, SIGALRM);
	sigaddset(&both, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &both, &old);
	pthread_create(&killer_thread, NULL, killer, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	struct itimerval it = { { 0, 100 }, { 0, 100 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

static void signals_off(void)
{
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	stop_killer = 1;
	pthread_join(killer_thread, NULL);
}

/* A call on a regular file: never EINTR, never short. */
static void check(long r, long want)
{
	if (r == -1 && errno == EINTR)
		eintr++;
	else if (r < want && r >= 0)
		shortc++;
	else if (r != want)
		bad++;
}

static void fill(size_t n)
{
	uint64_t x = next();
	for (size_t j = 0; j < n; j++) {
		if (j % 8 == 0)
			x = x * 6364136223846793005ull + 1442695040888963407ull;
		wbuf[j] = (unsigned char)(x >> (8 * (j % 8)));
	}
}

static void wrote(long off, size_t n)
{
	memcpy(model + off, wbuf, n);
	if (MAIN_OFF + off + (long)n > msize)
		msize = MAIN_OFF + off + (long)n;
}

/* Reads [off, off+n) of the main region with `how` and compares with the model. */
static void verify(long off, size_t n, int how)
{
	long want = msize - (MAIN_OFF + off);
	if (want > (long)n)
		want = n;
	if (want < 0)
		want = 0;
	memset(rbuf, 0xee, n);
	long r;
	if (how == 0) {
		r = pread(fd, rbuf, n, MAIN_OFF + off);
	} else {
		check(lseek(fd, MAIN_OFF + off, SEEK_SET), MAIN_OFF + off);
		if (how == 1) {
			r = read(fd, rbuf, n);
		} else {
			size_t a = n / 3, b = n / 2;
			struct iovec iov[3] = { { rbuf, a }, { rbuf + a, b - a }, { rbuf + b, n - b } };
			r = readv(fd, iov, 3);
		}
		if (r >= 0)
			check(lseek(fd, 0, SEEK_CUR), MAIN_OFF + off + r);
	}
	check(r, want);
	if (r > 0 && memcmp(rbuf, model + off, r))
		bad++;
}

static const size_t sizes[] = { 1, 3, 512, 4096, 4097, 65536, 200001, 1 << 20, MAX_IO };
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void io_phase(const char *name, int flags, const char *extra)
{
	eintr = shortc = bad = 0;
	long hbefore = hcount;
	signals_on(flags);
	for (int i = 0; i < 240; i++) {
		size_t n = sizes[next() % NSIZES];
		long off = next() % (MAIN_LEN - n + 1);
		if (next() % 2)
			off &= ~4095l;
		switch (next() % 8) {
		case 0:
		case 1:
			fill(n);
			check(pwrite(fd, wbuf, n, MAIN_OFF + off), n);
			wrote(off, n);
			verify(off, n, 0);
			break;
		case 2:
			fill(n);
			check(lseek(fd, MAIN_OFF + off, SEEK_SET), MAIN_OFF + off);
			check(write(fd, wbuf, n), n);
			check(lseek(fd, 0, SEEK_CUR), MAIN_OFF + off + n);
			wrote(off, n);
			verify(off, n, 1);
			break;
		case 3: {
			fill(n);
			size_t a = n / 4, b = n / 2;
			struct iovec iov[3] = { { wbuf, a }, { wbuf + a, b - a }, { wbuf + b, n - b } };
			check(lseek(fd, MAIN_OFF + off, SEEK_SET), MAIN_OFF + off);
			check(writev(fd, iov, 3), n);
			wrote(off, n);
			verify(off, n, 2);
			break;
		}
		case 4:
			verify(off, n, next() % 3);
			break;
		case 5: {
			/* Shrink or grow the main region; the handler's region stays. */
			long len = next() % (MAIN_LEN + 1);
			if (next() % 2)
				len &= ~4095l;
			check(ftruncate(fd, MAIN_OFF + len), 0);
			if (MAIN_OFF + len < msize)
				memset(model + len, 0, msize - (MAIN_OFF + len));
			msize = MAIN_OFF + len;
			verify(len > 5000 ? len - 5000 : 0, 10000, 0);
			break;
		}
		case 6:
			check(next() % 2 ? fsync(fd) : fdatasync(fd), 0);
			break;
		case 7:
			check(lseek(fd, 0, SEEK_END), msize);
			break;
		}
	}
	signals_off();
	printf("%s: %seintr=%ld short=%ld bad=%ld handler_eintr=%ld handler_bad=%ld handled_some=%d\n", name, extra,
	       eintr, shortc, bad, heintr, hbad, hcount - hbefore > 20);
	heintr = hbad = 0;
}

/* The program is in malloc and free most of the time when a signal arrives. */
static void malloc_phase(void)
{
	long hbefore = hcount;
	signals_on(SA_RESTART);
	void *keep[64] = { 0 };
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long rounds = 0;
	do {
		for (int i = 0; i < 20000; i++) {
			int s = next() % 64;
			free(keep[s]);
			keep[s] = malloc(1 + next() % (next() % 8 ? 256 : 70000));
			if (keep[s])
				memset(keep[s], s, 8);
		}
		rounds++;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000l + (t.tv_nsec - t0.tv_nsec) < 400000000l && hcount - hbefore < 2000);
	for (int s = 0; s < 64; s++)
		free(keep[s]);
	signals_off();
	printf("malloc: handler_eintr=%ld handler_bad=%ld handled_some=%d\n", heintr, hbad, hcount - hbefore > 20);
	heintr = hbad = 0;
}

/* The program forks while the handler's calls arrive (nvmmio prepares a fork in glibc's atfork
 * handlers and holds its tables' locks until the fork returns). */
static void fork_phase(void)
{
	long hbefore = hcount;
	long failed = 0;
	eintr = shortc = bad = 0;
	signals_on(SA_RESTART);
	for (int i = 0; i < 150; i++) {
		fill(4096);
		check(pwrite(fd, wbuf, 4096, MAIN_OFF + (long)i * 4096), 4096);
		wrote((long)i * 4096, 4096);
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		int status;
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
			failed++;
	}
	signals_off();
	printf("fork: failed=%ld eintr=%ld short=%ld bad=%ld handler_eintr=%ld handler_bad=%ld handled_some=%d\n",
	       failed, eintr, shortc, bad, heintr, hbad, hcount - hbefore > 20);
	heintr = hbad = 0;
}

/* What sigaction reports is what the program set (nvmmio installs a trampoline of its own);
 * SA_RESETHAND runs the handler once, while a served call is under way. */
static volatile long oneshot_runs;
static void oneshot(int sig, siginfo_t *info, void *ctx)
{
	(void)ctx;
	/* The siginfo is the kernel's (pthread_kill is a tgkill from this process). */
	oneshot_runs += sig == SIGUSR2 && info->si_code == SI_TKILL && info->si_pid == getpid();
	unsigned char b[HREC];
	if (pread(hfd_other, b, HREC, 0) != HREC)
		hbad++;
}

static void *send_usr2(void *arg)
{
	(void)arg;
	struct timespec pause = { 0, 1000000 };
	nanosleep(&pause, NULL);
	pthread_kill(main_thread, SIGUSR2);
	return NULL;
}

static void actions_phase(void)
{
	struct sigaction sa, got;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = oneshot;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGHUP);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGUSR2, NULL, &got);
	int flags = SA_SIGINFO | SA_RESETHAND | SA_RESTART | SA_NODEFER | SA_ONSTACK;
	int same = got.sa_sigaction == oneshot && (got.sa_flags & flags) == sa.sa_flags &&
		   sigismember(&got.sa_mask, SIGHUP) && !sigismember(&got.sa_mask, SIGINT);
	/* Sent by another thread while the main loop writes: the handler runs once, then the
	 * action is SIG_DFL. */
	long before = hbad;
	sigset_t all, old_mask;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old_mask);
	pthread_t sender;
	pthread_create(&sender, NULL, send_usr2, NULL);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	fill(MAX_IO);
	for (int i = 0; i < 2000 && (i == 0 || !oneshot_runs); i++) {
		check(pwrite(fd, wbuf, MAX_IO, MAIN_OFF), MAX_IO);
		wrote(0, MAX_IO);
	}
	pthread_join(sender, NULL);
	sigaction(SIGUSR2, NULL, &got);
	int reset = got.sa_handler == SIG_DFL && (got.sa_flags & SA_RESETHAND);
	/* The old action comes back from a change too. */
	struct sigaction ign, old;
	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGUSR2, &ign, &old);
	int old_same = old.sa_sigaction == oneshot && (old.sa_flags & flags) == sa.sa_flags;
	printf("actions: reported=%d ran_once=%d reset=%d old_reported=%d handler_bad=%ld bad=%ld\n", same,
	       oneshot_runs == 1, reset, old_same, hbad - before, bad);
}

/* Installed before nvmmio's constructor: reported as the program set it, and run as any other
 * (never in the middle of a served call). */
static void early_phase(void)
{
	struct sigaction got;
	sigaction(SIGALRM, NULL, &got);
	int flags = SA_SIGINFO | SA_RESETHAND | SA_RESTART | SA_NODEFER;
	int same = early_installed && got.sa_handler == on_signal && (got.sa_flags & flags) == SA_RESTART &&
		   sigismember(&got.sa_mask, SIGUSR1) && !sigismember(&got.sa_mask, SIGINT);
	char extra[32];
	snprintf(extra, sizeof extra, "reported=%d ", same);
	io_phase("early", -1, extra);
}

/* A handler that never returns: nvmmio must see the thread outside it again. */
static sigjmp_buf jump;
static volatile long jumps;
static void jump_out(int sig)
{
	(void)sig;
	jumps++;
	siglongjmp(jump, 1);
}

static void longjmp_phase(const char *dir)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = jump_out;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);
	for (int i = 0; i < 1000; i++)
		if (!sigsetjmp(jump, 1))
			raise(SIGUSR2);
	char path[4096];
	snprintf(path, sizeof path, "%s/jump.dat", dir);
	long failed = 0;
	for (int i = 0; i < 300; i++) {
		int f = open(path, O_RDWR | O_CREAT, 0644);
		fill(8192);
		failed += f < 0 || pwrite(f, wbuf, 8192, (long)i * 4096) != 8192 || fsync(f) != 0;
		memset(rbuf, 0, 8192);
		failed += pread(f, rbuf, 8192, (long)i * 4096) != 8192 || memcmp(rbuf, wbuf, 8192) != 0;
		close(f);
	}
	sa.sa_handler = SIG_DFL;
	sigaction(SIGUSR2, &sa, NULL);
	printf("longjmp: jumped=%d failed=%ld\n", jumps == 1000, failed);
}

/* The handler's records: slot s holds the last record k < hcount with k % HSLOTS == s. */
static int handler_records_ok(int f)
{
	unsigned char want[HREC], got[HREC];
	for (long s = 0; s < HSLOTS; s++) {
		memset(want, 0, HREC);
		if (s < hcount)
			record(s + (hcount - 1 - s) / HSLOTS * HSLOTS, want);
		if (pread(f, got, HREC, s * HREC) != HREC || memcmp(want, got, HREC))
			return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s DIR PHASE...\n", argv[0]);
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/main.dat", argv[1]);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	hfd_main = open(path, O_RDWR);
	snprintf(path, sizeof path, "%s/other.dat", argv[1]);
	hfd_other = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || hfd_main < 0 || hfd_other < 0 || ftruncate(fd, HAREA) != 0 || ftruncate(hfd_other, HAREA) != 0) {
		perror("open");
		return 1;
	}
	msize = HAREA;
	main_thread = pthread_self();
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "restart"))
			io_phase("restart", SA_RESTART, "");
		else if (!strcmp(argv[i], "norestart"))
			io_phase("norestart", 0, "");
		else if (!strcmp(argv[i], "malloc"))
			malloc_phase();
		else if (!strcmp(argv[i], "actions"))
			actions_phase();
		else if (!strcmp(argv[i], "fork"))
			fork_phase();
		else if (!strcmp(argv[i], "early"))
			early_phase();
		else if (!strcmp(argv[i], "longjmp"))
			longjmp_phase(argv[1]);
		fflush(stdout);
	}
	/* No more signals: check every byte. */
	struct stat st;
	int size_ok = fstat(fd, &st) == 0 && st.st_size == msize;
	int main_ok = 1;
	uint64_t sum = 1469598103934665603ull;
	for (long at = 0; at < msize - MAIN_OFF; at += MAX_IO) {
		long n = msize - MAIN_OFF - at < MAX_IO ? msize - MAIN_OFF - at : MAX_IO;
		if (pread(fd, rbuf, n, MAIN_OFF + at) != n || memcmp(rbuf, model + at, n))
			main_ok = 0;
		for (long j = 0; j < n; j++)
			sum = (sum ^ rbuf[j]) * 1099511628211ull;
	}
	printf("size=%ld size_ok=%d main_ok=%d sum=%016llx handler_records_ok=%d other_ok=%d\n", msize, size_ok,
	       main_ok, (unsigned long long)sum, handler_records_ok(hfd_main), handler_records_ok(hfd_other));
	close(hfd_other);
	close(hfd_main);
	close(fd);
	return 0;
}
