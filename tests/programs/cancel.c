/* pthread_cancel through nvmmio's entry points: a thread blocked in read() on a pipe, a
 * thread with a cancel pending when it calls pread() or close() on a regular file, and a thread
 * waiting in fcntl(F_SETLKW) for a lock another process holds must all be cancelled (glibc
 * cancellation points), with their cleanup handlers run; a close cancelled before it ran leaves
 * the descriptor open, as glibc's does. Prints one line per case. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int cleaned[4];

static void cleanup(void *arg) { cleaned[(long)arg] = 1; }

static void cleanup_lock(void *arg)
{
	(void)arg;
	cleaned[2] = 1;
}

static void *lock_waiter(void *arg)
{
	int fd = *(int *)arg;
	struct flock lk = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	pthread_cleanup_push(cleanup_lock, NULL);
	fcntl(fd, F_SETLKW, &lk); /* waits: the child holds a write lock */
	pthread_cleanup_pop(0);
	return NULL;
}

static void *blocked_reader(void *arg)
{
	int fd = *(int *)arg;
	char c;
	pthread_cleanup_push(cleanup, (void *)0);
	read(fd, &c, 1); /* blocks: nothing is ever written */
	pthread_cleanup_pop(0);
	return NULL;
}

static void *file_reader(void *arg)
{
	int fd = *(int *)arg;
	char buf[16];
	pthread_cleanup_push(cleanup, (void *)1);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cancel(pthread_self()); /* pending until the next cancellation point */
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	for (;;)
		pread(fd, buf, sizeof buf, 0);
	pthread_cleanup_pop(0);
	return NULL;
}

static void *file_closer(void *arg)
{
	int fd = *(int *)arg;
	pthread_cleanup_push(cleanup, (void *)3);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	pthread_cancel(pthread_self());
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	close(fd);
	pthread_cleanup_pop(0);
	return NULL;
}

int main(int argc, char **argv)
{
	int p[2];
	void *ret;
	pthread_t t;
	if (argc < 2 || pipe(p) != 0)
		return 2;
	pthread_create(&t, NULL, blocked_reader, &p[0]);
	usleep(100000);
	pthread_cancel(t);
	pthread_join(t, &ret);
	printf("pipe reader cancelled=%d cleaned=%d\n", ret == PTHREAD_CANCELED, cleaned[0]);

	int fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		return 3;
	pthread_create(&t, NULL, file_reader, &fd);
	pthread_join(t, &ret);
	printf("file reader cancelled=%d cleaned=%d\n", ret == PTHREAD_CANCELED, cleaned[1]);
	pthread_create(&t, NULL, file_closer, &fd); /* the same descriptor: its type is known now */
	pthread_join(t, &ret);
	printf("file closer cancelled=%d cleaned=%d still_open=%d\n", ret == PTHREAD_CANCELED, cleaned[3],
	       fcntl(fd, F_GETFD) >= 0);

	int rw = open(argv[1], O_RDWR);
	int ready[2];
	if (rw < 0 || pipe(ready) != 0)
		return 4;
	pid_t child = fork();
	if (child == 0) {
		struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
		if (fcntl(rw, F_SETLK, &lk) != 0)
			_exit(1);
		write(ready[1], "x", 1);
		pause();
		_exit(0);
	}
	char c;
	if (read(ready[0], &c, 1) != 1)
		return 5;
	pthread_create(&t, NULL, lock_waiter, &rw);
	usleep(100000);
	pthread_cancel(t);
	pthread_join(t, &ret);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	printf("lock waiter cancelled=%d cleaned=%d\n", ret == PTHREAD_CANCELED, cleaned[2]);
	return 0;
}
