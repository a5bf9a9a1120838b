/* SPDX-License-Identifier: MIT */
/* Dirty page logging: plain KVM_GET_DIRTY_LOG, or manual protect with KVM_CLEAR_DIRTY_LOG. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "xc.h"
#include "xc_priv.h"

bool xc_dirty_mode_supported(const struct xc_domain *d, enum xc_dirty_mode mode)
{
	switch (mode) {
	case XC_DIRTY_BITMAP:
		return true;
	case XC_DIRTY_CLEAR:
		return (xc_check_cap(d, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) &
			KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) != 0;
	}
	return false;
}

int xc_dirty_log_enable(struct xc_domain *d, enum xc_dirty_mode mode, bool on,
			struct xc_error *err)
{
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
	for (unsigned i = 0; i < d->nregions; i++)
		if (d->regions[i].dirty_log != on &&
		    xc_set_region_flags(d, &d->regions[i], on, err))
			return -1;
	return 0;
}

int xc_dirty_log_get(struct xc_domain *d, unsigned slot, uint64_t *bitmap,
		     struct xc_error *err)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bitmap };

	if (slot >= d->nregions || !d->regions[slot].dirty_log)
		return xc_set_error(err, 0, "slot %u has no dirty logging", slot);
	if (ioctl(d->vm_fd, KVM_GET_DIRTY_LOG, &log))
		return xc_set_error(err, errno, "KVM_GET_DIRTY_LOG slot %u", slot);
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
