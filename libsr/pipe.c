/* SPDX-License-Identifier: MIT */
/*
 * The page pipe: page batches encoded (zero detection, lz4) and hashed by a
 * pool of workers, written in the order they were filled by the caller's
 * thread, which keeps filling the next batch meanwhile.  The stream is
 * byte for byte what sr_write_page_batch() would have written.
 */
#include <stdlib.h>
#include <string.h>

#include "sr.h"
#include "internal.h"

struct pipe_slot {
	struct sr_pool_job pj;		/* first: the job is the slot */
	struct sr_batch *b;
	bool hash;
	uint64_t checksum;
	struct sr_rec_page_data hdr;
	int niov;
	struct iovec iov[2 + SR_BATCH_MAX_PAGES];
};

struct sr_pipe {
	struct sr_writer *w;
	struct sr_pipe_opts o;
	struct sr_pool *pool;
	unsigned nslots;
	uint64_t seq, oldest;		/* slots [oldest, seq) are filled, not yet written */
	uint32_t iteration;
	bool failed;
	struct pipe_slot slots[];
};

static void slot_encode(struct sr_pool_job *pj)
{
	struct pipe_slot *s = (struct pipe_slot *)pj;

	sr_batch_encode(s->b);
	s->niov = sr_batch_iov(s->b, &s->hdr, s->iov);
	s->checksum = s->hash ? sr_record_hash(SR_REC_PAGE_DATA, s->iov, s->niov) : 0;
}

struct sr_pipe *sr_pipe_new(struct sr_writer *w, const struct sr_pipe_opts *o,
			    struct sr_error *err)
{
	unsigned threads = o->threads > 64 ? 64 : o->threads;
	unsigned n = threads ? threads + 2 : 1;	/* one filling, one writing, the rest encoding */
	struct sr_pipe *p = calloc(1, sizeof(*p) + n * sizeof(p->slots[0]));

	if (!p)
		goto nomem;
	p->w = w;
	p->o = *o;
	p->nslots = n;
	for (unsigned i = 0; i < n; i++) {
		p->slots[i].b = sr_batch_new(o->mode, o->flags);
		if (!p->slots[i].b)
			goto nomem;
		sr_batch_defer(p->slots[i].b);
		p->slots[i].hash = sr_writer_hashes(w);
		p->slots[i].pj.fn = slot_encode;
	}
	if (threads && !(p->pool = sr_pool_new(threads, o->thread_start, o->thread_arg)))
		goto nomem;
	return p;
nomem:
	sr_pipe_free(p);
	sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, 0, "page pipe of %u batches", n);
	return NULL;
}

void sr_pipe_free(struct sr_pipe *p)
{
	if (!p)
		return;
	sr_pool_free(p->pool);		/* lets encodes in flight finish */
	for (unsigned i = 0; i < p->nslots; i++)
		sr_batch_free(p->slots[i].b);
	free(p);
}

static struct pipe_slot *filling(struct sr_pipe *p)
{
	return &p->slots[p->seq % p->nslots];
}

/* Writes the oldest filled batch, waiting for its encoding. */
static int write_oldest(struct sr_pipe *p, struct sr_error *err)
{
	struct pipe_slot *s = &p->slots[p->oldest % p->nslots];
	uint64_t pages = sr_batch_pages(s->b);
	int rc;

	sr_pool_wait(p->pool, &s->pj);
	s->pj.state = SR_JOB_IDLE;
	p->oldest++;
	rc = sr_write_record_hashed(p->w, SR_REC_PAGE_DATA, s->iov, s->niov, s->checksum, err);
	sr_batch_reset(s->b, p->iteration);
	if (rc) {
		p->failed = true;
		return -1;
	}
	if (p->o.written && p->o.written(p->o.arg, pages, sr_writer_offset(p->w))) {
		p->failed = true;
		return sr_set_error(err, SR_E_IO, sr_writer_records(p->w), sr_writer_offset(p->w),
				    "cancelled");
	}
	return 0;
}

/* Hands the filling batch to a worker; writes what is ready; frees a slot to fill. */
static int submit(struct sr_pipe *p, struct sr_error *err)
{
	struct pipe_slot *s = filling(p);

	if (!sr_batch_count(s->b))
		return 0;
	p->seq++;
	sr_pool_submit(p->pool, &s->pj);
	while (p->oldest < p->seq && sr_pool_done(p->pool, &p->slots[p->oldest % p->nslots].pj))
		if (write_oldest(p, err))
			return -1;
	while (p->seq - p->oldest >= p->nslots)
		if (write_oldest(p, err))
			return -1;
	sr_batch_reset(filling(p)->b, p->iteration);
	return 0;
}

static int check(struct sr_pipe *p, struct sr_error *err)
{
	return p->failed ? sr_set_error(err, SR_E_IO, sr_writer_records(p->w),
					sr_writer_offset(p->w), "page pipe already failed") : 0;
}

int sr_pipe_add(struct sr_pipe *p, uint64_t pfn, const void *page, struct sr_error *err)
{
	int n;

	if (check(p, err))
		return -1;
	n = sr_batch_add(filling(p)->b, pfn, page);
	if (n < 0) {
		/* Full already (a zero run filled it): hand it on, never drop the page. */
		if (submit(p, err))
			return -1;
		n = sr_batch_add(filling(p)->b, pfn, page);
		if (n < 0)
			return sr_set_error(err, SR_E_RANGE, SR_NO_INDEX, 0,
					    "page %#llx: an empty batch refused it",
					    (unsigned long long)pfn);
	}
	return n == SR_BATCH_MAX_PAGES ? submit(p, err) : 0;
}

int sr_pipe_add_zero_run(struct sr_pipe *p, uint64_t pfn, uint64_t npages, struct sr_error *err)
{
	if (check(p, err))
		return -1;
	if (sr_batch_add_zero_run(filling(p)->b, pfn, npages) < 0) {
		if (submit(p, err))
			return -1;
		if (sr_batch_add_zero_run(filling(p)->b, pfn, npages) < 0)
			return sr_set_error(err, SR_E_RANGE, SR_NO_INDEX, 0,
					    "zero run of %llu pages", (unsigned long long)npages);
	}
	if (sr_batch_count(filling(p)->b) == SR_BATCH_MAX_PAGES)
		return submit(p, err);
	return 0;
}

int sr_pipe_flush(struct sr_pipe *p, struct sr_error *err)
{
	if (check(p, err) || submit(p, err))
		return -1;
	while (p->oldest < p->seq)
		if (write_oldest(p, err))
			return -1;
	return 0;
}

int sr_pipe_set_iteration(struct sr_pipe *p, uint32_t iteration, struct sr_error *err)
{
	if (sr_pipe_flush(p, err))
		return -1;
	p->iteration = iteration;
	sr_batch_reset(filling(p)->b, iteration);
	return 0;
}

uint64_t sr_pipe_pending_pages(const struct sr_pipe *p)
{
	uint64_t n = 0;

	for (uint64_t i = p->oldest; i <= p->seq; i++)
		n += sr_batch_pages(p->slots[i % p->nslots].b);
	return n;
}

void sr_pipe_stats(const struct sr_pipe *p, struct sr_batch_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < p->nslots; i++) {
		struct sr_batch_stats s;

		sr_batch_stats(p->slots[i].b, &s);
		st->pages += s.pages;
		st->raw += s.raw;
		st->zero += s.zero;
		st->lz4 += s.lz4;
		st->lz4_skipped += s.lz4_skipped;
		st->data_bytes += s.data_bytes;
	}
}
