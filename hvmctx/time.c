/* SPDX-License-Identifier: MIT */
/*
 * Guest time on restore: the TSC rate on each new vCPU, then, once every
 * vCPU is loaded, kvmclock, the vCPUs' TSC offsets and their TSC deadlines
 * (armed again against the final offsets).
 *
 * The TSC offsets follow the migration algorithm of the KVM documentation
 * (Documentation/virt/kvm/devices/vcpu.rst, KVM_VCPU_TSC_OFFSET): the image
 * holds, read at one instant, the host TSC and kvmclock (CLOCK, with
 * KVM_CLOCK_HOST_TSC) and each vCPU's offset; here kvmclock is set first,
 * read back with this host's TSC, and each offset becomes
 *
 *   ofs_dst[i] = ofs_src[i] + (guest_dst - guest_src) * freq + (tsc_src - tsc_dst)
 *
 * so every vCPU's TSC moves on exactly as kvmclock did (by the wall time
 * with --clock advance, not at all with --clock freeze) and the vCPUs keep
 * the offsets they had between them.
 *
 * Without the stamps (a source host whose clocksource is not the TSC, a
 * kernel before 5.16) vCPU 0's saved TSC MSR stands in for the pair: its
 * offset is set so its TSC moves on as kvmclock did, within the few
 * microseconds between the two reads on the source, and every vCPU gets
 * that offset.  Not the TSC MSR write alone: KVM (before 6.7) takes a
 * host write within a second of the vCPU's creation-time TSC for a
 * "synchronization" and keeps the creation offset, so a guest saved less
 * than a second into its life would see its TSC start again from zero.
 * With a scaled TSC (the image's rate is not this host's) the TSC MSR as
 * written is what there is, aligned on vCPU 0.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <x86intrin.h>

#include "hvmctx.h"
#include "hvmctx_priv.h"

/* TSC rates closer than this are the same clock (QEMU's and Firecracker's tolerance). */
#define TSC_KHZ_TOLERANCE_PPM	250

int hvmctx_apply_tsc_khz(struct xc_vcpu *v, const struct sr_record *hvm, struct xc_error *err)
{
	struct sr_block b;
	struct sr_blk_tsc_khz t;
	int host;

	if (!sr_context_find(hvm, SR_BLK_TSC_KHZ, &b))
		return xc_set_error(err, 0, "no TSC_KHZ block");
	memcpy(&t, b.data, sizeof(t));
	host = ioctl(xc_vcpu_fd(v), KVM_GET_TSC_KHZ, 0);
	if (host <= 0)
		return xc_set_error(err, errno, "KVM_GET_TSC_KHZ");
	if ((uint64_t)llabs((long long)host - t.tsc_khz) * 1000000 <=
	    (uint64_t)t.tsc_khz * TSC_KHZ_TOLERANCE_PPM)
		return 0;
	if (xc_check_cap(xc_vcpu_domain(v), KVM_CAP_TSC_CONTROL) <= 0)
		return hvmctx_host_lacks(err, "the image's TSC runs at %u kHz, this host's at %d "
					 "kHz, and this KVM cannot scale it (no KVM_CAP_TSC_CONTROL)",
					 t.tsc_khz, host);
	if (ioctl(xc_vcpu_fd(v), KVM_SET_TSC_KHZ, t.tsc_khz))
		return xc_set_error(err, errno, "KVM_SET_TSC_KHZ %u on vCPU %u", t.tsc_khz,
				    xc_vcpu_id(v));
	return 0;
}

bool hvmctx_tsc_scaled(struct xc_vcpu *v)
{
	int khz = ioctl(xc_vcpu_fd(v), KVM_GET_TSC_KHZ, 0);

	return khz <= 0 || (uint32_t)khz != xc_vcpu_native_tsc_khz(v);
}

static int set_clock(struct xc_domain *d, const struct kvm_clock_data *saved,
		     enum hvmctx_clock_mode mode, uint64_t saved_ns, int64_t *jump_ns,
		     struct xc_error *err)
{
	struct kvm_clock_data set;
	struct timespec ts;
	uint64_t now;
	int valid;

	memset(&set, 0, sizeof(set));
	set.clock = saved->clock;
	*jump_ns = 0;
	/* Never hand GET's flags to SET: only KVM_CLOCK_REALTIME means anything there. */
	if (mode == HVMCTX_CLOCK_ADVANCE) {
		uint64_t ref = saved->flags & KVM_CLOCK_REALTIME ? saved->realtime : saved_ns;

		clock_gettime(CLOCK_REALTIME, &ts);
		now = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
		valid = xc_check_cap(d, KVM_CAP_ADJUST_CLOCK);
		if ((valid & KVM_CLOCK_REALTIME) && (saved->flags & KVM_CLOCK_REALTIME)) {
			set.flags = KVM_CLOCK_REALTIME;
			set.realtime = saved->realtime;	/* KVM adds now - realtime itself */
		} else if (now > ref) {
			set.clock += now - ref;
		}
		*jump_ns = now > ref ? (int64_t)(now - ref) : 0;
	}
	if (ioctl(xc_domain_vm_fd(d), KVM_SET_CLOCK, &set))
		return xc_set_error(err, errno, "KVM_SET_CLOCK");
	return 0;
}

int hvmctx_tsc_offset_attr(struct xc_vcpu *v, unsigned long req, uint64_t *ofs)
{
	struct kvm_device_attr a = { .group = KVM_VCPU_TSC_CTRL, .attr = KVM_VCPU_TSC_OFFSET,
				     .addr = (uintptr_t)ofs };

	return ioctl(xc_vcpu_fd(v), req, &a);
}

/* Every vCPU's TSC offset becomes vCPU 0's. */
static int align_offsets(struct xc_domain *d, struct xc_error *err)
{
	uint64_t off0;

	if (hvmctx_tsc_offset_attr(xc_vcpu_get(d, 0), KVM_GET_DEVICE_ATTR, &off0))
		return xc_set_error(err, errno, "reading vCPU 0's TSC offset");
	for (unsigned i = 1; i < xc_domain_vcpus(d); i++)
		if (hvmctx_tsc_offset_attr(xc_vcpu_get(d, i), KVM_SET_DEVICE_ATTR, &off0))
			return xc_set_error(err, errno, "setting vCPU %u's TSC offset", i);
	return 0;
}

/*
 * Why the saved offsets cannot be carried here, or NULL if they can;
 * guest_tsc[i] receives vCPU i's TSC at the CLOCK stamp.
 */
static const char *cannot_carry(struct xc_domain *d, const struct kvm_clock_data *saved,
				const struct sr_record *const *vcpu, uint64_t *guest_tsc)
{
	struct sr_block b;

	if (!(saved->flags & KVM_CLOCK_HOST_TSC))
		return "the image has no host TSC stamp in CLOCK";
	for (unsigned i = 0; i < xc_domain_vcpus(d); i++) {
		uint64_t ofs;

		if (!sr_context_find(vcpu[i], SR_BLK_TSC_OFFSET, &b) || b.length != 8)
			return "the image has no TSC offset for every vCPU";
		memcpy(&ofs, b.data, 8);
		guest_tsc[i] = saved->host_tsc + ofs;
	}
	return NULL;
}

/*
 * Sets vCPU i's offset so that its TSC, which read guest_tsc[i] when
 * kvmclock read src->clock, moves on as kvmclock has since.  With
 * one_for_all, vCPU 0's offset goes to every vCPU.
 */
static int set_offsets(struct xc_domain *d, const struct kvm_clock_data *src, uint32_t khz,
		       const uint64_t *guest_tsc, bool one_for_all, struct xc_error *err)
{
	struct kvm_clock_data dst;
	uint64_t host_tsc, ofs = 0;
	int64_t elapsed_ticks;

	memset(&dst, 0, sizeof(dst));
	if (ioctl(xc_domain_vm_fd(d), KVM_GET_CLOCK, &dst))
		return xc_set_error(err, errno, "KVM_GET_CLOCK");
	/* Userspace's RDTSC is the host TSC that KVM offsets, read as close as we can. */
	host_tsc = dst.flags & KVM_CLOCK_HOST_TSC ? dst.host_tsc : __rdtsc();
	elapsed_ticks = (int64_t)((__int128)(int64_t)(dst.clock - src->clock) * khz / 1000000);
	for (unsigned i = 0; i < xc_domain_vcpus(d); i++) {
		if (!one_for_all || i == 0)
			ofs = guest_tsc[i] + (uint64_t)elapsed_ticks - host_tsc;
		if (hvmctx_tsc_offset_attr(xc_vcpu_get(d, i), KVM_SET_DEVICE_ATTR, &ofs))
			return xc_set_error(err, errno, "setting vCPU %u's TSC offset", i);
	}
	return 0;
}

/* MSR index as a vCPU's record has it; false when the image has no such entry. */
static bool saved_msr(const struct sr_record *vcpu, uint32_t index, uint64_t *val)
{
	const struct kvm_msr_entry *e;
	struct sr_blk_count cnt;
	struct sr_block b;

	if (!sr_context_find(vcpu, SR_BLK_MSRS, &b) || b.length < sizeof(cnt))
		return false;
	memcpy(&cnt, b.data, sizeof(cnt));
	e = (const void *)((const uint8_t *)b.data + sizeof(cnt));
	for (uint32_t i = 0; i < cnt.count && sizeof(cnt) + (i + 1) * sizeof(*e) <= b.length; i++)
		if (e[i].index == index) {
			memcpy(val, &e[i].data, 8);
			return true;
		}
	return false;
}

/*
 * Writes each armed vCPU's TSC deadline again, now that its TSC offset is
 * final.  KVM turns the absolute deadline into a host timer when the MSR is
 * written (against the offset of that moment) and does not redo it when the
 * offset changes: written with MSRS alone, a deadline would fire as much
 * later as the clock step moved the TSC on (up to the whole save gap with
 * --clock advance), or early after a step back.  The write cancels the
 * earlier timer; 0 (not armed) stays as MSRS left it.
 */
static int rearm_tsc_deadlines(struct xc_domain *d, const struct sr_record *const *vcpu,
			       struct xc_error *err)
{
	for (unsigned i = 0; i < xc_domain_vcpus(d); i++) {
		struct { struct kvm_msrs h; struct kvm_msr_entry e; } one;
		uint64_t deadline;

		if (!saved_msr(vcpu[i], MSR_IA32_TSC_DEADLINE, &deadline) || !deadline)
			continue;
		memset(&one, 0, sizeof(one));
		one.h.nmsrs = 1;
		one.e.index = MSR_IA32_TSC_DEADLINE;
		one.e.data = deadline;
		if (ioctl(xc_vcpu_fd(xc_vcpu_get(d, i)), KVM_SET_MSRS, &one) != 1)
			return xc_set_error(err, errno, "re-arming the TSC deadline of vCPU %u", i);
	}
	return 0;
}

/* Tells a kvmclock guest it was stopped, so its watchdogs do not fire. */
static int kvmclock_ctrl(struct xc_domain *d, struct xc_error *err)
{
	for (unsigned i = 0; i < xc_domain_vcpus(d); i++)
		if (ioctl(xc_vcpu_fd(xc_vcpu_get(d, i)), KVM_KVMCLOCK_CTRL, 0) && errno != EINVAL)
			return xc_set_error(err, errno, "KVM_KVMCLOCK_CTRL on vCPU %u", i);
	return 0;
}

int hvmctx_apply_time(struct xc_domain *d, const struct sr_record *hvm,
		      const struct sr_record *const *vcpu, enum hvmctx_clock_mode mode,
		      uint64_t saved_ns, struct hvmctx_restore_stats *st, struct xc_error *err)
{
	uint64_t guest_tsc[XC_MAX_VCPUS];
	struct kvm_clock_data saved;
	struct sr_blk_tsc_khz khz;
	struct sr_block b;
	bool scaled = false;

	if (!sr_context_find(hvm, SR_BLK_CLOCK, &b))
		return xc_set_error(err, 0, "no CLOCK block");
	memcpy(&saved, b.data, sizeof(saved));
	if (!sr_context_find(hvm, SR_BLK_TSC_KHZ, &b))
		return xc_set_error(err, 0, "no TSC_KHZ block");
	memcpy(&khz, b.data, sizeof(khz));
	if (set_clock(d, &saved, mode, saved_ns, &st->clock_jump_ns, err))
		return -1;

	for (unsigned i = 0; i < xc_domain_vcpus(d); i++)
		scaled |= hvmctx_tsc_scaled(xc_vcpu_get(d, i));
	st->tsc = HVMCTX_TSC_AS_WRITTEN;
	st->tsc_why = NULL;
	if (hvmctx_tsc_offset_attr(xc_vcpu_get(d, 0), KVM_HAS_DEVICE_ATTR, NULL)) {
		st->tsc_why = "this kernel has no KVM_VCPU_TSC_OFFSET";
		if (rearm_tsc_deadlines(d, vcpu, err))
			return -1;
		return kvmclock_ctrl(d, err);
	}
	if (!scaled && !(st->tsc_why = cannot_carry(d, &saved, vcpu, guest_tsc))) {
		if (set_offsets(d, &saved, khz.tsc_khz, guest_tsc, false, err))
			return -1;
		st->tsc = HVMCTX_TSC_CARRIED;
	} else if (!scaled && saved_msr(vcpu[0], MSR_IA32_TSC, &guest_tsc[0])) {
		if (set_offsets(d, &saved, khz.tsc_khz, guest_tsc, true, err))
			return -1;
		st->tsc = HVMCTX_TSC_FROM_MSR;
	} else {
		if (scaled)
			st->tsc_why = "this host scales the guest's TSC";
		if (align_offsets(d, err))
			return -1;
		st->tsc = HVMCTX_TSC_ALIGNED;
	}
	if (rearm_tsc_deadlines(d, vcpu, err))
		return -1;
	return kvmclock_ctrl(d, err);
}
