/* SPDX-License-Identifier: MIT */
/*
 * sr-workload: the Linux test guest's program.  Fills a buffer with a known
 * pattern, then once a second verifies it and rewrites it with the next
 * generation, printing a counter, CLOCK_MONOTONIC and CLOCK_REALTIME; at the
 * end prints a verdict.  A save and restore in the middle must be invisible
 * to it: the counter goes on, every verification passes.
 *
 * usage: sr-workload [MiB] [seconds] [high-pages]
 * With 0 seconds it runs until a line "stop" arrives on standard input (the
 * console), so a demo's workload outlives any save and ends when told.
 * With high-pages, at least that many of the buffer's pages must lie above
 * 4 GiB (guest-physical, from /proc/self/pagemap) at the start and at the
 * end, so that memory there is written and verified across a save.
 * A first argument "disk", "verify" or "bench" picks a disk mode (workload.h).
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/select.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "workload.h"

double now(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t word(uint64_t gen, uint64_t i)
{
	return (gen * 0x9e3779b97f4a7c15ull) ^ (i * 0xbf58476d1ce4e5b9ull) ^ i;
}

/* How many of the n pages from p lie above 4 GiB guest-physical; -1 if pagemap will not say. */
static long pages_above_4g(const void *p, size_t n)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uintptr_t first = (uintptr_t)p / 4096;
	long high = 0;

	if (fd < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		uint64_t e;

		if (pread(fd, &e, 8, (first + i) * 8) != 8) {
			close(fd);
			return -1;
		}
		/* Bit 63: present; bits 0-54: the frame (0 without CAP_SYS_ADMIN). */
		if ((e >> 63) && (e & ((1ull << 55) - 1)) >= (1ull << 32) / 4096)
			high++;
	}
	close(fd);
	return high;
}

/* Prints where the buffer's pages are; 0 when at least want of them lie above 4 GiB. */
static int check_high(const char *when, const void *buf, size_t bytes, long want)
{
	long high = pages_above_4g(buf, bytes / 4096);

	printf("sr-workload: %s: %ld of %zu pages above 4 GiB (want at least %ld)\n", when, high,
	       bytes / 4096, want);
	return high >= want ? 0 : 1;
}

/* A "stop" line on standard input, without blocking. */
int told_to_stop(void)
{
	struct timeval tv = { 0, 0 };
	char line[64];
	fd_set in;

	FD_ZERO(&in);
	FD_SET(0, &in);
	if (select(1, &in, NULL, NULL, &tv) <= 0)
		return 0;
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	return !strncmp(line, "stop", 4);
}

/* The tick line the tests read: the realtime field stays last. */
void print_tick(unsigned long long tick, const char *what)
{
	printf("sr-workload: tick %llu %s%smonotonic %.3f realtime %.3f\n", tick, what, *what ? " " : "",
	       now(CLOCK_MONOTONIC), now(CLOCK_REALTIME));
}

static int memory_main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 32;
	unsigned seconds = argc > 2 ? strtoul(argv[2], NULL, 0) : 30;
	long high_want = argc > 3 ? strtol(argv[3], NULL, 0) : 0;
	size_t n = mib * 1048576 / 8;
	uint64_t *buf = malloc(n * 8), bad = 0;
	double next;

	if (!buf) {
		printf("sr-workload: FAIL: no memory for %zu MiB\n", mib);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < n; i++)
		buf[i] = word(0, i);
	if (seconds)
		printf("sr-workload: %zu MiB, %u seconds\n", mib, seconds);
	else
		printf("sr-workload: %zu MiB, until \"stop\" on the console\n", mib);
	if (high_want && check_high("start", buf, n * 8, high_want))
		bad++;
	next = now(CLOCK_MONOTONIC);
	uint64_t gen;

	for (gen = 1; !seconds || gen <= seconds; gen++) {
		if (!seconds && told_to_stop())
			break;
		for (size_t i = 0; i < n; i++) {
			if (buf[i] != word(gen - 1, i) && bad++ < 5)
				printf("sr-workload: word %zu holds %016llx, expected %016llx\n", i,
				       (unsigned long long)buf[i], (unsigned long long)word(gen - 1, i));
			buf[i] = word(gen, i);
		}
		print_tick(gen, "");
		next += 1;
		while (now(CLOCK_MONOTONIC) < next)
			usleep(20000);
	}
	if (high_want && check_high("end", buf, n * 8, high_want))
		bad++;
	printf("sr-workload: %s: %llu generations verified, %llu bad words\n", bad ? "FAIL" : "PASS",
	       (unsigned long long)(gen - 1), (unsigned long long)bad);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "disk"))
		return disk_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "verify"))
		return verify_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "bench"))
		return bench_main(argc - 1, argv + 1);
	return memory_main(argc, argv);
}
