/* System calls from signal handlers and calls interrupted by signals: a 200 us interval timer
 * fires while the main loop writes and reads a file and blocks on a pipe; the handler itself
 * makes system calls. Checks the file's bytes, EINTR without SA_RESTART, restart with it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static int pipe_fds[2];
static volatile sig_atomic_t handled;

static void on_alarm(int sig)
{
	(void)sig;
	int saved = errno;
	char b = 'h';
	write(pipe_fds[1], &b, 1); /* a system call inside the handler */
	getppid();
	handled++;
	errno = saved;
}

static void set_handler(int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = flags;
	sigaction(SIGALRM, &sa, NULL);
}

int main(int argc, char **argv)
{
	pipe(pipe_fds);
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	set_handler(SA_RESTART);
	struct itimerval it = { { 0, 200 }, { 0, 200 } };
	setitimer(ITIMER_REAL, &it, NULL);
	char block[512], check[512];
	long bad = 0;
	for (int i = 0; i < 20000; i++) {
		memset(block, 'a' + i % 26, sizeof block);
		if (pwrite(fd, block, sizeof block, (long)(i % 64) * 512) != sizeof block)
			bad++;
		if (pread(fd, check, sizeof check, (long)(i % 64) * 512) != sizeof check || memcmp(block, check, sizeof block))
			bad++;
	}
	/* Blocking read on the pipe: the handler's write wakes it (restarted after the handler). */
	char c;
	long got = 0;
	for (int i = 0; i < 50; i++)
		got += read(pipe_fds[0], &c, 1);
	/* Without SA_RESTART a blocking read on an empty pipe fails with EINTR. */
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	set_handler(0);
	int empty[2];
	pipe(empty);
	struct itimerval once = { { 0, 0 }, { 0, 20000 } };
	setitimer(ITIMER_REAL, &once, NULL);
	long r = read(empty[0], &c, 1);
	int e = errno;
	printf("bad=%ld pipe_reads=%ld handled_some=%d eintr=%d\n", bad, got, handled > 50, r == -1 && e == EINTR);
	return 0;
}
