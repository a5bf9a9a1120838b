/* SPDX-License-Identifier: MIT */
/*
 * sr-workload bench [MiB] [seconds] [jobs]: throughput of the root disk,
 * measured inside the guest so that sr's virtio-blk and QEMU's run the same
 * code on the same image.  A file of MiB (64) on the root file system is
 * filled once with buffered writes and fsync (its blocks then exist, so
 * O_DIRECT goes straight to the device), then four phases of the given
 * seconds (5) each, with jobs threads (1) each doing synchronous O_DIRECT
 * I/O on its own share of the file:
 *   seqwrite, seqread   1 MiB requests in order, wrapping around
 *   randread, randwrite 4 KiB requests at random 4 KiB-aligned offsets
 * Writes end with fdatasync, inside the time measured.  Each phase prints
 *   sr-bench: PHASE MB/s X IOPS Y (N requests of B KiB in S s, J jobs)
 * and the run ends "sr-workload: PASS: bench ...", or FAIL on an I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workload.h"

#define BENCH_FILE "/bench.dat"
#define MAX_JOBS 16

struct phase {
	const char *name;
	size_t bs;
	int write, random;
};

static const struct phase phases[] = {
	{ "seqwrite", 1 << 20, 1, 0 },
	{ "seqread", 1 << 20, 0, 0 },
	{ "randread", 4096, 0, 1 },
	{ "randwrite", 4096, 1, 1 },
};

struct job {
	pthread_t thread;
	const struct phase *ph;
	off_t base, span;	/* this job's share of the file */
	double end;		/* CLOCK_MONOTONIC */
	unsigned long long ios;
	int err;
};

static void *run_job(void *arg)
{
	struct job *j = arg;
	const struct phase *ph = j->ph;
	uint64_t x = (uint64_t)j->base * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
	off_t blocks = j->span / ph->bs, next = 0;
	void *buf;
	int fd;

	if (posix_memalign(&buf, 4096, ph->bs)) {
		j->err = ENOMEM;
		return NULL;
	}
	memset(buf, 0x5a, ph->bs);
	fd = open(BENCH_FILE, (ph->write ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		j->err = errno;
		free(buf);
		return NULL;
	}
	while (!j->err) {
		off_t at;
		ssize_t n;

		/* The clock is read every 16 requests: a read per request costs little, but not nothing. */
		if (!(j->ios & 15) && now(CLOCK_MONOTONIC) >= j->end)
			break;
		if (ph->random) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			at = (off_t)(x % blocks);
		} else {
			at = next++ % blocks;
		}
		at = j->base + at * ph->bs;
		n = ph->write ? pwrite(fd, buf, ph->bs, at) : pread(fd, buf, ph->bs, at);
		if (n != (ssize_t)ph->bs)
			j->err = n < 0 ? errno : EIO;
		else
			j->ios++;
	}
	if (ph->write && !j->err && fdatasync(fd))
		j->err = errno;
	close(fd);
	free(buf);
	return NULL;
}

/*
 * The fill's other half: writing size bytes of memory the guest never
 * touched, no disk involved.  Told apart from the fill, a VMM's cost of
 * backing fresh guest memory (its page size, its faults) is not read as
 * its disk's.
 */
static void touch_fresh_memory(off_t size)
{
	double t = now(CLOCK_MONOTONIC);
	char *m = malloc(size);

	if (!m)
		return;
	memset(m, 0xa5, size);
	printf("sr-bench: touched %lld MiB of fresh memory in %.2f s (no disk, not measured)\n",
	       (long long)(size >> 20), now(CLOCK_MONOTONIC) - t);
	__asm__ volatile("" : : "r"(m) : "memory");	/* the writes are not optimised away */
	free(m);
}

/* Creates and fills the file once (not measured); 0 or an errno. */
static int prepare(off_t size)
{
	struct stat st;
	size_t bs = 1 << 20;
	char *buf;
	int fd, err = 0;
	double t = now(CLOCK_MONOTONIC);

	if (!stat(BENCH_FILE, &st) && st.st_size == size && st.st_blocks * 512 >= size)
		return 0;
	fd = open(BENCH_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	buf = malloc(bs);
	if (fd < 0 || !buf) {
		err = fd < 0 ? errno : ENOMEM;
		goto out;
	}
	for (off_t at = 0; at < size; at += bs) {
		memset(buf, (int)(at >> 20), bs);
		if (pwrite(fd, buf, bs, at) != (ssize_t)bs) {
			err = errno ? errno : EIO;
			goto out;
		}
	}
	if (fsync(fd))
		err = errno;
	printf("sr-bench: filled %s, %lld MiB, in %.2f s (buffered, not measured)\n", BENCH_FILE,
	       (long long)(size >> 20), now(CLOCK_MONOTONIC) - t);
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return err;
}

/* One phase with jobs threads; 0 or an errno. */
static int run_phase(const struct phase *ph, off_t size, unsigned jobs, double seconds)
{
	struct job job[MAX_JOBS];
	unsigned long long ios = 0;
	double t0 = now(CLOCK_MONOTONIC), t;
	int err = 0;

	off_t span = size / jobs & ~(off_t)((1 << 20) - 1);	/* whole MiB: O_DIRECT wants aligned offsets */

	for (unsigned i = 0; i < jobs; i++) {
		job[i] = (struct job){ .ph = ph, .base = span * i, .span = span, .end = t0 + seconds };
		if (pthread_create(&job[i].thread, NULL, run_job, &job[i])) {
			jobs = i;
			err = EAGAIN;
			break;
		}
	}
	for (unsigned i = 0; i < jobs; i++) {
		pthread_join(job[i].thread, NULL);
		ios += job[i].ios;
		if (job[i].err)
			err = job[i].err;
	}
	t = now(CLOCK_MONOTONIC) - t0;
	if (err) {
		printf("sr-bench: %s: %s\n", ph->name, strerror(err));
		return err;
	}
	printf("sr-bench: %s MB/s %.1f IOPS %.0f (%llu requests of %zu KiB in %.2f s, %u jobs)\n", ph->name,
	       ios * ph->bs / 1e6 / t, ios / t, ios, ph->bs >> 10, t, jobs);
	return 0;
}

int bench_main(int argc, char **argv)
{
	off_t size = (off_t)(argc > 1 ? strtoul(argv[1], NULL, 0) : 64) << 20;
	double seconds = argc > 2 ? strtod(argv[2], NULL) : 5;
	unsigned jobs = argc > 3 ? strtoul(argv[3], NULL, 0) : 1;
	unsigned bad = 0;
	int err;

	if (size < (off_t)MAX_JOBS << 20 || seconds <= 0 || !jobs || jobs > MAX_JOBS) {
		printf("sr-workload: FAIL: bench wants at least %d MiB, seconds > 0, 1..%d jobs\n", MAX_JOBS,
		       MAX_JOBS);
		return 1;
	}
	printf("sr-bench: %lld MiB file %s, %.1f s a phase, %u jobs, O_DIRECT\n", (long long)(size >> 20),
	       BENCH_FILE, seconds, jobs);
	touch_fresh_memory(size);
	err = prepare(size);
	if (err) {
		printf("sr-workload: FAIL: bench: filling %s: %s\n", BENCH_FILE, strerror(err));
		return 1;
	}
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		bad += run_phase(&phases[i], size, jobs, seconds) != 0;
		print_tick(i + 1, phases[i].name);
	}
	printf("sr-workload: %s: bench: %zu phases, %u failed\n", bad ? "FAIL" : "PASS",
	       sizeof(phases) / sizeof(phases[0]), bad);
	return bad ? 1 : 0;
}
