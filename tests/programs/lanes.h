/* The file layout and random numbers tests/programs/lanes.c and lanes_crash.c share: 256 blocks
 * of 4 KiB; in the first half thread t owns lane t (LANE bytes) of every block. */
#include <stdint.h>

#define THREADS 8
#define BLOCK 4096
#define BLOCKS 256
#define LANE (BLOCK / THREADS)
#define FILE_SIZE (BLOCKS * BLOCK)

/* xorshift64: the same sequence for a seed in every program that replays it. */
static inline uint64_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}
