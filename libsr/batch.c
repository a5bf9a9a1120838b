/* SPDX-License-Identifier: MIT */
/*
 * Page batch encoder: per page, zero detection, then lz4 (when enabled)
 * kept only if it shrinks the page, else raw.  Encoded bytes live in the
 * batch's own arena unless the source is stable, in which case raw pages are
 * written straight from it.
 *
 * Adaptive compression: lz4 that does not shrink a page costs nearly as
 * much as lz4 that does, so after LZ4_MISSES pages in a row that it could
 * not shrink, the encoder stops trying for a stretch of pages (sent raw),
 * then tries again; each stretch that starts with more misses is twice as
 * long as the last, up to LZ4_SKIP_MAX; one page that compresses ends the
 * backing off.  Memory that compresses is compressed as before; a stretch
 * of incompressible memory costs about what --compress none costs.  The
 * backing off starts afresh with each batch (a dozen tries in a batch of
 * incompressible pages), so a batch encodes the same whichever worker
 * encodes it, after whichever batch.
 */
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "sr.h"
#include "internal.h"

#define LZ4_MISSES	4		/* misses in a row that start a stretch of raw pages */
#define LZ4_SKIP_MIN	8
#define LZ4_SKIP_MAX	256

struct sr_batch {
	enum sr_compress mode;
	bool deferred;			/* pages are encoded by sr_batch_encode() */
	unsigned encoded;		/* deferred: pages encoded so far */
	unsigned misses;		/* lz4 failures in a row */
	unsigned skip, skip_len;	/* pages still to send raw untried; the stretch's length */
	unsigned flags;
	uint32_t iteration;
	unsigned count;
	uint64_t pages;			/* covered by the descriptors */
	size_t arena_len;
	struct sr_page_desc desc[SR_BATCH_MAX_PAGES];
	const void *data[SR_BATCH_MAX_PAGES];	/* where page i's bytes are */
	struct sr_batch_stats stats;
	uint8_t *arena;				/* SR_BATCH_MAX_PAGES pages */
};

struct sr_batch *sr_batch_new(enum sr_compress mode, unsigned flags)
{
	struct sr_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->arena = malloc((size_t)SR_BATCH_MAX_PAGES * SR_PAGE_SIZE);
	if (!b->arena) {
		free(b);
		return NULL;
	}
	b->mode = mode;
	b->flags = flags;
	return b;
}

void sr_batch_free(struct sr_batch *b)
{
	if (!b)
		return;
	free(b->arena);
	free(b);
}

void sr_batch_reset(struct sr_batch *b, uint32_t iteration)
{
	b->iteration = iteration;
	b->count = 0;
	b->pages = 0;
	b->arena_len = 0;
	b->encoded = 0;
	/* Each batch backs off on its own: its encoding depends on its pages alone. */
	b->misses = b->skip = b->skip_len = 0;
}

void sr_batch_defer(struct sr_batch *b)
{
	b->deferred = true;
}

unsigned sr_batch_count(const struct sr_batch *b)
{
	return b->count;
}

uint64_t sr_batch_pages(const struct sr_batch *b)
{
	return b->pages;
}

int sr_batch_add_zero_run(struct sr_batch *b, uint64_t pfn, uint64_t npages)
{
	uint64_t need = (npages + UINT32_MAX - 1) / UINT32_MAX;

	if (need > SR_BATCH_MAX_PAGES - b->count)
		return -1;
	while (npages) {
		struct sr_page_desc *d = &b->desc[b->count];
		uint32_t n = npages > UINT32_MAX ? UINT32_MAX : (uint32_t)npages;

		memset(d, 0, sizeof(*d));
		d->pfn = pfn;
		d->enc = SR_PAGE_ZERO_RUN;
		d->length = n;
		b->data[b->count++] = NULL;
		b->pages += n;
		b->stats.pages += n;
		b->stats.zero += n;
		pfn += n;
		npages -= n;
	}
	return b->count;
}

static bool page_is_zero(const void *page)
{
	const uint64_t *p = page;

	/* Most non-zero pages differ in the first words; check them first. */
	if (p[0] | p[1] | p[2] | p[3])
		return false;
	for (unsigned i = 4; i < SR_PAGE_SIZE / 8; i += 4)
		if (p[i] | p[i + 1] | p[i + 2] | p[i + 3])
			return false;
	return true;
}

/* Encodes page i of the batch from its source, b->data[i]. */
static void encode_page(struct sr_batch *b, unsigned i)
{
	struct sr_page_desc *d = &b->desc[i];
	const void *page = b->data[i];
	uint8_t *dst = b->arena + b->arena_len;

	if (page_is_zero(page)) {
		d->enc = SR_PAGE_ZERO;
		d->length = 0;
		b->data[i] = NULL;
		b->stats.zero++;
		return;
	}
	if (b->mode == SR_COMPRESS_LZ4 && b->skip) {
		b->skip--;
		b->stats.lz4_skipped++;
	} else if (b->mode == SR_COMPRESS_LZ4) {
		int n = LZ4_compress_default(page, (char *)dst, SR_PAGE_SIZE,
					     SR_PAGE_SIZE - 1);
		if (n > 0) {
			d->enc = SR_PAGE_LZ4;
			d->length = n;
			b->data[i] = dst;
			b->arena_len += n;
			b->stats.lz4++;
			b->stats.data_bytes += n;
			b->misses = 0;
			b->skip_len = 0;
			return;
		}
		if (++b->misses >= LZ4_MISSES) {
			b->skip_len = b->skip_len ? b->skip_len * 2 : LZ4_SKIP_MIN;
			if (b->skip_len > LZ4_SKIP_MAX)
				b->skip_len = LZ4_SKIP_MAX;
			b->skip = b->skip_len;
			b->misses = LZ4_MISSES - 1;	/* one more miss after the stretch: a longer one */
		}
	}
	d->enc = SR_PAGE_RAW;
	d->length = SR_PAGE_SIZE;
	if (!(b->flags & SR_BATCH_STABLE_SOURCE)) {
		memcpy(dst, page, SR_PAGE_SIZE);
		b->data[i] = dst;
		b->arena_len += SR_PAGE_SIZE;
	}
	b->stats.raw++;
	b->stats.data_bytes += SR_PAGE_SIZE;
}

int sr_batch_add(struct sr_batch *b, uint64_t pfn, const void *page)
{
	struct sr_page_desc *d;

	if (b->count >= SR_BATCH_MAX_PAGES)
		return -1;
	d = &b->desc[b->count];
	memset(d, 0, sizeof(*d));
	d->pfn = pfn;
	b->data[b->count] = page;
	b->stats.pages++;
	b->pages++;
	if (!b->deferred)
		encode_page(b, b->count);
	return ++b->count;
}

void sr_batch_encode(struct sr_batch *b)
{
	if (!b->deferred)
		return;		/* encoded as added */
	for (; b->encoded < b->count; b->encoded++)
		if (b->desc[b->encoded].enc != SR_PAGE_ZERO_RUN)
			encode_page(b, b->encoded);
}

int sr_batch_iov(struct sr_batch *b, struct sr_rec_page_data *hdr, struct iovec *iov)
{
	int n = 0;

	*hdr = (struct sr_rec_page_data){ .count = b->count, .iteration = b->iteration };
	iov[n++] = (struct iovec){ hdr, sizeof(*hdr) };
	iov[n++] = (struct iovec){ b->desc, sizeof(b->desc[0]) * b->count };
	for (unsigned i = 0; i < b->count; i++) {
		if (!sr_page_data_len(&b->desc[i]))
			continue;
		/* Coalesce pieces that sit back to back in the arena. */
		if (n > 2 && (const uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len ==
			     (const uint8_t *)b->data[i])
			iov[n - 1].iov_len += sr_page_data_len(&b->desc[i]);
		else
			iov[n++] = (struct iovec){ (void *)b->data[i], sr_page_data_len(&b->desc[i]) };
	}
	return n;
}

int sr_write_page_batch(struct sr_writer *w, struct sr_batch *b,
			struct sr_error *err)
{
	struct sr_rec_page_data hdr;
	struct iovec iov[2 + SR_BATCH_MAX_PAGES];
	int n, rc;

	if (!b->count)
		return 0;
	sr_batch_encode(b);
	n = sr_batch_iov(b, &hdr, iov);
	rc = sr_write_record_iov(w, SR_REC_PAGE_DATA, iov, n, err);
	sr_batch_reset(b, b->iteration);
	return rc;
}

void sr_batch_stats(const struct sr_batch *b, struct sr_batch_stats *st)
{
	*st = b->stats;
}
