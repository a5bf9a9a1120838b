/* SPDX-License-Identifier: MIT */
/*
 * Per-vCPU state pieces.  One row per piece: its block kind, its place in
 * the capture order and in the apply order, and its capture and apply
 * functions.  The orders carry the rules peers learned the hard way:
 * capture MP state first and events last; apply CPUID first, SREGS before
 * LAPIC (SREGS sets the APIC base), LAPIC before MSRS (TSC-deadline only
 * sticks in TSC-deadline mode), REGS before EVENTS, and within MSRS the TSC
 * before the TSC deadline.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hvmctx.h"
#include "hvmctx_priv.h"

#define MAX_MSRS		1024

struct piece {
	uint32_t kind;
	int capture_rank, apply_rank;	/* -1: not captured / not applied here */
	int (*capture)(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs, void **data,
		       uint32_t *len, struct xc_error *err);
	int (*apply)(struct xc_vcpu *v, const void *data, uint32_t len, struct xc_error *err);
};

/* Allocates len bytes for a capture; callers free on failure. */
static void *zalloc(size_t len, void **data, uint32_t *outlen)
{
	*data = calloc(1, len);
	*outlen = len;
	return *data;
}

#define SIMPLE_PIECE(fn, type, get, set, what)					\
static int cap_##fn(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs, void **data,	\
		    uint32_t *len, struct xc_error *err)					\
{										\
	(void)msrs;								\
	if (!zalloc(sizeof(type), data, len))					\
		return xc_set_error(err, ENOMEM, what);				\
	if (ioctl(xc_vcpu_fd(v), get, *data))					\
		return xc_set_error(err, errno, #get " on vCPU %u", xc_vcpu_id(v)); \
	return 0;								\
}										\
static int app_##fn(struct xc_vcpu *v, const void *data, uint32_t len, struct xc_error *err) \
{										\
	(void)len;								\
	if (ioctl(xc_vcpu_fd(v), set, data))					\
		return xc_set_error(err, errno, #set " on vCPU %u", xc_vcpu_id(v)); \
	return 0;								\
}

SIMPLE_PIECE(mp_state, struct kvm_mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE, "MP state")
SIMPLE_PIECE(regs, struct kvm_regs, KVM_GET_REGS, KVM_SET_REGS, "regs")
SIMPLE_PIECE(sregs, struct kvm_sregs, KVM_GET_SREGS, KVM_SET_SREGS, "sregs")
SIMPLE_PIECE(xcrs, struct kvm_xcrs, KVM_GET_XCRS, KVM_SET_XCRS, "xcrs")
SIMPLE_PIECE(debugregs, struct kvm_debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, "debugregs")
SIMPLE_PIECE(lapic, struct kvm_lapic_state, KVM_GET_LAPIC, KVM_SET_LAPIC, "lapic")

static bool has_cap(struct xc_vcpu *v, long cap)
{
	return xc_check_cap(xc_vcpu_domain(v), cap) > 0;
}

static int cap_sregs2(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs, void **data,
		      uint32_t *len, struct xc_error *err)
{
	(void)msrs;
	if (!has_cap(v, KVM_CAP_SREGS2))
		return 1;			/* optional: not offered */
	if (!zalloc(sizeof(struct kvm_sregs2), data, len))
		return xc_set_error(err, ENOMEM, "sregs2");
	if (ioctl(xc_vcpu_fd(v), KVM_GET_SREGS2, *data))
		return xc_set_error(err, errno, "KVM_GET_SREGS2 on vCPU %u", xc_vcpu_id(v));
	return 0;
}

static int app_sregs2(struct xc_vcpu *v, const void *data, uint32_t len, struct xc_error *err)
{
	(void)len;
	if (ioctl(xc_vcpu_fd(v), KVM_SET_SREGS2, data))
		return xc_set_error(err, errno, "KVM_SET_SREGS2 on vCPU %u", xc_vcpu_id(v));
	return 0;
}

static int cap_events(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs, void **data,
		      uint32_t *len, struct xc_error *err)
{
	(void)msrs;
	if (!zalloc(sizeof(struct kvm_vcpu_events), data, len))
		return xc_set_error(err, ENOMEM, "events");
	if (ioctl(xc_vcpu_fd(v), KVM_GET_VCPU_EVENTS, *data))
		return xc_set_error(err, errno, "KVM_GET_VCPU_EVENTS on vCPU %u", xc_vcpu_id(v));
	return 0;
}

/*
 * The flags go back as GET gave them: GET sets VALID_NMI_PENDING itself, and
 * never VALID_SIPI_VECTOR (it reports no SIPI vector: the field is 0), so
 * claiming it would write vector 0 into the LAPIC's SIPI vector.
 */
static int app_events(struct xc_vcpu *v, const void *data, uint32_t len, struct xc_error *err)
{
	struct kvm_vcpu_events ev;

	(void)len;
	memcpy(&ev, data, sizeof(ev));
	if (ioctl(xc_vcpu_fd(v), KVM_SET_VCPU_EVENTS, &ev))
		return xc_set_error(err, errno, "KVM_SET_VCPU_EVENTS on vCPU %u", xc_vcpu_id(v));
	return 0;
}

static int cap_cpuid(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs, void **data,
		      uint32_t *len, struct xc_error *err)
{
	struct kvm_cpuid2 *c;
	uint32_t n = 256;

	(void)msrs;
	if (!zalloc(sizeof(*c) + n * sizeof(c->entries[0]), data, len))
		return xc_set_error(err, ENOMEM, "cpuid");
	c = *data;
	c->nent = n;
	if (ioctl(xc_vcpu_fd(v), KVM_GET_CPUID2, c))
		return xc_set_error(err, errno, "KVM_GET_CPUID2 on vCPU %u", xc_vcpu_id(v));
	*len = sizeof(*c) + c->nent * sizeof(c->entries[0]);
	c->padding = 0;
	/* The image promises zero reserved fields (docs/format.md), whatever was set. */
	for (uint32_t i = 0; i < c->nent; i++)
		memset(c->entries[i].padding, 0, sizeof(c->entries[i].padding));
	return 0;
}

static int app_cpuid(struct xc_vcpu *v, const void *data, uint32_t len, struct xc_error *err)
{
	(void)len;
	if (ioctl(xc_vcpu_fd(v), KVM_SET_CPUID2, data))
		return xc_set_error(err, errno, "KVM_SET_CPUID2 on vCPU %u (the image's CPU "
				    "features may not exist on this host)", xc_vcpu_id(v));
	return 0;
}

static uint32_t xsave_size(struct xc_vcpu *v)
{
	int n = xc_check_cap(xc_vcpu_domain(v), KVM_CAP_XSAVE2);

	return n > (int)sizeof(struct kvm_xsave) ? (uint32_t)n : sizeof(struct kvm_xsave);
}

static int cap_xsave(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs, void **data,
		      uint32_t *len, struct xc_error *err)
{
	uint32_t size = xsave_size(v);
	bool big = size > sizeof(struct kvm_xsave);

	(void)msrs;
	if (!zalloc(size, data, len))
		return xc_set_error(err, ENOMEM, "xsave");
	if (ioctl(xc_vcpu_fd(v), big ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, *data))
		return xc_set_error(err, errno, "KVM_GET_XSAVE on vCPU %u", xc_vcpu_id(v));
	return 0;
}

static int app_xsave(struct xc_vcpu *v, const void *data, uint32_t len, struct xc_error *err)
{
	uint32_t size = xsave_size(v);
	void *buf;
	int rc = 0;

	if (len > size)
		return hvmctx_host_lacks(err, "vCPU %u: XSAVE state of %u bytes, this host holds %u",
					 xc_vcpu_id(v), len, size);
	buf = calloc(1, size);
	if (!buf)
		return xc_set_error(err, ENOMEM, "xsave");
	memcpy(buf, data, len);
	if (ioctl(xc_vcpu_fd(v), KVM_SET_XSAVE, buf))
		rc = xc_set_error(err, errno, "KVM_SET_XSAVE on vCPU %u", xc_vcpu_id(v));
	free(buf);
	return rc;
}

static int cap_tsc_offset(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs, void **data,
			  uint32_t *len, struct xc_error *err)
{
	(void)msrs;
	if (hvmctx_tsc_offset_attr(v, KVM_HAS_DEVICE_ATTR, NULL))
		return 1;			/* optional: not offered */
	/* A scaled TSC's offset is not against the host TSC that CLOCK stamps. */
	if (hvmctx_tsc_scaled(v))
		return 1;
	if (!zalloc(8, data, len))
		return xc_set_error(err, ENOMEM, "tsc offset");
	if (hvmctx_tsc_offset_attr(v, KVM_GET_DEVICE_ATTR, *data))
		return xc_set_error(err, errno, "reading the TSC offset of vCPU %u", xc_vcpu_id(v));
	return 0;
}

/* ---------------------------------------------------------------- MSRs */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

const uint32_t hvmctx_pv_msrs[] = { 0x11, 0x12, 0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03,
				    0x4b564d04, 0x4b564d05, 0x4b564d06, 0x4b564d07, 0x4b564d08 };
const unsigned hvmctx_n_pv_msrs = sizeof(hvmctx_pv_msrs) / sizeof(hvmctx_pv_msrs[0]);

struct hvmctx_msr_list {
	uint32_t n;
	uint32_t idx[MAX_MSRS + 16];
};

/*
 * KVM's index list plus the KVM paravirtual range, each kept only if
 * KVM_GET_MSRS reads it on this vCPU, with the TSC deadline moved last so
 * that it is set after the TSC.
 */
struct hvmctx_msr_list *hvmctx_msr_list_make(struct xc_vcpu *v, struct xc_error *err)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + MAX_MSRS * 4);
	struct hvmctx_msr_list *out = calloc(1, sizeof(*out));
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } one;
	uint32_t cand[MAX_MSRS + 16], nc = 0, k = 0;
	bool deadline = false;

	if (!l || !out) {
		free(l);
		free(out);
		xc_set_error(err, ENOMEM, "MSR list");
		return NULL;
	}
	l->nmsrs = MAX_MSRS;
	if (ioctl(xc_domain_kvm_fd(xc_vcpu_domain(v)), KVM_GET_MSR_INDEX_LIST, l)) {
		xc_set_error(err, errno, "KVM_GET_MSR_INDEX_LIST");
		free(l);
		free(out);
		return NULL;
	}
	memcpy(cand, l->indices, l->nmsrs * 4);
	nc = l->nmsrs;
	free(l);
	memcpy(cand + nc, hvmctx_pv_msrs, hvmctx_n_pv_msrs * 4);
	nc += hvmctx_n_pv_msrs;
	qsort(cand, nc, 4, cmp_u32);
	for (uint32_t i = 0; i < nc; i++) {
		if (i && cand[i] == cand[i - 1])
			continue;
		memset(&one, 0, sizeof(one));
		one.h.nmsrs = 1;
		one.e.index = cand[i];
		if (ioctl(xc_vcpu_fd(v), KVM_GET_MSRS, &one) != 1)
			continue;		/* not readable on this vCPU: not state to carry */
		if (cand[i] == MSR_IA32_TSC_DEADLINE) {
			deadline = true;
			continue;
		}
		out->idx[k++] = cand[i];
	}
	if (deadline)
		out->idx[k++] = MSR_IA32_TSC_DEADLINE;
	out->n = k;
	return out;
}

void hvmctx_msr_list_free(struct hvmctx_msr_list *l)
{
	free(l);
}

/*
 * KVM_GET_MSRS / KVM_SET_MSRS in chunks: KVM refuses 256 or more entries in
 * one call (MAX_IO_MSRS).  Returns how many were done in all, stopping at
 * the first chunk that came up short, or -1.
 */
#define MSR_CHUNK 128

static int msrs_chunked(struct xc_vcpu *v, unsigned long req, struct kvm_msrs *m)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e[MSR_CHUNK]; } c;
	uint32_t done = 0;

	while (done < m->nmsrs) {
		uint32_t k = m->nmsrs - done < MSR_CHUNK ? m->nmsrs - done : MSR_CHUNK;
		int r;

		memset(&c.h, 0, sizeof(c.h));
		c.h.nmsrs = k;
		memcpy(c.e, &m->entries[done], k * sizeof(c.e[0]));
		r = ioctl(xc_vcpu_fd(v), req, &c);
		if (r < 0)
			return done ? (int)done : -1;
		if (req == KVM_GET_MSRS)
			memcpy(&m->entries[done], c.e, r * sizeof(c.e[0]));
		done += r;
		if ((uint32_t)r < k)
			break;
	}
	return done;
}

static int cap_msrs(struct xc_vcpu *v, const struct hvmctx_msr_list *list, void **data,
		    uint32_t *len, struct xc_error *err)
{
	struct hvmctx_msr_list *own = NULL;
	struct kvm_msrs *m;
	uint32_t n;
	int got;

	if (!list && !(list = own = hvmctx_msr_list_make(v, err)))
		return -1;
	n = list->n;
	if (n > MAX_MSRS) {
		free(own);
		return xc_set_error(err, 0, "vCPU %u has %u MSRs to save, the format carries %u",
				    xc_vcpu_id(v), n, MAX_MSRS);
	}
	if (!zalloc(sizeof(*m) + n * sizeof(m->entries[0]), data, len)) {
		free(own);
		return xc_set_error(err, ENOMEM, "msrs");
	}
	m = *data;
	m->nmsrs = n;
	for (uint32_t i = 0; i < n; i++)
		m->entries[i].index = list->idx[i];
	free(own);
	got = msrs_chunked(v, KVM_GET_MSRS, m);
	if (got != (int)n)
		return xc_set_error(err, got < 0 ? errno : 0,
				    "KVM_GET_MSRS on vCPU %u read %d of %u MSRs (stopped at 0x%x)",
				    xc_vcpu_id(v), got, n,
				    got >= 0 && got < (int)n ? m->entries[got].index : 0);
	/* A TSC deadline of 0 means "not armed" and is restored as such. */
	m->pad = 0;
	return 0;
}

static int app_msrs(struct xc_vcpu *v, const void *data, uint32_t len, struct xc_error *err)
{
	const struct kvm_msrs *m = data;
	int set;

	(void)len;
	set = msrs_chunked(v, KVM_SET_MSRS, (struct kvm_msrs *)m);
	if (set != (int)m->nmsrs)
		return xc_set_error(err, set < 0 ? errno : 0,
				    "KVM_SET_MSRS on vCPU %u set %d of %u MSRs (refused 0x%x)",
				    xc_vcpu_id(v), set, m->nmsrs,
				    set >= 0 && set < (int)m->nmsrs ? m->entries[set].index : 0);
	return 0;
}

/* ---------------------------------------------------------------- table */

static const struct piece pieces[] = {
	/* kind               capture apply */
	{ SR_BLK_MP_STATE,    0,  9, cap_mp_state, app_mp_state },
	{ SR_BLK_CPUID,       1,  0, cap_cpuid, app_cpuid },
	{ SR_BLK_REGS,        2,  5, cap_regs, app_regs },
	{ SR_BLK_SREGS,       3,  1, cap_sregs, app_sregs },
	{ SR_BLK_SREGS2,      4,  2, cap_sregs2, app_sregs2 },
	{ SR_BLK_XSAVE,       5,  3, cap_xsave, app_xsave },
	{ SR_BLK_XCRS,        6,  4, cap_xcrs, app_xcrs },
	{ SR_BLK_DEBUGREGS,   7,  6, cap_debugregs, app_debugregs },
	{ SR_BLK_LAPIC,       8,  7, cap_lapic, app_lapic },
	{ SR_BLK_MSRS,        9,  8, cap_msrs, app_msrs },
	{ SR_BLK_TSC_OFFSET, 10, -1, cap_tsc_offset, NULL },	/* applied last: time.c */
	{ SR_BLK_EVENTS,     11, 10, cap_events, app_events },
};
#define NPIECES (sizeof(pieces) / sizeof(pieces[0]))

void hvmctx_set_free(struct hvmctx_set *s)
{
	for (unsigned i = 0; i < s->n; i++)
		free(s->owned[i]);
	s->n = 0;
}

int hvmctx_capture_vcpu(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs,
			struct hvmctx_set *out, struct xc_error *err)
{
	out->n = 0;
	for (int rank = 0; rank < (int)NPIECES; rank++)
		for (unsigned i = 0; i < NPIECES; i++) {
			void *data = NULL;
			uint32_t len = 0;
			int rc;

			if (pieces[i].capture_rank != rank)
				continue;
			rc = pieces[i].capture(v, msrs, &data, &len, err);
			if (rc < 0) {
				free(data);
				hvmctx_set_free(out);
				return -1;
			}
			if (rc > 0)
				continue;	/* optional piece this kernel does not offer */
			out->owned[out->n] = data;
			out->blk[out->n++] = (struct sr_block){ pieces[i].kind, len, data };
		}
	return 0;
}

/* Confirms that what KVM now holds is what the image said. */
static int confirm(struct xc_vcpu *v, const struct sr_record *rec, struct xc_error *err)
{
	struct kvm_regs regs, want_regs;
	struct kvm_sregs sregs, want_sregs;
	struct sr_block b;

	if (!sr_context_find(rec, SR_BLK_REGS, &b))
		return xc_set_error(err, 0, "vCPU %u: no REGS block", xc_vcpu_id(v));
	memcpy(&want_regs, b.data, sizeof(want_regs));
	if (!sr_context_find(rec, SR_BLK_SREGS, &b))
		return xc_set_error(err, 0, "vCPU %u: no SREGS block", xc_vcpu_id(v));
	memcpy(&want_sregs, b.data, sizeof(want_sregs));
	if (ioctl(xc_vcpu_fd(v), KVM_GET_REGS, &regs) || ioctl(xc_vcpu_fd(v), KVM_GET_SREGS, &sregs))
		return xc_set_error(err, errno, "reading back vCPU %u", xc_vcpu_id(v));
	if (memcmp(&regs, &want_regs, sizeof(regs)))
		return xc_set_error(err, 0, "vCPU %u: registers read back differ (rip 0x%llx, "
				    "image 0x%llx)", xc_vcpu_id(v), (unsigned long long)regs.rip,
				    (unsigned long long)want_regs.rip);
#define SAME(f) (sregs.f == want_sregs.f)
	if (!SAME(cr0) || !SAME(cr3) || !SAME(cr4) || !SAME(efer) || !SAME(cs.selector) ||
	    !SAME(cs.base) || !SAME(ss.selector) || !SAME(gdt.base) || !SAME(gdt.limit) ||
	    !SAME(idt.base) || !SAME(idt.limit) || !SAME(tr.selector))
		return xc_set_error(err, 0, "vCPU %u: control state read back differs (cr0 0x%llx/0x%llx "
				    "cr3 0x%llx/0x%llx cr4 0x%llx/0x%llx efer 0x%llx/0x%llx)",
				    xc_vcpu_id(v), (unsigned long long)sregs.cr0,
				    (unsigned long long)want_sregs.cr0, (unsigned long long)sregs.cr3,
				    (unsigned long long)want_sregs.cr3, (unsigned long long)sregs.cr4,
				    (unsigned long long)want_sregs.cr4, (unsigned long long)sregs.efer,
				    (unsigned long long)want_sregs.efer);
#undef SAME
	return 0;
}

int hvmctx_apply_vcpu(struct xc_vcpu *v, const struct sr_record *rec, struct xc_error *err)
{
	bool have_sregs2 = false;
	struct sr_block b;

	if (sr_context_find(rec, SR_BLK_SREGS2, &b) && has_cap(v, KVM_CAP_SREGS2))
		have_sregs2 = true;
	for (int rank = 0; rank < (int)NPIECES; rank++)
		for (unsigned i = 0; i < NPIECES; i++) {
			const struct piece *p = &pieces[i];

			if (p->apply_rank != rank || !p->apply)
				continue;
			/* SREGS2 supersedes SREGS when both sides have it. */
			if ((p->kind == SR_BLK_SREGS && have_sregs2) ||
			    (p->kind == SR_BLK_SREGS2 && !have_sregs2))
				continue;
			if (!sr_context_find(rec, p->kind, &b)) {
				if (p->kind & SR_BLOCK_OPTIONAL)
					continue;
				return xc_set_error(err, 0, "vCPU %u: no %s block", xc_vcpu_id(v),
						    sr_block_kind_name(p->kind));
			}
			if (p->apply(v, b.data, b.length, err)) {
				size_t n = strlen(err->msg);

				snprintf(err->msg + n, sizeof(err->msg) - n, " (record %llu, block %s)",
					 (unsigned long long)rec->index, sr_block_kind_name(p->kind));
				return -1;
			}
		}
	return confirm(v, rec, err);
}
