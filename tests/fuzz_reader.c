/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: an sr image, whole, through the reader twice, each time
 * into guest memory of its own indexed by pfn, every page decoded and
 * every context block walked, as sr-dump --verify and a restore do:
 *   - buffered: no page sink, each page decoded from the record (the
 *     reference);
 *   - placed: a page sink with 0-3 workers, raw pages read straight into
 *     their pages and lz4 pages decoded there; what the sink refuses (a
 *     pfn it has no place for) read the ordinary way.
 * Both must reach the same verdict at the same record and, when the image
 * verified, leave the same bytes in every page it wrote (the later copy of
 * a page wins, docs/format.md).  How the placed read goes is drawn from the
 * input's hash (fuzz_input.h): workers, a pipe for input (one page of
 * capacity makes every read short, so a record of 1024 scattered raw pages
 * reaches the reader's IOV_MAX loop), pages a stride apart (no two pages of
 * a record adjacent), refused pfns, the batch hook, and stop-at-END (a
 * migration stream, for both reads).  FUZZ_READER_SAY=1 prints each input's
 * choices and verdicts.  The structure-aware mutator is in fuzz_mutator.c.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "sr.h"

/* Guest memory mapped per read; a region beyond it is not mapped (its pages are not compared). */
#define GUEST_MAX	(1ull << 30)

/*
 * A DEVICE or DISK record the reader let through (its validator passed):
 * a virtio device's state decodes, encodes, and decodes again to the same
 * state (sections may come in any order, so the bytes may differ); a
 * DISK's paths are as long as it says.
 */
static void device_roundtrip(const struct sr_record *rec)
{
	static struct sr_virtio_state s, again;
	static struct sr_disk_info disk;
	static uint8_t buf[sizeof(struct sr_rec_device) + SR_VIRTIO_DATA_MAX];
	struct sr_record copy = *rec;
	struct sr_rec_disk raw;
	struct sr_error err;
	const void *data;
	size_t len;
	ssize_t n;

	if (rec->type == SR_REC_DISK) {
		sr_disk_view(rec, &disk);
		memcpy(&raw, rec->body, sizeof(raw));
		if (strlen(disk.path) != raw.path_len || strlen(disk.snap_path) != raw.snap_path_len)
			abort();
		return;
	}
	if (strncmp(sr_device_view(rec, &data, &len)->name, "virtio-", 7))
		return;
	if (sr_virtio_view(rec, &s, &err))
		abort();		/* validated, yet it does not decode */
	memcpy(buf, rec->body, sizeof(struct sr_rec_device));
	n = sr_virtio_encode(&s, buf + sizeof(struct sr_rec_device), SR_VIRTIO_DATA_MAX, &err);
	if (n < 0 || (!s.skipped && (size_t)n != len))
		abort();		/* an optional section skipped is all that may shrink it */
	copy.body = buf;
	copy.length = sizeof(struct sr_rec_device) + (uint32_t)n;
	if (sr_virtio_view(&copy, &again, &err))
		abort();
	again.skipped = s.skipped;
	if (memcmp(&s, &again, sizeof(s)))
		abort();
}

/* One read's guest memory: region i's pfn p at hva + (p - first) * stride pages. */
struct guest {
	unsigned n;
	struct { uint64_t first, pages; uint8_t *hva; } reg[SR_MAX_REGIONS];
	unsigned stride;
	unsigned refuse;		/* the sink has no place for pfn % 8 == refuse - 1; 0: none */
	unsigned batches;		/* calls of the batch hook */
};

static void guest_map(struct guest *g, const struct sr_region *regs, unsigned n)
{
	uint64_t total = 0;

	g->n = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t pages = regs[i].size / SR_PAGE_SIZE;
		void *p = MAP_FAILED;

		total += regs[i].size;
		if (total <= GUEST_MAX)
			p = mmap(NULL, pages * g->stride * SR_PAGE_SIZE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		g->reg[g->n++] = (typeof(g->reg[0])){ regs[i].gpa / SR_PAGE_SIZE, pages,
						      p == MAP_FAILED ? NULL : p };
	}
}

static void guest_unmap(struct guest *g)
{
	for (unsigned i = 0; i < g->n; i++)
		if (g->reg[i].hva)
			munmap(g->reg[i].hva, g->reg[i].pages * g->stride * SR_PAGE_SIZE);
	g->n = 0;
}

/* Where pfn's page is, or NULL (no region holds it, or its region is not mapped). */
static uint8_t *guest_page(const struct guest *g, uint64_t pfn)
{
	for (unsigned i = 0; i < g->n; i++)
		if (pfn >= g->reg[i].first && pfn - g->reg[i].first < g->reg[i].pages)
			return g->reg[i].hva ? g->reg[i].hva + (pfn - g->reg[i].first) * g->stride *
					       SR_PAGE_SIZE : NULL;
	return NULL;
}

/* A zero run (the reader checked it stays in one region): its memory handed back. */
static void guest_zero(const struct guest *g, uint64_t pfn, uint64_t n)
{
	uint8_t *p = guest_page(g, pfn);

	if (p)
		madvise(p, n * g->stride * SR_PAGE_SIZE, MADV_DONTNEED);
}

static bool refused(const struct guest *g, uint64_t pfn)
{
	return g->refuse && pfn % 8 == g->refuse - 1;
}

static void *sink_page(void *arg, uint64_t pfn)
{
	struct guest *g = arg;

	return refused(g, pfn) ? NULL : guest_page(g, pfn);
}

static void sink_batch(void *arg, const struct sr_page_desc *desc, unsigned n)
{
	struct guest *g = arg;

	if (!n || n > SR_BATCH_MAX_PAGES)
		abort();
	for (unsigned i = 1; i < n; i++)
		if (desc[i].pfn <= desc[i - 1].pfn)
			abort();	/* placed pfns ascend */
	g->batches++;
}

/* The pfns of every page the buffered read wrote, to compare. */
struct pfn_list {
	uint64_t *pfn;
	size_t n, cap;
};

static void pfn_add(struct pfn_list *l, uint64_t pfn)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 4096;
		l->pfn = realloc(l->pfn, l->cap * sizeof(*l->pfn));
		if (!l->pfn)
			abort();
	}
	l->pfn[l->n++] = pfn;
}

/*
 * A consumer's part of a PAGE_DATA record: decodes the pages that are not
 * in place and zeroes zero pages and runs, as a restore does.
 */
static int load_pages(struct guest *g, const struct sr_record *rec, struct pfn_list *wrote,
		      struct sr_error *err)
{
	static uint8_t scratch[SR_PAGE_SIZE];
	const struct sr_page_desc *pd;
	struct sr_page_iter it;
	int rc;

	sr_page_iter_init(rec, &it);
	while (it.i < it.count) {
		const struct sr_page_desc *d = &it.desc[it.i];
		uint8_t *dst = guest_page(g, d->pfn);

		if (d->enc == SR_PAGE_ZERO_RUN) {
			guest_zero(g, d->pfn, d->length);
		} else {
			if (rec->placed && (refused(g, d->pfn) || !dst) && d->enc != SR_PAGE_ZERO)
				abort();	/* placed where the sink had no place */
			if (d->enc == SR_PAGE_ZERO && dst)
				memset(dst, 0, SR_PAGE_SIZE);
			if (wrote)
				pfn_add(wrote, d->pfn);
		}
		rc = sr_page_iter_next(&it, &pd, dst ? dst : scratch, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

struct read_opts {
	bool placed, stop_at_end, batch;
	unsigned threads, pipe_bytes;
};

/* Reads the whole input into g; returns the verdict (0: verified) with err filled. */
static int read_all(const uint8_t *data, size_t size, const struct read_opts *o, struct guest *g,
		    struct pfn_list *wrote, struct sr_error *err)
{
	struct sr_page_sink sink = { .page_addr = sink_page, .batch = o->batch ? sink_batch : NULL,
				     .arg = g, .threads = o->threads };
	struct sr_reader_stats st = { 0 };
	struct fuzz_input in;
	struct sr_record rec;
	struct sr_reader *r;
	int rc = -1;

	fuzz_input_open(&in, data, size, o->pipe_bytes);
	r = sr_reader_open(in.fd, err);
	if (r && o->stop_at_end)
		sr_reader_stop_at_end(r);
	while (r && (rc = sr_reader_next(r, &rec, err)) == 1) {
		if (!rec.known)
			continue;
		if (rec.type == SR_REC_DOMAIN) {
			const struct sr_region *regs;
			const struct sr_rec_domain *dom = sr_reader_domain(r, &regs);

			guest_map(g, regs, dom->region_count);
			if (o->placed && sr_reader_set_page_sink(r, &sink, err))
				abort();
		} else if (rec.type == SR_REC_PAGE_DATA) {
			if ((rc = load_pages(g, &rec, wrote, err)) < 0)
				break;
		} else if (rec.type == SR_REC_DEVICE || rec.type == SR_REC_DISK) {
			device_roundtrip(&rec);
		} else if (rec.type == SR_REC_HVM_CONTEXT || rec.type == SR_REC_VCPU_CONTEXT) {
			struct sr_block_iter bi;
			struct sr_block blk;

			sr_context_begin(&rec, &bi);
			while (sr_context_next(&bi, &blk))
				;
		}
	}
	if (r)
		sr_reader_stats(r, &st);
	sr_reader_free(r);		/* every worker done: guest memory is ours again */
	fuzz_input_close(&in);
	/* The batch hook sees each placed record, and a last one cut short. */
	if (o->batch && !(g->batches == st.placed || (rc < 0 && g->batches == st.placed + 1))) {
		fprintf(stderr, "fuzz-reader: %u batch calls for %llu placed records\n", g->batches,
			(unsigned long long)st.placed);
		abort();
	}
	return rc;
}

static void verdicts_differ(int v1, const struct sr_error *e1, int v2, const struct sr_error *e2,
			    const struct read_opts *o)
{
	char m1[512], m2[512];

	fprintf(stderr, "fuzz-reader: buffered %d \"%s\", placed (%u threads) %d \"%s\"\n", v1,
		v1 < 0 ? sr_error_format(e1, m1, sizeof(m1)) : "ok", o->threads, v2,
		v2 < 0 ? sr_error_format(e2, m2, sizeof(m2)) : "ok");
	abort();
}

/* Every page the image wrote holds the same bytes after both reads. */
static void compare_pages(const struct guest *a, const struct guest *b, const struct pfn_list *l,
			  const struct read_opts *o)
{
	for (size_t i = 0; i < l->n; i++) {
		const uint8_t *pa = guest_page(a, l->pfn[i]), *pb = guest_page(b, l->pfn[i]);

		if (pa && pb && memcmp(pa, pb, SR_PAGE_SIZE)) {
			fprintf(stderr, "fuzz-reader: pfn 0x%llx differs: buffered and placed with "
				"%u threads both verified the image\n",
				(unsigned long long)l->pfn[i], o->threads);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest g1 = { .stride = 1 }, g2 = { .stride = 1 };
	struct read_opts o1 = { 0 }, o2 = { .placed = true };
	struct pfn_list wrote = { 0 };
	struct sr_error e1, e2;
	struct fuzz_draw d;
	int v1, v2;

	fuzz_draw_init(&d, data, size);
	o2.threads = fuzz_draw(&d, 4);
	o2.pipe_bytes = fuzz_draw(&d, 4) ? 0 : fuzz_draw(&d, 2) ? 4096 : 65536;
	o2.batch = fuzz_draw(&d, 2);
	o1.stop_at_end = o2.stop_at_end = !fuzz_draw(&d, 4);
	g2.stride = 1 + fuzz_draw(&d, 2);
	g2.refuse = fuzz_draw(&d, 4) ? 0 : 1 + fuzz_draw(&d, 8);

	v1 = read_all(data, size, &o1, &g1, &wrote, &e1);
	v2 = read_all(data, size, &o2, &g2, NULL, &e2);
	if (getenv("FUZZ_READER_SAY")) {
		char m[512];

		fprintf(stderr, "fuzz-reader: threads %u pipe %u batch %d stop-at-end %d stride %u "
			"refuse %u: %s\n", o2.threads, o2.pipe_bytes, o2.batch, o2.stop_at_end,
			g2.stride, g2.refuse, v1 < 0 ? sr_error_format(&e1, m, sizeof(m)) : "ok");
	}
	if (v1 != v2 || (v1 < 0 && (e1.code != e2.code || e1.index != e2.index)))
		verdicts_differ(v1, &e1, v2, &e2, &o2);
	if (v1 == 0)
		compare_pages(&g1, &g2, &wrote, &o2);
	guest_unmap(&g1);
	guest_unmap(&g2);
	free(wrote.pfn);
	return 0;
}
