/* SPDX-License-Identifier: MIT */
/* PCI host bridge, conf1 config access and BAR decoding (hw/pci.h). */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <string.h>

#include "pci.h"

#define CONF1_ADDR_PORT		0xcf8
#define CONF1_DATA_PORT		0xcfc
#define CONF1_ENABLE		0x80000000u

struct pci_host {
	struct hw_device dev;		/* "pci-host": the conf1 latch */
	struct hw_bus *bus;
	pthread_mutex_t lock;		/* config space and BAR decoding */
	uint32_t latch;
	struct pci_func bridge;
	struct pci_func *slot[PCI_SLOTS];
	uint64_t next_bar;		/* where the next BAR goes in the window */
	/* MSI-X routes, under msi_lock (a leaf: a device holds its own lock around it). */
	pthread_mutex_t msi_lock;
	struct msi_route {
		uint64_t addr;
		uint32_t data;
		bool set;
	} msi[PCI_SLOTS][PCI_MSI_VECTORS];
};

static uint16_t rd16(const uint8_t *p) { return p[0] | p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, v); wr16(p + 2, v >> 16); }

uint64_t pci_bar_addr(const struct pci_func *f, unsigned bar)
{
	uint32_t v = rd32(f->cfg + PCI_BAR0 + 4 * bar);

	if (bar >= PCI_BARS || !f->bar_size[bar] || !(rd16(f->cfg + PCI_COMMAND) & PCI_COMMAND_MEMORY))
		return 0;
	return v & ~(f->bar_size[bar] - 1) & ~0xfu;
}

/*
 * A config write, byte by byte: only the command register, the BARs and
 * the interrupt line are writable; the rest is the model's and reads back
 * as it set it.
 */
static void cfg_write(struct pci_func *f, unsigned reg, const uint8_t *data, unsigned len)
{
	bool moved = false;

	for (unsigned i = 0; i < len; i++) {
		unsigned at = reg + i;

		if (at == PCI_COMMAND) {
			moved |= (f->cfg[at] ^ data[i]) & PCI_COMMAND_MEMORY;
			f->cfg[at] = data[i] & 0x07;		/* I/O, memory, bus master */
		} else if (at == PCI_COMMAND + 1) {
			f->cfg[at] = data[i] & 0x04;		/* INTx disable */
		} else if (at >= PCI_BAR0 && at < PCI_BAR0 + 4 * PCI_BARS) {
			unsigned bar = (at - PCI_BAR0) / 4;
			uint8_t *b = f->cfg + PCI_BAR0 + 4 * bar;

			if (!f->bar_size[bar])
				continue;			/* no BAR: reads 0 */
			b[at % 4] = data[i];
			/* Low bits of a memory BAR are its type (0: 32-bit, not prefetchable). */
			wr32(b, rd32(b) & ~(f->bar_size[bar] - 1) & ~0xfu);
			moved = true;
		} else if (at == PCI_INTERRUPT_LINE || at == 0x0c || at == 0x0d) {
			f->cfg[at] = data[i];			/* line, cache line, latency */
		} else if (at >= 0x40 && f->cap_write) {
			f->cap_write(f, at, data[i]);
		}
	}
	if (moved && f->bars_changed)
		f->bars_changed(f);
}

static struct pci_func *conf1_target(struct pci_host *h, unsigned *reg)
{
	uint32_t a = h->latch;

	if (!(a & CONF1_ENABLE) || (a >> 16 & 0xff) || (a >> 8 & 7))
		return NULL;			/* bus 0, function 0 only */
	*reg = a & 0xfc;
	return h->slot[a >> 11 & 0x1f];
}

static void conf1_io(void *opaque, uint64_t off, bool write, void *data, unsigned len)
{
	struct pci_host *h = opaque;
	struct pci_func *f;
	unsigned reg;

	pthread_mutex_lock(&h->lock);
	if (off < 4) {
		/* The address latch takes dword accesses only (a byte at 0xcfb is the old mechanism #2). */
		if (off == 0 && len == 4) {
			if (write)
				memcpy(&h->latch, data, 4);
			else
				memcpy(data, &h->latch, 4);
		} else if (!write) {
			memset(data, 0xff, len);
		}
	} else {
		f = conf1_target(h, &reg);
		reg += off - 4;
		if (!f || reg + len > PCI_CFG_SIZE) {
			if (!write)
				memset(data, 0xff, len);	/* no device: all ones */
		} else if (write) {
			cfg_write(f, reg, data, len);
		} else {
			memcpy(data, f->cfg + reg, len);
		}
	}
	pthread_mutex_unlock(&h->lock);
}

/* The MMIO window: whichever BAR decodes the address, else all ones. */
static void window_io(void *opaque, uint64_t off, bool write, void *data, unsigned len)
{
	struct pci_host *h = opaque;
	uint64_t gpa = X86_MMIO_START + off;

	pthread_mutex_lock(&h->lock);
	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		struct pci_func *f = h->slot[s];

		for (unsigned bar = 0; f && bar < PCI_BARS; bar++) {
			uint64_t base = pci_bar_addr(f, bar);

			if (!base || gpa < base || gpa + len > base + f->bar_size[bar])
				continue;
			pthread_mutex_unlock(&h->lock);
			/* The model has its own lock; a BAR moved meanwhile is the guest's race. */
			f->bar_io(f, bar, gpa - base, write, data, len);
			return;
		}
	}
	pthread_mutex_unlock(&h->lock);
	if (!write)
		memset(data, 0xff, len);
}

static long host_save(struct hw_device *dev, void *buf, size_t len)
{
	struct pci_host *h = (struct pci_host *)dev;

	if (len < 4)
		return -1;
	pthread_mutex_lock(&h->lock);
	wr32(buf, h->latch);
	pthread_mutex_unlock(&h->lock);
	return 4;
}

static int host_load(struct hw_device *dev, uint32_t version, const void *buf, size_t len,
		     struct xc_error *err)
{
	struct pci_host *h = (struct pci_host *)dev;

	if (version != 1 || len != 4)
		return xc_set_error(err, 0, "DEVICE pci-host: version %u, %zu bytes; this sr reads "
				    "version 1, 4 bytes", version, len);
	pci_host_set_latch(h, rd32(buf));
	return 0;
}

static void host_free(struct hw_device *dev)
{
	pci_host_free((struct pci_host *)dev);
}

static const struct hw_device_ops host_ops = {
	.name = "pci-host", .version = 1,
	.save = host_save, .load = host_load, .free = host_free,
};

struct pci_host *pci_host_new(struct hw_bus *b, struct xc_error *err)
{
	struct pci_host *h = calloc(1, sizeof(*h));

	if (!h) {
		xc_set_error(err, ENOMEM, "the PCI host");
		return NULL;
	}
	h->dev.ops = &host_ops;
	h->bus = b;
	h->next_bar = X86_MMIO_START;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->msi_lock, NULL);
	if (hw_bus_claim_pio(b, CONF1_ADDR_PORT, 8, conf1_io, h, err) ||
	    hw_bus_claim_mmio(b, X86_MMIO_START, X86_MMIO_END - X86_MMIO_START, window_io, h, err)) {
		pci_host_free(h);
		return NULL;
	}
	/* The host bridge: Linux's conf1 sanity check looks for one (class 0x0600) on bus 0. */
	wr16(h->bridge.cfg + PCI_VENDOR_ID, 0x1b36);	/* Red Hat, as QEMU's gpex: no quirks */
	wr16(h->bridge.cfg + PCI_DEVICE_ID, 0x0008);
	h->bridge.cfg[0x0b] = 0x06;
	h->bridge.cfg[0x0a] = 0x00;
	h->slot[0] = &h->bridge;
	h->bridge.host = h;
	hw_bus_add_device(b, &h->dev);
	return h;
}

void pci_host_free(struct pci_host *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->msi_lock);
	free(h);
}

int pci_host_add(struct pci_host *h, struct pci_func *f, struct xc_error *err)
{
	unsigned s = 1;

	while (s < PCI_SLOTS && h->slot[s])
		s++;
	if (s == PCI_SLOTS)
		return xc_set_error(err, ENOSPC, "the PCI bus has no free slot");
	if (f->intx && s > PCI_IOAPIC_PINS)
		return xc_set_error(err, ENOSPC, "more than %d PCI devices with an interrupt line",
				    PCI_IOAPIC_PINS);
	for (unsigned bar = 0; bar < PCI_BARS; bar++) {
		uint32_t size = f->bar_size[bar];
		uint64_t at = (h->next_bar + size - 1) & ~(uint64_t)(size - 1);

		if (!size)
			continue;
		if (size < 4096 || (size & (size - 1)) || at + size > X86_MMIO_END)
			return xc_set_error(err, ENOSPC, "BAR of %u bytes does not fit the MMIO window",
					    size);
		wr32(f->cfg + PCI_BAR0 + 4 * bar, (uint32_t)at);
		h->next_bar = at + size;
	}
	wr16(f->cfg + PCI_COMMAND, PCI_COMMAND_MEMORY);
	if (f->intx) {
		f->ioapic_pin = PCI_IOAPIC_PIN_FIRST + s - 1;
		f->cfg[PCI_INTERRUPT_LINE] = f->ioapic_pin;
		f->cfg[PCI_INTERRUPT_PIN] = 1;		/* INTA */
	}
	f->slot = s;
	f->host = h;
	pthread_mutex_lock(&h->lock);
	h->slot[s] = f;
	if (f->bars_changed)
		f->bars_changed(f);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

unsigned pci_msi_gsi(const struct pci_func *f, unsigned v)
{
	return PCI_MSI_GSI_FIRST + PCI_MSI_VECTORS * f->slot + v;
}

/*
 * KVM's routing table is set whole: the defaults KVM_CREATE_IRQCHIP made
 * (GSIs 0..15 to the IOAPIC pin and the PIC's, 16..23 to the IOAPIC) and
 * every MSI-X vector a guest has programmed.
 */
static int set_routes(struct pci_host *h, struct xc_error *err)
{
	enum { DEFAULTS = 16 * 2 + 8, MAX = DEFAULTS + PCI_SLOTS * PCI_MSI_VECTORS };
	struct kvm_irq_routing *t = calloc(1, sizeof(*t) + MAX * sizeof(t->entries[0]));
	unsigned n = 0;
	int rc;

	if (!t)
		return xc_set_error(err, ENOMEM, "the MSI routes");
	for (unsigned gsi = 0; gsi < 24; gsi++) {
		t->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi } };
		if (gsi < 16)
			t->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { .irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER :
							       KVM_IRQCHIP_PIC_SLAVE, .pin = gsi % 8 } };
	}
	for (unsigned s = 0; s < PCI_SLOTS; s++)
		for (unsigned v = 0; v < PCI_MSI_VECTORS; v++) {
			const struct msi_route *m = &h->msi[s][v];

			if (!m->set)
				continue;
			t->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = PCI_MSI_GSI_FIRST + PCI_MSI_VECTORS * s + v,
				.type = KVM_IRQ_ROUTING_MSI,
				.u.msi = { .address_lo = (uint32_t)m->addr,
					   .address_hi = (uint32_t)(m->addr >> 32), .data = m->data } };
		}
	t->nr = n;
	rc = ioctl(xc_domain_vm_fd(hw_bus_domain(h->bus)), KVM_SET_GSI_ROUTING, t);
	free(t);
	return rc ? xc_set_error(err, errno, "KVM_SET_GSI_ROUTING (%u routes)", n) : 0;
}

int pci_msi_route(struct pci_func *f, unsigned v, uint64_t addr, uint32_t data,
		  struct xc_error *err)
{
	struct pci_host *h = f->host;
	struct msi_route *m;
	int rc = 0;

	if (v >= PCI_MSI_VECTORS)
		return xc_set_error(err, EINVAL, "PCI slot %u: MSI-X vector %u", f->slot, v);
	pthread_mutex_lock(&h->msi_lock);
	m = &h->msi[f->slot][v];
	if (!m->set || m->addr != addr || m->data != data) {
		struct msi_route was = *m;

		*m = (struct msi_route){ addr, data, true };
		rc = set_routes(h, err);
		if (rc)
			*m = was;	/* KVM still has the old table */
	}
	pthread_mutex_unlock(&h->msi_lock);
	return rc;
}

unsigned pci_host_intx(const struct pci_host *h, struct xc_pci_intx *out, unsigned max)
{
	unsigned n = 0;

	for (unsigned s = 1; s < PCI_SLOTS && n < max; s++)
		if (h->slot[s] && h->slot[s]->intx)
			out[n++] = (struct xc_pci_intx){ s, 1, h->slot[s]->ioapic_pin };
	return n;
}

int pci_func_load_cfg(struct pci_func *f, const uint8_t cfg[PCI_CFG_SIZE], struct xc_error *err)
{
	struct pci_host *h = f->host;

	/* Identity, capabilities and routing stay the model's; only what the guest may write comes back. */
	for (unsigned bar = 0; bar < PCI_BARS; bar++) {
		uint32_t v = rd32(cfg + PCI_BAR0 + 4 * bar), size = f->bar_size[bar];

		/*
		 * Any value cfg_write keeps (size-aligned, type bits 0) is one the
		 * guest could have written, outside the MMIO window too (RAM, or
		 * all ones in the middle of the kernel's sizing): the running
		 * device took it, so the restore does.
		 */
		if (!size ? v != 0 : (v & (size - 1)) != 0)
			return xc_set_error(err, 0, "PCI slot %u: BAR%u 0x%x is not a %u-byte memory "
					    "BAR as the guest can write one", f->slot, bar, v, size);
	}
	if (cfg[PCI_INTERRUPT_PIN] != f->cfg[PCI_INTERRUPT_PIN])
		return xc_set_error(err, 0, "PCI slot %u: interrupt pin %u, this device has %u",
				    f->slot, cfg[PCI_INTERRUPT_PIN], f->cfg[PCI_INTERRUPT_PIN]);
	pthread_mutex_lock(&h->lock);
	memcpy(f->cfg + PCI_BAR0, cfg + PCI_BAR0, 4 * PCI_BARS);
	f->cfg[PCI_COMMAND] = cfg[PCI_COMMAND] & 0x07;
	f->cfg[PCI_COMMAND + 1] = cfg[PCI_COMMAND + 1] & 0x04;
	f->cfg[PCI_INTERRUPT_LINE] = cfg[PCI_INTERRUPT_LINE];
	f->cfg[0x0c] = cfg[0x0c];
	f->cfg[0x0d] = cfg[0x0d];
	if (f->bars_changed)
		f->bars_changed(f);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

uint32_t pci_host_latch(const struct pci_host *h)
{
	return h->latch;
}

void pci_host_set_latch(struct pci_host *h, uint32_t v)
{
	pthread_mutex_lock(&h->lock);
	h->latch = v;
	pthread_mutex_unlock(&h->lock);
}
