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

/*
 * The sr writer path sr-save takes for a paused guest: a page pipe with
 * threads workers (0: none, encoding on the writing thread).
 */
static double bench_sr(const char *path, const uint8_t *pool, uint64_t total,
		       enum sr_compress mode, unsigned wflags, unsigned threads,
		       uint64_t *out_bytes)
{
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = 1,
				     .region_count = 1, .name = "bench" };
	struct sr_region reg = { 0, POOL_BYTES, SR_REGION_F_RAM, 0 };
	struct sr_image_info info = { .creator = "bench-libsr" };
	struct sr_pipe_opts po = { .mode = mode, .flags = SR_BATCH_STABLE_SOURCE,
				   .threads = threads };
	struct sr_pipe *p = NULL;
	struct sr_error err;
	struct sr_writer *w;
	int fd = open_target(path);
	char msg[512];
	double t = now();

	w = sr_writer_open(fd, &info, wflags, &err);
	if (!w || sr_write_domain(w, &dom, &reg, &err) || !(p = sr_pipe_new(w, &po, &err)))
		goto fail;
	for (uint64_t done = 0; done < total; done += SR_PAGE_SIZE) {
		uint64_t off = done % POOL_BYTES;

		if (sr_pipe_add(p, off / SR_PAGE_SIZE, pool + off, &err))
			goto fail;
	}
	if (sr_pipe_flush(p, &err) || sr_writer_flush(w, &err))
		goto fail;
	t = now() - t;
	*out_bytes = sr_writer_offset(w);
	sr_pipe_free(p);
	sr_writer_free(w);
	close(fd);
	return t;
fail:
	fprintf(stderr, "bench-libsr: %s\n", sr_error_format(&err, msg, sizeof(msg)));
	exit(2);
}

/* Plain read() of a file into memory, 4 MiB at a time: the restore side's limit. */
static double bench_read(const char *path, uint8_t *dst, uint64_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t done = 0;
	double t = now();
	ssize_t n;

	if (fd < 0)
		die(path);
	while ((n = read(fd, dst + done % cap, CHUNK)) > 0)
		done += n;
	if (n < 0)
		die("read");
	t = now() - t;
	close(fd);
	return t;
}

static void *land(void *arg, uint64_t pfn)
{
	return (uint8_t *)arg + pfn * SR_PAGE_SIZE;
}

/*
 * Reading an image the way sr-restore does: placed (threads workers; < 0:
 * the record buffer, every page decoded into memory by the consumer).
 */
static double bench_restore(const char *path, uint8_t *mem, int threads)
{
	struct sr_page_sink sink = { .page_addr = land, .arg = mem,
				     .threads = threads > 0 ? threads : 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
	struct sr_reader *r;
	struct sr_record rec;
	struct sr_error err;
	char msg[512];
	double t = now();

	if (fd < 0)
		die(path);
	r = sr_reader_open(fd, &err);
	if (!r || (threads >= 0 && sr_reader_set_page_sink(r, &sink, &err)))
		goto fail;
	while ((rc = sr_reader_next(r, &rec, &err)) == 1) {
		struct sr_page_iter it;
		const struct sr_page_desc *d;

		if (rec.type != SR_REC_PAGE_DATA)
			continue;
		sr_page_iter_init(&rec, &it);
		while (it.i < it.count) {
			uint8_t *dst = it.desc[it.i].enc == SR_PAGE_ZERO ? NULL
				       : mem + it.desc[it.i].pfn * SR_PAGE_SIZE;

			if (sr_page_iter_next(&it, &d, dst, &err) < 0)
				goto fail;
		}
	}
	/* The bench image has no CPU state: MISSING at the end means every page was read. */
	if (rc < 0 && err.code != SR_E_MISSING)
		goto fail;
	t = now() - t;
	sr_reader_free(r);
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
	/* threads ~0u: the online CPUs, as sr-save's default */
	static const struct { const char *name; enum sr_compress c; unsigned wf, threads; } modes[] = {
		{ "none", SR_COMPRESS_NONE, SR_WRITER_NO_HASH, 0 },
		{ "xxh3", SR_COMPRESS_NONE, 0, 0 },
		{ "xxh3+lz4", SR_COMPRESS_LZ4, 0, 0 },
		{ "xxh3+lz4", SR_COMPRESS_LZ4, 0, 1 },
		{ "xxh3+lz4", SR_COMPRESS_LZ4, 0, ~0u },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned cpus = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (unsigned)ncpu;
	const char *file_label = "file";
	uint8_t *mem;
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
	mem = malloc(POOL_BYTES);
	if (!pool || !mem)
		die("malloc");
	memset(mem, 0, POOL_BYTES);

	printf("bench-libsr: %.2f GiB of guest memory per run, best of %d, %llu MiB pool, output %s and /dev/null, "
	       "%u online CPUs (Nthr: a pipe of that many workers, sr-save's default)\n",
	       total / (double)(1 << 30), REPS, POOL_BYTES >> 20, file, cpus);
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
		printf("%-16s %-10s %8s %9s %10s %10s %10s\n", "what", "target", "sec", "GB/s",
		       "vs write", "vs memcpy", "out/in");
		printf("%-16s %-10s %8.3f %9.2f %10s %10s %10s\n", "memcpy", "memory", t_memcpy,
		       total / t_memcpy / 1e9, "-", "1.00", "1.000");
		printf("%-16s %-10s %8.3f %9.2f %10s %10.2f %10s\n", "write()", "file", t_wfile,
		       total / t_wfile / 1e9, "1.00", t_memcpy / t_wfile, "1.000");
		printf("%-16s %-10s %8.3f %9.2f %10s %10.2f %10s\n", "write()", "/dev/null", t_wnull,
		       total / t_wnull / 1e9, "-", t_memcpy / t_wnull, "1.000");
		for (unsigned k = 0; k < sizeof(modes) / sizeof(modes[0]); k++) {
			for (int tgt = 0; tgt < 2; tgt++) {
				uint64_t out = 0;
				double base = tgt ? t_wnull : t_wfile, t = 1e30;
				unsigned threads = modes[k].threads == ~0u ? cpus : modes[k].threads;

				for (int r = 0; r < REPS; r++)
					t = min(t, bench_sr(tgt ? "/dev/null" : file, pool, total,
							    modes[k].c, modes[k].wf, threads, &out));

				char vs[16] = "-", name[32];

				/* write() to /dev/null copies nothing: no useful baseline. */
				if (!tgt)
					snprintf(vs, sizeof(vs), "%.2f", base / t);
				snprintf(name, sizeof(name), "%s%s", modes[k].name,
					 threads ? (threads == 1 ? " 1thr" : cpus == threads ? " Nthr" : " ?") : "");
				printf("sr %-13s %-10s %8.3f %9.2f %10s %10.2f %10.3f\n", name,
				       tgt ? "/dev/null" : file_label, t, total / t / 1e9, vs,
				       t_memcpy / t, (double)out / total);
			}
		}
		/* The restore side: the default image, read back. */
		{
			uint64_t out;
			double t_read = 1e30, t_buf = 1e30, t_placed = 1e30, t_placedn = 1e30;

			bench_sr(file, pool, total, SR_COMPRESS_LZ4, 0, cpus, &out);
			for (int r = 0; r < REPS; r++) {
				t_read = min(t_read, bench_read(file, mem, POOL_BYTES));
				t_buf = min(t_buf, bench_restore(file, mem, -1));
				t_placed = min(t_placed, bench_restore(file, mem, 0));
				t_placedn = min(t_placedn, bench_restore(file, mem, cpus));
			}
			printf("%-16s %-10s %8.3f %9.2f %10s   (the xxh3+lz4 image, %.0f MB)\n",
			       "read()", file_label, t_read, out / t_read / 1e9, "1.00", out / 1e6);
			printf("%-16s %-10s %8.3f %9.2f %10.2f   (record buffer, pages decoded)\n",
			       "sr read buffered", file_label, t_buf, out / t_buf / 1e9, t_read / t_buf);
			printf("%-16s %-10s %8.3f %9.2f %10.2f   (straight to memory, verified inline)\n",
			       "sr read placed", file_label, t_placed, out / t_placed / 1e9, t_read / t_placed);
			printf("%-16s %-10s %8.3f %9.2f %10.2f   (straight to memory, %u threads)\n",
			       "sr read placed N", file_label, t_placedn, out / t_placedn / 1e9,
			       t_read / t_placedn, cpus);
		}
	}
	unlink(file);
	getrusage(RUSAGE_SELF, &ru);
	printf("\npeak RSS %ld MiB (pool %llu MiB)\n", ru.ru_maxrss / 1024, POOL_BYTES >> 20);
	return 0;
}
