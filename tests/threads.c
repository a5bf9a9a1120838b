/* SPDX-License-Identifier: MIT */
/*
 * libsr's threaded paths, for ThreadSanitizer (make tsan): the save pipe with
 * 0-4 workers must write the same bytes as plain batches, and the placed
 * reader with 0-3 workers must land what the buffered reader decodes, from a
 * file and through a pipe.  The Criterion unit tests check the same and more,
 * but Criterion cannot run under ThreadSanitizer (its sandbox arena finds no
 * free address range beside TSan's shadow: Criterion issue #274), so this is
 * a plain program.  Ends "N passed, N failed"; exit 1 on any failure.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sr.h"

static unsigned passed, failed;

static void check(int ok, const char *what)
{
	if (ok) {
		passed++;
		printf("ok   %s\n", what);
	} else {
		failed++;
		printf("FAIL %s\n", what);
	}
}

static int mem_fd(void)
{
	int fd = memfd_create("threads", MFD_CLOEXEC);

	if (fd < 0) {
		perror("memfd_create");
		exit(2);
	}
	return fd;
}

/* The stream written for npages of mem, through a pipe of threads workers (< 0: batches). */
static uint8_t *pipe_stream(int threads, const uint8_t *mem, unsigned npages, size_t *len)
{
	struct sr_image_info info = { .creator = "threads", .created_ns = 1 };
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = 1,
				     .region_count = 1, .name = "threads" };
	struct sr_region reg = { 0, (uint64_t)npages * 4096, SR_REGION_F_RAM, 0 };
	struct sr_pipe_opts po = { .mode = SR_COMPRESS_LZ4, .threads = threads > 0 ? threads : 0 };
	struct sr_batch *bt = sr_batch_new(SR_COMPRESS_LZ4, 0);
	struct sr_pipe *p = NULL;
	struct sr_error err;
	struct sr_writer *w;
	int fd = mem_fd(), rc = 0;
	uint8_t *out;
	off_t size;

	w = sr_writer_open(fd, &info, 0, &err);
	if (!w || !bt || sr_write_domain(w, &dom, &reg, &err))
		goto fail;
	if (threads >= 0 && !(p = sr_pipe_new(w, &po, &err)))
		goto fail;
	for (uint32_t it = 0; it < 3 && !rc; it++) {
		if (p)
			rc = sr_pipe_set_iteration(p, it, &err);
		else
			sr_batch_reset(bt, it);
		for (unsigned i = it; i < npages && !rc; i += 1 + it) {
			if (p)
				rc = sr_pipe_add(p, i, mem + (size_t)i * SR_PAGE_SIZE, &err);
			else if (sr_batch_add(bt, i, mem + (size_t)i * SR_PAGE_SIZE) == SR_BATCH_MAX_PAGES)
				rc = sr_write_page_batch(w, bt, &err);
		}
		if (!rc)
			rc = p ? sr_pipe_flush(p, &err) : sr_write_page_batch(w, bt, &err);
	}
	if (rc || sr_writer_flush(w, &err))
		goto fail;
	sr_pipe_free(p);
	sr_batch_free(bt);
	sr_writer_free(w);
	size = lseek(fd, 0, SEEK_END);
	out = malloc(size);
	if (!out || pread(fd, out, size, 0) != size)
		exit(2);
	close(fd);
	*len = size;
	return out;
fail:
	fprintf(stderr, "threads: writing with %d workers: %s\n", threads, err.msg);
	exit(2);
}

struct sink_mem {
	uint8_t *mem;
	uint64_t pages;
};

static void *sink_addr(void *arg, uint64_t pfn)
{
	struct sink_mem *m = arg;

	return pfn < m->pages ? m->mem + pfn * SR_PAGE_SIZE : NULL;
}

/* Reads the image on fd into m (threads < 0: no sink); zero pages and runs zeroed by hand. */
static int read_into(int fd, struct sink_mem *m, int threads)
{
	struct sr_page_sink sink = { .page_addr = sink_addr, .arg = m,
				     .threads = threads > 0 ? threads : 0 };
	struct sr_error err;
	struct sr_record rec;
	struct sr_reader *r;
	int rc;

	if (lseek(fd, 0, SEEK_SET) != 0 && errno != ESPIPE)
		return -1;
	r = sr_reader_open(fd, &err);
	if (!r || (threads >= 0 && sr_reader_set_page_sink(r, &sink, &err)))
		return -1;
	while ((rc = sr_reader_next(r, &rec, &err)) > 0) {
		const struct sr_page_desc *d;
		struct sr_page_iter it;
		int k;

		if (rec.type != SR_REC_PAGE_DATA)
			continue;
		sr_page_iter_init(&rec, &it);
		for (;;) {
			uint8_t *dst = it.i < it.count ? sink_addr(m, it.desc[it.i].pfn) : NULL;

			k = sr_page_iter_next(&it, &d, dst, &err);
			if (k <= 0)
				break;
			if (d->enc == SR_PAGE_ZERO_RUN)
				memset(dst, 0, (size_t)d->length * SR_PAGE_SIZE);
			else if (rec.placed && d->enc == SR_PAGE_ZERO)
				memset(dst, 0, SR_PAGE_SIZE);
		}
		if (k < 0) {
			rc = -1;
			break;
		}
	}
	if (rc)
		fprintf(stderr, "threads: reading with %d workers: %s\n", threads, err.msg);
	sr_reader_free(r);
	return rc;
}

static void pipe_writes_what_batches_write(void)
{
	unsigned npages = 5000;
	uint8_t *mem = malloc((size_t)npages * SR_PAGE_SIZE);
	struct sr_gen_params gp = { .seed = 3, .pct_zero = 30, .pct_text = 40 };
	size_t want_len, len;
	uint8_t *want, *got;
	char what[128];

	sr_gen_fill(mem, (uint64_t)npages * SR_PAGE_SIZE, &gp);
	want = pipe_stream(-1, mem, npages, &want_len);
	for (int threads = 0; threads <= 4; threads++) {
		got = pipe_stream(threads, mem, npages, &len);
		snprintf(what, sizeof(what), "the save pipe with %d workers writes the bytes batches write",
			 threads);
		check(len == want_len && !memcmp(got, want, len), what);
		free(got);
	}
	free(want);
	free(mem);
}

static void placed_reader_lands_what_buffered_decodes(void)
{
	const struct sr_gen_params p = {
		.mem_bytes = 4096 * 4096, .vcpus = 2, .iterations = 3, .dirty_pages = 700,
		.compress = SR_COMPRESS_LZ4, .seed = 11, .pct_zero = 20, .pct_text = 40, .pct_hole = 10,
	};
	uint64_t pages = p.mem_bytes / SR_PAGE_SIZE;
	struct sink_mem want = { malloc(p.mem_bytes), pages };
	struct sink_mem got = { malloc(p.mem_bytes), pages };
	struct sr_error err;
	int fd = mem_fd(), pfd[2], status;
	char what[128];
	pid_t pid;

	if (sr_gen_image(fd, &p, &err) || read_into(fd, &want, -1)) {
		fprintf(stderr, "threads: the buffered read failed\n");
		exit(2);
	}
	for (int threads = 0; threads <= 3; threads++) {
		memset(got.mem, 0x5a, p.mem_bytes);
		snprintf(what, sizeof(what), "the placed reader with %d workers lands what the "
			 "buffered reader decodes", threads);
		check(read_into(fd, &got, threads) == 0 && !memcmp(got.mem, want.mem, p.mem_bytes), what);
	}
	if (pipe(pfd))
		exit(2);
	fflush(stdout);			/* the child must not print what is buffered again */
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		_exit(sr_gen_image(pfd[1], &p, &err) ? 1 : 0);
	}
	close(pfd[1]);
	memset(got.mem, 0x5a, p.mem_bytes);
	check(read_into(pfd[0], &got, 2) == 0 && !memcmp(got.mem, want.mem, p.mem_bytes),
	      "the placed reader with 2 workers through a pipe lands the same");
	close(pfd[0]);
	check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status),
	      "the pipe's writer finished");
	free(want.mem);
	free(got.mem);
	close(fd);
}

int main(void)
{
	pipe_writes_what_batches_write();
	placed_reader_lands_what_buffered_decodes();
	printf("%u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
