/* SPDX-License-Identifier: MIT */
/* Dirty page logging: plain KVM_GET_DIRTY_LOG, or manual protect with KVM_CLEAR_DIRTY_LOG. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "xc.h"
#include "xc_priv.h"

bool xc_dirty_mode_supported(const struct xc_domain *d, enum xc_dirty_mode mode)
{
	/* A domain with dirty rings has no bitmaps to fetch, and vice versa. */
	switch (mode) {
	case XC_DIRTY_BITMAP:
		return !d->ring_entries;
	case XC_DIRTY_CLEAR:
		return !d->ring_entries &&
		       (xc_check_cap(d, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) &
			KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) != 0;
	case XC_DIRTY_RING:
		return d->ring_entries != 0;
	}
	return false;
}

int xc_dirty_log_enable_region(struct xc_domain *d, unsigned slot, enum xc_dirty_mode mode,
				bool on, struct xc_error *err)
{
	struct xc_region *r;

	if (slot >= d->nregions)
		return xc_set_error(err, 0, "no memory slot %u", slot);
	r = &d->regions[slot];
	if (on && mode == XC_DIRTY_CLEAR && !d->manual_protect) {
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
		};

		if (!xc_dirty_mode_supported(d, mode))
			return xc_set_error(err, 0, "this KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
		if (ioctl(d->vm_fd, KVM_ENABLE_CAP, &cap))
			return xc_set_error(err, errno, "enabling KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
		d->manual_protect = true;
	}
	if (on && mode == XC_DIRTY_BITMAP && d->manual_protect)
		return xc_set_error(err, 0, "manual dirty-log protection is on for this domain");
	if (on && !xc_dirty_mode_supported(d, mode))
		return xc_set_error(err, 0, mode == XC_DIRTY_RING ?
				    "this domain was created without a dirty ring" :
				    "this domain tracks dirty pages with rings, not bitmaps");
	if (on && mode == XC_DIRTY_RING) {
		size_t words = (r->size / 4096 + 63) / 64;

		pthread_mutex_lock(&d->ring_lock);
		free(d->ring_bits[slot]);
		d->ring_bits[slot] = calloc(words + 1, 8);
		pthread_mutex_unlock(&d->ring_lock);
		if (!d->ring_bits[slot])
			return xc_set_error(err, ENOMEM, "dirty ring bitmap");
	}
	/* The host's own writes (xc_mark_dirty): allocated once, kept for the domain's life. */
	if (on && !__atomic_load_n(&d->host_bits[slot], __ATOMIC_ACQUIRE)) {
		uint64_t *bits = calloc((r->size / 4096 + 63) / 64 + 1, 8);

		if (!bits)
			return xc_set_error(err, ENOMEM, "host dirty bitmap");
		__atomic_store_n(&d->host_bits[slot], bits, __ATOMIC_RELEASE);
	}
	if (r->dirty_log == on)
		return 0;
	return xc_set_region_flags(d, r, on, err);
}

int xc_dirty_log_enable(struct xc_domain *d, enum xc_dirty_mode mode, bool on,
			struct xc_error *err)
{
	for (unsigned i = 0; i < d->nregions; i++)
		if (xc_dirty_log_enable_region(d, i, mode, on, err))
			return -1;
	return 0;
}

int xc_ring_harvest(struct xc_domain *d)
{
	int rc = 0;

	pthread_mutex_lock(&d->ring_lock);
	for (unsigned i = 0; i < d->nvcpus; i++) {
		struct xc_vcpu *v = d->vcpu[i];
		uint32_t fetch, n = 0;
		struct kvm_dirty_gfn *ring = xc_vcpu_ring(v, &fetch);

		for (; n < d->ring_entries; n++) {
			struct kvm_dirty_gfn *e = &ring[(fetch + n) % d->ring_entries];
			uint32_t slot;

			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
				break;
			slot = e->slot & 0xffff;	/* the high half is the address space */
			if (slot < d->nregions && d->ring_bits[slot] &&
			    e->offset < d->regions[slot].size / 4096)
				d->ring_bits[slot][e->offset / 64] |= 1ull << (e->offset % 64);
			__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		}
		xc_vcpu_ring_advance(v, n);
	}
	/* Re-protects the harvested pages: later writes push new entries. */
	if (ioctl(d->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0)
		rc = -1;
	pthread_mutex_unlock(&d->ring_lock);
	return rc;
}

void xc_mark_dirty(struct xc_domain *d, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < d->nregions && len; i++) {
		const struct xc_region *r = &d->regions[i];
		uint64_t *bits = __atomic_load_n(&d->host_bits[i], __ATOMIC_ACQUIRE);

		if (gpa < r->gpa || gpa - r->gpa >= r->size)
			continue;
		if (!bits || !__atomic_load_n(&r->dirty_log, __ATOMIC_RELAXED))
			return;		/* not logging: round 0 of a save sends it anyway */
		uint64_t first = (gpa - r->gpa) / 4096;
		uint64_t end = gpa - r->gpa + len;
		uint64_t last = ((end < r->size ? end : r->size) - 1) / 4096;

		for (uint64_t pg = first; pg <= last; pg++)
			__atomic_fetch_or(&bits[pg / 64], 1ull << (pg % 64), __ATOMIC_RELEASE);
		return;
	}
}

/* ORs the host's writes since the last fetch into bitmap, and forgets them. */
static void merge_host_bits(struct xc_domain *d, unsigned slot, uint64_t *bitmap)
{
	uint64_t *bits = __atomic_load_n(&d->host_bits[slot], __ATOMIC_ACQUIRE);
	size_t words = (d->regions[slot].size / 4096 + 63) / 64;

	for (size_t w = 0; bits && w < words; w++)
		if (__atomic_load_n(&bits[w], __ATOMIC_RELAXED))
			bitmap[w] |= __atomic_exchange_n(&bits[w], 0, __ATOMIC_ACQ_REL);
}

int xc_dirty_log_get(struct xc_domain *d, unsigned slot, uint64_t *bitmap,
		     struct xc_error *err)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bitmap };

	if (slot >= d->nregions || !d->regions[slot].dirty_log)
		return xc_set_error(err, 0, "slot %u has no dirty logging", slot);
	if (d->ring_entries) {
		size_t words = (d->regions[slot].size / 4096 + 63) / 64;

		if (xc_ring_harvest(d))
			return xc_set_error(err, errno, "KVM_RESET_DIRTY_RINGS");
		pthread_mutex_lock(&d->ring_lock);
		memcpy(bitmap, d->ring_bits[slot], words * 8);
		memset(d->ring_bits[slot], 0, words * 8);
		pthread_mutex_unlock(&d->ring_lock);
		merge_host_bits(d, slot, bitmap);
		return 0;
	}
	if (ioctl(d->vm_fd, KVM_GET_DIRTY_LOG, &log))
		return xc_set_error(err, errno, "KVM_GET_DIRTY_LOG slot %u", slot);
	merge_host_bits(d, slot, bitmap);
	return 0;
}

int xc_dirty_log_clear(struct xc_domain *d, unsigned slot, uint64_t first, uint32_t count,
		       const uint64_t *mask, struct xc_error *err)
{
	struct kvm_clear_dirty_log c = {
		.slot = slot, .first_page = first, .num_pages = count,
		.dirty_bitmap = (void *)mask,
	};

	if (!d->manual_protect)
		return xc_set_error(err, 0, "KVM_CLEAR_DIRTY_LOG needs manual protect mode");
	/* KVM wants first_page a multiple of 64 and count 64-aligned unless it ends the slot. */
	if (ioctl(d->vm_fd, KVM_CLEAR_DIRTY_LOG, &c))
		return xc_set_error(err, errno, "KVM_CLEAR_DIRTY_LOG slot %u pages %llu+%u", slot,
				    (unsigned long long)first, count);
	return 0;
}
