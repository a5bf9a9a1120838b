/* SPDX-License-Identifier: MIT */
/* libsr unit tests: round trips, corruption, truncation and hostile input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <lz4.h>

#include "sr.h"
#include "pool.h"
#include "x86_layout.h"

extern char **environ;

/* ------------------------------------------------------------- helpers */

struct buf {
	uint8_t *p;
	size_t len;
};

static int mem_fd(void)
{
	int fd = memfd_create("sr-test", MFD_CLOEXEC);

	cr_assert(fd >= 0, "memfd_create: %s", strerror(errno));
	return fd;
}

static struct buf fd_contents(int fd)
{
	struct buf b;
	off_t n = lseek(fd, 0, SEEK_END);

	b.len = n;
	b.p = malloc(n ? n : 1);
	cr_assert(b.p);
	cr_assert_eq(pread(fd, b.p, n, 0), n);
	return b;
}

static struct buf gen(const struct sr_gen_params *p)
{
	struct sr_error err;
	int fd = mem_fd();
	char msg[512];
	struct buf b;

	cr_assert_eq(sr_gen_image(fd, p, &err), 0, "%s", sr_error_format(&err, msg, sizeof(msg)));
	b = fd_contents(fd);
	close(fd);
	return b;
}

static const struct sr_gen_params small = {
	.mem_bytes = 64 * 4096, .vcpus = 2, .iterations = 2, .dirty_pages = 10,
	.compress = SR_COMPRESS_LZ4, .seed = 7, .pct_zero = 30, .pct_text = 40,
};

/*
 * Reads a whole image from bytes, decoding every page.  Returns 0 when it
 * verified, else -1 with err filled.
 */
static int verify_fd(int fd, struct sr_error *err, uint64_t *records)
{
	static uint8_t page[SR_PAGE_SIZE];
	struct sr_reader *r;
	struct sr_record rec;
	int rc;

	if (lseek(fd, 0, SEEK_SET))
		return -1;
	r = sr_reader_open(fd, err);
	if (!r)
		return -1;
	if (records)
		*records = 0;
	while ((rc = sr_reader_next(r, &rec, err)) > 0) {
		if (records)
			(*records)++;
		if (rec.type == SR_REC_PAGE_DATA) {
			struct sr_page_iter it;
			const struct sr_page_desc *d;
			int k;

			sr_page_iter_init(&rec, &it);
			while ((k = sr_page_iter_next(&it, &d, page, err)) == 1)
				;
			if (k < 0) {
				rc = -1;
				break;
			}
		}
	}
	sr_reader_free(r);
	return rc;
}

static int scratch_fd = -1;

static int verify_bytes(const uint8_t *p, size_t len, struct sr_error *err)
{
	if (scratch_fd < 0)
		scratch_fd = mem_fd();
	cr_assert_eq(ftruncate(scratch_fd, 0), 0);
	cr_assert_eq(pwrite(scratch_fd, p, len, 0), (ssize_t)len);
	return verify_fd(scratch_fd, err, NULL);
}

/* An image as a list of records, so tests can edit and re-serialize it. */
struct rec_copy {
	uint32_t type;
	uint32_t len;
	uint8_t *body;
};

struct image {
	struct sr_ihdr hdr;
	unsigned n;
	struct rec_copy rec[64];
};

static void parse(const struct buf *b, struct image *img)
{
	struct sr_error err;
	struct sr_record rec;
	struct sr_reader *r;
	char msg[512];
	int fd = mem_fd(), rc;

	cr_assert_eq(pwrite(fd, b->p, b->len, 0), (ssize_t)b->len);
	r = sr_reader_open(fd, &err);
	cr_assert(r, "%s", sr_error_format(&err, msg, sizeof(msg)));
	img->hdr = *sr_reader_header(r);
	img->n = 0;
	while ((rc = sr_reader_next(r, &rec, &err)) >= 0) {
		cr_assert_lt(img->n, 64);
		img->rec[img->n].type = rec.type;
		img->rec[img->n].len = rec.length;
		img->rec[img->n].body = malloc(rec.length + 1);
		memcpy(img->rec[img->n].body, rec.body, rec.length);
		img->n++;
		if (rc == 0)
			break;
	}
	/* An image that lacks pages (tests make some to mend them): its END is rewritten anyway. */
	if (rc < 0 && err.code == SR_E_MISSING && err.rec_name && !strcmp(err.rec_name, "END") &&
	    strstr(err.msg, "in no PAGE_DATA record")) {
		cr_assert_lt(img->n, 64);
		img->rec[img->n++] = (struct rec_copy){ SR_REC_END, 0, NULL };
		rc = 0;
	}
	cr_assert_geq(rc, 0, "%s", sr_error_format(&err, msg, sizeof(msg)));
	sr_reader_free(r);
	close(fd);
}

/* Writes img with valid checksums; END (if listed) is recomputed. */
static struct buf serialize(const struct image *img)
{
	struct sr_image_info info = { .flags = img->hdr.flags, .creator = img->hdr.creator,
				      .created_ns = img->hdr.created_ns };
	struct sr_error err;
	struct sr_writer *w;
	int fd = mem_fd();
	struct buf b;

	w = sr_writer_open(fd, &info, 0, &err);
	cr_assert(w);
	for (unsigned i = 0; i < img->n; i++) {
		if (img->rec[i].type == SR_REC_END)
			cr_assert_eq(sr_write_end(w, &err), 0);
		else
			cr_assert_eq(sr_write_record(w, img->rec[i].type, img->rec[i].body,
						     img->rec[i].len, &err), 0);
	}
	cr_assert_eq(sr_writer_flush(w, &err), 0);
	sr_writer_free(w);
	b = fd_contents(fd);
	close(fd);
	return b;
}

static void image_free(struct image *img)
{
	for (unsigned i = 0; i < img->n; i++)
		free(img->rec[i].body);
	img->n = 0;
}

/* An image whose record copies are freed when it goes out of scope. */
#define IMAGE struct image __attribute__((cleanup(image_free)))

/* The first record of type, or -1. */
static int find_rec_or_none(const struct image *img, uint32_t type)
{
	for (unsigned i = 0; i < img->n; i++)
		if (img->rec[i].type == type)
			return i;
	return -1;
}

static int find_rec(const struct image *img, uint32_t type, unsigned nth)
{
	for (unsigned i = 0; i < img->n; i++)
		if (img->rec[i].type == type && nth-- == 0)
			return i;
	cr_assert_fail("record type 0x%x #%u not in image", type, nth);
	return -1;
}

static void expect_reject(const struct buf *b, enum sr_err_code code, const char *what)
{
	struct sr_error err = { 0 };
	char msg[512];

	cr_assert_eq(verify_bytes(b->p, b->len, &err), -1, "%s: image accepted", what);
	cr_assert_eq(err.code, code, "%s: expected \"%s\", got \"%s\"", what, sr_strerror(code),
		     sr_error_format(&err, msg, sizeof(msg)));
}

static void expect_reject_img(const struct image *img, enum sr_err_code code, const char *what)
{
	struct buf b = serialize(img);

	expect_reject(&b, code, what);
	free(b.p);
}

/* Appends a framed record with a correct checksum to b. */
static void append_record(struct buf *b, uint32_t type, const void *body, uint32_t len)
{
	struct sr_rhdr h = { type, len };
	uint32_t pad = (8 - len % 8) % 8;
	size_t total = sizeof(h) + len + pad + 8;
	uint8_t *p;
	uint64_t hash;

	b->p = realloc(b->p, b->len + total);
	p = b->p + b->len;
	memcpy(p, &h, sizeof(h));
	memcpy(p + 8, body, len);
	memset(p + 8 + len, 0, pad);
	hash = XXH3_64bits(p, 8 + len + pad);
	memcpy(p + 8 + len + pad, &hash, 8);
	b->len += total;
}

/* Inserts a copy of record i right after it. */
static void duplicate_record(struct image *img, int i)
{
	cr_assert_lt(img->n, 64);
	memmove(&img->rec[i + 1], &img->rec[i], (img->n - i) * sizeof(img->rec[0]));
	img->n++;
	img->rec[i + 1].body = malloc(img->rec[i].len);
	memcpy(img->rec[i + 1].body, img->rec[i].body, img->rec[i].len);
}

static uint64_t test_seed(void)
{
	const char *s = getenv("SR_TEST_SEED");

	return s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---------------------------------------------------------- round trips */

Test(roundtrip, generated_image_verifies)
{
	struct buf b = gen(&small);
	struct sr_error err;
	char msg[512];

	cr_assert_eq(verify_bytes(b.p, b.len, &err), 0, "%s",
		     sr_error_format(&err, msg, sizeof(msg)));
	free(b.p);
}

Test(roundtrip, every_record_type_present_and_rewrite_is_identical)
{
	struct buf b = gen(&small), b2;
	IMAGE img;
	uint32_t types[] = { SR_REC_DOMAIN, SR_REC_PAGE_DATA, SR_REC_ITERATION,
			     SR_REC_HVM_CONTEXT, SR_REC_VCPU_CONTEXT, SR_REC_DEVICE, SR_REC_END };

	parse(&b, &img);
	for (unsigned t = 0; t < sizeof(types) / sizeof(types[0]); t++)
		find_rec(&img, types[t], 0);
	b2 = serialize(&img);
	cr_assert_eq(b2.len, b.len, "rewrite is %zu bytes, original %zu", b2.len, b.len);
	cr_assert(!memcmp(b.p, b2.p, b.len), "rewrite differs from the original");
	free(b.p);
	free(b2.p);
}

static void pages_roundtrip(enum sr_compress mode, unsigned flags)
{
	const unsigned npages = 3000;	/* spans several batches */
	struct sr_gen_params p = { .seed = 99, .pct_zero = 30, .pct_text = 30 };
	uint8_t *mem = malloc((size_t)npages * SR_PAGE_SIZE), page[SR_PAGE_SIZE];
	uint8_t *seen = calloc(npages, 1);
	struct sr_image_info info = { .creator = "test" };
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = 1,
				     .region_count = 2, .name = "pages" };
	/* Two regions with a hole, so pfns are not simply 0..n-1. */
	struct sr_region reg[2] = { { 0, 1000 * 4096, SR_REGION_F_RAM, 0 },
				    { 1 << 30, 2000 * 4096, SR_REGION_F_RAM, 1 } };
	struct sr_error err;
	struct sr_writer *w;
	struct sr_batch *bt = sr_batch_new(mode, flags);
	struct sr_reader *r;
	struct sr_record rec;
	char msg[512];
	int fd = mem_fd(), rc;

	sr_gen_fill(mem, (uint64_t)npages * SR_PAGE_SIZE, &p);
	w = sr_writer_open(fd, &info, 0, &err);
	cr_assert(w && bt);
	cr_assert_eq(sr_write_domain(w, &dom, reg, &err), 0);
	sr_batch_reset(bt, 0);
	for (unsigned i = 0; i < npages; i++) {
		uint64_t pfn = i < 1000 ? i : (1 << 18) + (i - 1000);

		if (sr_batch_add(bt, pfn, mem + (size_t)i * SR_PAGE_SIZE) == SR_BATCH_MAX_PAGES)
			cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
	}
	cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
	sr_batch_free(bt);
	sr_writer_free(w);

	lseek(fd, 0, SEEK_SET);
	r = sr_reader_open(fd, &err);
	cr_assert(r);
	while ((rc = sr_reader_next(r, &rec, &err)) > 0) {
		struct sr_page_iter it;
		const struct sr_page_desc *d;

		if (rec.type != SR_REC_PAGE_DATA)
			continue;
		sr_page_iter_init(&rec, &it);
		while (sr_page_iter_next(&it, &d, page, &err) == 1) {
			unsigned i = d->pfn < 1000 ? d->pfn : d->pfn - (1 << 18) + 1000;

			cr_assert_lt(i, npages);
			cr_assert(!memcmp(page, mem + (size_t)i * SR_PAGE_SIZE, SR_PAGE_SIZE),
				  "page pfn 0x%llx differs after the round trip",
				  (unsigned long long)d->pfn);
			if (mode == SR_COMPRESS_NONE)
				cr_assert_neq(d->enc, SR_PAGE_LZ4);
			seen[i]++;
		}
	}
	/* No HVM/vCPU context was written: the reader must say so at the end. */
	cr_assert_eq(rc, -1);
	cr_assert_eq(err.code, SR_E_MISSING, "%s", sr_error_format(&err, msg, sizeof(msg)));
	for (unsigned i = 0; i < npages; i++)
		cr_assert_eq(seen[i], 1, "page %u seen %u times", i, seen[i]);
	sr_reader_free(r);
	close(fd);
	free(mem);
	free(seen);
}

Test(roundtrip, pages_lz4) { pages_roundtrip(SR_COMPRESS_LZ4, 0); }
Test(roundtrip, pages_raw) { pages_roundtrip(SR_COMPRESS_NONE, 0); }
Test(roundtrip, pages_stable_source) { pages_roundtrip(SR_COMPRESS_LZ4, SR_BATCH_STABLE_SOURCE); }

Test(roundtrip, typed_records_read_back)
{
	struct buf b = gen(&small);
	IMAGE img;
	const struct sr_rec_domain *dom;
	const struct sr_rec_iteration *it;
	const struct sr_rec_device *dev;
	int i;

	parse(&b, &img);
	dom = (const void *)img.rec[0].body;
	cr_assert_eq(img.rec[0].type, SR_REC_DOMAIN);
	cr_assert_eq(dom->vcpu_count, 2);
	cr_assert_str_eq(dom->name, "synthetic");
	i = find_rec(&img, SR_REC_ITERATION, 2);
	it = (const void *)img.rec[i].body;
	cr_assert_eq(it->iteration, 2);
	cr_assert(it->flags & SR_ITER_F_FINAL);
	cr_assert_eq(it->pages_sent, 10);
	i = find_rec(&img, SR_REC_DEVICE, 0);
	dev = (const void *)img.rec[i].body;
	cr_assert_str_eq(dev->name, "serial8250");
	cr_assert_eq(img.rec[i].len, sizeof(*dev) + SR_SERIAL8250_LEN);
	free(b.p);
}

Test(roundtrip, works_through_a_pipe)
{
	int pfd[2];
	pid_t pid;
	struct sr_error err;
	uint64_t n = 0;
	char msg[512];

	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		_exit(sr_gen_image(pfd[1], &small, &err) ? 1 : 0);
	}
	close(pfd[1]);
	/* verify_fd seeks; a pipe can't, so read directly. */
	struct sr_reader *r = sr_reader_open(pfd[0], &err);
	struct sr_record rec;
	int rc;

	cr_assert(r, "%s", sr_error_format(&err, msg, sizeof(msg)));
	while ((rc = sr_reader_next(r, &rec, &err)) > 0)
		n++;
	cr_assert_eq(rc, 0, "%s", sr_error_format(&err, msg, sizeof(msg)));
	cr_assert_gt(n, 5);
	sr_reader_free(r);
	close(pfd[0]);
	waitpid(pid, NULL, 0);
}

/* --------------------------------------------------------- page encoder */

Test(encoder, incompressible_page_falls_back_to_raw_and_zero_has_no_data)
{
	uint8_t rnd_page[SR_PAGE_SIZE], zero[SR_PAGE_SIZE] = { 0 }, text[SR_PAGE_SIZE];
	struct sr_batch *b = sr_batch_new(SR_COMPRESS_LZ4, 0);
	struct sr_batch_stats st;
	uint64_t s = 12345;

	for (unsigned i = 0; i < sizeof(rnd_page); i++)
		rnd_page[i] = (uint8_t)rnd(&s);
	for (unsigned i = 0; i < sizeof(text); i++)
		text[i] = "abcabcabd"[i % 9];
	sr_batch_reset(b, 0);
	sr_batch_add(b, 1, rnd_page);
	sr_batch_add(b, 2, zero);
	sr_batch_add(b, 3, text);
	sr_batch_stats(b, &st);
	cr_assert_eq(st.raw, 1);
	cr_assert_eq(st.zero, 1);
	cr_assert_eq(st.lz4, 1);
	cr_assert_lt(st.data_bytes, 2 * SR_PAGE_SIZE, "lz4 page did not shrink");
	cr_assert_geq(st.data_bytes, SR_PAGE_SIZE);
	sr_batch_free(b);
}

/* Adds n pages to b, writing each full batch to /dev/null-like memory. */
static void add_pages(struct sr_batch *b, const uint8_t *pages, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (sr_batch_count(b) == SR_BATCH_MAX_PAGES)
			sr_batch_reset(b, 0);
		cr_assert_gt(sr_batch_add(b, i, pages + (size_t)i * SR_PAGE_SIZE), 0);
	}
}

Test(encoder, adaptive_lz4_backs_off_on_incompressible_stretches_only)
{
	enum { N = 4096 };
	uint8_t *mem = malloc((size_t)N * SR_PAGE_SIZE);
	struct sr_batch *b = sr_batch_new(SR_COMPRESS_LZ4, 0);
	struct sr_batch_stats st;
	uint64_t s = 99;

	/* A stretch of random memory: lz4 is tried on few of its pages. */
	for (size_t i = 0; i < (size_t)N * SR_PAGE_SIZE; i++)
		mem[i] = (uint8_t)rnd(&s);
	sr_batch_reset(b, 0);
	add_pages(b, mem, N);
	sr_batch_stats(b, &st);
	cr_assert_eq(st.raw, N);
	cr_assert_gt(st.lz4_skipped, N * 9 / 10, "lz4 was skipped on %llu of %d random pages",
		     (unsigned long long)st.lz4_skipped, N);
	/* Then text: the first page that compresses ends the backing off. */
	for (size_t i = 0; i < (size_t)N * SR_PAGE_SIZE; i++)
		mem[i] = "save restore page "[i % 18];
	add_pages(b, mem, N);
	sr_batch_stats(b, &st);
	cr_assert_geq(st.lz4, N - 256 - 1, "only %llu of %d text pages compressed",
		      (unsigned long long)st.lz4, N);
	/* Random and text pages interleaved, one in three random: no stretch forms. */
	sr_batch_free(b);
	b = sr_batch_new(SR_COMPRESS_LZ4, 0);
	for (unsigned p = 0; p < N; p++)
		for (size_t i = 0; i < SR_PAGE_SIZE; i++)
			mem[(size_t)p * SR_PAGE_SIZE + i] = p % 3 ? "save restore page "[i % 18]
								 : (uint8_t)rnd(&s);
	sr_batch_reset(b, 0);
	add_pages(b, mem, N);
	sr_batch_stats(b, &st);
	cr_assert_eq(st.lz4_skipped, 0, "%llu interleaved pages skipped",
		     (unsigned long long)st.lz4_skipped);
	cr_assert_eq(st.lz4, N - (N + 2) / 3);
	sr_batch_free(b);
	free(mem);
}

Test(encoder, full_batch_refuses_more)
{
	static uint8_t page[SR_PAGE_SIZE];
	struct sr_batch *b = sr_batch_new(SR_COMPRESS_NONE, 0);

	sr_batch_reset(b, 0);
	for (unsigned i = 0; i < SR_BATCH_MAX_PAGES; i++)
		cr_assert_eq(sr_batch_add(b, i, page), (int)i + 1);
	cr_assert_eq(sr_batch_add(b, 9999, page), -1);
	sr_batch_free(b);
}

/* -------------------------------------------------------- corruption */

Test(corruption, every_bit_in_first_and_last_4k_and_random_flips, .timeout = 600)
{
	struct buf b = gen(&small);
	struct sr_error err;
	uint64_t seed = test_seed(), s = seed | 1;
	size_t edge = 4096;

	cr_assert_gt(b.len, 3 * edge, "image too small for the sweep: %zu", b.len);
	cr_log_info("corruption sweep: %zu byte image, seed %llu", b.len, (unsigned long long)seed);
	for (int pass = 0; pass < 2; pass++) {
		size_t start = pass ? b.len - edge : 0;

		for (size_t o = start; o < start + edge; o++)
			for (int bit = 0; bit < 8; bit++) {
				b.p[o] ^= 1u << bit;
				cr_assert_eq(verify_bytes(b.p, b.len, &err), -1,
					     "flip of bit %d at offset %zu accepted", bit, o);
				b.p[o] ^= 1u << bit;
			}
	}
	for (int i = 0; i < 2000; i++) {
		size_t o = edge + rnd(&s) % (b.len - 2 * edge);
		int bit = rnd(&s) % 8;

		b.p[o] ^= 1u << bit;
		cr_assert_eq(verify_bytes(b.p, b.len, &err), -1,
			     "flip of bit %d at offset %zu accepted (SR_TEST_SEED=%llu)", bit, o,
			     (unsigned long long)seed);
		b.p[o] ^= 1u << bit;
	}
	cr_assert_eq(verify_bytes(b.p, b.len, &err), 0, "restored image no longer verifies");
	free(b.p);
}

Test(corruption, truncation_at_every_boundary_and_random_offsets)
{
	struct buf b = gen(&small);
	struct sr_error err;
	struct sr_reader *r;
	struct sr_record rec;
	uint64_t bounds[128], nb = 0, seed = test_seed(), s = seed | 1;
	int fd = mem_fd(), rc;

	cr_assert_eq(pwrite(fd, b.p, b.len, 0), (ssize_t)b.len);
	r = sr_reader_open(fd, &err);
	bounds[nb++] = 0;
	bounds[nb++] = sizeof(struct sr_ihdr);
	while ((rc = sr_reader_next(r, &rec, &err)) >= 0) {
		bounds[nb++] = rec.offset;
		bounds[nb++] = rec.offset + 8;	/* right after a record header */
		if (rc == 0)
			break;
	}
	sr_reader_free(r);
	close(fd);
	for (uint64_t i = 0; i < nb; i++) {
		cr_assert_eq(verify_bytes(b.p, bounds[i], &err), -1,
			     "truncation at %llu accepted", (unsigned long long)bounds[i]);
		cr_assert(err.code == SR_E_TRUNCATED || err.code == SR_E_MISSING,
			  "truncation at %llu: %s", (unsigned long long)bounds[i],
			  sr_strerror(err.code));
	}
	for (int i = 0; i < 500; i++) {
		size_t len = rnd(&s) % b.len;

		cr_assert_eq(verify_bytes(b.p, len, &err), -1,
			     "truncation at %zu accepted (SR_TEST_SEED=%llu)", len,
			     (unsigned long long)seed);
	}
	free(b.p);
}

/* ------------------------------------------------------ hostile input */

static struct image base_image(void)
{
	struct buf b = gen(&small);
	struct image img;

	parse(&b, &img);
	free(b.p);
	return img;
}

Test(hostile, huge_page_count)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_PAGE_DATA, 0);
	struct sr_rec_page_data *h = (void *)img.rec[i].body;

	h->count = 0x7fffffff;
	expect_reject_img(&img, SR_E_RANGE, "count 0x7fffffff");
	h->count = 0;
	expect_reject_img(&img, SR_E_RANGE, "count 0");
}

Test(hostile, page_lengths_that_do_not_add_up)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_PAGE_DATA, 0);
	struct sr_page_desc *d = (void *)(img.rec[i].body + 8);
	struct sr_page_desc save = *d;

	d->length += 1;
	expect_reject_img(&img, SR_E_LENGTH, "page length off by one");
	*d = save;
	d->enc = 7;
	expect_reject_img(&img, SR_E_RANGE, "unknown encoding");
	*d = save;
	d->rsvd[1] = 1;
	expect_reject_img(&img, SR_E_RANGE, "reserved byte");
}

Test(hostile, lz4_garbage_fails_to_decode)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_PAGE_DATA, 0);
	struct sr_rec_page_data *h = (void *)img.rec[i].body;
	struct sr_page_desc *d = (void *)(h + 1);
	uint8_t *data = (uint8_t *)(d + h->count);
	unsigned k = 0;

	while (d[k].enc != SR_PAGE_LZ4) {
		data += d[k].length;
		k++;
		cr_assert_lt(k, h->count, "no lz4 page in the batch");
	}
	memset(data, 0xff, d[k].length);
	expect_reject_img(&img, SR_E_DECODE, "lz4 garbage");
}

Test(hostile, pfn_outside_regions)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_PAGE_DATA, 0);
	struct sr_page_desc *d = (void *)(img.rec[i].body + 8);

	d[3].pfn = 64;		/* one past the 64-page region */
	expect_reject_img(&img, SR_E_RANGE, "pfn 64");
	d[3].pfn = UINT64_MAX;
	expect_reject_img(&img, SR_E_RANGE, "pfn 2^64-1");
}

/* An image whose last half of RAM is untouched: round 0 starts with two zero runs. */
static struct image holed_image(void)
{
	struct sr_gen_params p = small;
	struct image img;
	struct buf b;

	p.pct_hole = 50;
	b = gen(&p);
	parse(&b, &img);
	free(b.p);
	return img;
}

Test(roundtrip, zero_runs_cover_the_untouched_tail)
{
	IMAGE img = holed_image();
	struct buf b = serialize(&img);
	const struct sr_page_desc *d;
	uint8_t page[SR_PAGE_SIZE];
	struct sr_error err;
	uint64_t covered = 0, runs = 0, next = 0;

	cr_assert_eq(verify_bytes(b.p, b.len, &err), 0, "the holed image verifies");
	/* Round 0: the touched pages in one record, then the runs, pfns ascending. */
	for (unsigned k = 0; k < 2; k++) {
		int i = find_rec(&img, SR_REC_PAGE_DATA, k);
		struct sr_record rec = { .type = SR_REC_PAGE_DATA, .length = img.rec[i].len,
					 .body = img.rec[i].body };
		struct sr_page_iter it;

		sr_page_iter_init(&rec, &it);
		cr_assert_eq(it.iteration, 0);
		while (memset(page, 0xa5, sizeof(page)), sr_page_iter_next(&it, &d, page, &err) == 1) {
			cr_assert_eq(d->pfn, next, "pfn 0x%llx where 0x%llx was due",
				     (unsigned long long)d->pfn, (unsigned long long)next);
			if (d->enc != SR_PAGE_ZERO_RUN) {
				covered++;
				next++;
				continue;
			}
			cr_assert_eq(page[0], 0xa5, "a zero run leaves dst alone");
			cr_assert_eq(d->pfn, 32 + runs * 16, "run %llu starts at pfn 0x%llx",
				     (unsigned long long)runs, (unsigned long long)d->pfn);
			cr_assert_eq(d->length, 16, "run of %u pages", d->length);
			covered += d->length;
			next += d->length;
			runs++;
		}
	}
	cr_assert_eq(runs, 2);
	cr_assert_eq(covered, 64, "round 0 covers every page: %llu", (unsigned long long)covered);
	free(b.p);
}

Test(hostile, zero_runs)
{
	IMAGE img = holed_image();
	int i = find_rec(&img, SR_REC_PAGE_DATA, 1);	/* round 0's runs, after its pages */
	struct sr_page_desc *d = (void *)(img.rec[i].body + 8);
	struct sr_page_desc save = d[0];

	cr_assert_eq(d[0].enc, SR_PAGE_ZERO_RUN);
	d[0].length = 0;
	expect_reject_img(&img, SR_E_LENGTH, "zero run of 0 pages");
	d[0].length = 33;		/* pfn 32 + 33 pages: one past the 64-page region */
	expect_reject_img(&img, SR_E_RANGE, "zero run leaving the region");
	d[0].length = UINT32_MAX;
	expect_reject_img(&img, SR_E_RANGE, "zero run of 2^32-1 pages");
	d[0] = save;
	d[0].pfn = UINT64_MAX - 3;
	expect_reject_img(&img, SR_E_RANGE, "zero run at the top of the pfn space");
	d[0] = save;
	d[0].rsvd[0] = 1;
	expect_reject_img(&img, SR_E_RANGE, "zero run reserved byte");
	d[0] = save;
	d[0].enc = SR_PAGE_ZERO;	/* a ZERO page must have length 0 */
	expect_reject_img(&img, SR_E_LENGTH, "zero page with a run's length");
}

Test(hostile, duplicate_and_out_of_range_vcpu_ids)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_VCPU_CONTEXT, 1);
	struct sr_rec_context *c = (void *)img.rec[i].body;

	c->id = 0;
	expect_reject_img(&img, SR_E_DUPLICATE, "duplicate vCPU 0");
	c->id = 2;
	expect_reject_img(&img, SR_E_RANGE, "vCPU 2 of 2");
	c->id = 0xffffffff;
	expect_reject_img(&img, SR_E_RANGE, "vCPU 0xffffffff");
}

Test(hostile, domain_names)
{
	static const char *bad[] = { "", "../../x", "a/b", ".hidden", "a\nb", "\x1b[31mred",
				     "sp ace", "0123456789012345678901234567890123456789012345678" };
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_DOMAIN, 0);
	struct sr_rec_domain *d = (void *)img.rec[i].body;

	for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		memset(d->name, 0, sizeof(d->name));
		memcpy(d->name, bad[k], strlen(bad[k]));
		expect_reject_img(&img, SR_E_RANGE, bad[k]);
		cr_assert(!sr_name_valid(bad[k]), "\"%s\" passes sr_name_valid", bad[k]);
	}
	memset(d->name, 0, sizeof(d->name));
	strcpy(d->name, "ok-name_1.2");
	d->name[40] = 'x';	/* after the NUL */
	expect_reject_img(&img, SR_E_PADDING, "byte after the name's NUL");
	cr_assert(sr_name_valid("a") && sr_name_valid("web-01.prod_2") &&
		  sr_name_valid("012345678901234567890123456789012345678901234567"));
}

Test(hostile, device_duplicates_padding_and_cap)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_DEVICE, 0);
	struct sr_rec_device *dv = (void *)img.rec[i].body;

	dv->name[30] = 'x';	/* after the NUL */
	expect_reject_img(&img, SR_E_PADDING, "byte after the device name's NUL");
	dv->name[30] = 0;
	/* The same device and instance twice. */
	duplicate_record(&img, i);
	expect_reject_img(&img, SR_E_DUPLICATE, "a device twice");
	/* Another instance of a device is a different device (a model without a fixed layout). */
	for (int k = i; k <= i + 1; k++) {
		struct sr_rec_device *x = (void *)img.rec[k].body;

		memset(x->name, 0, sizeof(x->name));
		strcpy(x->name, "acme-x");	/* virtio-* names have a layout now (§6.1) */
	}
	((struct sr_rec_device *)img.rec[i + 1].body)->instance++;
	{
		struct buf b = serialize(&img);
		struct sr_error err = { 0 };

		cr_assert_eq(verify_bytes(b.p, b.len, &err), 0, "two instances refused: %s",
			     err.msg);
		free(b.p);
	}
}

Test(hostile, serial8250_fields)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_DEVICE, 0);
	struct sr_rec_device *dv = (void *)img.rec[i].body;
	uint8_t *st = (uint8_t *)(dv + 1);

	cr_assert_str_eq(dv->name, "serial8250");
	st[12] = 0x2c;		/* rx_head 300 */
	st[13] = 0x01;
	expect_reject_img(&img, SR_E_RANGE, "rx_head 300");
	st[12] = st[13] = 0;
	st[14] = 0x01;		/* rx_count 257 */
	st[15] = 0x01;
	expect_reject_img(&img, SR_E_RANGE, "rx_count 257");
	st[14] = st[15] = 0;
	st[10] = 1;
	expect_reject_img(&img, SR_E_RANGE, "serial8250 rsvd");
	st[10] = 0;
	img.rec[i].len = sizeof(*dv) + 16;
	expect_reject_img(&img, SR_E_RANGE, "a 16-byte serial8250");
}

Test(hostile, device_count_cap)
{
	struct buf b = { 0 };
	struct sr_error err = { 0 };
	IMAGE img = base_image();
	int first = find_rec(&img, SR_REC_DEVICE, 0);
	struct image pre = img;		/* borrows img's bodies */
	char body[40 + 8];

	/* Everything up to the first DEVICE, then 65 distinct ones. */
	pre.n = first;
	b = serialize(&pre);
	for (unsigned k = 0; k <= SR_MAX_DEVICES; k++) {
		memset(body, 0, sizeof(body));
		snprintf(body, 32, "dev%u", k);
		append_record(&b, SR_REC_DEVICE, body, sizeof(body));
	}
	cr_assert_eq(verify_bytes(b.p, b.len, &err), -1);
	cr_assert_eq(err.code, SR_E_RANGE, "65 devices: got %s", sr_strerror(err.code));
	cr_assert_eq(err.index, (uint64_t)first + SR_MAX_DEVICES, "error at record %llu",
		     (unsigned long long)err.index);
	free(b.p);
}

Test(hostile, throttle_fields_and_order)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_THROTTLE, 0);
	struct sr_rec_throttle *t = (void *)img.rec[i].body;
	uint8_t *pct = (uint8_t *)img.rec[i].body + sizeof(*t);
	uint32_t it = t->iteration;

	t->vcpu_count = 3;
	expect_reject_img(&img, SR_E_RANGE, "THROTTLE for 3 of 2 vCPUs");
	t->vcpu_count = 2;
	pct[1] = 100;
	expect_reject_img(&img, SR_E_RANGE, "throttle 100%");
	pct[1] = 20;
	pct[5] = 1;
	expect_reject_img(&img, SR_E_RANGE, "non-zero padding");
	pct[5] = 0;
	img.rec[i].len = 8;
	expect_reject_img(&img, SR_E_LENGTH, "body without its percentages");
	img.rec[i].len = 16;
	t->iteration = it - 1;
	expect_reject_img(&img, SR_E_SEQUENCE, "THROTTLE for a closed round");
	t->iteration = it;
	/* The same round throttled twice. */
	duplicate_record(&img, i);
	expect_reject_img(&img, SR_E_SEQUENCE, "two THROTTLE records for one round");
}

Test(hostile, missing_vcpu_context)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_VCPU_CONTEXT, 1);

	free(img.rec[i].body);
	memmove(&img.rec[i], &img.rec[i + 1], (img.n - i - 1) * sizeof(img.rec[0]));
	img.n--;
	expect_reject_img(&img, SR_E_MISSING, "one vCPU context dropped");
}

Test(hostile, domain_fields)
{
	IMAGE img = base_image();
	struct sr_rec_domain *d = (void *)img.rec[0].body;
	struct sr_region *reg = (void *)(d + 1);
	struct sr_rec_domain save = *d;

	d->vcpu_count = 0;
	expect_reject_img(&img, SR_E_RANGE, "0 vCPUs");
	d->vcpu_count = 100000;
	expect_reject_img(&img, SR_E_RANGE, "100000 vCPUs");
	*d = save;
	d->region_count = 0x40000000;
	expect_reject_img(&img, SR_E_RANGE, "2^30 regions");
	*d = save;
	d->region_count = 2;
	expect_reject_img(&img, SR_E_LENGTH, "region count beyond the body");
	*d = save;
	reg[0].size = 4095;
	expect_reject_img(&img, SR_E_RANGE, "unaligned region");
	reg[0].size = UINT64_MAX & ~4095ull;
	expect_reject_img(&img, SR_E_RANGE, "region wrapping the address space");
}

/* The DOMAIN record of img with a second region after the first. */
static void add_region(struct image *img, struct sr_region r1)
{
	struct rec_copy *rc = &img->rec[0];
	struct sr_rec_domain *d;

	cr_assert_eq(rc->type, SR_REC_DOMAIN);
	rc->body = realloc(rc->body, sizeof(*d) + 2 * sizeof(struct sr_region));
	d = (void *)rc->body;
	cr_assert_eq(d->region_count, 1);
	d->region_count = 2;
	memcpy(rc->body + sizeof(*d) + sizeof(struct sr_region), &r1, sizeof(r1));
	rc->len = sizeof(*d) + 2 * sizeof(struct sr_region);
}

/* Two regions: beside each other is fine; any overlap, or one slot twice, is not. */
Test(hostile, overlapping_regions_and_shared_slots)
{
	static const struct {
		struct sr_region r1;
		int code;		/* 0: accepted */
		const char *what;
	} cases[] = {
		{ { 64 * 4096, 4096, SR_REGION_F_RAM, 1 }, 0, "right after the first" },
		{ { 1 << 20, 8 * 4096, SR_REGION_F_RAM, 1 }, 0, "further up" },
		{ { 0, 4096, SR_REGION_F_RAM, 1 }, SR_E_RANGE, "at the first one's gpa" },
		{ { 63 * 4096, 2 * 4096, SR_REGION_F_RAM, 1 }, SR_E_RANGE, "over the first one's last page" },
		{ { 8 * 4096, 4096, SR_REGION_F_RAM, 1 }, SR_E_RANGE, "inside the first" },
		{ { 64 * 4096, 4096, SR_REGION_F_RAM, 0 }, SR_E_DUPLICATE, "in the first one's slot" },
	};

	for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		IMAGE img = base_image();
		struct sr_error err;
		char msg[512], want[32];
		struct buf b;

		add_region(&img, cases[k].r1);
		if (cases[k].code) {
			expect_reject_img(&img, cases[k].code, cases[k].what);
			continue;
		}
		/*
		 * The region is accepted; the image sends none of its pages, so
		 * it is refused at END, naming the region's first page.
		 */
		b = serialize(&img);
		cr_assert_neq(verify_bytes(b.p, b.len, &err), 0, "a second region %s: accepted "
			      "though none of its pages were sent", cases[k].what);
		sr_error_format(&err, msg, sizeof(msg));
		cr_assert_eq(err.code, SR_E_MISSING, "a second region %s: %s", cases[k].what, msg);
		snprintf(want, sizeof(want), "pfn 0x%llx ",
			 (unsigned long long)(cases[k].r1.gpa / 4096));
		cr_assert(strstr(msg, want), "a second region %s: %s does not name %s",
			  cases[k].what, msg, want);
		free(b.p);
	}
}

/* SR_MAX_REGIONS regions, distinct and consistent, are fine; one more is refused. */
Test(hostile, region_count_cap)
{
	for (unsigned n = SR_MAX_REGIONS; n <= SR_MAX_REGIONS + 1; n++) {
		IMAGE img = base_image();
		struct rec_copy *rc = &img.rec[0];
		struct sr_rec_domain *d;
		struct sr_region *reg;
		struct sr_error err;
		char msg[512];
		struct buf b;

		rc->body = realloc(rc->body, sizeof(*d) + n * sizeof(*reg));
		rc->len = sizeof(*d) + n * sizeof(*reg);
		d = (void *)rc->body;
		reg = (void *)(d + 1);
		d->region_count = n;
		for (unsigned k = 1; k < n; k++)	/* region 0 stays: the pages are there */
			reg[k] = (struct sr_region){ (1ull << 32) + k * 4096ull, 4096, SR_REGION_F_RAM, k };
		if (n > SR_MAX_REGIONS) {
			expect_reject_img(&img, SR_E_RANGE, "one region over the cap");
			continue;
		}
		/* Accepted as regions; refused at END for the pages never sent. */
		b = serialize(&img);
		cr_assert_neq(verify_bytes(b.p, b.len, &err), 0, "%u regions without pages accepted", n);
		sr_error_format(&err, msg, sizeof(msg));
		cr_assert_eq(err.code, SR_E_MISSING, "%u regions: %s", n, msg);
		cr_assert(strstr(msg, "pfn 0x100001 "), "%u regions: %s", n, msg);
		free(b.p);
	}
}

/* Pages of a round its ITERATION record already closed. */
Test(hostile, pages_of_a_closed_round)
{
	IMAGE img = base_image();
	int k = find_rec(&img, SR_REC_ITERATION, 0);
	struct sr_rec_page_data *h = (void *)img.rec[k + 1].body;

	cr_assert_eq(img.rec[k + 1].type, SR_REC_PAGE_DATA, "no page data after ITERATION 0");
	cr_assert_eq(h->iteration, 1);
	h->iteration = 0;
	expect_reject_img(&img, SR_E_SEQUENCE, "round 0's pages after ITERATION 0");
}

/* An ITERATION record longer than its struct (the reader checks it exactly). */
Test(hostile, iteration_record_too_long)
{
	IMAGE img = base_image();
	int k = find_rec(&img, SR_REC_ITERATION, 0);

	img.rec[k].body = realloc(img.rec[k].body, img.rec[k].len + 8);
	memset(img.rec[k].body + img.rec[k].len, 0, 8);
	img.rec[k].len += 8;
	expect_reject_img(&img, SR_E_LENGTH, "ITERATION 8 bytes too long");
}

/* A domain of 0 vCPUs without any vCPU context is refused at DOMAIN, not let through. */
Test(hostile, domain_of_no_vcpus)
{
	IMAGE img = base_image();
	struct sr_rec_domain *d = (void *)img.rec[0].body;
	struct sr_error err;
	struct buf b;
	int i;

	d->vcpu_count = 0;
	while ((i = find_rec_or_none(&img, SR_REC_VCPU_CONTEXT)) >= 0) {
		free(img.rec[i].body);
		memmove(&img.rec[i], &img.rec[i + 1], (img.n - i - 1) * sizeof(img.rec[0]));
		img.n--;
	}
	expect_reject_img(&img, SR_E_RANGE, "0 vCPUs and no contexts");
	b = serialize(&img);
	cr_assert_eq(verify_bytes(b.p, b.len, &err), -1);
	cr_assert_eq(err.index, 0, "refused at record %llu, not at DOMAIN", (unsigned long long)err.index);
	free(b.p);
}

/* An lz4 page of 4096 bytes, as long as the raw page, is refused as a length. */
Test(hostile, lz4_page_as_long_as_a_raw_one)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_PAGE_DATA, 0);
	struct sr_rec_page_data *h = (void *)img.rec[i].body;
	struct sr_page_desc *d = (void *)(h + 1);
	size_t pre = sizeof(*h) + h->count * sizeof(*d), off = pre;
	unsigned k = 0;
	uint8_t *body;

	while (d[k].enc != SR_PAGE_LZ4) {
		off += d[k].length;
		k++;
		cr_assert_lt(k, h->count, "no lz4 page in the batch");
	}
	/* Its data grows to a whole page; the record stays consistent around it. */
	body = malloc(img.rec[i].len + SR_PAGE_SIZE);
	memcpy(body, img.rec[i].body, off);
	memset(body + off, 0x5a, SR_PAGE_SIZE);
	memcpy(body + off + SR_PAGE_SIZE, img.rec[i].body + off + d[k].length,
	       img.rec[i].len - off - d[k].length);
	img.rec[i].len += SR_PAGE_SIZE - d[k].length;
	((struct sr_page_desc *)(body + sizeof(*h)))[k].length = SR_PAGE_SIZE;
	free(img.rec[i].body);
	img.rec[i].body = body;
	expect_reject_img(&img, SR_E_LENGTH, "lz4 page of 4096 bytes");
}

Test(hostile, record_after_end)
{
	struct buf b = gen(&small);
	uint8_t body[16] = { 0 };

	append_record(&b, SR_REC_DEVICE, body, sizeof(body));
	expect_reject(&b, SR_E_TRAILING, "record after END");
	free(b.p);
}

Test(hostile, missing_end)
{
	IMAGE img = base_image();

	cr_assert_eq(img.rec[img.n - 1].type, SR_REC_END);
	free(img.rec[img.n - 1].body);
	img.n--;
	expect_reject_img(&img, SR_E_MISSING, "END dropped");
}

Test(hostile, dropped_duplicated_reordered_records_are_caught_by_end)
{
	struct buf b = gen(&small), bad;
	struct sr_error err;
	struct sr_reader *r;
	struct sr_record rec;
	size_t off[64], len[64];
	uint32_t type[64];
	unsigned n = 0, pd = 0;
	int fd = mem_fd(), rc;

	/* Splice the original bytes, so each record keeps its own valid checksum. */
	cr_assert_eq(pwrite(fd, b.p, b.len, 0), (ssize_t)b.len);
	r = sr_reader_open(fd, &err);
	while ((rc = sr_reader_next(r, &rec, &err)) > 0) {
		cr_assert_lt(n, 64);
		off[n] = rec.offset;
		len[n] = 8 + rec.length + (8 - rec.length % 8) % 8 + 8;
		type[n] = rec.type;
		n++;
	}
	sr_reader_free(r);
	close(fd);
	size_t end_off = off[n - 1] + len[n - 1];

	/* Duplicate the second PAGE_DATA record: a copy right after it, same round. */
	for (unsigned i = 0, seen = 0; i < n && !pd; i++)
		if (type[i] == SR_REC_PAGE_DATA && ++seen == 2)
			pd = i;
	cr_assert_gt(pd, 0, "the image has no second PAGE_DATA record");
	bad.p = malloc(b.len + len[pd]);
	memcpy(bad.p, b.p, off[pd] + len[pd]);
	memcpy(bad.p + off[pd] + len[pd], b.p + off[pd], len[pd]);
	memcpy(bad.p + off[pd] + 2 * len[pd], b.p + off[pd] + len[pd], b.len - off[pd] - len[pd]);
	bad.len = b.len + len[pd];
	/* Every record verifies on its own; END's record count catches the copy. */
	expect_reject(&bad, SR_E_MISSING, "duplicated PAGE_DATA");
	cr_assert_eq(verify_bytes(bad.p, bad.len, &err), -1);
	cr_assert_eq(err.index, n + 1, "refused at record %llu, not at END (record %u)",
		     (unsigned long long)err.index, n + 1);
	/* Drop the DEVICE record just before END. */
	memcpy(bad.p, b.p, off[n - 1]);
	memcpy(bad.p + off[n - 1], b.p + end_off, b.len - end_off);
	bad.len = b.len - len[n - 1];
	expect_reject(&bad, SR_E_MISSING, "dropped DEVICE");
	/* Swap the two vCPU contexts' bytes: counts match, the stream hash does not. */
	int v0 = -1;

	for (unsigned i = 0; i < n; i++)
		if (i + 1 < n && i > 4 && len[i] == len[i + 1]) {
			v0 = i;
			break;
		}
	cr_assert_geq(v0, 0);
	memcpy(bad.p, b.p, b.len);
	memcpy(bad.p + off[v0], b.p + off[v0 + 1], len[v0 + 1]);
	memcpy(bad.p + off[v0 + 1], b.p + off[v0], len[v0]);
	bad.len = b.len;
	expect_reject(&bad, SR_E_STREAM_HASH, "swapped vCPU contexts");
	free(bad.p);
	free(b.p);
}

static struct buf with_header(void (*edit)(struct sr_ihdr *))
{
	struct buf b = gen(&small);
	struct sr_ihdr *h = (void *)b.p;

	edit(h);
	h->hash = XXH3_64bits(h, offsetof(struct sr_ihdr, hash));
	return b;
}

static void future_major(struct sr_ihdr *h) { h->version_major = 2; }
static void future_minor(struct sr_ihdr *h) { h->version_minor = SR_VERSION_MINOR + 1; }
static void big_endian(struct sr_ihdr *h) { h->endian = __builtin_bswap32(SR_ENDIAN_MARKER); }
static void big_pages(struct sr_ihdr *h) { h->page_size = 65536; }
static void must_understand_flag(struct sr_ihdr *h) { h->flags |= 1u << 20; }
static void info_flag(struct sr_ihdr *h) { h->flags |= 1u << 9; }

Test(hostile, header_versions_and_flags)
{
	struct buf b;
	struct sr_error err;

	b = with_header(future_major);
	expect_reject(&b, SR_E_VERSION, "major 2");
	free(b.p);
	b = with_header(future_minor);
	expect_reject(&b, SR_E_VERSION, "newer minor");
	free(b.p);
	b = with_header(big_endian);
	expect_reject(&b, SR_E_ENDIAN, "big-endian marker");
	free(b.p);
	b = with_header(big_pages);
	expect_reject(&b, SR_E_HEADER, "64 KiB pages");
	free(b.p);
	b = with_header(must_understand_flag);
	expect_reject(&b, SR_E_HEADER, "unknown mandatory flag");
	free(b.p);
	/* An informational flag is not a reason to refuse: but the stream hash covers it. */
	b = with_header(info_flag);
	cr_assert_eq(verify_bytes(b.p, b.len, &err), -1);
	cr_assert_eq(err.code, SR_E_STREAM_HASH);
	free(b.p);
	b = gen(&small);
	memcpy(b.p, "XENSAVED", 8);
	expect_reject(&b, SR_E_MAGIC, "foreign magic");
	free(b.p);
}

/* Fewer bytes than a header: foreign when they are not the magic's first bytes, else cut short. */
Test(hostile, short_streams)
{
	struct buf text = { (uint8_t *)strdup("hello\n"), 6 };
	struct buf cut = { (uint8_t *)strdup("SRKVM"), 5 };
	struct buf long_text = { (uint8_t *)strdup("a text file, not an image\n"), 26 };

	expect_reject(&text, SR_E_MAGIC, "a 6-byte text file");
	expect_reject(&long_text, SR_E_MAGIC, "a 26-byte text file");
	expect_reject(&cut, SR_E_TRUNCATED, "the magic's first 5 bytes");
	free(text.p);
	free(cut.p);
	free(long_text.p);
}

Test(hostile, record_length_over_cap)
{
	struct buf b = gen(&small);
	struct sr_rhdr *h = (void *)(b.p + sizeof(struct sr_ihdr));

	h->length = 0xfffffff0;
	expect_reject(&b, SR_E_LENGTH, "length 0xfffffff0");
	free(b.p);
}

Test(hostile, unknown_records)
{
	IMAGE img = base_image();
	struct sr_error err;
	struct buf b;
	uint8_t body[24] = "future optional data";

	/* Insert an unknown optional record after DOMAIN: skipped, image verifies. */
	memmove(&img.rec[2], &img.rec[1], (img.n - 1) * sizeof(img.rec[0]));
	img.n++;
	img.rec[1] = (struct rec_copy){ 0x80000077u, sizeof(body), malloc(sizeof(body)) };
	memcpy(img.rec[1].body, body, sizeof(body));
	b = serialize(&img);
	cr_assert_eq(verify_bytes(b.p, b.len, &err), 0, "unknown optional record refused");
	free(b.p);
	img.rec[1].type = 0x00000077u;
	expect_reject_img(&img, SR_E_TYPE, "unknown mandatory record");
}

Test(hostile, sequence_rules)
{
	IMAGE img = base_image();
	struct rec_copy dom = img.rec[0];

	img.rec[0] = img.rec[1];
	img.rec[1] = dom;
	expect_reject_img(&img, SR_E_SEQUENCE, "DOMAIN second");
	img.rec[1] = img.rec[0];
	img.rec[0] = dom;

	int h = find_rec(&img, SR_REC_HVM_CONTEXT, 0);
	struct rec_copy hvm = img.rec[h];

	img.rec[h] = img.rec[h + 1];
	img.rec[h + 1] = hvm;
	expect_reject_img(&img, SR_E_SEQUENCE, "vCPU context before HVM_CONTEXT");
}

Test(hostile, context_blocks)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_VCPU_CONTEXT, 0);
	struct sr_rec_context *c = (void *)img.rec[i].body;
	struct sr_block_hdr *b0 = (void *)(c + 1);
	struct sr_block_hdr save = *b0;

	c->block_count = 1000;
	expect_reject_img(&img, SR_E_RANGE, "1000 blocks");
	c->block_count--;
	c->block_count = 3;
	expect_reject_img(&img, SR_E_LENGTH, "blocks left over");
	c->block_count = 11;
	b0->kind = SR_BLK_PIT;
	expect_reject_img(&img, SR_E_RANGE, "PIT block in a vCPU");
	b0->kind = 0x4444;
	expect_reject_img(&img, SR_E_TYPE, "unknown mandatory block");
	*b0 = save;
	b0->length = 0x7ffffff8;
	expect_reject_img(&img, SR_E_LENGTH, "block past the body");
	*b0 = save;
	cr_assert_eq(b0->kind, SR_BLK_CPUID);
	((struct sr_blk_count *)(b0 + 1))->count = 5;
	expect_reject_img(&img, SR_E_LENGTH, "CPUID count does not match");
}

/* Reserved fields read back as written: zero, and anything else refused. */
Test(hostile, reserved_fields_and_late_iteration)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_VCPU_CONTEXT, 0);
	struct sr_rec_context *c = (void *)img.rec[i].body;
	struct sr_block_hdr *b0 = (void *)(c + 1);
	struct sr_blk_count *cnt = (void *)(b0 + 1);
	uint8_t *entry0 = (uint8_t *)(cnt + 1);

	cr_assert_eq(b0->kind, SR_BLK_CPUID);
	cnt->rsvd = 1;
	expect_reject_img(&img, SR_E_RANGE, "CPUID rsvd");
	cnt->rsvd = 0;
	entry0[36] = 1;		/* kvm_cpuid_entry2.padding */
	expect_reject_img(&img, SR_E_RANGE, "CPUID entry padding");
	entry0[36] = 0;

	int h = find_rec(&img, SR_REC_HVM_CONTEXT, 0);
	struct sr_rec_context *hc = (void *)img.rec[h].body;
	uint8_t *p = (uint8_t *)(hc + 1);

	for (unsigned k = 0; k < hc->block_count; k++) {
		struct sr_block_hdr *bh = (void *)p;

		if (bh->kind == SR_BLK_TSC_KHZ) {
			((struct sr_blk_tsc_khz *)(bh + 1))->rsvd = 7;
			expect_reject_img(&img, SR_E_RANGE, "TSC_KHZ rsvd");
			((struct sr_blk_tsc_khz *)(bh + 1))->rsvd = 0;
		}
		p += sizeof(*bh) + (bh->length + 7) / 8 * 8;
	}

	/* An ITERATION after HVM_CONTEXT. */
	int it = find_rec(&img, SR_REC_ITERATION, 2);
	struct rec_copy moved = img.rec[it];

	cr_assert_lt(it, h);
	memmove(&img.rec[it], &img.rec[it + 1], (h - it) * sizeof(img.rec[0]));
	img.rec[h] = moved;
	((struct sr_rec_iteration *)moved.body)->iteration = 99;
	expect_reject_img(&img, SR_E_SEQUENCE, "ITERATION after HVM_CONTEXT");
}

Test(hostile, creator_padding)
{
	struct buf b = gen(&small);
	struct sr_ihdr *hd = (void *)b.p;
	struct sr_error err = { 0 };

	hd->creator[sizeof(hd->creator) - 1] = 'x';
	/* The header hash covers the creator; recompute it as a forger would. */
	hd->hash = XXH3_64bits(hd, offsetof(struct sr_ihdr, hash));
	cr_assert_eq(verify_bytes(b.p, b.len, &err), -1, "byte after the creator's NUL accepted");
	cr_assert_eq(err.code, SR_E_HEADER, "got %s", sr_strerror(err.code));
	free(b.p);
}

/* ------------------------------------------------------------ sr-dump */

static int run_dump(const char *arg, const uint8_t *p, size_t len)
{
	const char *dump = getenv("SR_DUMP");
	char path[] = "/tmp/sr-test-XXXXXX";
	int fd = mkstemp(path), status;
	pid_t pid;
	posix_spawn_file_actions_t fa;
	char *argv[] = { (char *)dump, (char *)arg, path, NULL };

	cr_assert(dump, "SR_DUMP is not set (run through make check)");
	cr_assert_eq(write(fd, p, len), (ssize_t)len);
	close(fd);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	cr_assert_eq(posix_spawn(&pid, dump, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	waitpid(pid, &status, 0);
	unlink(path);
	cr_assert(WIFEXITED(status), "sr-dump died of signal %d", WTERMSIG(status));
	return WEXITSTATUS(status);
}

Test(sr_dump, verify_rejects_flips_and_truncations)
{
	struct buf b = gen(&small);
	uint64_t seed = test_seed(), s = seed | 1;

	cr_assert_eq(run_dump("--verify", b.p, b.len), 0, "good image refused");
	for (int i = 0; i < 150; i++) {
		size_t o = rnd(&s) % b.len;
		int bit = rnd(&s) % 8;

		b.p[o] ^= 1u << bit;
		cr_assert_eq(run_dump("--verify", b.p, b.len), 1,
			     "flip of bit %d at %zu not rejected with exit 1 (SR_TEST_SEED=%llu)",
			     bit, o, (unsigned long long)seed);
		b.p[o] ^= 1u << bit;
	}
	for (int i = 0; i < 30; i++)
		cr_assert_eq(run_dump("--verify", b.p, rnd(&s) % b.len), 1);
	cr_assert_eq(run_dump("--json", b.p, b.len), 0);
	free(b.p);
}

/* ------------------------------------------- placed page data (page sink) */

struct sink_mem {
	uint8_t *mem;
	uint64_t pages;
	unsigned batches;		/* batch() calls */
};

static void *sink_addr(void *arg, uint64_t pfn)
{
	struct sink_mem *m = arg;

	return pfn < m->pages ? m->mem + pfn * SR_PAGE_SIZE : NULL;
}

static void sink_batch(void *arg, const struct sr_page_desc *d, unsigned n)
{
	struct sink_mem *m = arg;

	cr_assert_gt(n, 0);
	cr_assert_lt(d[0].pfn, m->pages);
	m->batches++;
}

/*
 * Reads the image on fd into mem (pages of the gen domain's one region at
 * gpa 0): with a page sink of threads workers (threads < 0: no sink, every
 * page decoded from the record).  Zero pages and runs are zeroed by hand, as
 * a restorer would.  Returns sr_reader_next's last result.
 */
static int read_into(int fd, struct sink_mem *m, int threads, struct sr_reader_stats *st,
		     struct sr_error *err)
{
	struct sr_page_sink sink = { .page_addr = sink_addr, .batch = sink_batch, .arg = m,
				     .threads = threads > 0 ? threads : 0 };
	struct sr_reader *r;
	struct sr_record rec;
	int rc;

	cr_assert(lseek(fd, 0, SEEK_SET) == 0 || errno == ESPIPE);	/* a pipe reads once */
	r = sr_reader_open(fd, err);
	if (!r)
		return -1;
	if (threads >= 0)
		cr_assert_eq(sr_reader_set_page_sink(r, &sink, err), 0);
	while ((rc = sr_reader_next(r, &rec, err)) > 0) {
		struct sr_page_iter it;
		const struct sr_page_desc *d;
		int k;

		if (rec.type != SR_REC_PAGE_DATA)
			continue;
		sr_page_iter_init(&rec, &it);
		for (;;) {
			uint8_t *dst = it.i < it.count ? sink_addr(m, it.desc[it.i].pfn) : NULL;

			k = sr_page_iter_next(&it, &d, dst, err);
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
	if (st)
		sr_reader_stats(r, st);
	sr_reader_free(r);
	return rc;
}

/* A live-like image: four rounds, lz4, zero pages and an untouched tail. */
static const struct sr_gen_params placed_params = {
	.mem_bytes = 4096 * 4096, .vcpus = 2, .iterations = 3, .dirty_pages = 700,
	.compress = SR_COMPRESS_LZ4, .seed = 11, .pct_zero = 20, .pct_text = 40, .pct_hole = 10,
};

Test(placed, pages_land_as_the_buffered_path_decodes_them)
{
	const struct sr_gen_params *p = &placed_params;
	uint64_t pages = p->mem_bytes / SR_PAGE_SIZE;
	struct buf b = gen(p);
	struct sink_mem want = { malloc(p->mem_bytes), pages, 0 };
	struct sr_reader_stats st;
	struct sr_error err;
	char msg[512];
	int fd = mem_fd();

	cr_assert_eq(pwrite(fd, b.p, b.len, 0), (ssize_t)b.len);
	memset(want.mem, 0xa5, p->mem_bytes);
	cr_assert_eq(read_into(fd, &want, -1, &st, &err), 0, "%s",
		     sr_error_format(&err, msg, sizeof(msg)));
	cr_assert_eq(st.placed, 0);
	cr_assert_gt(st.buffered, 4);
	for (int threads = 0; threads <= 3; threads++) {
		struct sink_mem got = { malloc(p->mem_bytes), pages, 0 };

		memset(got.mem, 0x5a, p->mem_bytes);
		cr_assert_eq(read_into(fd, &got, threads, &st, &err), 0, "threads %d: %s", threads,
			     sr_error_format(&err, msg, sizeof(msg)));
		cr_assert_eq(st.buffered, 0, "threads %d: %llu records not placed", threads,
			     (unsigned long long)st.buffered);
		cr_assert_eq(got.batches, st.placed);
		for (uint64_t i = 0; i < pages; i++)
			cr_assert(!memcmp(got.mem + i * SR_PAGE_SIZE, want.mem + i * SR_PAGE_SIZE,
					  SR_PAGE_SIZE), "threads %d: pfn 0x%llx differs", threads,
				  (unsigned long long)i);
		free(got.mem);
	}
	free(want.mem);
	free(b.p);
	close(fd);
}

/* Every corruption the buffered reader refuses, the placed one refuses alike. */
Test(placed, corrupt_and_truncated_records_are_refused_alike, .timeout = 600)
{
	struct sr_gen_params p = placed_params;
	uint64_t seed = test_seed(), s = seed | 1;
	struct buf b;
	struct sink_mem m;
	struct sr_error e1, e2;
	char m1[512], m2[512];
	int fd = mem_fd();

	p.mem_bytes = 512 * 4096;
	p.dirty_pages = 100;
	b = gen(&p);
	m = (struct sink_mem){ malloc(p.mem_bytes), p.mem_bytes / SR_PAGE_SIZE, 0 };
	for (int i = 0; i < 600; i++) {
		size_t o = rnd(&s) % b.len, len = b.len;
		int bit = rnd(&s) % 8, threads = i % 3;

		if (i % 4 == 3)
			len = o;		/* a truncation instead */
		else
			b.p[o] ^= 1u << bit;
		cr_assert_eq(ftruncate(fd, 0), 0);
		cr_assert_eq(pwrite(fd, b.p, len, 0), (ssize_t)len);
		cr_assert_eq(read_into(fd, &m, -1, NULL, &e1), -1, "offset %zu accepted", o);
		cr_assert_eq(read_into(fd, &m, threads, NULL, &e2), -1,
			     "offset %zu (%s) accepted by the placed reader, %d threads (SR_TEST_SEED=%llu)",
			     o, len < b.len ? "truncated" : "bit flip", threads,
			     (unsigned long long)seed);
		cr_assert(e1.code == e2.code && e1.index == e2.index,
			  "offset %zu, %d threads: buffered \"%s\", placed \"%s\" (SR_TEST_SEED=%llu)",
			  o, threads, sr_error_format(&e1, m1, sizeof(m1)),
			  sr_error_format(&e2, m2, sizeof(m2)), (unsigned long long)seed);
		if (len == b.len)
			b.p[o] ^= 1u << bit;
	}
	free(m.mem);
	free(b.p);
	close(fd);
}

/* Pfns that do not ascend, or a page the sink has no place for: read the ordinary way. */
Test(placed, unordered_or_unplaceable_batches_are_read_whole)
{
	struct sr_image_info info = { .creator = "test" };
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = 1,
				     .region_count = 1, .name = "order" };
	struct sr_region reg = { 0, 64 * 4096, SR_REGION_F_RAM, 0 };
	struct sr_batch *bt = sr_batch_new(SR_COMPRESS_LZ4, 0);
	uint8_t page[SR_PAGE_SIZE];
	struct sink_mem m = { calloc(64, SR_PAGE_SIZE), 48, 0 };	/* no place for pfn >= 48 */
	struct sr_reader_stats st;
	struct sr_error err;
	struct sr_writer *w;
	char msg[512];
	int fd = mem_fd(), rc;

	w = sr_writer_open(fd, &info, 0, &err);
	cr_assert(w && bt);
	cr_assert_eq(sr_write_domain(w, &dom, &reg, &err), 0);
	sr_batch_reset(bt, 0);
	for (unsigned pfn = 0; pfn < 8; pfn++) {	/* ascending: placed */
		memset(page, 'a' + pfn, sizeof(page));
		sr_batch_add(bt, pfn, page);
	}
	cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
	for (unsigned pfn = 20; pfn > 10; pfn--) {	/* descending: read whole */
		memset(page, 'A' + pfn, sizeof(page));
		sr_batch_add(bt, pfn, page);
	}
	cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
	memset(page, 'z', sizeof(page));
	sr_batch_add(bt, 50, page);			/* no place: read whole */
	cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
	cr_assert_eq(sr_writer_flush(w, &err), 0);
	sr_batch_free(bt);
	sr_writer_free(w);

	rc = read_into(fd, &m, 2, &st, &err);
	/* No context records: MISSING at the end, after all pages were read. */
	cr_assert_eq(rc, -1);
	cr_assert_eq(err.code, SR_E_MISSING, "%s", sr_error_format(&err, msg, sizeof(msg)));
	cr_assert_eq(st.placed, 1);
	cr_assert_eq(st.buffered, 2);
	for (unsigned pfn = 0; pfn < 8; pfn++)
		cr_assert_eq(m.mem[pfn * SR_PAGE_SIZE + 100], 'a' + pfn, "pfn %u", pfn);
	for (unsigned pfn = 11; pfn <= 20; pfn++)
		cr_assert_eq(m.mem[pfn * SR_PAGE_SIZE + 100], 'A' + pfn, "pfn %u", pfn);
	free(m.mem);
	close(fd);
}

/* Offset of record index's header in an image (walks the framing). */
static size_t rec_at(const struct buf *b, unsigned index)
{
	size_t o = sizeof(struct sr_ihdr);

	for (unsigned i = 0; i < index; i++) {
		struct sr_rhdr h;

		cr_assert_leq(o + sizeof(h), b->len);
		memcpy(&h, b->p + o, sizeof(h));
		o += sizeof(h) + h.length + (8 - h.length % 8) % 8 + 8;
	}
	cr_assert_leq(o + sizeof(struct sr_rhdr), b->len);
	return o;
}

/*
 * A failed record leaves nothing in flight: once sr_reader_next() has
 * returned the failure, guest memory can go (sr-restore unmaps it), and no
 * worker may still be verifying or decoding a later record into it.  Here
 * the memory is unmapped right after the failure, before the reader is
 * freed: a worker still at work faults.
 */
Test(placed, a_failed_record_leaves_no_worker_in_guest_memory, .timeout = 300)
{
	struct sr_gen_params p = placed_params;
	struct sr_error err;
	struct buf b;
	char msg[512];
	int fd = mem_fd();

	p.mem_bytes = 8192 * 4096;	/* 8 full records per round-0 pass of a thread */
	p.pct_zero = 0;
	p.pct_hole = 0;
	for (int raw = 0; raw <= 1; raw++) {
		size_t o;
		struct sr_rhdr h;

		p.compress = raw ? SR_COMPRESS_NONE : SR_COMPRESS_LZ4;
		b = gen(&p);
		o = rec_at(&b, 1);			/* the first PAGE_DATA */
		memcpy(&h, b.p + o, sizeof(h));
		cr_assert_eq(h.type, SR_REC_PAGE_DATA);
		b.p[o + sizeof(h) + h.length - 100] ^= 0x40;	/* in its last page's data */
		cr_assert_eq(ftruncate(fd, 0), 0);
		cr_assert_eq(pwrite(fd, b.p, b.len, 0), (ssize_t)b.len);
		for (int k = 0; k < 30; k++) {
			struct sink_mem m = { mmap(NULL, p.mem_bytes, PROT_READ | PROT_WRITE,
						   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
					      p.mem_bytes / SR_PAGE_SIZE, 0 };
			struct sr_page_sink sink = { .page_addr = sink_addr, .arg = &m,
						     .threads = 1 + k % 3 };
			struct sr_record rec;
			struct sr_reader *r;
			int rc;

			cr_assert_neq(m.mem, MAP_FAILED);
			cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
			r = sr_reader_open(fd, &err);
			cr_assert(r);
			cr_assert_eq(sr_reader_set_page_sink(r, &sink, &err), 0);
			while ((rc = sr_reader_next(r, &rec, &err)) > 0)
				;
			cr_assert_eq(munmap(m.mem, p.mem_bytes), 0);
			cr_assert_eq(rc, -1, "%s: corrupt record 1 accepted", raw ? "raw" : "lz4");
			cr_assert(err.code == SR_E_CHECKSUM && err.index == 1, "%s, %u threads: %s",
				  raw ? "raw" : "lz4", sink.threads,
				  sr_error_format(&err, msg, sizeof(msg)));
			sr_reader_free(r);
		}
		free(b.p);
	}
	close(fd);
}

/*
 * A PAGE_DATA body of iteration 0 for pfns [first, first + n), every page
 * encoded as enc (RAW: random bytes, LZ4: text that compresses, ZERO), and
 * what those pages hold, written into want.
 */
static uint8_t *page_record(uint64_t first, unsigned n, unsigned enc, uint8_t *want,
			    uint32_t *len)
{
	size_t cap = sizeof(struct sr_rec_page_data) + n * (sizeof(struct sr_page_desc) + SR_PAGE_SIZE);
	uint8_t *body = calloc(1, cap), *data;
	struct sr_rec_page_data h = { .count = n, .iteration = 0 };
	struct sr_page_desc *d = (void *)(body + sizeof(h));
	uint64_t s = 0x5eed0000 + first + enc;

	cr_assert(body);
	memcpy(body, &h, sizeof(h));
	data = (uint8_t *)(d + n);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *pg = want + (first + i) * SR_PAGE_SIZE;

		for (unsigned o = 0; o < SR_PAGE_SIZE; o++)
			pg[o] = enc == SR_PAGE_ZERO ? 0 : enc == SR_PAGE_LZ4 ? "later copy "[(o + i) % 11] :
				(uint8_t)rnd(&s);
		d[i] = (struct sr_page_desc){ .pfn = first + i, .enc = enc };
		if (enc == SR_PAGE_RAW) {
			d[i].length = SR_PAGE_SIZE;
			memcpy(data, pg, SR_PAGE_SIZE);
		} else if (enc == SR_PAGE_LZ4) {
			int k = LZ4_compress_default((const char *)pg, (char *)data, SR_PAGE_SIZE,
						     SR_PAGE_SIZE - 1);

			cr_assert(k > 0);
			d[i].length = k;
		}
		data += d[i].length;
	}
	*len = data - body;
	return body;
}

/*
 * Two PAGE_DATA records of one round that share pfns (all checksums
 * valid): the later copy wins, on every path.  The generator's round 0
 * sends pfns 0..2047 in two records of one encoding; a third record, right
 * after the first, sends pfns 0..1023 again in another.  Each reader lands
 * the pages (with no sink, and with 0..3 workers) and must end with the
 * third record's copy, every time.
 */
static void later_copy_wins(enum sr_compress first_mode, unsigned pct_text, unsigned second_enc)
{
	struct sr_gen_params p = { .mem_bytes = 2048 * 4096, .vcpus = 1, .iterations = 0,
				   .compress = first_mode, .seed = 5, .pct_text = pct_text };
	uint8_t *want = malloc(p.mem_bytes);
	struct sink_mem m = { malloc(p.mem_bytes), p.mem_bytes / SR_PAGE_SIZE, 0 };
	struct sr_reader_stats st;
	struct sr_error err;
	struct buf b = gen(&p), b2;
	char msg[512];
	int fd = mem_fd(), i;
	IMAGE img;

	sr_gen_fill(want, p.mem_bytes, &p);
	parse(&b, &img);
	i = find_rec(&img, SR_REC_PAGE_DATA, 0);
	cr_assert_eq(((struct sr_rec_page_data *)img.rec[i].body)->count, 1024);
	cr_assert_eq(((struct sr_page_desc *)(img.rec[i].body + 8))[0].enc,
		     first_mode == SR_COMPRESS_NONE ? SR_PAGE_RAW : SR_PAGE_LZ4);
	duplicate_record(&img, i);
	free(img.rec[i + 1].body);
	img.rec[i + 1].body = page_record(0, 1024, second_enc, want, &img.rec[i + 1].len);
	b2 = serialize(&img);
	cr_assert_eq(pwrite(fd, b2.p, b2.len, 0), (ssize_t)b2.len);
	for (int threads = -1; threads <= 3; threads++) {
		for (int k = 0; k < (threads > 0 ? 20 : 1); k++) {
			memset(m.mem, 0xa5, p.mem_bytes);
			cr_assert_eq(read_into(fd, &m, threads, &st, &err), 0, "threads %d: %s", threads,
				     sr_error_format(&err, msg, sizeof(msg)));
			cr_assert_eq(st.buffered, threads < 0 ? 3 : 0);
			for (uint64_t pfn = 0; pfn < m.pages; pfn++)
				cr_assert(!memcmp(m.mem + pfn * SR_PAGE_SIZE, want + pfn * SR_PAGE_SIZE,
						  SR_PAGE_SIZE),
					  "threads %d, read %d: pfn 0x%llx is not the later copy",
					  threads, k, (unsigned long long)pfn);
		}
	}
	free(b.p);
	free(b2.p);
	free(want);
	free(m.mem);
	close(fd);
}

Test(placed, a_pfn_twice_in_a_round_raw_then_raw_later_wins)
{
	later_copy_wins(SR_COMPRESS_NONE, 0, SR_PAGE_RAW);
}

Test(placed, a_pfn_twice_in_a_round_lz4_then_lz4_later_wins)
{
	later_copy_wins(SR_COMPRESS_LZ4, 100, SR_PAGE_LZ4);
}

Test(placed, a_pfn_twice_in_a_round_raw_then_lz4_later_wins)
{
	later_copy_wins(SR_COMPRESS_NONE, 0, SR_PAGE_LZ4);
}

Test(placed, a_pfn_twice_in_a_round_lz4_then_raw_later_wins)
{
	later_copy_wins(SR_COMPRESS_LZ4, 100, SR_PAGE_RAW);
}

Test(placed, a_pfn_twice_in_a_round_data_then_zero_later_wins)
{
	later_copy_wins(SR_COMPRESS_LZ4, 50, SR_PAGE_ZERO);
}

Test(placed, works_through_a_pipe_with_threads)
{
	const struct sr_gen_params *p = &placed_params;
	uint64_t pages = p->mem_bytes / SR_PAGE_SIZE;
	struct sink_mem m = { malloc(p->mem_bytes), pages, 0 };
	struct sink_mem want = { malloc(p->mem_bytes), pages, 0 };
	struct sr_reader_stats st;
	struct sr_error err;
	struct buf b = gen(p);
	char msg[512];
	int pfd[2], status, fd = mem_fd();
	pid_t pid;

	/* What the buffered path decodes from the same image. */
	cr_assert_eq(pwrite(fd, b.p, b.len, 0), (ssize_t)b.len);
	memset(want.mem, 0xa5, p->mem_bytes);
	cr_assert_eq(read_into(fd, &want, -1, NULL, &err), 0, "%s",
		     sr_error_format(&err, msg, sizeof(msg)));
	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		_exit(sr_gen_image(pfd[1], p, &err) ? 1 : 0);
	}
	close(pfd[1]);
	memset(m.mem, 0x5a, p->mem_bytes);
	cr_assert_eq(read_into(pfd[0], &m, 2, &st, &err), 0, "%s",
		     sr_error_format(&err, msg, sizeof(msg)));
	cr_assert_gt(st.placed, 4);
	cr_assert_eq(st.buffered, 0);
	for (uint64_t i = 0; i < pages; i++)
		cr_assert(!memcmp(m.mem + i * SR_PAGE_SIZE, want.mem + i * SR_PAGE_SIZE, SR_PAGE_SIZE),
			  "pfn 0x%llx differs from the buffered decode", (unsigned long long)i);
	close(pfd[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the writer failed");
	free(m.mem);
	free(want.mem);
	free(b.p);
	close(fd);
}

/* ---------------------------------------------------------- page pipe */

/*
 * Writes the same pages, zero runs and iterations through batches or a pipe
 * of threads workers (threads < 0: batches); returns the stream.
 */
static struct buf pipe_stream(int threads, const uint8_t *mem, unsigned npages,
			      struct sr_batch_stats *st)
{
	struct sr_image_info info = { .creator = "test", .created_ns = 1 };
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = 1,
				     .region_count = 1, .name = "pipe" };
	struct sr_region reg = { 0, (uint64_t)(npages + 5000) * 4096, SR_REGION_F_RAM, 0 };
	struct sr_pipe_opts po = { .mode = SR_COMPRESS_LZ4, .threads = threads > 0 ? threads : 0 };
	struct sr_batch *bt = sr_batch_new(SR_COMPRESS_LZ4, 0);
	struct sr_pipe *p = NULL;
	struct sr_error err;
	struct sr_writer *w;
	char msg[512];
	int fd = mem_fd();
	struct buf out;

	w = sr_writer_open(fd, &info, 0, &err);
	cr_assert(w && bt);
	cr_assert_eq(sr_write_domain(w, &dom, &reg, &err), 0);
	if (threads >= 0)
		cr_assert(p = sr_pipe_new(w, &po, &err), "%s", sr_error_format(&err, msg, sizeof(msg)));
	for (uint32_t it = 0; it < 3; it++) {
		if (p)
			cr_assert_eq(sr_pipe_set_iteration(p, it, &err), 0);
		else
			sr_batch_reset(bt, it);
		for (unsigned i = it; i < npages; i += 1 + it) {
			if (p) {
				cr_assert_eq(sr_pipe_add(p, i, mem + (size_t)i * SR_PAGE_SIZE, &err), 0);
			} else if (sr_batch_add(bt, i, mem + (size_t)i * SR_PAGE_SIZE) == SR_BATCH_MAX_PAGES) {
				cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
			}
			if (i % 997 == 0) {	/* now and then a run beyond the pages */
				if (p) {
					cr_assert_eq(sr_pipe_add_zero_run(p, npages + i, 3, &err), 0);
				} else if (sr_batch_add_zero_run(bt, npages + i, 3) < 0) {
					cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
					cr_assert_gt(sr_batch_add_zero_run(bt, npages + i, 3), 0);
				}
				if (!p && sr_batch_count(bt) == SR_BATCH_MAX_PAGES)
					cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
			}
		}
		if (p)
			cr_assert_eq(sr_pipe_flush(p, &err), 0);
		else
			cr_assert_eq(sr_write_page_batch(w, bt, &err), 0);
	}
	cr_assert_eq(sr_writer_flush(w, &err), 0);
	if (p)
		sr_pipe_stats(p, st);
	else
		sr_batch_stats(bt, st);
	sr_pipe_free(p);
	sr_batch_free(bt);
	sr_writer_free(w);
	out = fd_contents(fd);
	close(fd);
	return out;
}

Test(pipe, writes_what_batches_write_with_any_thread_count)
{
	const unsigned npages = 5000;
	struct sr_gen_params gp = { .seed = 5, .pct_zero = 30, .pct_text = 35 };
	uint8_t *mem = malloc((size_t)npages * SR_PAGE_SIZE);
	struct sr_batch_stats want_st, st;
	struct buf want;

	sr_gen_fill(mem, (uint64_t)npages * SR_PAGE_SIZE, &gp);
	want = pipe_stream(-1, mem, npages, &want_st);
	cr_assert_gt(want_st.lz4, 100);
	cr_assert_gt(want_st.raw, 100);
	for (int threads = 0; threads <= 4; threads++) {
		struct buf got = pipe_stream(threads, mem, npages, &st);

		cr_assert_eq(got.len, want.len, "threads %d: %zu bytes, batches wrote %zu", threads,
			     got.len, want.len);
		cr_assert(!memcmp(got.p, want.p, want.len), "threads %d: the streams differ", threads);
		cr_assert(st.pages == want_st.pages && st.zero == want_st.zero && st.raw == want_st.raw &&
			  st.lz4 == want_st.lz4 && st.data_bytes == want_st.data_bytes,
			  "threads %d: stats differ", threads);
		free(got.p);
	}
	free(want.p);
	free(mem);
}

static int cancel_after_two(void *arg, uint64_t pages, uint64_t offset)
{
	unsigned *n = arg;

	cr_assert_eq(pages, SR_BATCH_MAX_PAGES);
	cr_assert_gt(offset, 0);
	return ++*n >= 2;
}

/* What is pending: the pages added and not yet written, the filling batch's included. */
Test(pipe, pending_pages_count_the_filling_batch)
{
	struct sr_image_info info = { .creator = "test" };
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = 1,
				     .region_count = 1, .name = "pending" };
	struct sr_region reg = { 0, 4096 * 4096, SR_REGION_F_RAM, 0 };
	struct sr_pipe_opts po = { .mode = SR_COMPRESS_LZ4 };
	uint8_t page[SR_PAGE_SIZE];
	struct sr_error err;
	struct sr_writer *w;
	struct sr_pipe *p;
	int fd = mem_fd();

	memset(page, 7, sizeof(page));
	w = sr_writer_open(fd, &info, 0, &err);
	cr_assert(w);
	cr_assert_eq(sr_write_domain(w, &dom, &reg, &err), 0);
	p = sr_pipe_new(w, &po, &err);		/* no workers: a full batch is written at once */
	cr_assert(p);
	cr_assert_eq(sr_pipe_pending_pages(p), 0);
	for (unsigned pfn = 0; pfn < 1500; pfn++)
		cr_assert_eq(sr_pipe_add(p, pfn, page, &err), 0);
	cr_assert_eq(sr_pipe_pending_pages(p), 1500 - SR_BATCH_MAX_PAGES);
	cr_assert_eq(sr_pipe_flush(p, &err), 0);
	cr_assert_eq(sr_pipe_pending_pages(p), 0);
	sr_pipe_free(p);
	sr_writer_free(w);
	close(fd);
}

/* A zero run that fills a batch to the last descriptor: the next page starts a new batch. */
Test(pipe, a_zero_run_that_fills_a_batch_hands_it_on)
{
	struct sr_image_info info = { .creator = "test" };
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = 1,
				     .region_count = 1, .name = "fill" };
	struct sr_region reg = { 0, 4096 * 4096, SR_REGION_F_RAM, 0 };
	uint8_t page[SR_PAGE_SIZE], seen[2048] = { 0 };
	struct sr_reader *r;
	struct sr_record rec;
	struct sr_error err;
	struct sr_writer *w;
	struct sr_pipe *p;
	char msg[512];
	int fd = mem_fd(), rc;

	for (int threads = 0; threads <= 2; threads += 2) {
		struct sr_pipe_opts po = { .mode = SR_COMPRESS_LZ4, .threads = threads };

		memset(page, 9, sizeof(page));
		cr_assert_eq(ftruncate(fd, 0), 0);
		cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
		w = sr_writer_open(fd, &info, 0, &err);
		cr_assert(w);
		cr_assert_eq(sr_write_domain(w, &dom, &reg, &err), 0);
		p = sr_pipe_new(w, &po, &err);
		cr_assert(p);
		for (unsigned pfn = 0; pfn < SR_BATCH_MAX_PAGES - 1; pfn++)
			cr_assert_eq(sr_pipe_add(p, pfn, page, &err), 0);
		cr_assert_eq(sr_pipe_add_zero_run(p, SR_BATCH_MAX_PAGES - 1, 5, &err), 0);
		/* Handed on at once: with no workers, written; nothing left pending (mutant P05). */
		if (!threads)
			cr_assert_eq(sr_pipe_pending_pages(p), 0, "%llu pages still pending",
				     (unsigned long long)sr_pipe_pending_pages(p));
		cr_assert_eq(sr_pipe_add(p, SR_BATCH_MAX_PAGES + 4, page, &err), 0);
		cr_assert_eq(sr_pipe_flush(p, &err), 0);
		sr_pipe_free(p);
		cr_assert_eq(sr_writer_flush(w, &err), 0);
		sr_writer_free(w);

		/* Every pfn, 0 .. 1028, is in the stream once. */
		memset(seen, 0, sizeof(seen));
		cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
		r = sr_reader_open(fd, &err);
		cr_assert(r);
		while ((rc = sr_reader_next(r, &rec, &err)) > 0) {
			struct sr_page_iter it;
			const struct sr_page_desc *d;

			if (rec.type != SR_REC_PAGE_DATA)
				continue;
			sr_page_iter_init(&rec, &it);
			while (sr_page_iter_next(&it, &d, page, &err) == 1)
				for (uint64_t k = 0; k < (d->enc == SR_PAGE_ZERO_RUN ? d->length : 1); k++)
					seen[d->pfn + k]++;
		}
		cr_assert_eq(rc, -1, "a stream without END must end in an error");
		cr_assert_eq(err.code, SR_E_MISSING, "%s", sr_error_format(&err, msg, sizeof(msg)));
		sr_reader_free(r);
		for (unsigned pfn = 0; pfn <= SR_BATCH_MAX_PAGES + 4; pfn++)
			cr_assert_eq(seen[pfn], 1, "%d workers: pfn %u in the stream %u times", threads, pfn,
				     seen[pfn]);
	}
	close(fd);
}

/* A pool job is done once it has run, not before: one held in its function is not (mutant O05). */
static int pool_gate[2];

static void held_job(struct sr_pool_job *j)
{
	char c;

	(void)j;
	while (read(pool_gate[0], &c, 1) < 0 && errno == EINTR)
		;
}

Test(pipe, a_pool_job_is_done_only_once_it_has_run)
{
	struct sr_pool *p = sr_pool_new(1, NULL, NULL);
	struct sr_pool_job a = { .fn = held_job }, b = { .fn = held_job };

	cr_assert(p);
	cr_assert_eq(pipe(pool_gate), 0);
	sr_pool_submit(p, &a);
	sr_pool_submit(p, &b);
	cr_assert(!sr_pool_done(p, &a), "a job held in its function is reported done");
	cr_assert(!sr_pool_done(p, &b), "a queued job is reported done");
	cr_assert_eq(write(pool_gate[1], "a", 1), 1);
	sr_pool_wait(p, &a);
	cr_assert(sr_pool_done(p, &a));
	cr_assert(!sr_pool_done(p, &b), "the next job, held in its turn, is reported done");
	cr_assert_eq(write(pool_gate[1], "b", 1), 1);
	sr_pool_wait(p, &b);
	cr_assert(sr_pool_done(p, &b));
	sr_pool_free(p);
	close(pool_gate[0]);
	close(pool_gate[1]);
}

Test(pipe, written_callback_sees_each_batch_and_can_cancel)
{
	struct sr_image_info info = { .creator = "test" };
	unsigned calls = 0;
	struct sr_pipe_opts po = { .mode = SR_COMPRESS_NONE, .threads = 2,
				   .written = cancel_after_two, .arg = &calls };
	uint8_t page[SR_PAGE_SIZE];
	struct sr_error err;
	struct sr_writer *w;
	struct sr_pipe *p;
	int fd = mem_fd(), rc = 0;

	memset(page, 7, sizeof(page));
	w = sr_writer_open(fd, &info, 0, &err);
	p = sr_pipe_new(w, &po, &err);
	cr_assert(w && p);
	for (unsigned i = 0; i < 10 * SR_BATCH_MAX_PAGES && !rc; i++)
		rc = sr_pipe_add(p, i, page, &err);
	if (!rc)
		rc = sr_pipe_flush(p, &err);
	cr_assert_eq(rc, -1, "a cancel from the callback fails the pipe");
	cr_assert_eq(calls, 2);
	cr_assert_eq(sr_pipe_add(p, 0, page, &err), -1, "a failed pipe takes no more");
	sr_pipe_free(p);
	sr_writer_free(w);
	close(fd);
}

/* ------------------------------------------------- every page accounted for */

/* A 1024-page image, with pages [first, first + n) in no round (and two more rounds). */
static struct buf lacking(uint64_t first, uint64_t n, unsigned iterations)
{
	struct sr_gen_params p = { .mem_bytes = 1024 * 4096, .vcpus = 2, .iterations = iterations,
				   .dirty_pages = 300, .compress = SR_COMPRESS_LZ4, .seed = 3,
				   .pct_zero = 20, .pct_text = 40, .pct_hole = 10,
				   .skip_first = first, .skip_pages = n };

	return gen(&p);
}

/* Reads b every way (buffered, placed with 0..3 workers, stop-at-END) and expects err. */
static void expect_uncovered(const struct buf *b, const char *pfn_text, uint64_t missing)
{
	struct sink_mem m = { malloc(1024 * 4096), 1024, 0 };
	char want[128], msg[512];
	int fd = mem_fd();

	snprintf(want, sizeof(want), "pfn %s is in no PAGE_DATA record (%llu of the domain's",
		 pfn_text, (unsigned long long)missing);
	cr_assert_eq(pwrite(fd, b->p, b->len, 0), (ssize_t)b->len);
	for (int threads = -1; threads <= 4; threads++) {
		struct sr_error err = { 0 };
		int rc;

		if (threads == 4) {		/* a migration's stream: END is the last thing read */
			struct sr_reader *r;
			struct sr_record rec;

			cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
			r = sr_reader_open(fd, &err);
			cr_assert(r);
			sr_reader_stop_at_end(r);
			while ((rc = sr_reader_next(r, &rec, &err)) > 0)
				;
			sr_reader_free(r);
		} else {
			rc = read_into(fd, &m, threads, NULL, &err);
		}
		cr_assert_eq(rc, -1, "threads %d: an image lacking pages accepted", threads);
		cr_assert(err.code == SR_E_MISSING && err.rec_name && !strcmp(err.rec_name, "END") &&
			  strstr(err.msg, want), "threads %d: want \"%s\", got \"%s\"", threads, want,
			  sr_error_format(&err, msg, sizeof(msg)));
	}
	free(m.mem);
	close(fd);
}

Test(coverage, a_page_in_no_round_is_refused_naming_it)
{
	struct buf b = lacking(0x123, 1, 2);

	expect_uncovered(&b, "0x123", 1);
	free(b.p);
	b = lacking(0x200, 300, 2);		/* across record boundaries, with later rounds */
	expect_uncovered(&b, "0x200", 300);
	free(b.p);
	b = lacking(0, 1, 0);			/* the first page, a cold image */
	expect_uncovered(&b, "0x0", 1);
	free(b.p);
}

/* A page covered only by a later record, a ZERO page or a zero run counts. */
Test(coverage, any_record_zero_page_or_run_covers_a_page)
{
	for (unsigned enc = 0; enc < 3; enc++) {
		static const unsigned encs[] = { SR_PAGE_RAW, SR_PAGE_ZERO, SR_PAGE_LZ4 };
		uint8_t *scratch = malloc(1024 * 4096);
		struct buf b = lacking(0x40, 8, 0), b2;
		struct sr_error err;
		char msg[512];
		IMAGE img;
		int i;

		expect_reject(&b, SR_E_MISSING, "pfns 0x40-0x47 in no record");
		parse(&b, &img);
		i = find_rec(&img, SR_REC_PAGE_DATA, 0);
		duplicate_record(&img, i);
		free(img.rec[i + 1].body);
		img.rec[i + 1].body = page_record(0x40, 8, encs[enc], scratch, &img.rec[i + 1].len);
		b2 = serialize(&img);
		cr_assert_eq(verify_bytes(b2.p, b2.len, &err), 0, "%s: %s", sr_page_enc_name(encs[enc]),
			     sr_error_format(&err, msg, sizeof(msg)));
		free(b.p);
		free(b2.p);
		free(scratch);
	}
}

/* A second region no record touches: its first pfn is named. */
Test(coverage, a_region_no_record_covers)
{
	IMAGE img = base_image();
	int i = find_rec(&img, SR_REC_DOMAIN, 0);
	struct sr_rec_domain *d;
	struct sr_region extra = { 0x100000000ull, 16 * 4096, SR_REGION_F_RAM, 7 };
	struct buf b;

	img.rec[i].body = realloc(img.rec[i].body, img.rec[i].len + sizeof(extra));
	memcpy(img.rec[i].body + img.rec[i].len, &extra, sizeof(extra));
	img.rec[i].len += sizeof(extra);
	d = (void *)img.rec[i].body;
	d->region_count++;
	b = serialize(&img);
	expect_reject(&b, SR_E_MISSING, "a region in no record");
	expect_uncovered(&b, "0x100000", 16);
	free(b.p);
}

Test(sr_dump, verify_refuses_an_image_lacking_pages)
{
	struct buf b = lacking(0x300, 2, 1);

	cr_assert_eq(run_dump("--verify", b.p, b.len), 1, "sr-dump --verify accepted it");
	free(b.p);
}

/* The x86 layout (xc/x86_layout.h): where RAM goes, and which old images restore. */
Test(layout, ram_splits_at_3_gib_and_goes_on_at_4_gib)
{
	cr_assert_eq(x86_low_ram(64ull << 20), 64ull << 20);
	cr_assert_eq(x86_high_ram(64ull << 20), 0);
	cr_assert_eq(x86_low_ram(3072ull << 20), 3072ull << 20);
	cr_assert_eq(x86_high_ram(3072ull << 20), 0, "3 GiB: still one region");
	cr_assert_eq(x86_low_ram(6144ull << 20), X86_LOW_RAM_MAX);
	cr_assert_eq(x86_high_ram(6144ull << 20), 3072ull << 20);
	/* Both regions of any size stay clear of the fixed pages. */
	for (uint64_t mib = 1; mib <= (1ull << 20); mib = mib * 3 + 1) {
		uint64_t b = mib << 20;

		cr_assert(!x86_covers_fixed(0, x86_low_ram(b)), "%llu MiB low", (unsigned long long)mib);
		cr_assert(!x86_high_ram(b) || !x86_covers_fixed(X86_HIGH_RAM_START, x86_high_ram(b)));
	}
	cr_assert(X86_MMIO_START >= X86_LOW_RAM_MAX && X86_MMIO_END <= X86_FIXED_START);
	cr_assert(X86_IOAPIC_ADDR >= X86_FIXED_START && X86_LAPIC_ADDR >= X86_FIXED_START &&
		  X86_IDENTITY_MAP_ADDR >= X86_FIXED_START && X86_TSS_ADDR + 3 * 4096 <= X86_HOLE_END);
}

Test(layout, old_one_region_images_restore_up_to_4076_mib_only)
{
	/* The layout before the hole: one region from 0 of the whole RAM. */
	cr_assert(!x86_covers_fixed(0, 3584ull << 20), "3.5 GiB ran and restores");
	cr_assert(!x86_covers_fixed(0, 4076ull << 20), "4076 MiB ends at the IOAPIC");
	cr_assert(x86_covers_fixed(0, (4076ull << 20) + 4096), "one page over the IOAPIC");
	cr_assert(x86_covers_fixed(0, 4200ull << 20), "the issue's 4200 MiB guest");
	cr_assert(x86_covers_fixed(X86_TSS_ADDR, 4096));
	cr_assert(x86_covers_fixed(X86_HOLE_END - 4096, 8192));
	cr_assert(!x86_covers_fixed(X86_HOLE_END, 4096));
	cr_assert(!x86_covers_fixed(X86_MMIO_START, X86_FIXED_START - X86_MMIO_START));
}

/* The holed image with a second region of 1 GiB at 4 GiB, as a 3 GiB + 1 GiB guest has. */
static struct image two_region_image(void)
{
	struct image img = holed_image();
	int i = find_rec(&img, SR_REC_DOMAIN, 0);
	struct sr_rec_domain *dom;
	struct sr_region *regs;

	img.rec[i].body = realloc(img.rec[i].body, img.rec[i].len + sizeof(*regs));
	cr_assert(img.rec[i].body);
	img.rec[i].len += sizeof(*regs);
	dom = (void *)img.rec[i].body;
	regs = (void *)(dom + 1);
	dom->region_count = 2;
	regs[1] = (struct sr_region){ .gpa = X86_HIGH_RAM_START, .size = 1ull << 30,
				      .flags = SR_REGION_F_RAM, .slot = 1 };
	return img;
}

Test(layout, a_second_region_at_4_gib_holds_pages_and_runs_of_its_own)
{
	IMAGE img = two_region_image();
	int i = find_rec(&img, SR_REC_PAGE_DATA, 1);	/* round 0's runs: pfn 32 and 48, 16 each */
	struct sr_page_desc *d = (void *)(img.rec[i].body + 8);
	struct sr_error err;
	struct buf b;

	cr_assert_eq(d[1].enc, SR_PAGE_ZERO_RUN);
	d[1].pfn = X86_HIGH_RAM_START / SR_PAGE_SIZE;
	d[1].length = (1u << 30) / SR_PAGE_SIZE;	/* the whole high region in one run */
	/*
	 * The run is accepted; the pages of 48-63 that no later round sends are
	 * then refused at END by the coverage rule (a low pfn, not a high one).
	 */
	b = serialize(&img);
	cr_assert_neq(verify_bytes(b.p, b.len, &err), 0, "pfns 48-63 sent by no record");
	cr_assert(err.code == SR_E_MISSING && strstr(err.msg, "pfn 0x3") &&
		  strstr(err.msg, " is in no PAGE_DATA record"),
		  "a run over all of the region at 4 GiB: %s", err.msg);
	free(b.p);
	d[1].length++;
	expect_reject_img(&img, SR_E_RANGE, "a run one page past the region at 4 GiB");
	d[1].pfn = 48;
	d[1].length = X86_HIGH_RAM_START / SR_PAGE_SIZE - 48 + 1;
	expect_reject_img(&img, SR_E_RANGE, "a run from low RAM across the hole into high RAM");
	d[1].pfn = X86_FIXED_START / SR_PAGE_SIZE;
	d[1].length = 1;
	expect_reject_img(&img, SR_E_RANGE, "a page in the hole");
}

/*
 * Zero runs across whole blocks of the reader's coverage map (4096 pages a
 * block) count, and a page left out beside them is still named; a record of
 * many runs over a large region costs little (the map skips full blocks).
 */
Test(coverage, runs_over_whole_blocks)
{
	struct sr_gen_params p = { .mem_bytes = 20000ull * 4096, .vcpus = 1, .iterations = 1,
				   .dirty_pages = 50, .compress = SR_COMPRESS_LZ4, .seed = 5,
				   .pct_zero = 20, .pct_text = 40, .pct_hole = 60 };
	struct sr_error err;
	char msg[512];
	struct buf b = gen(&p);

	cr_assert_eq(verify_bytes(b.p, b.len, &err), 0, "complete: %s",
		     sr_error_format(&err, msg, sizeof(msg)));
	free(b.p);
	for (uint64_t skip = 4095; skip <= 4097; skip++) {	/* around a block's edge */
		char want[64];

		p.skip_first = skip;
		p.skip_pages = 1;
		b = gen(&p);
		snprintf(want, sizeof(want), "pfn 0x%llx is in no PAGE_DATA record (1 of",
			 (unsigned long long)skip);
		cr_assert_neq(verify_bytes(b.p, b.len, &err), 0, "pfn %llu left out, accepted",
			      (unsigned long long)skip);
		cr_assert(err.code == SR_E_MISSING && strstr(err.msg, want), "want \"%s\", got \"%s\"",
			  want, sr_error_format(&err, msg, sizeof(msg)));
		free(b.p);
	}
}

/* ---------------------------------------------------- virtio devices and disks */

static const struct sr_gen_params with_devices = {
	.mem_bytes = 64 * 4096, .vcpus = 1, .iterations = 0, .compress = SR_COMPRESS_LZ4,
	.seed = 11, .pct_zero = 30, .pct_text = 40, .blk = 2, .rng = 1,
};

static struct image device_image(unsigned broken)
{
	struct sr_gen_params p = with_devices;
	struct buf b;
	struct image img;

	p.broken = broken;
	b = gen(&p);
	parse(&b, &img);
	free(b.p);
	return img;
}

/* The state of virtio DEVICE record i of img. */
static void view_virtio(const struct image *img, int i, struct sr_virtio_state *s)
{
	struct sr_record rec = { .type = img->rec[i].type, .length = img->rec[i].len,
				 .body = img->rec[i].body, .index = i };
	struct sr_error err;

	cr_assert_eq(sr_virtio_view(&rec, s, &err), 0, "record %d: %s", i, err.msg);
}

/* Replaces DEVICE record i's state with s, encoded (the name and version stay). */
static void put_virtio(struct image *img, int i, const struct sr_virtio_state *s)
{
	uint8_t buf[SR_VIRTIO_DATA_MAX];
	struct sr_error err;
	ssize_t n = sr_virtio_encode(s, buf, sizeof(buf), &err);

	cr_assert_geq(n, 0, "%s", err.msg);
	img->rec[i].body = realloc(img->rec[i].body, sizeof(struct sr_rec_device) + n);
	memcpy(img->rec[i].body + sizeof(struct sr_rec_device), buf, n);
	img->rec[i].len = sizeof(struct sr_rec_device) + n;
}

/* The image is refused at record index with code and a message containing what. */
static void expect_refused_at(const struct image *img, enum sr_err_code code, int index,
			      const char *what)
{
	struct buf b = serialize(img);
	struct sr_error err = { 0 };
	char msg[512];

	cr_assert_eq(verify_bytes(b.p, b.len, &err), -1, "%s: image accepted", what);
	sr_error_format(&err, msg, sizeof(msg));
	cr_assert_eq(err.code, code, "%s: expected \"%s\", got %s", what, sr_strerror(code), msg);
	cr_assert_eq(err.index, (uint64_t)index, "%s: refused at record %lld, not %d: %s", what,
		     (long long)err.index, index, msg);
	cr_assert(strstr(err.msg, what), "message \"%s\" lacks \"%s\"", msg, what);
	free(b.p);
}

static void expect_accepted(const struct image *img, const char *what)
{
	struct buf b = serialize(img);
	struct sr_error err = { 0 };
	char msg[512];

	cr_assert_eq(verify_bytes(b.p, b.len, &err), 0, "%s: refused: %s", what,
		     sr_error_format(&err, msg, sizeof(msg)));
	free(b.p);
}

Test(virtio, generated_devices_verify_and_decode_back_to_their_bytes)
{
	IMAGE img = device_image(SR_GEN_BREAK_NONE);
	struct sr_virtio_state s;
	struct sr_disk_info *d = malloc(sizeof(*d));
	uint8_t buf[SR_VIRTIO_DATA_MAX];
	struct sr_error err;

	expect_accepted(&img, "the generated image");
	cr_assert_eq(find_rec_or_none(&img, SR_REC_DISK) + 2, find_rec(&img, SR_REC_DEVICE, 1),
		     "two DISKs, then the virtio devices");
	for (unsigned k = 1; k <= 3; k++) {
		int i = find_rec(&img, SR_REC_DEVICE, k);
		ssize_t n;

		view_virtio(&img, i, &s);
		cr_assert_eq(s.device_id, k < 3 ? SR_VIRTIO_ID_BLOCK : SR_VIRTIO_ID_ENTROPY);
		cr_assert_eq(s.major, 1);
		cr_assert_eq(s.tr.num_queues, 1);
		cr_assert_eq(s.q[0].size, 256);
		cr_assert_eq(s.pci.slot, 1 + k);
		n = sr_virtio_encode(&s, buf, sizeof(buf), &err);
		cr_assert_eq((size_t)n, img.rec[i].len - sizeof(struct sr_rec_device));
		cr_assert_eq(memcmp(buf, img.rec[i].body + sizeof(struct sr_rec_device), n), 0,
			     "device %u does not encode back to its bytes", k);
	}
	{
		int i = find_rec(&img, SR_REC_DISK, 1);
		struct sr_record rec = { .type = SR_REC_DISK, .length = img.rec[i].len,
					 .body = img.rec[i].body };

		sr_disk_view(&rec, d);
		cr_assert_eq(d->disk, 1);
		cr_assert_str_eq(d->path, "/var/lib/sr/disk1.img");
		cr_assert_eq(d->id.size, 64ull << 20);
		cr_assert_eq(d->id.hash_blocks, SR_DISK_SAMPLE_BLOCKS);
		cr_assert_str_eq(d->snap_path, "");
	}
	free(d);
}

Test(virtio, every_broken_device_is_refused_naming_record_and_field)
{
	static const struct {
		unsigned broken;
		enum sr_err_code code;
		int device;		/* nth DEVICE record refused; -1: the first DISK */
		const char *what;
	} cases[] = {
		{ SR_GEN_BREAK_RING_OUTSIDE, SR_E_RANGE, 1,
		  "virtio-blk 0: body byte 120: queue 0 used ring 0x3fc00+2054 is outside guest RAM" },
		{ SR_GEN_BREAK_QSIZE3, SR_E_RANGE, 1,
		  "body byte 128: queue 0 size 3 is not a power of two" },
		{ SR_GEN_BREAK_INDEX, SR_E_RANGE, 1,
		  "body byte 132: queue 0 last_avail_idx 1257 is 257 entries past last_used_idx "
		  "1000, beyond the ring of 256" },
		{ SR_GEN_BREAK_UNALIGNED, SR_E_RANGE, 1,
		  "body byte 104: queue 0 descriptor table at 0x10008 is not aligned to 16" },
		{ SR_GEN_BREAK_INFLIGHT, SR_E_RANGE, 1, "queue 0 has 1 requests in flight" },
		{ SR_GEN_BREAK_FEATURE, SR_E_RANGE, 1, "body byte 72: driver_features bit 28 was not offered" },
		{ SR_GEN_BREAK_UNKNOWN_BIT, SR_E_RANGE, 1, "body byte 64: device_features bit 50" },
		{ SR_GEN_BREAK_SLOT, SR_E_DUPLICATE, 2, "virtio-blk 1: body byte 187: PCI slot 3 taken" },
		{ SR_GEN_BREAK_NO_DISK, SR_E_SEQUENCE, 1, "disk 9: no DISK record before this device" },
		{ SR_GEN_BREAK_VERSION, SR_E_VERSION, 1, "body byte 32: state version 2.0" },
		{ SR_GEN_BREAK_SECTION, SR_E_TYPE, 1, "unknown mandatory kind 0x777" },
		{ SR_GEN_BREAK_DISK_PATH, SR_E_RANGE, -1, "disk 0: body byte 120: path is not absolute" },
		{ SR_GEN_BREAK_SNAP_RO, SR_E_RANGE, -1, "disk 0: body byte 4: SNAPSHOT on a read-only disk" },
		{ SR_GEN_BREAK_SNAP_SIZE, SR_E_RANGE, -1,
		  "disk 0: body byte 72: snap_id size 67104768, the disk's 67108864: not a copy of it" },
		{ SR_GEN_BREAK_SNAP_HASH, SR_E_RANGE, -1, "disk 0: body byte 104: snap_id hash 0x" },
		{ SR_GEN_BREAK_SNAP_SAMPLE, SR_E_RANGE, -1,
		  "disk 0: body byte 112: snap_id hashed as 32 x 4096 bytes, id as 64 x 4096" },
		{ SR_GEN_BREAK_SNAP_SELF, SR_E_RANGE, -1, "disk 0: body byte 141: snap_path is the disk's own path" },
	};
	IMAGE good = device_image(SR_GEN_BREAK_NONE);

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct sr_gen_params p = with_devices;
		int at = cases[c].device < 0 ? find_rec(&good, SR_REC_DISK, 0) :
			 find_rec(&good, SR_REC_DEVICE, cases[c].device);
		struct sr_error err = { 0 };
		struct buf b;
		char msg[512];

		p.broken = cases[c].broken;
		b = gen(&p);
		cr_assert_eq(verify_bytes(b.p, b.len, &err), -1, "%s: accepted", cases[c].what);
		sr_error_format(&err, msg, sizeof(msg));
		cr_assert_eq(err.code, cases[c].code, "%s: got %s", cases[c].what, msg);
		cr_assert_eq(err.index, (uint64_t)at, "%s: at record %lld", cases[c].what,
			     (long long)err.index);
		cr_assert_str_eq(err.rec_name, cases[c].device < 0 ? "DISK" : "DEVICE");
		cr_assert(strstr(err.msg, cases[c].what), "\"%s\" lacks \"%s\"", msg, cases[c].what);
		free(b.p);
	}
}

Test(virtio, a_disk_snapshot_verifies_and_reads_back)
{
	struct sr_gen_params p = with_devices;
	struct sr_disk_info *d = malloc(sizeof(*d));
	struct buf b;
	IMAGE img;

	p.snapshot = true;
	b = gen(&p);
	parse(&b, &img);
	free(b.p);
	expect_accepted(&img, "disks with snapshots");
	for (unsigned k = 0; k < 2; k++) {
		int i = find_rec(&img, SR_REC_DISK, k);
		struct sr_record rec = { .type = SR_REC_DISK, .length = img.rec[i].len,
					 .body = img.rec[i].body };
		char want[64];

		sr_disk_view(&rec, d);
		snprintf(want, sizeof(want), "/var/lib/sr/ckpt.sr.disk%u", k);
		cr_assert_eq(d->flags, SR_DISK_F_SNAPSHOT);
		cr_assert_eq(d->snap_method, SR_SNAP_REFLINK);
		cr_assert_eq(d->snap_ns, 1234567);
		cr_assert_str_eq(d->snap_path, want);
		cr_assert_eq(d->snap_id.hash, d->id.hash);
		cr_assert_eq(d->snap_id.ino, d->id.ino + 100);
	}
	free(d);
}

Test(virtio, unknown_optional_section_and_newer_minor_are_accepted)
{
	IMAGE img = device_image(SR_GEN_BREAK_OPTIONAL);
	int i = find_rec(&img, SR_REC_DEVICE, 1);
	struct sr_virtio_state s;

	expect_accepted(&img, "an unknown optional section");
	view_virtio(&img, i, &s);
	cr_assert_eq(s.skipped, 1);
	/* A newer minor adds sections only: 1.7 reads as 1.0 does. */
	((struct sr_rec_device *)img.rec[i].body)->version = 1u << 16 | 7;
	expect_accepted(&img, "state version 1.7");
	view_virtio(&img, i, &s);
	cr_assert_eq(s.minor, 7);
	((struct sr_rec_device *)img.rec[i].body)->version = 0;
	expect_refused_at(&img, SR_E_VERSION, i, "state version 0.0, this reader reads 1.x");
}

/* Edits one field of virtio DEVICE nth through its decoded state, then expects what. */
#define EDIT_REFUSED(nth, code, what, ...)						\
	do {										\
		IMAGE img_ = device_image(SR_GEN_BREAK_NONE);				\
		int i_ = find_rec(&img_, SR_REC_DEVICE, nth);				\
		struct sr_virtio_state s_, *s = &s_;					\
											\
		view_virtio(&img_, i_, s);						\
		{ __VA_ARGS__; }							\
		put_virtio(&img_, i_, s);						\
		expect_refused_at(&img_, code, i_, what);				\
	} while (0)

Test(virtio, queue_transport_and_pci_fields)
{
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 is not ready but has been used", s->q[0].ready = 0);
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 ready before FEATURES_OK",
		     s->tr.status = SR_VIRTIO_S_ACKNOWLEDGE | SR_VIRTIO_S_DRIVER);
	EDIT_REFUSED(1, SR_E_RANGE, "DRIVER_OK without FEATURES_OK",
		     s->tr.status = SR_VIRTIO_S_ACKNOWLEDGE | SR_VIRTIO_S_DRIVER | SR_VIRTIO_S_DRIVER_OK);
	EDIT_REFUSED(1, SR_E_RANGE, "status 0x1f has unknown bits", s->tr.status |= 0x10);
	EDIT_REFUSED(1, SR_E_RANGE, "isr 0x4 has unknown bits", s->tr.isr = 4);
	EDIT_REFUSED(1, SR_E_RANGE, "device_features lack VERSION_1",
		     s->tr.device_features &= ~(1ull << SR_VIRTIO_F_VERSION_1);
		     s->tr.driver_features &= ~(1ull << SR_VIRTIO_F_VERSION_1));
	EDIT_REFUSED(1, SR_E_RANGE, "device_features bit 34", s->tr.device_features |= 1ull << 34);
	EDIT_REFUSED(3, SR_E_RANGE, "device_features bit 9 is not a virtio-rng feature",
		     s->tr.device_features |= 1ull << 9);
	EDIT_REFUSED(1, SR_E_RANGE, "2 queues without MQ offered",
		     s->tr.num_queues = 2; s->q[1] = s->q[0]; s->q[1].ready = 0;
		     s->q[1].last_avail_idx = s->q[1].last_used_idx = s->q[1].signalled_used = 0;
		     s->q[1].avail_event = 0; s->q[1].flags = 0);
	EDIT_REFUSED(3, SR_E_RANGE, "num_queues 2, a virtio-rng has at most 1",
		     s->tr.num_queues = 2; s->q[1] = s->q[0]);
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 max_size 0 is not a power of two", s->q[0].max_size = 0);
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 size 512 is not a power of two in 1..256",
		     s->q[0].size = 512);
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 available ring at 0x11001 is not aligned to 2",
		     s->q[0].avail += 1);
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 used ring at 0x12002 is not aligned to 4",
		     s->q[0].used += 2);
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 available ring overlaps its descriptor table",
		     s->q[0].avail = s->q[0].desc + 4094);
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 descriptor table 0xffffffffffff0000+4096 is outside",
		     s->q[0].desc = 0xffffffffffff0000ull);
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0: SIGNALLED without EVENT_IDX negotiated",
		     s->tr.driver_features &= ~(1ull << SR_VIRTIO_F_EVENT_IDX));
	EDIT_REFUSED(1, SR_E_RANGE, "queue 0 used_flags 0x2", s->q[0].used_flags = 2);
	EDIT_REFUSED(1, SR_E_RANGE, "queue msix_vector 0x0: no MSI-X capability",
		     s->q[0].msix_vector = 0);
	EDIT_REFUSED(1, SR_E_RANGE, "config_msix_vector 0x2: beyond the MSI-X table",
		     s->has_msix = true; s->msix.table_size = 2; s->tr.config_msix_vector = 2);
	EDIT_REFUSED(1, SR_E_RANGE, "MSIX pending bit beyond the 2 vectors",
		     s->has_msix = true; s->msix.table_size = 2; s->msix_pba = 4);
	EDIT_REFUSED(1, SR_E_RANGE, "MSIX table_size 0", s->has_msix = true);
	EDIT_REFUSED(1, SR_E_RANGE, "PCI slot 0, not 1..31", s->pci.slot = 0);
	EDIT_REFUSED(1, SR_E_RANGE, "PCI command 0x8007 has unknown bits", s->pci.command |= 0x8000);
	EDIT_REFUSED(1, SR_E_RANGE, "only bus 0, function 0", s->pci.function = 1);
	EDIT_REFUSED(1, SR_E_PADDING, "TRANSPORT rsvd not zero", s->tr.rsvd[3] = 1);
	EDIT_REFUSED(1, SR_E_PADDING, "queue 0 rsvd not zero", s->q[0].rsvd = 1);
}

Test(virtio, blk_against_its_disk)
{
	EDIT_REFUSED(1, SR_E_RANGE, "RO offered but disk 0 is writable",
		     s->tr.device_features |= 1ull << SR_VIRTIO_BLK_F_RO);
	EDIT_REFUSED(1, SR_E_RANGE, "capacity 131073 sectors, disk 0 has 67108864 bytes",
		     s->blk.capacity++; memcpy(s->blk.config, &s->blk.capacity, 8));
	EDIT_REFUSED(1, SR_E_RANGE, "config capacity 131072, BLK capacity 8",
		     s->blk.capacity = 8);
	EDIT_REFUSED(2, SR_E_DUPLICATE, "disk 0 is an earlier device's", s->blk.disk = 0);
	EDIT_REFUSED(1, SR_E_PADDING, "config bytes 60..63 not zero", s->blk.config[62] = 1);
	EDIT_REFUSED(1, SR_E_RANGE, "config writeback 2", s->blk.config[32] = 2);
}

Test(virtio, names_ids_and_framing)
{
	IMAGE img = device_image(SR_GEN_BREAK_NONE);
	int i = find_rec(&img, SR_REC_DEVICE, 3);	/* the virtio-rng */
	struct sr_rec_device *dv = (void *)img.rec[i].body;
	uint8_t *data = img.rec[i].body + sizeof(*dv);
	uint32_t v;

	strcpy(dv->name, "virtio-net");
	expect_refused_at(&img, SR_E_TYPE, i, "unknown virtio device \"virtio-net\"");
	strcpy(dv->name, "virtio-blk");
	expect_refused_at(&img, SR_E_RANGE, i, "body byte 40: device_id 4, a virtio-blk is 2");
	strcpy(dv->name, "virtio-rng");
	v = 0;
	memcpy(data + 4, &v, 4);
	expect_refused_at(&img, SR_E_RANGE, i, "section_count 0, not 1..16");
	v = 4;		/* TRANSPORT, PCI, MSIX and one more */
	memcpy(data + 4, &v, 4);
	expect_refused_at(&img, SR_E_LENGTH, i, "section 3 header runs past the data");
	v = 3;
	memcpy(data + 4, &v, 4);
	data[8] = 1;
	expect_refused_at(&img, SR_E_PADDING, i, "body byte 48: rsvd not zero");
	data[8] = 0;
	v = SR_VSEC_PCI;		/* TRANSPORT relabelled: a second PCI */
	memcpy(data + 16, &v, 4);
	expect_refused_at(&img, SR_E_LENGTH, i, "PCI length 88, not 40");
	v = SR_VSEC_BLK;
	memcpy(data + 16, &v, 4);
	expect_refused_at(&img, SR_E_RANGE, i, "section 0: BLK does not belong in a virtio-rng");
	v = SR_VSEC_TRANSPORT;
	memcpy(data + 16, &v, 4);
	expect_accepted(&img, "the virtio-rng restored");
	img.rec[i].len -= 8;		/* a byte of the last section's padding gone, and more */
	expect_refused_at(&img, SR_E_LENGTH, i, "section 2 length 48 runs past the data");
}

Test(virtio, rings_at_the_edge_of_ram)
{
	static const struct sr_region reg[2] = {
		{ .gpa = 0, .size = 1 << 20, .flags = SR_REGION_F_RAM, .slot = 0 },
		{ .gpa = 4 << 20, .size = 1 << 20, .flags = SR_REGION_F_RAM, .slot = 1 },
	};
	struct sr_device_env env;
	struct sr_virtio_state s;
	struct sr_error err;
	uint8_t buf[SR_VIRTIO_DATA_MAX];
	ssize_t n;

	sr_gen_virtio(&s, SR_VIRTIO_ID_ENTROPY, 0, 5, 0x1000, 0, 0);
	/* The used ring (6 + 8 x 256 bytes) ending exactly where region 0 ends: fine. */
	s.q[0].used = (1 << 20) - 2054 - 2;	/* aligned to 4 */
	n = sr_virtio_encode(&s, buf, sizeof(buf), &err);
	sr_device_env_init(&env, reg, 2);
	cr_assert_eq(sr_device_validate(&env, "virtio-rng", SR_VIRTIO_VERSION, 0, buf, n, NULL,
					NULL, &err), 0, "%s", err.msg);
	cr_assert(env.slots & 1u << 5, "the slot is taken");
	/* Four bytes further it runs into the hole between the regions. */
	s.q[0].used += 4;
	s.pci.slot = 6;
	n = sr_virtio_encode(&s, buf, sizeof(buf), &err);
	cr_assert_eq(sr_device_validate(&env, "virtio-rng", SR_VIRTIO_VERSION, 0, buf, n, NULL,
					NULL, &err), -1);
	cr_assert(strstr(err.msg, "used ring 0xff7fc+2054 is outside guest RAM"), "%s", err.msg);
	cr_assert(!(env.slots & 1u << 6), "a refused device took its slot");
	/* In the second region: fine again. */
	s.q[0].used = (4 << 20) + 0x1000;
	n = sr_virtio_encode(&s, buf, sizeof(buf), &err);
	cr_assert_eq(sr_device_validate(&env, "virtio-rng", SR_VIRTIO_VERSION, 0, buf, n, NULL,
					NULL, &err), 0, "%s", err.msg);
}

/* Edits DISK record nth's fixed part. */
static struct sr_rec_disk *disk_rec(struct image *img, unsigned nth, int *index)
{
	*index = find_rec(img, SR_REC_DISK, nth);
	return (struct sr_rec_disk *)img->rec[*index].body;
}

Test(disk_record, fields)
{
	int i;

#define DISK_REFUSED(code, what, ...)							\
	do {										\
		IMAGE img_ = device_image(SR_GEN_BREAK_NONE);				\
		struct sr_rec_disk *r = disk_rec(&img_, 0, &i);				\
		(void)r;								\
		{ __VA_ARGS__; }							\
		expect_refused_at(&img_, code, i, what);				\
	} while (0)

	DISK_REFUSED(SR_E_RANGE, "disk 0: body byte 4: flags 0x4", r->flags = 4);
	DISK_REFUSED(SR_E_RANGE, "body byte 8: cache 2", r->cache = 2);
	DISK_REFUSED(SR_E_RANGE, "snap_method 1 without SNAPSHOT", r->snap_method = 1);
	DISK_REFUSED(SR_E_RANGE, "snap_method 0 with SNAPSHOT", r->flags |= SR_DISK_F_SNAPSHOT);
	DISK_REFUSED(SR_E_RANGE, "snap_path_len 0 with SNAPSHOT",
		     r->flags |= SR_DISK_F_SNAPSHOT; r->snap_method = SR_SNAP_COPY);
	DISK_REFUSED(SR_E_RANGE, "path_len 0", r->path_len = 0);
	DISK_REFUSED(SR_E_LENGTH, "body of 141 bytes, 140 for paths of 20 and 0", r->path_len--);
	DISK_REFUSED(SR_E_PADDING, "rsvd not zero", r->rsvd = 1);
	DISK_REFUSED(SR_E_RANGE, "snapshot fields set without SNAPSHOT", r->snap_ns = 1);
	DISK_REFUSED(SR_E_RANGE, "snapshot fields set without SNAPSHOT", r->snap_id.ino = 1);
	DISK_REFUSED(SR_E_RANGE, "id hash_block_size 0 with 64 blocks", r->id.hash_block_size = 0);
	DISK_REFUSED(SR_E_RANGE, "id hash_block_size 4096 with 0 blocks", r->id.hash_blocks = 0);
	DISK_REFUSED(SR_E_RANGE, "id hash_block_size 1000 with 64 blocks", r->id.hash_block_size = 1000);
	DISK_REFUSED(SR_E_RANGE, "id hash_blocks 1025, at most 1024", r->id.hash_blocks = 1025);
	DISK_REFUSED(SR_E_RANGE, "body byte 0: index, not 0..15", r->disk = 16);
	DISK_REFUSED(SR_E_RANGE, "path has a NUL byte", img_.rec[i].body[sizeof(*r) + 5] = 0);
	{
		IMAGE img = device_image(SR_GEN_BREAK_NONE);

		i = find_rec(&img, SR_REC_DISK, 0);
		duplicate_record(&img, i);
		expect_refused_at(&img, SR_E_DUPLICATE, i + 1, "a second DISK record with this index");
	}
	{
		/* A DISK after the device that names it. */
		IMAGE img = device_image(SR_GEN_BREAK_NONE);
		int dev = find_rec(&img, SR_REC_DEVICE, 1);
		struct rec_copy disk;

		i = find_rec(&img, SR_REC_DISK, 0);
		disk = img.rec[i];
		memmove(&img.rec[i], &img.rec[i + 1], (dev - i) * sizeof(img.rec[0]));
		img.rec[dev] = disk;
		expect_refused_at(&img, SR_E_SEQUENCE, dev - 1, "disk 0: no DISK record before");
	}
}

Test(disk_record, a_snapshot_reads_back)
{
	IMAGE img = device_image(SR_GEN_BREAK_NONE);
	int i;
	struct sr_rec_disk *r = disk_rec(&img, 1, &i);
	static const char snap[] = "/srv/ckpt/img.disk1";
	struct sr_disk_info *d = malloc(sizeof(*d));
	struct sr_record rec;

	r->flags |= SR_DISK_F_SNAPSHOT;
	r->snap_method = SR_SNAP_REFLINK;
	r->snap_ns = 1234;
	r->snap_id = r->id;
	r->snap_id.ino = 77;
	r->snap_path_len = sizeof(snap) - 1;
	img.rec[i].body = realloc(img.rec[i].body, img.rec[i].len + sizeof(snap) - 1);
	memcpy(img.rec[i].body + img.rec[i].len, snap, sizeof(snap) - 1);
	img.rec[i].len += sizeof(snap) - 1;
	expect_accepted(&img, "a disk with a snapshot");
	/* A read-only disk gets no snapshot (§3.8.3): one that has one is refused at its DISK. */
	r = disk_rec(&img, 1, &i);
	r->flags |= SR_DISK_F_READ_ONLY;
	expect_refused_at(&img, SR_E_RANGE, i, "disk 1: body byte 4: SNAPSHOT on a read-only disk");
	r->flags &= ~SR_DISK_F_READ_ONLY;
	rec = (struct sr_record){ .type = SR_REC_DISK, .length = img.rec[i].len,
				  .body = img.rec[i].body };
	sr_disk_view(&rec, d);
	cr_assert_str_eq(d->path, "/var/lib/sr/disk1.img");
	cr_assert_str_eq(d->snap_path, snap);
	cr_assert_eq(d->snap_id.ino, 77);
	cr_assert_eq(d->snap_method, SR_SNAP_REFLINK);
	free(d);
}
