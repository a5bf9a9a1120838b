/* SPDX-License-Identifier: MIT */
/*
 * The save core: a domain to an sr image, cold or live.
 *
 * Order follows the Xen HVM layout: DOMAIN, pages in PAGE_DATA batches
 * round by round with an ITERATION record closing each, HVM_CONTEXT, one
 * VCPU_CONTEXT per vCPU, DEVICE records, END.  The clock is read when the
 * domain is paused, so guest time is measured from when the guest stopped.
 *
 * Live rounds keep a "todo" bitmap per region: fetched dirty bits are ORed
 * in and a page's bit is cleared only once the batch holding it has been
 * written, so a bit fetched from KVM is never dropped before its page is
 * in the stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hvmctx.h"
#include "hvmctx_priv.h"

static int sr_err(struct xc_error *err, const struct sr_error *se)
{
	char buf[256];

	xc_set_error(err, 0, "%s", se->code == SR_E_IO ? se->msg : sr_error_format(se, buf, sizeof(buf)));
	err->sys_errno = se->sys_errno;
	return -1;
}

struct save {
	struct xc_domain *d;
	const struct hvmctx_save_opts *o;
	struct hvmctx_save_stats *st;
	struct xc_error *err;
	struct sr_writer *w;
	struct sr_pipe *p;
	struct sr_error se;
	const struct xc_region *regs;
	unsigned nregs;
	uint64_t *todo[XC_MAX_REGIONS];	/* live: pages still to send */
	uint64_t *fetched;		/* live: scratch for one region's dirty log */
	uint64_t pages_done, pages_total;
	bool cancelled;			/* by the progress callback */
	uint64_t t_start;		/* for the bandwidth cap */
	uint64_t cap;			/* live: stop pre-copy at this many stream bytes */
	bool capped;			/* ... and it was reached mid-round */
	unsigned left_r;		/* round 0 stopped short: region and byte */
	uint64_t left_off;		/* offset of the first page it did not reach */
	bool final;			/* the stop-and-copy round: no cap */
	uint64_t throttled_before;	/* the vCPUs' throttled time when the save began */
	uint8_t throttle[XC_MAX_VCPUS];	/* live: each vCPU's throttle this round */
	uint32_t harvested[XC_MAX_VCPUS];	/* ring: entries harvested by the round's start */
	struct hvmctx_set hvm, vcpu[XC_MAX_VCPUS];	/* captured at the pause */
};

static uint64_t words(const struct xc_region *r)
{
	return (r->size / SR_PAGE_SIZE + 63) / 64;
}

static int write_domain(struct save *s)
{
	struct sr_region r[SR_MAX_REGIONS];
	struct sr_rec_domain dom = { .guest_kind = s->o->guest_kind,
				     .vcpu_count = xc_domain_vcpus(s->d), .region_count = s->nregs,
				     .boot_entry = s->o->boot_entry, .boot_arg = s->o->boot_arg };

	snprintf(dom.name, sizeof(dom.name), "%s", s->o->name ? s->o->name : "");
	if (s->o->uuid)
		memcpy(dom.uuid, s->o->uuid, 16);
	for (unsigned i = 0; i < s->nregs; i++) {
		r[i] = (struct sr_region){ s->regs[i].gpa, s->regs[i].size, SR_REGION_F_RAM,
					   s->regs[i].slot };
		s->st->mem_bytes += s->regs[i].size;
	}
	return sr_write_domain(s->w, &dom, r, &s->se) ? sr_err(s->err, &s->se) : 0;
}

/* After each batch is written (the pipe calls it): progress, the byte cap. */
static int batch_written(void *arg, uint64_t pages, uint64_t offset)
{
	struct save *s = arg;

	s->pages_done += pages;
	if (s->o->progress && s->o->progress(s->o->progress_arg, s->pages_done, s->pages_total,
					     offset)) {
		s->cancelled = true;
		return 1;
	}
	/* The cap holds within a round: what is left stays in todo for the final round. */
	if (s->cap && !s->final && offset >= s->cap)
		s->capped = true;
	/*
	 * --bandwidth: ahead of the allowed rate, wait.  A round's measured
	 * byte rate, which the stop rule uses, is then the link's share.
	 */
	if (s->o->bandwidth) {
		uint64_t due = s->t_start + offset * 1000000000ull / s->o->bandwidth, now = hvmctx_now_ns();

		if (due > now) {
			struct timespec ts = { .tv_sec = (due - now) / 1000000000ull,
					       .tv_nsec = (due - now) % 1000000000ull };

			while (nanosleep(&ts, &ts) && errno == EINTR && !(s->o->cancel && *s->o->cancel))
				;
		}
	}
	return 0;
}

static int pipe_err(struct save *s)
{
	return s->cancelled ? xc_set_error(s->err, ECANCELED, "save cancelled") : sr_err(s->err, &s->se);
}

/* Writes every page added so far. */
static int flush_batch(struct save *s)
{
	return sr_pipe_flush(s->p, &s->se) ? pipe_err(s) : 0;
}

/*
 * A page leaves todo when it is added: it is written by the flush that ends
 * the round, or the save fails.
 */
static int add_page(struct save *s, unsigned r, uint64_t idx)
{
	const struct xc_region *g = &s->regs[r];

	if (sr_pipe_add(s->p, (g->gpa >> SR_PAGE_SHIFT) + idx, g->hva + idx * SR_PAGE_SIZE, &s->se))
		return pipe_err(s);
	if (s->todo[r])
		s->todo[r][idx / 64] &= ~(1ull << (idx % 64));
	return 0;
}

static int add_zero_run(struct save *s, unsigned r, uint64_t idx, uint64_t n)
{
	uint64_t pfn = (s->regs[r].gpa >> SR_PAGE_SHIFT) + idx;

	return sr_pipe_add_zero_run(s->p, pfn, n, &s->se) ? pipe_err(s) : 0;
}

/*
 * Every page of region r from byte off on: the memfd's holes (memory the
 * guest never touched) as zero runs, never read, since reading a hole
 * allocates it; the data between them page by page.  Without SEEK_DATA,
 * all of it as data.  When the byte cap stops it, where it stopped is kept
 * (left_r, left_off): the final round sends the rest.
 */
static int send_region(struct save *s, unsigned r, off_t off)
{
	const struct xc_region *g = &s->regs[r];
	off_t data, end;

	while ((uint64_t)off < g->size) {
		data = g->memfd >= 0 ? lseek(g->memfd, off, SEEK_DATA) : off;
		if (data < 0)
			data = errno == ENXIO ? (off_t)g->size : off;
		if ((uint64_t)data > g->size)
			data = g->size;
		if (data > off && add_zero_run(s, r, off / SR_PAGE_SIZE, (data - off) / SR_PAGE_SIZE))
			return -1;
		off = data;
		if ((uint64_t)data >= g->size || s->capped)
			break;
		end = g->memfd >= 0 ? lseek(g->memfd, data, SEEK_HOLE) : (off_t)g->size;
		if (end <= data || (uint64_t)end > g->size)
			end = g->size;
		/* Extents are page granular for shmem; round outwards to be sure. */
		for (uint64_t i = data / SR_PAGE_SIZE; i < ((uint64_t)end + SR_PAGE_SIZE - 1) / SR_PAGE_SIZE &&
		     !s->capped; i++) {
			if (add_page(s, r, i))
				return -1;
			off = (i + 1) * SR_PAGE_SIZE;
		}
		if (s->capped)
			break;
	}
	s->left_r = r;
	s->left_off = off;
	return 0;
}

/* Every page from where the last send_all stopped (round 0: from the start). */
static int send_all(struct save *s)
{
	for (unsigned r = s->left_r; r < s->nregs && !s->capped; r++)
		if (send_region(s, r, r == s->left_r ? s->left_off : 0))
			return -1;
	if (!s->capped)
		s->left_r = s->nregs;	/* all sent */
	return flush_batch(s);
}

/*
 * Round 0 stopped short (the byte cap): the pages it never reached are in
 * no round yet, and the final round sends them from where it stopped, after
 * the dirty pages before that point (pfns ascend).  A page beyond it that
 * was dirtied meanwhile goes once, with the rest.
 */
static void round0_rest_not_in_todo(struct save *s)
{
	for (unsigned r = s->left_r; r < s->nregs; r++) {
		uint64_t first = r == s->left_r ? s->left_off / SR_PAGE_SIZE : 0;
		uint64_t npages = s->regs[r].size / SR_PAGE_SIZE;

		for (uint64_t i = first; i < npages; i++)
			s->todo[r][i / 64] &= ~(1ull << (i % 64));
	}
}

/*
 * Sends every page in todo.  With manual protection (live CLEAR mode) each
 * 64-page chunk is re-armed right before its pages are copied, so writes
 * after the copy are caught and writes before it are in the copy.
 */
static int send_todo(struct save *s, bool clear_chunks)
{
	for (unsigned r = 0; r < s->nregs; r++) {
		uint64_t npages = s->regs[r].size / SR_PAGE_SIZE;

		for (uint64_t w = 0; w < words(&s->regs[r]) && !s->capped; w++) {
			uint64_t bits = s->todo[r][w];

			if (!bits)
				continue;
			if (clear_chunks) {
				uint32_t count = npages - w * 64 < 64 ? npages - w * 64 : 64;

				if (xc_dirty_log_clear(s->d, s->regs[r].slot, w * 64, count, &bits, s->err))
					return -1;
			}
			while (bits) {
				unsigned bit = __builtin_ctzll(bits);

				bits &= bits - 1;
				if (add_page(s, r, w * 64 + bit))
					return -1;
			}
		}
	}
	return flush_batch(s);
}

/* ORs each region's dirty log into todo; returns the pages now to send. */
static int64_t fetch_dirty(struct save *s)
{
	uint64_t n = 0;

	for (unsigned r = 0; r < s->nregs; r++) {
		if (xc_dirty_log_get(s->d, s->regs[r].slot, s->fetched, s->err))
			return -1;
		for (uint64_t w = 0; w < words(&s->regs[r]); w++) {
			s->todo[r][w] |= s->fetched[w];
			n += __builtin_popcountll(s->todo[r][w]);
		}
	}
	return n;
}

static int write_round(struct save *s, struct hvmctx_round *rd)
{
	unsigned n = xc_domain_vcpus(s->d);

	rd->throttle_pct = 0;
	for (unsigned i = 0; i < n && !rd->final; i++)
		rd->throttle_pct = s->throttle[i] > rd->throttle_pct ? s->throttle[i] : rd->throttle_pct;
	if (rd->throttle_pct && sr_write_throttle(s->w, rd->iteration, s->throttle, n, &s->se))
		return sr_err(s->err, &s->se);
	struct sr_rec_iteration it = { .iteration = rd->iteration,
				       .flags = rd->final ? SR_ITER_F_FINAL : 0,
				       .pages_sent = rd->pages_sent,
				       .pages_dirtied = rd->pages_dirtied, .bytes = rd->bytes,
				       .duration_ns = rd->duration_ns };

	if (sr_write_iteration(s->w, &it, &s->se))
		return sr_err(s->err, &s->se);
	s->st->rounds++;
	if (s->o->round)
		s->o->round(s->o->progress_arg, rd);
	return 0;
}

/* A vCPU's next throttle: 20% at first, then at least 10 points more, up to 99%. */
static unsigned throttle_step(unsigned cur, unsigned needed)
{
	unsigned next = cur ? cur + 10 : 20;

	next = needed > next ? needed : next;
	return next > XC_THROTTLE_MAX ? XC_THROTTLE_MAX : next;
}

/*
 * Auto-converge, after a round that sent `sent` pages while the guest
 * dirtied `dirty`.  A dirty set that did not halve means the guest dirties
 * at more than half the send rate: raise the throttle so that (scaling the
 * round's rate by the share the vCPUs kept running) it would dirty a quarter
 * of it.  With dirty rings the per-vCPU counts show who dirtied: only vCPUs
 * with at least half an even share are slowed (QEMU's dirty-limit aims at
 * the same vCPUs); bitmaps cannot tell, so every vCPU is.  Returns true
 * when a throttle went up.
 */
static bool throttle_update(struct save *s, uint64_t sent, uint64_t dirty)
{
	unsigned n = xc_domain_vcpus(s->d);
	uint32_t cnt[XC_MAX_VCPUS];
	uint64_t total = 0;
	bool raised = false, ring = s->o->dirty_mode == XC_DIRTY_RING;

	for (unsigned i = 0; i < n && ring; i++) {
		uint32_t now = xc_vcpu_dirty_harvested(xc_vcpu_get(s->d, i));

		cnt[i] = now - s->harvested[i];
		s->harvested[i] = now;
		total += cnt[i];
	}
	if (s->o->throttle == HVMCTX_THROTTLE_OFF || !sent || dirty * 2 <= sent)
		return false;
	for (unsigned i = 0; i < n; i++) {
		double q = (double)dirty / sent, keep = 0.25 * (1 - s->throttle[i] / 100.0) / q;
		unsigned needed = keep >= 1 ? 0 : (unsigned)(100 * (1 - keep));

		if (ring && total && (uint64_t)cnt[i] * 2 * n < total)
			continue;
		if (s->throttle[i] < XC_THROTTLE_MAX) {
			s->throttle[i] = throttle_step(s->throttle[i], needed);
			xc_vcpu_set_throttle(xc_vcpu_get(s->d, i), s->throttle[i]);
			raised = true;
		}
	}
	for (unsigned i = 0; i < n; i++)
		s->st->max_throttle_pct = s->throttle[i] > s->st->max_throttle_pct ?
					  s->throttle[i] : s->st->max_throttle_pct;
	return raised;
}

/*
 * The CPU and VM state, captured the moment the vCPUs stop (with the clock),
 * not after the last pages are written: the TSC keeps counting while a big
 * remainder is sent, and guest time must be read from one instant.
 */
static int capture_state(struct save *s, const struct kvm_clock_data *clock)
{
	uint64_t t0 = hvmctx_now_ns(), t1, t2;

	if (hvmctx_capture_vm(s->d, clock, &s->hvm, s->err))
		return -1;
	t1 = hvmctx_now_ns();
	for (unsigned i = 0; i < xc_domain_vcpus(s->d); i++)
		if (hvmctx_capture_vcpu(xc_vcpu_get(s->d, i), s->o->msrs, &s->vcpu[i], s->err))
			return -1;
	t2 = hvmctx_now_ns();
	if (s->o->capture_devices)
		s->o->capture_devices(s->o->progress_arg);
	s->st->capture_vm_ns = t1 - t0;
	s->st->capture_vcpu_ns = t2 - t1;
	s->st->capture_dev_ns = hvmctx_now_ns() - t2;
	s->st->capture_ns = hvmctx_now_ns() - t0;
	return 0;
}

/* Everything after the last page: contexts, devices, END. */
static int write_state(struct save *s)
{
	if (sr_write_context(s->w, SR_REC_HVM_CONTEXT, 0, s->hvm.blk, s->hvm.n, &s->se))
		return sr_err(s->err, &s->se);
	for (unsigned i = 0; i < xc_domain_vcpus(s->d); i++)
		if (sr_write_context(s->w, SR_REC_VCPU_CONTEXT, i, s->vcpu[i].blk, s->vcpu[i].n,
				     &s->se))
			return sr_err(s->err, &s->se);
	for (unsigned i = 0; i < s->o->ndisks; i++)
		if (sr_write_disk(s->w, &s->o->disks[i], &s->se))
			return sr_err(s->err, &s->se);
	for (unsigned i = 0; i < s->o->ndevices; i++) {
		const struct hvmctx_device *dev = &s->o->devices[i];

		if (sr_write_device(s->w, dev->name, dev->version, dev->instance, dev->data,
				    dev->len, &s->se))
			return sr_err(s->err, &s->se);
	}
	if (sr_write_end(s->w, &s->se))
		return sr_err(s->err, &s->se);
	return 0;
}

/*
 * Pauses the domain and reads its clock.  The guest was told it was
 * stopped by the pause itself (xc's, KVM_KVMCLOCK_CTRL on every vCPU, once
 * per pause, also for a domain that was paused before the save).
 */
static int stop_guest(struct save *s, bool pause, struct kvm_clock_data *clock)
{
	if (pause && xc_domain_pause(s->d, s->err))
		return -1;
	return hvmctx_capture_clock(s->d, clock, s->err);
}

static int save_cold(struct save *s)
{
	struct kvm_clock_data clock;
	struct hvmctx_round rd = { .iteration = 0, .final = true };
	uint64_t t0 = hvmctx_now_ns();

	uint64_t t1;

	if (stop_guest(s, false, &clock) || capture_state(s, &clock))
		return -1;
	t1 = hvmctx_now_ns();
	if (write_domain(s) || send_all(s))
		return -1;
	rd.pages_sent = s->pages_done;
	rd.bytes = sr_writer_offset(s->w);
	rd.duration_ns = hvmctx_now_ns() - t0;
	s->st->final_pages_ns = hvmctx_now_ns() - t1;
	t1 = hvmctx_now_ns();
	if (write_round(s, &rd) || write_state(s))
		return -1;
	s->st->state_ns = hvmctx_now_ns() - t1;
	s->st->downtime_ns = hvmctx_now_ns() - t0;
	return 0;
}

static int save_live(struct save *s, bool *paused_here)
{
	const struct hvmctx_save_opts *o = s->o;
	uint64_t target_ns = (uint64_t)(o->downtime_ms ? o->downtime_ms : HVMCTX_DEFAULT_DOWNTIME_MS) * 1000000;
	uint32_t max_iters = o->max_iters ? o->max_iters : HVMCTX_DEFAULT_MAX_ITERS;
	uint64_t prev_dirty = UINT64_MAX, t_pause;
	unsigned not_shrinking = 0;
	struct kvm_clock_data clock;
	struct hvmctx_round rd = { 0 };
	int64_t dirty;
	bool clear = o->dirty_mode == XC_DIRTY_CLEAR;

	s->st->downtime_target_ns = target_ns;
	uint64_t most = 0;

	for (unsigned r = 0; r < s->nregs; r++)
		most = words(&s->regs[r]) > most ? words(&s->regs[r]) : most;
	s->fetched = calloc(most + 1, 8);
	for (unsigned r = 0; r < s->nregs; r++) {
		s->todo[r] = calloc(words(&s->regs[r]) + 1, 8);
		if (!s->todo[r] || !s->fetched)
			return xc_set_error(s->err, ENOMEM, "dirty bitmaps");
	}
	if (xc_dirty_log_enable(s->d, o->dirty_mode, true, s->err))
		return -1;
	/* Start from a clean log: round 0 sends everything anyway. */
	if (fetch_dirty(s) < 0)
		return -1;
	for (unsigned r = 0; r < s->nregs; r++) {
		if (clear && xc_dirty_log_clear(s->d, s->regs[r].slot, 0, s->regs[r].size / SR_PAGE_SIZE,
						s->todo[r], s->err))
			return -1;
		memset(s->todo[r], 0, words(&s->regs[r]) * 8);
	}
	if (write_domain(s))
		return -1;
	s->cap = o->max_bytes ? o->max_bytes :
		 s->st->mem_bytes * (o->max_bytes_factor ? o->max_bytes_factor : HVMCTX_DEFAULT_BYTES_FACTOR);
	for (unsigned i = 0; i < xc_domain_vcpus(s->d); i++)
		s->harvested[i] = xc_vcpu_dirty_harvested(xc_vcpu_get(s->d, i));
	for (uint32_t k = 0;; k++) {
		uint64_t t0 = hvmctx_now_ns(), b0 = sr_writer_offset(s->w), p0 = s->pages_done;
		struct sr_batch_stats before, after;

		sr_pipe_stats(s->p, &before);

		if (sr_pipe_set_iteration(s->p, k, &s->se))
			return pipe_err(s);
		if (k == 0 ? send_all(s) : send_todo(s, clear))
			return -1;
		rd = (struct hvmctx_round){ .iteration = k, .pages_sent = s->pages_done - p0,
					    .bytes = sr_writer_offset(s->w) - b0,
					    .duration_ns = hvmctx_now_ns() - t0 };
		dirty = fetch_dirty(s);
		if (dirty < 0)
			return -1;
		rd.pages_dirtied = dirty;
		if (write_round(s, &rd))
			return -1;

		/* Would the remainder fit the downtime at this round's page rate? */
		/*
		 * What a dirty page costs: the bytes an average page that carried
		 * data took this round (a dirtied page carries data; zero pages
		 * and untouched runs, cheap to send, would make the round look
		 * faster than the remainder will be), at this round's byte rate.
		 */
		sr_pipe_stats(s->p, &after);
		uint64_t data_pages = (after.raw + after.lz4) - (before.raw + before.lz4);
		uint64_t page_bytes = data_pages ? (after.data_bytes - before.data_bytes) / data_pages +
						   sizeof(struct sr_page_desc) : SR_PAGE_SIZE;
		uint64_t per_page = rd.bytes ? rd.duration_ns * page_bytes / rd.bytes : 0;

		not_shrinking = (uint64_t)dirty >= prev_dirty ? not_shrinking + 1 : 0;
		prev_dirty = dirty;
		if (s->capped)
			s->st->stop_reason = "the byte cap was reached";
		else if ((uint64_t)dirty * per_page <= target_ns)
			s->st->stop_reason = "the remainder fits the downtime target";
		else if (k + 1 >= max_iters)
			s->st->stop_reason = "max-iters reached";
		else if (!throttle_update(s, rd.pages_sent, dirty) && k > 0 &&
			 not_shrinking >= (o->throttle == HVMCTX_THROTTLE_OFF ? 3u : 1u) &&
			 (uint64_t)dirty * 2 > rd.pages_sent)
			s->st->stop_reason = o->throttle == HVMCTX_THROTTLE_OFF ?
					     "the dirty set stopped shrinking" :
					     "the dirty set stopped shrinking at full throttle";
		if (s->st->stop_reason)
			break;
	}

	/* Stop and copy. */
	if (o->before_pause)
		o->before_pause(o->progress_arg);
	t_pause = hvmctx_now_ns();
	s->st->paused_at_ns = t_pause;
	/* Everything still in todo goes now, whatever stopped pre-copy. */
	s->final = true;
	s->capped = false;
	if (stop_guest(s, true, &clock))
		return -1;
	*paused_here = true;
	s->st->pause_ns = hvmctx_now_ns() - t_pause;
	if (capture_state(s, &clock))
		return -1;
	uint64_t t_pages = hvmctx_now_ns();

	xc_domain_set_throttle(s->d, 0);
	dirty = fetch_dirty(s);
	if (dirty < 0)
		return -1;
	rd.iteration++;
	if (sr_pipe_set_iteration(s->p, rd.iteration, &s->se))
		return pipe_err(s);
	round0_rest_not_in_todo(s);
	{
		uint64_t b0 = sr_writer_offset(s->w), p0 = s->pages_done;

		if (send_todo(s, false) || send_all(s))
			return -1;
		rd = (struct hvmctx_round){ .iteration = rd.iteration, .final = true,
					    .pages_sent = s->pages_done - p0,
					    .bytes = sr_writer_offset(s->w) - b0,
					    .duration_ns = hvmctx_now_ns() - t_pause };
	}
	s->st->final_pages_ns = hvmctx_now_ns() - t_pages;
	t_pages = hvmctx_now_ns();
	if (write_round(s, &rd) || write_state(s))
		return -1;
	s->st->state_ns = hvmctx_now_ns() - t_pages;
	s->st->downtime_ns = hvmctx_now_ns() - t_pause;
	return 0;
}

int hvmctx_save(struct xc_domain *d, int fd, const struct hvmctx_save_opts *o,
		struct hvmctx_save_stats *st, struct xc_error *err)
{
	struct sr_image_info info = { .creator = o->creator, .flags = o->live ? SR_IHDR_F_LIVE : 0 };
	struct save s = { .d = d, .o = o, .st = st, .err = err };
	struct sr_pipe_opts po = { .mode = o->compress, .threads = o->threads,
				   .written = batch_written, .arg = &s,
				   .thread_start = o->thread_start, .thread_arg = o->thread_arg };
	struct sr_batch_stats bs;
	bool paused_here = false;
	uint64_t t0 = hvmctx_now_ns();
	int rc = -1;

	memset(st, 0, sizeof(*st));
	if (o->live == xc_domain_paused(d))
		return xc_set_error(err, 0, o->live ? "a live save needs a running domain"
						    : "the domain must be paused to be saved");
	s.nregs = xc_mem_regions(d, &s.regs);
	s.t_start = t0;
	for (unsigned i = 0; i < xc_domain_vcpus(d); i++)
		s.throttled_before += xc_vcpu_throttled_ns(xc_vcpu_get(d, i));
	for (unsigned r = 0; r < s.nregs; r++)
		s.pages_total += s.regs[r].size / SR_PAGE_SIZE;
	s.w = sr_writer_open(fd, &info, 0, &s.se);
	if (!s.w) {
		sr_err(err, &s.se);
		goto out;
	}
	/* A paused guest's pages are written straight from its memory. */
	po.flags = o->live ? 0 : SR_BATCH_STABLE_SOURCE;
	s.p = sr_pipe_new(s.w, &po, &s.se);
	if (!s.p) {
		sr_err(err, &s.se);
		goto out;
	}
	if (o->cancel)
		sr_writer_set_cancel(s.w, o->cancel);
	/* The total is known now: a caller shows 0 of it until the first batch is out. */
	if (o->progress && o->progress(o->progress_arg, 0, s.pages_total, 0)) {
		xc_set_error(err, ECANCELED, "save cancelled");
		goto out;
	}
	rc = o->live ? save_live(&s, &paused_here) : save_cold(&s);
	if (rc == 0) {
		sr_pipe_stats(s.p, &bs);
		st->pages = bs.pages;
		st->zero = bs.zero;
		st->raw = bs.raw;
		st->lz4 = bs.lz4;
		st->bytes = sr_writer_offset(s.w);
		st->duration_ns = hvmctx_now_ns() - t0;
	}
out:
	if (o->live) {
		xc_domain_set_throttle(d, 0);
		for (unsigned i = 0; i < xc_domain_vcpus(d); i++)
			st->throttled_ns += xc_vcpu_throttled_ns(xc_vcpu_get(d, i));
		st->throttled_ns -= s.throttled_before;
		xc_dirty_log_enable(d, o->dirty_mode, false, NULL);
		if (rc && paused_here)
			xc_domain_resume(d, NULL);
	}
	for (unsigned r = 0; r < s.nregs; r++)
		free(s.todo[r]);
	hvmctx_set_free(&s.hvm);
	for (unsigned i = 0; i < XC_MAX_VCPUS; i++)
		hvmctx_set_free(&s.vcpu[i]);
	free(s.fetched);
	sr_pipe_free(s.p);		/* before the domain's memory could go: workers read it */
	sr_writer_free(s.w);
	return rc;
}
