// SPDX-License-Identifier: GPL-2.0
/*
 * The fixed busy loop every real-guest workload measures: a dependent chain
 * of integer work with a branch, long enough to span many perf multiplexing
 * intervals.  Prints its own wall time so that the guest's overhead under
 * perf is measured against the same loop without perf, in the same boot.
 *
 * With a file (the console), writes "L2-MARK warm" to it a quarter of the
 * way through: the host reads its counts there, so that what a workload
 * creates once warm is told apart from its warm-up.
 *
 *   loop <millions of iterations> [mark file]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned long long n, i, x = 88172645463325252ULL;
	FILE *mark = NULL;
	long long t0, t1;

	n = argc >= 2 ? strtoull(argv[1], NULL, 10) : 0;
	if (argc > 3 || n == 0) {
		fprintf(stderr, "usage: loop <millions of iterations> [mark file]\n");
		return 2;
	}
	if (argc == 3) {
		mark = fopen(argv[2], "a");
		if (!mark) {
			perror(argv[2]);
			return 2;
		}
	}
	n *= 1000000;
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		if (mark && i == n / 4) {
			fputs("L2-MARK warm\n", mark);
			fclose(mark);
			mark = NULL;
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (x & 1)
			x += i;
	}
	t1 = now_ns();
	printf("loop ns %lld check %llu\n", t1 - t0, x & 0xffff);
	return 0;
}
