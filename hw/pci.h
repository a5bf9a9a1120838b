/* SPDX-License-Identifier: MIT */
/*
 * PCI: a host bridge on the conf1 ports (0xcf8 address, 0xcfc data), bus 0
 * only, one function per slot.  Memory BARs (32-bit, non-prefetchable) are
 * placed in the MMIO window below 4 GiB (x86_layout.h) and decoded here;
 * each function's INTx line is routed to an IOAPIC pin of its own (16..23),
 * which the MP table names, so Debian's stock kernel finds the devices
 * without ACPI (see hw/virtio_pci.c for why PCI and not virtio-mmio).
 * Empty slots read all-ones.
 */
#ifndef SR_HW_PCI_H
#define SR_HW_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

#define PCI_SLOTS		32
#define PCI_BARS		6
#define PCI_CFG_SIZE		256
#define PCI_IOAPIC_PIN_FIRST	16	/* GSIs 16..23: the IOAPIC's, shared with nothing ISA */
#define PCI_IOAPIC_PINS		8
#define PCI_MSI_VECTORS		8	/* MSI-X vectors a function may route */
#define PCI_MSI_GSI_FIRST	24	/* past the IOAPIC's: slot s vector v is 24 + 8 s + v */

/* Config-space offsets this layer and its devices use. */
#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define  PCI_COMMAND_MEMORY	0x02
#define PCI_STATUS		0x06
#define  PCI_STATUS_CAP_LIST	0x10
#define PCI_REVISION		0x08
#define PCI_CLASS_PROG		0x09
#define PCI_BAR0		0x10
#define PCI_SUBSYS_VENDOR	0x2c
#define PCI_SUBSYS_ID		0x2e
#define PCI_CAP_PTR		0x34
#define PCI_CAP_MSIX		0x11
#define PCI_INTERRUPT_LINE	0x3c
#define PCI_INTERRUPT_PIN	0x3d

struct pci_host;

/*
 * A PCI function, embedded in its device model.  The model fills cfg's
 * identity and capabilities and bar_size before pci_host_add(); the host
 * owns the writable fields (command, BARs, interrupt line) from then on.
 */
struct pci_func {
	uint8_t cfg[PCI_CFG_SIZE];
	uint32_t bar_size[PCI_BARS];	/* memory BARs: a power of two >= 4096; 0: none */
	bool intx;			/* uses INTA */
	/* Accesses inside BAR bar, at off from its start (vCPU threads). */
	void (*bar_io)(struct pci_func *f, unsigned bar, uint64_t off, bool write, void *data,
		       unsigned len);
	/*
	 * Optional: a BAR's address or the memory-decode bit changed (under
	 * the host's lock): the model moves what it placed there (ioeventfds).
	 */
	void (*bars_changed)(struct pci_func *f);
	/*
	 * Optional: a guest's config write to a byte at 0x40 or above (the
	 * capabilities), under the host's lock; the model decides what it
	 * takes into cfg (the MSI-X message control's enable and mask).
	 */
	void (*cap_write)(struct pci_func *f, unsigned at, uint8_t v);
	/* Set by pci_host_add. */
	struct pci_host *host;
	uint8_t slot, ioapic_pin;
};

/* Claims the conf1 ports and the MMIO window on b, and puts the host bridge in slot 0. */
struct pci_host *pci_host_new(struct hw_bus *b, struct xc_error *err);
void pci_host_free(struct pci_host *h);

/*
 * Puts f in the next free slot, places its BARs in the MMIO window with
 * memory decode on (as firmware leaves them) and gives it an IOAPIC pin.
 */
int pci_host_add(struct pci_host *h, struct pci_func *f, struct xc_error *err);

/*
 * MSI-X: vector v (below PCI_MSI_VECTORS) of f delivers the message addr,
 * data through GSI pci_msi_gsi(f, v) from now on (KVM_SET_GSI_ROUTING, the
 * IOAPIC's and PIC's default routes kept).  -1 with err when KVM refuses.
 */
unsigned pci_msi_gsi(const struct pci_func *f, unsigned v);
int pci_msi_route(struct pci_func *f, unsigned v, uint64_t addr, uint32_t data,
		  struct xc_error *err);

/* The INTx routing for the MP table; returns how many of max were filled. */
unsigned pci_host_intx(const struct pci_host *h, struct xc_pci_intx *out, unsigned max);

/* A memory BAR's guest-physical address while it decodes, else 0. */
uint64_t pci_bar_addr(const struct pci_func *f, unsigned bar);

/*
 * A function's config space after a restore: BARs inside the window,
 * aligned to their size; then bars_changed runs.  -1 with err otherwise.
 */
int pci_func_load_cfg(struct pci_func *f, const uint8_t cfg[PCI_CFG_SIZE], struct xc_error *err);

/* The conf1 address latch, for the host's DEVICE state. */
uint32_t pci_host_latch(const struct pci_host *h);
void pci_host_set_latch(struct pci_host *h, uint32_t v);

#endif
