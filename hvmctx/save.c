/* SPDX-License-Identifier: MIT */
/*
 * The save core: a paused domain to an sr image.
 *
 * Order follows the Xen HVM layout: DOMAIN, every populated page in
 * PAGE_DATA batches, HVM_CONTEXT, one VCPU_CONTEXT per vCPU, DEVICE
 * records, END.  The clock is read first, at pause time, so guest time is
 * measured from when the guest stopped, not from when its context was
 * written.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "hvmctx.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int sr_err(struct xc_error *err, const struct sr_error *se)
{
	char buf[256];

	xc_set_error(err, 0, "%s", se->code == SR_E_IO ? se->msg : sr_error_format(se, buf, sizeof(buf)));
	err->sys_errno = se->sys_errno;
	return -1;
}

static int write_domain(struct sr_writer *w, struct xc_domain *d,
			const struct hvmctx_save_opts *o, uint64_t *mem, struct sr_error *se)
{
	const struct xc_region *regs;
	unsigned n = xc_mem_regions(d, &regs);
	struct sr_region r[SR_MAX_REGIONS];
	struct sr_rec_domain dom = { .guest_kind = o->guest_kind, .vcpu_count = xc_domain_vcpus(d),
				     .region_count = n, .boot_entry = o->boot_entry,
				     .boot_arg = o->boot_arg };

	snprintf(dom.name, sizeof(dom.name), "%s", o->name ? o->name : "");
	if (o->uuid)
		memcpy(dom.uuid, o->uuid, 16);
	*mem = 0;
	for (unsigned i = 0; i < n; i++) {
		r[i] = (struct sr_region){ regs[i].gpa, regs[i].size, SR_REGION_F_RAM, regs[i].slot };
		*mem += regs[i].size;
	}
	return sr_write_domain(w, &dom, r, se);
}

static int write_pages(struct sr_writer *w, struct xc_domain *d, const struct hvmctx_save_opts *o,
		       struct hvmctx_save_stats *st, struct sr_error *se, struct xc_error *err)
{
	const struct xc_region *regs;
	unsigned n = xc_mem_regions(d, &regs);
	/* The guest is paused: pages are written straight from its memory. */
	struct sr_batch *b = sr_batch_new(o->compress, SR_BATCH_STABLE_SOURCE);
	struct sr_batch_stats bs;
	uint64_t done = 0, total = st->mem_bytes / SR_PAGE_SIZE;
	int rc = -1;

	if (!b)
		return xc_set_error(err, ENOMEM, "page batch");
	sr_batch_reset(b, 0);
	for (unsigned i = 0; i < n; i++)
		for (uint64_t off = 0; off < regs[i].size; off += SR_PAGE_SIZE) {
			if (sr_batch_add(b, (regs[i].gpa + off) >> SR_PAGE_SHIFT, regs[i].hva + off) ==
			    SR_BATCH_MAX_PAGES) {
				if (sr_write_page_batch(w, b, se)) {
					sr_err(err, se);
					goto out;
				}
				done += SR_BATCH_MAX_PAGES;
				if (o->progress && o->progress(o->progress_arg, done, total,
							       sr_writer_offset(w))) {
					xc_set_error(err, ECANCELED, "save cancelled");
					goto out;
				}
			}
		}
	if (sr_write_page_batch(w, b, se)) {
		sr_err(err, se);
		goto out;
	}
	sr_batch_stats(b, &bs);
	st->pages = bs.pages;
	st->zero = bs.zero;
	st->raw = bs.raw;
	st->lz4 = bs.lz4;
	rc = 0;
out:
	sr_batch_free(b);
	return rc;
}

int hvmctx_save(struct xc_domain *d, int fd, const struct hvmctx_save_opts *o,
		struct hvmctx_save_stats *st, struct xc_error *err)
{
	struct sr_image_info info = { .creator = o->creator };
	struct kvm_clock_data clock;
	struct hvmctx_set set = { .n = 0 };
	struct sr_rec_iteration it = { .iteration = 0, .flags = SR_ITER_F_FINAL };
	struct sr_error se;
	struct sr_writer *w = NULL;
	uint64_t t0 = now_ns();
	int rc = -1;

	memset(st, 0, sizeof(*st));
	if (!xc_domain_paused(d))
		return xc_set_error(err, 0, "the domain must be paused to be saved");
	if (hvmctx_capture_clock(d, &clock, err))
		return -1;
	/* The guest learns it was stopped, so its watchdogs do not fire. */
	for (unsigned i = 0; i < xc_domain_vcpus(d); i++)
		if (ioctl(xc_vcpu_fd(xc_vcpu_get(d, i)), KVM_KVMCLOCK_CTRL, 0) && errno != EINVAL)
			return xc_set_error(err, errno, "KVM_KVMCLOCK_CTRL on vCPU %u", i);

	w = sr_writer_open(fd, &info, 0, &se);
	if (!w) {
		sr_err(err, &se);
		goto out;
	}
	if (write_domain(w, d, o, &st->mem_bytes, &se)) {
		sr_err(err, &se);
		goto out;
	}
	if (write_pages(w, d, o, st, &se, err))
		goto out;
	it.pages_sent = st->pages;
	it.bytes = sr_writer_offset(w);
	it.duration_ns = now_ns() - t0;
	if (sr_write_iteration(w, &it, &se)) {
		sr_err(err, &se);
		goto out;
	}
	if (hvmctx_capture_vm(d, &clock, &set, err))
		goto out;
	if (sr_write_context(w, SR_REC_HVM_CONTEXT, 0, set.blk, set.n, &se)) {
		sr_err(err, &se);
		goto out;
	}
	hvmctx_set_free(&set);
	for (unsigned i = 0; i < xc_domain_vcpus(d); i++) {
		if (hvmctx_capture_vcpu(xc_vcpu_get(d, i), &set, err))
			goto out;
		if (sr_write_context(w, SR_REC_VCPU_CONTEXT, i, set.blk, set.n, &se)) {
			sr_err(err, &se);
			goto out;
		}
		hvmctx_set_free(&set);
	}
	for (unsigned i = 0; i < o->ndevices; i++) {
		const struct hvmctx_device *dev = &o->devices[i];

		if (sr_write_device(w, dev->name, dev->version, dev->instance, dev->data, dev->len,
				    &se)) {
			sr_err(err, &se);
			goto out;
		}
	}
	if (sr_write_end(w, &se)) {
		sr_err(err, &se);
		goto out;
	}
	st->bytes = sr_writer_offset(w);
	st->duration_ns = now_ns() - t0;
	rc = 0;
out:
	hvmctx_set_free(&set);
	sr_writer_free(w);
	return rc;
}
