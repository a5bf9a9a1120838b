/* SPDX-License-Identifier: MIT */
/*
 * The restore core: an sr image into a fresh domain.
 *
 * Pages go into guest memory as their records verify (an image can be far
 * larger than what a reader may hold).  Every context record is kept until
 * END has verified the whole stream; only then is any CPU or device state
 * loaded, so a corrupt image never reaches KVM's vCPU state and no vCPU
 * ever runs from it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hvmctx.h"
#include "hvmctx_priv.h"

struct saved_rec {
	struct sr_record rec;
	void *body;
};

struct hvmctx_restore {
	struct sr_reader *r;
	struct hvmctx_image img;
	struct saved_rec hvm;
	struct saved_rec *vcpu;		/* by vCPU id */
	struct saved_rec *dev;
	unsigned ndev;
	uint64_t *written[XC_MAX_REGIONS];	/* pages this restore put data in */
};

/* Image errors carry EBADMSG so a tool can tell a bad image from a bad host. */
static int sr_err(struct xc_error *err, const struct sr_error *se)
{
	char buf[256];

	xc_set_error(err, 0, "%s", sr_error_format(se, buf, sizeof(buf)));
	err->sys_errno = se->code == SR_E_IO || se->code == SR_E_NOMEM ? se->sys_errno : EBADMSG;
	return -1;
}

static int keep(struct saved_rec *s, const struct sr_record *rec, struct xc_error *err)
{
	s->body = malloc(rec->length ? rec->length : 1);
	if (!s->body)
		return xc_set_error(err, ENOMEM, "keeping record %llu", (unsigned long long)rec->index);
	memcpy(s->body, rec->body, rec->length);
	s->rec = *rec;
	s->rec.body = s->body;
	return 0;
}

/*
 * RAM may go anywhere but over the fixed pages below 4 GiB (x86_layout.h).
 * Only an image from before the hole has it there: one region from 0 of a
 * guest of more than 4076 MiB, whose APICs were under its RAM, so that it
 * never ran properly; it is refused here, before anything is allocated.
 */
static int check_layout(const struct hvmctx_image *img, struct xc_error *err)
{
	for (unsigned i = 0; i < img->nregions; i++) {
		const struct sr_region *g = &img->regions[i];

		if (x86_covers_fixed(g->gpa, g->size))
			return xc_set_error(err, 0, "region %u (RAM at 0x%llx, %llu MiB) covers the "
					    "IOAPIC, LAPIC and KVM's TSS at 0x%llx..0x%llx: an image "
					    "of a guest bigger than %llu MiB from before sr's layout "
					    "had a hole below 4 GiB, which could not run; not restored",
					    i, (unsigned long long)g->gpa,
					    (unsigned long long)(g->size >> 20),
					    (unsigned long long)X86_FIXED_START,
					    (unsigned long long)(X86_HOLE_END - 1),
					    (unsigned long long)(X86_FIXED_START >> 20));
	}
	return 0;
}

struct hvmctx_restore *hvmctx_restore_begin(int fd, struct hvmctx_image *img,
					    struct xc_error *err)
{
	struct hvmctx_restore *rs = calloc(1, sizeof(*rs));
	const struct sr_rec_domain *dom;
	const struct sr_region *regs;
	struct sr_record rec;
	struct sr_error se;

	if (!rs) {
		xc_set_error(err, ENOMEM, "restore state");
		return NULL;
	}
	rs->r = sr_reader_open(fd, &se);
	if (!rs->r)
		goto bad;
	/* The reader insists that DOMAIN comes first. */
	if (sr_reader_next(rs->r, &rec, &se) != 1)
		goto bad;
	dom = sr_reader_domain(rs->r, &regs);
	img->guest_kind = dom->guest_kind;
	img->vcpus = dom->vcpu_count;
	img->nregions = dom->region_count;
	memcpy(img->regions, regs, dom->region_count * sizeof(*regs));
	memcpy(img->name, dom->name, sizeof(img->name));
	memcpy(img->uuid, dom->uuid, 16);
	img->boot_entry = dom->boot_entry;
	img->boot_arg = dom->boot_arg;
	img->created_ns = sr_reader_header(rs->r)->created_ns;
	memcpy(img->creator, sr_reader_header(rs->r)->creator, sizeof(img->creator));
	if (check_layout(img, err)) {
		hvmctx_restore_free(rs);
		return NULL;
	}
	rs->img = *img;
	rs->vcpu = calloc(img->vcpus, sizeof(*rs->vcpu));
	if (!rs->vcpu) {
		xc_set_error(err, ENOMEM, "vCPU records");
		hvmctx_restore_free(rs);
		return NULL;
	}
	return rs;
bad:
	sr_err(err, &se);
	hvmctx_restore_free(rs);
	return NULL;
}

void hvmctx_restore_stop_at_end(struct hvmctx_restore *rs)
{
	sr_reader_stop_at_end(rs->r);
}

void hvmctx_restore_free(struct hvmctx_restore *rs)
{
	if (!rs)
		return;
	sr_reader_free(rs->r);
	free(rs->hvm.body);
	for (unsigned i = 0; rs->vcpu && i < rs->img.vcpus; i++)
		free(rs->vcpu[i].body);
	free(rs->vcpu);
	for (unsigned i = 0; i < rs->ndev; i++)
		free(rs->dev[i].body);
	free(rs->dev);
	for (unsigned i = 0; i < XC_MAX_REGIONS; i++)
		free(rs->written[i]);
	free(rs);
}

/* Which region holds pfn, and the page's index in it; -1 when none. */
static int page_slot(const struct xc_region *regs, unsigned n, uint64_t pfn, uint64_t *idx)
{
	for (unsigned i = 0; i < n; i++)
		if (pfn >= regs[i].gpa >> SR_PAGE_SHIFT &&
		    pfn - (regs[i].gpa >> SR_PAGE_SHIFT) < regs[i].size >> SR_PAGE_SHIFT) {
			*idx = pfn - (regs[i].gpa >> SR_PAGE_SHIFT);
			return i;
		}
	return -1;
}

/*
 * A zero run: pages an earlier round filled get their memory handed back
 * (holes punched, neighbours together); the rest is fresh memory, left
 * untouched.
 */
static int load_zero_run(struct hvmctx_restore *rs, struct xc_domain *d, unsigned slot,
			 uint64_t idx, uint64_t n, struct xc_error *err)
{
	uint64_t *w = rs->written[slot];

	for (uint64_t i = idx; i < idx + n;) {
		uint64_t start;

		if (!(w[i / 64] >> (i % 64))) {		/* nothing written from here in this word */
			i = (i / 64 + 1) * 64;
			continue;
		}
		if (!(w[i / 64] & (1ull << (i % 64)))) {
			i++;
			continue;
		}
		for (start = i; i < idx + n && (w[i / 64] & (1ull << (i % 64))); i++)
			w[i / 64] &= ~(1ull << (i % 64));
		if (xc_mem_discard(d, slot, start * SR_PAGE_SIZE, (i - start) * SR_PAGE_SIZE, err))
			return -1;
	}
	return 0;
}

/*
 * Maps in, one call per run of consecutive pfns, the pages of this batch
 * that carry data: a page fault per page is most of what filling fresh
 * memory costs.  Zero pages are left alone, as ever.
 */
static void prefault_batch(struct xc_domain *d, const struct sr_page_desc *desc, unsigned count)
{
	const struct xc_region *regs;
	unsigned nregs = xc_mem_regions(d, &regs);
	uint64_t first = 0, n = 0, idx = 0;
	int slot = -1, s;

	for (unsigned i = 0; i <= count; i++) {
		const struct sr_page_desc *pd = i < count ? &desc[i] : NULL;
		bool data = pd && pd->enc != SR_PAGE_ZERO && pd->enc != SR_PAGE_ZERO_RUN;

		s = data ? page_slot(regs, nregs, pd->pfn, &idx) : -1;
		if (n && (s != slot || idx != first + n)) {
			xc_mem_prefault(d, slot, first * SR_PAGE_SIZE, n * SR_PAGE_SIZE);
			n = 0;
		}
		if (s < 0)
			continue;
		if (!n) {
			slot = s;
			first = idx;
		}
		n++;
	}
}

/* The page sink: where the reader puts a placed record's pages. */
static void *sink_page_addr(void *arg, uint64_t pfn)
{
	const struct xc_region *regs;
	unsigned nregs = xc_mem_regions(arg, &regs);
	uint64_t idx;
	int slot = page_slot(regs, nregs, pfn, &idx);

	return slot < 0 ? NULL : (uint8_t *)regs[slot].hva + idx * SR_PAGE_SIZE;
}

static void sink_batch(void *arg, const struct sr_page_desc *desc, unsigned n)
{
	prefault_batch(arg, desc, n);
}

/*
 * Pages go straight into guest memory: the reader reads raw pages of a
 * placed record into their pages and decodes its lz4 pages there once its
 * checksum has verified; any other record's pages are decoded here, in
 * place.  A page that fails to verify or decode aborts the restore before
 * any vCPU exists.  A ZERO page costs nothing: fresh memfd memory is zero
 * already, so it is not touched, which keeps a restore's memory to what the
 * image paid for; only a page an earlier round filled has its memory handed
 * back (a hole punched).
 */
static int load_pages(struct hvmctx_restore *rs, struct xc_domain *d, const struct sr_record *rec,
		      uint64_t *pages, struct xc_error *err)
{
	const struct xc_region *regs;
	unsigned nregs = xc_mem_regions(d, &regs);
	struct sr_page_iter it;
	const struct sr_page_desc *pd;
	struct sr_error se;
	int rc;

	sr_page_iter_init(rec, &it);
	if (!rec->placed)		/* the reader did, for a placed one */
		prefault_batch(d, it.desc, it.count);
	for (;;) {
		/* Peek at the encoding: a ZERO page is never decoded. */
		const struct sr_page_desc *next = it.i < it.count ? &it.desc[it.i] : NULL;
		uint64_t idx;
		int slot = next ? page_slot(regs, nregs, next->pfn, &idx) : -1;
		void *dst;

		if (!next)
			break;
		if (slot < 0)
			return xc_set_error(err, 0, "record %llu (PAGE_DATA): pfn 0x%llx is not guest RAM",
					    (unsigned long long)rec->index,
					    (unsigned long long)next->pfn);
		if (!rs->written[slot]) {
			rs->written[slot] = calloc((regs[slot].size / SR_PAGE_SIZE + 63) / 64, 8);
			if (!rs->written[slot])
				return xc_set_error(err, ENOMEM, "restore page bitmap");
		}
		if (next->enc == SR_PAGE_ZERO_RUN) {
			/* The reader checked that the run stays in this region. */
			if (sr_page_iter_next(&it, &pd, NULL, &se) != 1 ||
			    load_zero_run(rs, d, slot, idx, pd->length, err))
				return -1;
			*pages += pd->length;
			continue;
		}
		uint64_t *w = &rs->written[slot][idx / 64], bit = 1ull << (idx % 64);

		dst = regs[slot].hva + idx * SR_PAGE_SIZE;
		rc = sr_page_iter_next(&it, &pd, next->enc == SR_PAGE_ZERO ? NULL : dst, &se);
		if (rc < 0)
			return sr_err(err, &se);
		if (rc == 0)
			break;
		if (pd->enc != SR_PAGE_ZERO) {
			*w |= bit;
		} else if (*w & bit) {
			if (xc_mem_discard(d, slot, idx * SR_PAGE_SIZE, SR_PAGE_SIZE, err))
				return -1;
			*w &= ~bit;
		}
		(*pages)++;
	}
	return 0;
}

static int read_stream(struct hvmctx_restore *rs, struct xc_domain *d,
		       const struct hvmctx_restore_opts *o, struct hvmctx_restore_stats *st,
		       struct xc_error *err)
{
	struct sr_record rec;
	struct sr_error se;
	int rc;

	while ((rc = sr_reader_next(rs->r, &rec, &se)) == 1) {
		const struct sr_rec_context *c;
		struct saved_rec *grown;

		st->records++;
		if (o->progress)
			o->progress(o->progress_arg, sr_reader_offset(rs->r));
		if (!rec.known)
			continue;		/* unknown optional record */
		switch (rec.type) {
		case SR_REC_PAGE_DATA:
			if (load_pages(rs, d, &rec, &st->pages, err))
				return -1;
			break;
		case SR_REC_HVM_CONTEXT:
			if (keep(&rs->hvm, &rec, err))
				return -1;
			break;
		case SR_REC_VCPU_CONTEXT:
			c = rec.body;		/* id checked by the reader: < vcpus, unique */
			if (keep(&rs->vcpu[c->id], &rec, err))
				return -1;
			break;
		case SR_REC_DEVICE:
		case SR_REC_DISK:	/* kept in stream order with the devices */
			grown = realloc(rs->dev, (rs->ndev + 1) * sizeof(*grown));
			if (!grown)
				return xc_set_error(err, ENOMEM, "device records");
			rs->dev = grown;
			memset(&rs->dev[rs->ndev], 0, sizeof(rs->dev[0]));
			if (keep(&rs->dev[rs->ndev], &rec, err))
				return -1;
			rs->ndev++;
			break;
		}
	}
	if (rc < 0)
		return sr_err(err, &se);
	st->records++;			/* END */
	st->bytes = sr_reader_offset(rs->r);
	{
		struct sr_reader_stats rst;

		sr_reader_stats(rs->r, &rst);
		st->placed = rst.placed;
		st->buffered = rst.buffered;
	}
	return 0;
}

/* The DISK records, to the caller, before anything reaches KVM. */
static int give_disks(struct hvmctx_restore *rs, const struct hvmctx_restore_opts *o,
		      struct xc_error *err)
{
	struct sr_disk_info *info = NULL;
	unsigned n = 0;
	int rc = 0;

	for (unsigned i = 0; i < rs->ndev && !rc; i++) {
		if (rs->dev[i].rec.type != SR_REC_DISK)
			continue;
		if (!info && !(info = malloc(sizeof(*info))))
			return xc_set_error(err, ENOMEM, "disk record");
		sr_disk_view(&rs->dev[i].rec, info);
		n++;
		if (!o->disk)
			rc = xc_set_error(err, 0, "record %llu: DISK %u (%s): this restorer has no "
					  "disks", (unsigned long long)rs->dev[i].rec.index,
					  info->disk, info->path);
		else
			rc = o->disk(o->disk_arg, info, err);
	}
	free(info);
	if (!rc && o->disks_done)
		rc = o->disks_done(o->disk_arg, n, err);
	return rc;
}

int hvmctx_restore_finish(struct hvmctx_restore *rs, struct xc_domain *d,
			  const struct hvmctx_restore_opts *o, struct hvmctx_restore_stats *st,
			  struct xc_error *err)
{
	uint64_t t0 = hvmctx_now_ns();
	struct sr_page_sink sink = { .page_addr = sink_page_addr, .batch = sink_batch, .arg = d,
				     .threads = o->threads, .thread_start = o->thread_start,
				     .thread_arg = o->thread_arg };
	struct sr_error se;

	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < rs->img.nregions; i++) {
		const struct sr_region *g = &rs->img.regions[i];

		if (xc_mem_add(d, g->gpa, g->size, err))
			return -1;
	}
	if (sr_reader_set_page_sink(rs->r, &sink, &se))
		return sr_err(err, &se);
	if (read_stream(rs, d, o, st, err))
		return -1;
	st->stream_ns = hvmctx_now_ns() - t0;
	if (give_disks(rs, o, err))
		return -1;

	/* Can this host's KVM run what the guest was using?  Asked before any vCPU exists. */
	for (unsigned i = 0; i < rs->img.vcpus; i++)
		if (hvmctx_check_cpu(d, &rs->vcpu[i].rec, err))
			return -1;
	if (hvmctx_check_msrs(d, &rs->vcpu[0].rec, err))
		return -1;

	/* The whole image has verified: now state goes into KVM, one vCPU at a time. */
	for (unsigned i = 0; i < rs->img.vcpus; i++) {
		struct xc_vcpu *v = xc_vcpu_create(d, i, err);

		if (!v)
			return -1;
		if (hvmctx_apply_tsc_khz(v, &rs->hvm.rec, err) ||
		    hvmctx_apply_vcpu(v, &rs->vcpu[i].rec, err))
			return -1;
	}
	if (hvmctx_apply_vm(d, &rs->hvm.rec, err))
		return -1;
	for (unsigned i = 0; i < rs->ndev; i++) {
		const void *data;
		size_t len;
		const struct sr_rec_device *dev;

		if (rs->dev[i].rec.type != SR_REC_DEVICE)
			continue;
		dev = sr_device_view(&rs->dev[i].rec, &data, &len);
		if (!o->device)
			return xc_set_error(err, 0, "record %llu: DEVICE \"%s\" has no model here",
					    (unsigned long long)rs->dev[i].rec.index, dev->name);
		if (o->device(o->device_arg, dev->name, dev->version, dev->instance, data, len, err))
			return -1;
	}
	{
		const struct sr_record *vrec[XC_MAX_VCPUS];

		for (unsigned i = 0; i < rs->img.vcpus && i < XC_MAX_VCPUS; i++)
			vrec[i] = &rs->vcpu[i].rec;
		if (hvmctx_apply_time(d, &rs->hvm.rec, vrec, o->clock, rs->img.created_ns, st, err))
			return -1;
	}
	st->duration_ns = hvmctx_now_ns() - t0;
	return 0;
}
