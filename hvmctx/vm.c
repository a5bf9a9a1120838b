/* SPDX-License-Identifier: MIT */
/* VM-wide state pieces: PIT, the two PICs, the IOAPIC, kvmclock and the TSC rate. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "hvmctx.h"

/* TSC rates closer than this are the same clock (QEMU's and Firecracker's tolerance). */
#define TSC_KHZ_TOLERANCE_PPM	250

static int add(struct hvmctx_set *s, uint32_t kind, const void *src, uint32_t len,
	       struct xc_error *err)
{
	void *p = malloc(len);

	if (!p)
		return xc_set_error(err, ENOMEM, "context block");
	memcpy(p, src, len);
	s->owned[s->n] = p;
	s->blk[s->n++] = (struct sr_block){ kind, len, p };
	return 0;
}

int hvmctx_capture_clock(struct xc_domain *d, struct kvm_clock_data *clock, struct xc_error *err)
{
	struct timespec ts;

	memset(clock, 0, sizeof(*clock));
	if (ioctl(xc_domain_vm_fd(d), KVM_GET_CLOCK, clock))
		return xc_set_error(err, errno, "KVM_GET_CLOCK");
	/* Kernels before 5.16 give no realtime stamp: take our own, as close as we can. */
	if (!(clock->flags & KVM_CLOCK_REALTIME)) {
		clock_gettime(CLOCK_REALTIME, &ts);
		clock->realtime = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
		clock->flags |= KVM_CLOCK_REALTIME;
	}
	return 0;
}

static int get_chip(struct xc_domain *d, uint32_t id, struct kvm_irqchip *c, struct xc_error *err)
{
	memset(c, 0, sizeof(*c));
	c->chip_id = id;
	if (ioctl(xc_domain_vm_fd(d), KVM_GET_IRQCHIP, c))
		return xc_set_error(err, errno, "KVM_GET_IRQCHIP chip %u", id);
	return 0;
}

int hvmctx_capture_vm(struct xc_domain *d, const struct kvm_clock_data *clock,
		      struct hvmctx_set *out, struct xc_error *err)
{
	struct kvm_pit_state2 pit;
	struct kvm_irqchip chip;
	struct sr_blk_tsc_khz tsc = { 0 };
	int khz;

	out->n = 0;
	if (ioctl(xc_domain_vm_fd(d), KVM_GET_PIT2, &pit)) {
		xc_set_error(err, errno, "KVM_GET_PIT2");
		goto fail;
	}
	if (add(out, SR_BLK_PIT, &pit, sizeof(pit), err))
		goto fail;
	if (get_chip(d, KVM_IRQCHIP_PIC_MASTER, &chip, err) ||
	    add(out, SR_BLK_PIC_MASTER, &chip.chip.pic, sizeof(chip.chip.pic), err) ||
	    get_chip(d, KVM_IRQCHIP_PIC_SLAVE, &chip, err) ||
	    add(out, SR_BLK_PIC_SLAVE, &chip.chip.pic, sizeof(chip.chip.pic), err) ||
	    get_chip(d, KVM_IRQCHIP_IOAPIC, &chip, err) ||
	    add(out, SR_BLK_IOAPIC, &chip.chip.ioapic, sizeof(chip.chip.ioapic), err) ||
	    add(out, SR_BLK_CLOCK, clock, sizeof(*clock), err))
		goto fail;
	khz = ioctl(xc_vcpu_fd(xc_vcpu_get(d, 0)), KVM_GET_TSC_KHZ, 0);
	if (khz <= 0) {
		xc_set_error(err, errno, "KVM_GET_TSC_KHZ");
		goto fail;
	}
	tsc.tsc_khz = khz;
	if (add(out, SR_BLK_TSC_KHZ, &tsc, sizeof(tsc), err))
		goto fail;
	return 0;
fail:
	hvmctx_set_free(out);
	return -1;
}

static int set_chip(struct xc_domain *d, uint32_t id, const void *data, size_t len,
		    struct xc_error *err)
{
	struct kvm_irqchip c;

	memset(&c, 0, sizeof(c));
	c.chip_id = id;
	memcpy(&c.chip, data, len);
	if (ioctl(xc_domain_vm_fd(d), KVM_SET_IRQCHIP, &c))
		return xc_set_error(err, errno, "KVM_SET_IRQCHIP chip %u", id);
	return 0;
}

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
		return xc_set_error(err, 0, "the image's TSC runs at %u kHz, this host's at %d kHz, "
				    "and this KVM cannot scale it (no KVM_CAP_TSC_CONTROL)",
				    t.tsc_khz, host);
	if (ioctl(xc_vcpu_fd(v), KVM_SET_TSC_KHZ, t.tsc_khz))
		return xc_set_error(err, errno, "KVM_SET_TSC_KHZ %u on vCPU %u", t.tsc_khz,
				    xc_vcpu_id(v));
	return 0;
}

int hvmctx_apply_vm(struct xc_domain *d, const struct sr_record *rec, struct xc_error *err)
{
	struct sr_block b;

	if (!sr_context_find(rec, SR_BLK_PIT, &b) ||
	    ioctl(xc_domain_vm_fd(d), KVM_SET_PIT2, b.data))
		return xc_set_error(err, errno, "KVM_SET_PIT2");
	if (!sr_context_find(rec, SR_BLK_PIC_MASTER, &b) ||
	    set_chip(d, KVM_IRQCHIP_PIC_MASTER, b.data, b.length, err))
		return -1;
	if (!sr_context_find(rec, SR_BLK_PIC_SLAVE, &b) ||
	    set_chip(d, KVM_IRQCHIP_PIC_SLAVE, b.data, b.length, err))
		return -1;
	if (!sr_context_find(rec, SR_BLK_IOAPIC, &b) ||
	    set_chip(d, KVM_IRQCHIP_IOAPIC, b.data, b.length, err))
		return -1;
	return 0;
}

int hvmctx_apply_clock(struct xc_domain *d, const struct sr_record *hvm,
		       enum hvmctx_clock_mode mode, uint64_t saved_ns, int64_t *jump_ns,
		       struct xc_error *err)
{
	struct kvm_clock_data saved, set;
	struct sr_block b;
	struct timespec ts;
	uint64_t now;
	int valid;

	if (!sr_context_find(hvm, SR_BLK_CLOCK, &b))
		return xc_set_error(err, 0, "no CLOCK block");
	memcpy(&saved, b.data, sizeof(saved));
	memset(&set, 0, sizeof(set));
	set.clock = saved.clock;
	*jump_ns = 0;
	/* Never hand GET's flags to SET: only KVM_CLOCK_REALTIME means anything there. */
	if (mode == HVMCTX_CLOCK_ADVANCE) {
		uint64_t ref = saved.flags & KVM_CLOCK_REALTIME ? saved.realtime : saved_ns;

		clock_gettime(CLOCK_REALTIME, &ts);
		now = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
		valid = xc_check_cap(d, KVM_CAP_ADJUST_CLOCK);
		if ((valid & KVM_CLOCK_REALTIME) && (saved.flags & KVM_CLOCK_REALTIME)) {
			set.flags = KVM_CLOCK_REALTIME;
			set.realtime = saved.realtime;	/* KVM adds now - realtime itself */
		} else if (now > ref) {
			set.clock += now - ref;
		}
		*jump_ns = now > ref ? (int64_t)(now - ref) : 0;
	}
	if (ioctl(xc_domain_vm_fd(d), KVM_SET_CLOCK, &set))
		return xc_set_error(err, errno, "KVM_SET_CLOCK");
	/* Tell a kvmclock guest it was stopped, so its watchdogs do not fire. */
	for (unsigned i = 0; i < xc_domain_vcpus(d); i++)
		if (ioctl(xc_vcpu_fd(xc_vcpu_get(d, i)), KVM_KVMCLOCK_CTRL, 0) && errno != EINVAL)
			return xc_set_error(err, errno, "KVM_KVMCLOCK_CTRL on vCPU %u", i);
	return 0;
}
