/* SPDX-License-Identifier: MIT */
/*
 * bench-libsr: encoder throughput against plain memcpy() and write() of the
 * same bytes, in the same run.  Prints numbers; asserts nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sr.h"

#define POOL_BYTES	(256ull << 20)
#define CHUNK		(4u << 20)
#define REPS		3

static double min(double a, double b)
{
	return a < b ? a : b;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "bench-libsr: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int open_target(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		die(path);
	return fd;
}

/* Plain write() of total bytes from the pool, 4 MiB at a time. */
static double bench_write(const char *path, const uint8_t *pool, uint64_t total)
{
	int fd = open_target(path);
	double t = now();

	for (uint64_t done = 0; done < total; done += CHUNK) {
		const uint8_t *src = pool + done % POOL_BYTES;
		size_t left = CHUNK;

		while (left) {
			ssize_t n = write(fd, src + CHUNK - left, left);

			if (n < 0)
				die("write");
			left -= n;
		}
	}
	t = now() - t;
	close(fd);
	return t;
}

static double bench_memcpy(const uint8_t *pool, uint64_t total)
{
	uint8_t *dst = malloc(CHUNK);
	volatile uint8_t sink = 0;
	double t;

	memset(dst, 1, CHUNK);
	t = now();
	for (uint64_t done = 0; done < total; done += CHUNK) {
		memcpy(dst, pool + done % POOL_BYTES, CHUNK);
		sink ^= dst[done % CHUNK];
	}
	t = now() - t;
	free(dst);
	(void)sink;
	return t;
}

/* The sr writer path sr-save takes for a paused guest. */
static double bench_sr(const char *path, const uint8_t *pool, uint64_t total,
		       enum sr_compress mode, unsigned wflags, uint64_t *out_bytes)
{
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = 1,
				     .region_count = 1, .name = "bench" };
	struct sr_region reg = { 0, POOL_BYTES, SR_REGION_F_RAM, 0 };
	struct sr_image_info info = { .creator = "bench-libsr" };
	struct sr_batch *b = sr_batch_new(mode, SR_BATCH_STABLE_SOURCE);
	struct sr_error err;
	struct sr_writer *w;
	int fd = open_target(path);
	char msg[512];
	double t = now();

	w = sr_writer_open(fd, &info, wflags, &err);
	if (!w || sr_write_domain(w, &dom, &reg, &err))
		goto fail;
	sr_batch_reset(b, 0);
	for (uint64_t done = 0; done < total; done += SR_PAGE_SIZE) {
		uint64_t off = done % POOL_BYTES;

		if (sr_batch_add(b, off / SR_PAGE_SIZE, pool + off) == SR_BATCH_MAX_PAGES &&
		    sr_write_page_batch(w, b, &err))
			goto fail;
	}
	if (sr_write_page_batch(w, b, &err) || sr_writer_flush(w, &err))
		goto fail;
	t = now() - t;
	*out_bytes = sr_writer_offset(w);
	sr_writer_free(w);
	sr_batch_free(b);
	close(fd);
	return t;
fail:
	fprintf(stderr, "bench-libsr: %s\n", sr_error_format(&err, msg, sizeof(msg)));
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "gib", required_argument, NULL, 'g' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static const struct { const char *name; unsigned zero, text; } mixes[] = {
		{ "random", 0, 0 },		/* incompressible: sr writes what write() writes */
		{ "mixed", 30, 35 },		/* 30% zero, 35% text-like, 35% random pages */
	};
	static const struct { const char *name; enum sr_compress c; unsigned wf; } modes[] = {
		{ "none", SR_COMPRESS_NONE, SR_WRITER_NO_HASH },
		{ "xxh3", SR_COMPRESS_NONE, 0 },
		{ "xxh3+lz4", SR_COMPRESS_LZ4, 0 },
	};
	double gib = 1;
	const char *dir = ".";
	char file[4096];
	uint8_t *pool;
	struct rusage ru;
	int c;

	while ((c = getopt_long(argc, argv, "g:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'g': gib = atof(optarg); break;
		case 'd': dir = optarg; break;
		default:
			printf("usage: bench-libsr [--gib N] [--dir DIR]\n"
			       "Encodes N GiB of synthetic guest memory to DIR/bench.img and to\n"
			       "/dev/null, against memcpy() and write() of the same bytes.\n");
			return c == 'h' ? 0 : 2;
		}
	}
	uint64_t total = (uint64_t)(gib * (1 << 30)) / CHUNK * CHUNK;

	if (!total)
		total = CHUNK;
	snprintf(file, sizeof(file), "%s/bench.img", dir);
	pool = malloc(POOL_BYTES);
	if (!pool)
		die("malloc");

	printf("bench-libsr: %.2f GiB of guest memory per run, best of %d, %llu MiB pool, output %s and /dev/null\n",
	       total / (double)(1 << 30), REPS, POOL_BYTES >> 20, file);
	for (unsigned m = 0; m < sizeof(mixes) / sizeof(mixes[0]); m++) {
		struct sr_gen_params p = { .seed = 42, .pct_zero = mixes[m].zero,
					   .pct_text = mixes[m].text };
		double t_memcpy, t_wfile, t_wnull;

		sr_gen_fill(pool, POOL_BYTES, &p);
		t_memcpy = t_wfile = t_wnull = 1e30;
		/* Best of REPS, interleaved so page-cache warm-up hits everyone. */
		for (int r = 0; r < REPS; r++) {
			t_memcpy = min(t_memcpy, bench_memcpy(pool, total));
			t_wfile = min(t_wfile, bench_write(file, pool, total));
			t_wnull = min(t_wnull, bench_write("/dev/null", pool, total));
		}
		printf("\npage mix: %s\n", mixes[m].name);
		printf("%-12s %-10s %8s %9s %10s %10s %10s\n", "what", "target", "sec", "GB/s",
		       "vs write", "vs memcpy", "out/in");
		printf("%-12s %-10s %8.3f %9.2f %10s %10s %10s\n", "memcpy", "memory", t_memcpy,
		       total / t_memcpy / 1e9, "-", "1.00", "1.000");
		printf("%-12s %-10s %8.3f %9.2f %10s %10.2f %10s\n", "write()", "file", t_wfile,
		       total / t_wfile / 1e9, "1.00", t_memcpy / t_wfile, "1.000");
		printf("%-12s %-10s %8.3f %9.2f %10s %10.2f %10s\n", "write()", "/dev/null", t_wnull,
		       total / t_wnull / 1e9, "-", t_memcpy / t_wnull, "1.000");
		for (unsigned k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
			for (int tgt = 0; tgt < 2; tgt++) {
				uint64_t out = 0;
				double base = tgt ? t_wnull : t_wfile, t = 1e30;

				for (int r = 0; r < REPS; r++)
					t = min(t, bench_sr(tgt ? "/dev/null" : file, pool, total,
							    modes[k].c, modes[k].wf, &out));

				char vs[16] = "-";

				/* write() to /dev/null copies nothing: no useful baseline. */
				if (!tgt)
					snprintf(vs, sizeof(vs), "%.2f", base / t);
				printf("sr %-9s %-10s %8.3f %9.2f %10s %10.2f %10.3f\n", modes[k].name,
				       tgt ? "/dev/null" : "file", t, total / t / 1e9, vs,
				       t_memcpy / t, (double)out / total);
			}
		}
	}
	unlink(file);
	getrusage(RUSAGE_SELF, &ru);
	printf("\npeak RSS %ld MiB (pool %llu MiB)\n", ru.ru_maxrss / 1024, POOL_BYTES >> 20);
	return 0;
}
