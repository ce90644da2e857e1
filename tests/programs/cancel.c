/* pthread_cancel through nvmmio's entry points: a thread blocked in read() on a pipe, and a
 * thread with a cancel pending when it calls pread() on a regular file, must both be cancelled
 * (glibc cancellation points), with their cleanup handlers run. Prints one line per case. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int cleaned[2];

static void cleanup(void *arg) { cleaned[(long)arg] = 1; }

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
	return 0;
}
