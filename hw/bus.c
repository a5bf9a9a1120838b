/* SPDX-License-Identifier: MIT */
/* The device-model bus: range dispatch and the device list (hw/bus.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"

#define HW_RANGES_MAX	32

struct hw_range {
	uint64_t base, len;
	hw_io_fn *fn;
	void *opaque;
};

struct hw_space {
	struct hw_range r[HW_RANGES_MAX];
	unsigned n;
};

struct hw_bus {
	struct xc_domain *d;
	struct hw_space pio, mmio;
	struct hw_device *devices, **tail;
	void (*thread_start)(void *arg);
	void *thread_arg;
};

struct hw_bus *hw_bus_new(struct xc_domain *d)
{
	struct hw_bus *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->d = d;
	b->tail = &b->devices;
	return b;
}

struct xc_domain *hw_bus_domain(const struct hw_bus *b)
{
	return b->d;
}

void hw_bus_free(struct hw_bus *b)
{
	if (!b)
		return;
	hw_bus_pause(b);
	while (b->devices) {
		struct hw_device *dev = b->devices;

		b->devices = dev->next;
		dev->ops->free(dev);
	}
	free(b);
}

void hw_bus_add_device(struct hw_bus *b, struct hw_device *dev)
{
	dev->instance = 0;
	for (struct hw_device *o = b->devices; o; o = o->next)
		if (!strcmp(o->ops->name, dev->ops->name))
			dev->instance++;
	dev->next = NULL;
	*b->tail = dev;
	b->tail = &dev->next;
}

struct hw_device *hw_bus_devices(const struct hw_bus *b)
{
	return b->devices;
}

struct hw_device *hw_bus_find(const struct hw_bus *b, const char *name, uint32_t instance)
{
	for (struct hw_device *dev = b->devices; dev; dev = dev->next)
		if (!strcmp(dev->ops->name, name) && dev->instance == instance)
			return dev;
	return NULL;
}

static int claim(struct hw_space *s, const char *what, uint64_t base, uint64_t len,
		 hw_io_fn *fn, void *opaque, struct xc_error *err)
{
	if (!len || base + len < base)
		return xc_set_error(err, EINVAL, "%s range 0x%llx+0x%llx is empty or wraps", what,
				    (unsigned long long)base, (unsigned long long)len);
	for (unsigned i = 0; i < s->n; i++)
		if (base < s->r[i].base + s->r[i].len && s->r[i].base < base + len)
			return xc_set_error(err, EBUSY, "%s range 0x%llx+0x%llx overlaps 0x%llx+0x%llx",
					    what, (unsigned long long)base, (unsigned long long)len,
					    (unsigned long long)s->r[i].base,
					    (unsigned long long)s->r[i].len);
	if (s->n == HW_RANGES_MAX)
		return xc_set_error(err, ENOSPC, "more than %d %s ranges", HW_RANGES_MAX, what);
	s->r[s->n++] = (struct hw_range){ base, len, fn, opaque };
	return 0;
}

int hw_bus_claim_pio(struct hw_bus *b, uint16_t base, uint16_t len, hw_io_fn *fn, void *opaque,
		     struct xc_error *err)
{
	if ((uint32_t)base + len > 0x10000)
		return xc_set_error(err, EINVAL, "port range 0x%x+0x%x past 0xffff", base, len);
	return claim(&b->pio, "port", base, len, fn, opaque, err);
}

int hw_bus_claim_mmio(struct hw_bus *b, uint64_t base, uint64_t len, hw_io_fn *fn, void *opaque,
		      struct xc_error *err)
{
	return claim(&b->mmio, "MMIO", base, len, fn, opaque, err);
}

/* An access wholly inside one range goes to it; one that straddles ranges reaches none. */
static bool dispatch(const struct hw_space *s, uint64_t addr, bool write, void *data,
		     unsigned len)
{
	for (unsigned i = 0; i < s->n; i++) {
		const struct hw_range *r = &s->r[i];

		if (addr >= r->base && addr - r->base < r->len) {
			if (len > r->len - (addr - r->base))
				return false;
			r->fn(r->opaque, addr - r->base, write, data, len);
			return true;
		}
	}
	return false;
}

bool hw_bus_pio(struct hw_bus *b, uint16_t port, bool write, void *data, unsigned len)
{
	return dispatch(&b->pio, port, write, data, len);
}

bool hw_bus_mmio(struct hw_bus *b, uint64_t gpa, bool write, void *data, unsigned len)
{
	return dispatch(&b->mmio, gpa, write, data, len);
}

void hw_bus_set_thread_start(struct hw_bus *b, void (*fn)(void *arg), void *arg)
{
	b->thread_start = fn;
	b->thread_arg = arg;
}

void hw_bus_thread_started(const struct hw_bus *b)
{
	if (b->thread_start)
		b->thread_start(b->thread_arg);
}

int hw_bus_start(struct hw_bus *b, struct xc_error *err)
{
	for (struct hw_device *dev = b->devices; dev; dev = dev->next)
		if (dev->ops->start && dev->ops->start(dev, err))
			return -1;
	return 0;
}

void hw_bus_reset(struct hw_bus *b)
{
	for (struct hw_device *dev = b->devices; dev; dev = dev->next)
		if (dev->ops->reset)
			dev->ops->reset(dev);
}

/* The reverse of the order added: a device is held before the bus it sits on. */
static void hold_from(struct hw_device *dev)
{
	if (!dev)
		return;
	hold_from(dev->next);
	if (dev->ops->hold)
		dev->ops->hold(dev);
}

/* The same order: a device is paused before the bus it sits on. */
static void pause_from(struct hw_device *dev)
{
	if (!dev)
		return;
	pause_from(dev->next);
	if (dev->ops->pause)
		dev->ops->pause(dev);
}

void hw_bus_hold(struct hw_bus *b)
{
	hold_from(b->devices);
}

/* All held first: the devices finish their requests side by side, not one after another. */
void hw_bus_pause(struct hw_bus *b)
{
	hold_from(b->devices);
	pause_from(b->devices);
}

void hw_bus_resume(struct hw_bus *b)
{
	for (struct hw_device *dev = b->devices; dev; dev = dev->next)
		if (dev->ops->resume)
			dev->ops->resume(dev);
}
