/* SPDX-License-Identifier: MIT */
/* VM-wide state pieces: PIT, the two PICs, the IOAPIC, kvmclock and the TSC rate. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "hvmctx.h"

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

/*
 * VM-wide pieces, one row each: block kind, capture, apply.  CLOCK and
 * TSC_KHZ have no apply here: the TSC rate goes onto each new vCPU
 * (hvmctx_apply_tsc_khz) and the clock is set last (time.c).
 */
struct vm_piece {
	uint32_t kind;
	int (*capture)(struct xc_domain *d, const struct kvm_clock_data *clock, void *buf,
		       uint32_t *len, struct xc_error *err);
	int (*apply)(struct xc_domain *d, const void *data, uint32_t len, struct xc_error *err);
};

static int cap_pit(struct xc_domain *d, const struct kvm_clock_data *c, void *buf, uint32_t *len,
		   struct xc_error *err)
{
	(void)c;
	*len = sizeof(struct kvm_pit_state2);
	return ioctl(xc_domain_vm_fd(d), KVM_GET_PIT2, buf) ? xc_set_error(err, errno, "KVM_GET_PIT2") : 0;
}

static int app_pit(struct xc_domain *d, const void *data, uint32_t len, struct xc_error *err)
{
	(void)len;
	return ioctl(xc_domain_vm_fd(d), KVM_SET_PIT2, data) ? xc_set_error(err, errno, "KVM_SET_PIT2") : 0;
}

static int cap_chip(struct xc_domain *d, uint32_t id, void *buf, uint32_t *len,
		    struct xc_error *err)
{
	struct kvm_irqchip c;

	if (get_chip(d, id, &c, err))
		return -1;
	*len = id == KVM_IRQCHIP_IOAPIC ? sizeof(c.chip.ioapic) : sizeof(c.chip.pic);
	memcpy(buf, &c.chip, *len);
	return 0;
}

#define CHIP_PIECE(fn, id)							\
static int cap_##fn(struct xc_domain *d, const struct kvm_clock_data *c, void *buf,	\
		    uint32_t *len, struct xc_error *err)				\
{										\
	(void)c;								\
	return cap_chip(d, id, buf, len, err);					\
}										\
static int app_##fn(struct xc_domain *d, const void *data, uint32_t len,	\
		    struct xc_error *err)					\
{										\
	return set_chip(d, id, data, len, err);					\
}
CHIP_PIECE(pic_master, KVM_IRQCHIP_PIC_MASTER)
CHIP_PIECE(pic_slave, KVM_IRQCHIP_PIC_SLAVE)
CHIP_PIECE(ioapic, KVM_IRQCHIP_IOAPIC)

static int cap_clock(struct xc_domain *d, const struct kvm_clock_data *c, void *buf,
		     uint32_t *len, struct xc_error *err)
{
	(void)d; (void)err;
	*len = sizeof(*c);
	memcpy(buf, c, sizeof(*c));
	return 0;
}

static int cap_tsc_khz(struct xc_domain *d, const struct kvm_clock_data *c, void *buf,
		       uint32_t *len, struct xc_error *err)
{
	struct sr_blk_tsc_khz t = { 0 };
	int khz = ioctl(xc_vcpu_fd(xc_vcpu_get(d, 0)), KVM_GET_TSC_KHZ, 0);

	(void)c;
	if (khz <= 0)
		return xc_set_error(err, errno, "KVM_GET_TSC_KHZ");
	t.tsc_khz = khz;
	*len = sizeof(t);
	memcpy(buf, &t, sizeof(t));
	return 0;
}

static const struct vm_piece vm_pieces[] = {
	{ SR_BLK_PIT,        cap_pit,        app_pit },
	{ SR_BLK_PIC_MASTER, cap_pic_master, app_pic_master },
	{ SR_BLK_PIC_SLAVE,  cap_pic_slave,  app_pic_slave },
	{ SR_BLK_IOAPIC,     cap_ioapic,     app_ioapic },
	{ SR_BLK_CLOCK,      cap_clock,      NULL },
	{ SR_BLK_TSC_KHZ,    cap_tsc_khz,    NULL },
};

int hvmctx_capture_vm(struct xc_domain *d, const struct kvm_clock_data *clock,
		      struct hvmctx_set *out, struct xc_error *err)
{
	uint8_t buf[512];

	out->n = 0;
	for (size_t i = 0; i < sizeof(vm_pieces) / sizeof(vm_pieces[0]); i++) {
		uint32_t len = 0;

		if (vm_pieces[i].capture(d, clock, buf, &len, err) ||
		    add(out, vm_pieces[i].kind, buf, len, err)) {
			hvmctx_set_free(out);
			return -1;
		}
	}
	return 0;
}

int hvmctx_apply_vm(struct xc_domain *d, const struct sr_record *rec, struct xc_error *err)
{
	struct sr_block b;

	for (size_t i = 0; i < sizeof(vm_pieces) / sizeof(vm_pieces[0]); i++) {
		if (!vm_pieces[i].apply)
			continue;
		if (!sr_context_find(rec, vm_pieces[i].kind, &b))
			return xc_set_error(err, 0, "record %llu: no %s block",
					    (unsigned long long)rec->index,
					    sr_block_kind_name(vm_pieces[i].kind));
		if (vm_pieces[i].apply(d, b.data, b.length, err))
			return -1;
	}
	return 0;
}
