/* SPDX-License-Identifier: MIT */
/*
 * The device-model layer's bus: port-I/O and MMIO ranges dispatched to the
 * device that claimed them, and the list of devices with one ops table
 * each, which the runner drives as a whole (reset, pause, resume, save,
 * load).  A library: it returns errors and never prints.
 *
 * Ranges are claimed while the domain is built, before any vCPU runs, and
 * never change afterwards, so the vCPU threads look them up without a lock.
 * A device whose own registers move (a PCI BAR) claims the window they may
 * move in and decodes it itself (hw/pci.c).
 */
#ifndef SR_HW_BUS_H
#define SR_HW_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xc.h"

struct hw_bus;
struct hw_device;

/*
 * A register access, on a vCPU thread.  off is from the start of the range;
 * len is 1, 2, 4 or 8; for a read the handler fills data (little-endian).
 */
typedef void hw_io_fn(void *opaque, uint64_t off, bool write, void *data, unsigned len);

/*
 * What every device model provides.  All hooks but free are optional.
 * hold asks the device to take no new work and to finish what it has in
 * hand, and returns at once: the bus holds every device before it waits
 * for any, and a pause holds them as the vCPUs are kicked, so the devices
 * finish meanwhile.  A request the guest makes available after the hold
 * waits in its ring for resume.  pause is called once the vCPUs are
 * parked (with or without a hold before it): it returns only when no
 * request of the device is in flight (all it took from the guest is done
 * and written back), and until resume the device takes no new work.
 * resume re-kicks every queue and re-raises a pending interrupt: a notify
 * or an interrupt edge lost across the pause (or a restore) is made up.
 * save fills at most len bytes of state and returns its size (or -1);
 * load takes a state back, checking every field, before the domain runs.
 */
struct hw_device_ops {
	const char *name;		/* DEVICE record name */
	uint32_t version;		/* of the state save writes */
	void (*reset)(struct hw_device *dev);
	/* Starts the device's threads (the domain is about to run); 0 or -1 with err. */
	int (*start)(struct hw_device *dev, struct xc_error *err);
	void (*hold)(struct hw_device *dev);
	void (*pause)(struct hw_device *dev);
	void (*resume)(struct hw_device *dev);
	long (*save)(struct hw_device *dev, void *buf, size_t len);
	int (*load)(struct hw_device *dev, uint32_t version, const void *buf, size_t len,
		    struct xc_error *err);
	void (*free)(struct hw_device *dev);
};

struct hw_device {
	const struct hw_device_ops *ops;
	uint32_t instance;		/* of its name: 0, 1, ... in the order added */
	struct hw_device *next;
};

struct hw_bus *hw_bus_new(struct xc_domain *d);
/* Frees every device (ops->free) after pausing them. */
void hw_bus_free(struct hw_bus *b);
struct xc_domain *hw_bus_domain(const struct hw_bus *b);

/* Adds a device (the bus owns it from here on); its instance is numbered by name. */
void hw_bus_add_device(struct hw_bus *b, struct hw_device *dev);
struct hw_device *hw_bus_devices(const struct hw_bus *b);

/* Claims [base, base + len) of port or MMIO space; -1 when it overlaps a claimed range. */
int hw_bus_claim_pio(struct hw_bus *b, uint16_t base, uint16_t len, hw_io_fn *fn, void *opaque,
		     struct xc_error *err);
int hw_bus_claim_mmio(struct hw_bus *b, uint64_t base, uint64_t len, hw_io_fn *fn, void *opaque,
		      struct xc_error *err);

/* Dispatches an access; false when no range claims it (the caller decides). */
bool hw_bus_pio(struct hw_bus *b, uint16_t port, bool write, void *data, unsigned len);
bool hw_bus_mmio(struct hw_bus *b, uint64_t gpa, bool write, void *data, unsigned len);

/*
 * Optional: runs first on every thread a device starts (a tool's sandbox
 * installs the device threads' filter there).
 */
void hw_bus_set_thread_start(struct hw_bus *b, void (*fn)(void *arg), void *arg);
/* A device thread calls this first. */
void hw_bus_thread_started(const struct hw_bus *b);

/*
 * Every device's hook, in the order they were added (hold and pause: the
 * reverse).  hw_bus_pause holds every device first, then waits for each.
 */
int hw_bus_start(struct hw_bus *b, struct xc_error *err);
void hw_bus_reset(struct hw_bus *b);
void hw_bus_hold(struct hw_bus *b);
void hw_bus_pause(struct hw_bus *b);
void hw_bus_resume(struct hw_bus *b);

/* The first device with this name and instance, or NULL. */
struct hw_device *hw_bus_find(const struct hw_bus *b, const char *name, uint32_t instance);

#endif
