/* SPDX-License-Identifier: MIT */
/*
 * The device models' host side without KVM (hw/bus.c, hw/pci.c, hw/virtq.c):
 * guest RAM is a buffer here (xc_gpa_to_hva and xc_mark_dirty are this
 * file's).  The bus dispatches and refuses overlaps; conf1 reads all ones for
 * empty slots and sizes BARs as Linux does; split virtqueues pop chains,
 * refuse rings and chains that break the rules, and mark what they write.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "pci.h"
#include "virtq.h"

#define RAM_BYTES	(1u << 20)
static uint8_t ram[RAM_BYTES] __attribute__((aligned(4096)));
static uint64_t dirty_lo = UINT64_MAX, dirty_hi;	/* the range xc_mark_dirty saw */
static struct xc_domain *const dom = (struct xc_domain *)ram;

void *xc_gpa_to_hva(const struct xc_domain *d, uint64_t gpa, uint64_t len)
{
	(void)d;
	return gpa < RAM_BYTES && len <= RAM_BYTES - gpa ? ram + gpa : NULL;
}

static void (*on_dirty)(uint64_t gpa);	/* a driver acting at that moment */

void xc_mark_dirty(struct xc_domain *d, uint64_t gpa, uint64_t len)
{
	(void)d;
	if (on_dirty)
		on_dirty(gpa);
	dirty_lo = gpa < dirty_lo ? gpa : dirty_lo;
	dirty_hi = gpa + len > dirty_hi ? gpa + len : dirty_hi;
}

int xc_domain_vm_fd(const struct xc_domain *d)
{
	(void)d;
	return -1;
}

/* ------------------------------------------------------------- bus */

static unsigned hits;
static void count_io(void *opaque, uint64_t off, bool write, void *data, unsigned len)
{
	(void)opaque; (void)write; (void)len;
	hits++;
	if (!write)
		memcpy(data, &off, 1);
}

Test(bus, dispatches_and_refuses_overlaps)
{
	struct hw_bus *b = hw_bus_new(dom);
	struct xc_error err;
	uint8_t v = 0xaa;

	cr_assert_eq(hw_bus_claim_pio(b, 0x100, 8, count_io, NULL, &err), 0);
	cr_assert_eq(hw_bus_claim_pio(b, 0x104, 8, count_io, NULL, &err), -1, "overlap accepted");
	cr_assert(strstr(err.msg, "overlaps"), "%s", err.msg);
	cr_assert(hw_bus_pio(b, 0x103, false, &v, 1));
	cr_assert_eq(v, 3, "offset within the range: %u", v);
	cr_assert_not(hw_bus_pio(b, 0x107, false, &v, 2), "an access past the range's end reached it");
	cr_assert_not(hw_bus_pio(b, 0x108, false, &v, 1));
	cr_assert_not(hw_bus_mmio(b, 0x103, false, &v, 1), "port range answered MMIO");
	hw_bus_free(b);
}

/* Devices that log their hold and pause; a pause notes whether the other device was held by then. */
struct logdev {
	struct hw_device dev;
	char id;
	bool held;
	struct logdev *other;
};
static char calls[64];

static void log_call(char what, char id)
{
	size_t n = strlen(calls);

	if (n + 3 < sizeof(calls)) {
		calls[n] = what;
		calls[n + 1] = id;
		calls[n + 2] = ' ';
		calls[n + 3] = 0;
	}
}
static void log_hold(struct hw_device *d)
{
	struct logdev *l = (struct logdev *)d;

	l->held = true;
	log_call('h', l->id);
}
static void log_pause(struct hw_device *d)
{
	struct logdev *l = (struct logdev *)d;

	log_call(l->other->held ? 'p' : 'P', l->id);	/* P: the other one still takes work */
}
static void log_free(struct hw_device *d) { (void)d; }
static const struct hw_device_ops log_ops = { .name = "log", .hold = log_hold, .pause = log_pause,
					      .free = log_free };

/*
 * A pause holds every device before it waits for any, so the devices finish
 * their requests side by side (a pause's downtime is the slowest device's
 * request, not their sum); hold alone waits for none.
 */
Test(bus, pause_holds_every_device_before_it_waits)
{
	struct logdev a = { .dev.ops = &log_ops, .id = 'a' }, c = { .dev.ops = &log_ops, .id = 'c' };
	struct hw_bus *b = hw_bus_new(dom);

	a.other = &c;
	c.other = &a;
	hw_bus_add_device(b, &a.dev);
	hw_bus_add_device(b, &c.dev);
	hw_bus_pause(b);
	cr_assert_str_eq(calls, "hc ha pc pa ", "pause: %s", calls);
	calls[0] = 0;
	a.held = c.held = false;
	hw_bus_hold(b);
	cr_assert_str_eq(calls, "hc ha ", "hold: %s", calls);
	calls[0] = 0;
	hw_bus_free(b);		/* pauses them, as it frees them */
	cr_assert_str_eq(calls, "hc ha pc pa ", "free: %s", calls);
}

/* ------------------------------------------------------------- PCI */

static uint32_t conf1(struct hw_bus *b, unsigned slot, unsigned reg, bool write, uint32_t v)
{
	uint32_t addr = 0x80000000u | slot << 11 | reg;

	hw_bus_pio(b, 0xcf8, true, &addr, 4);
	hw_bus_pio(b, 0xcfc, write, &v, 4);
	return v;
}

static unsigned moved;
static void bars_changed(struct pci_func *f) { (void)f; moved++; }
static void bar_io(struct pci_func *f, unsigned bar, uint64_t off, bool write, void *data,
		   unsigned len)
{
	(void)f; (void)bar; (void)len;
	if (!write)
		memcpy(data, &off, 4);
}

Test(pci, conf1_empty_slots_bars_and_intx)
{
	struct hw_bus *b = hw_bus_new(dom);
	struct pci_func f = { .bar_size = { 0x4000 }, .intx = true, .bar_io = bar_io,
			      .bars_changed = bars_changed };
	struct xc_error err;
	struct xc_pci_intx intx[8];
	struct pci_host *h = pci_host_new(b, &err);
	uint32_t v;

	cr_assert(h, "%s", err.msg);
	f.cfg[0] = 0xf4, f.cfg[1] = 0x1a;
	cr_assert_eq(pci_host_add(h, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(f.slot, 1);
	cr_assert_eq(conf1(b, 0, 0x08, false, 0) >> 16, 0x0600, "host bridge class");
	cr_assert_eq(conf1(b, 1, 0, false, 0), 0x1af4, "slot 1's vendor");
	cr_assert_eq(conf1(b, 5, 0, false, 0), 0xffffffffu, "an empty slot reads all ones");
	v = conf1(b, 1, 0x10, false, 0);
	cr_assert_eq(v, X86_MMIO_START, "BAR0 placed at the window's start: 0x%x", v);
	cr_assert_eq(pci_bar_addr(&f, 0), X86_MMIO_START);
	/* Linux's sizing: decode off, all ones, read the mask, put it back. */
	conf1(b, 1, 0x04, true, 0);
	cr_assert_eq(pci_bar_addr(&f, 0), 0, "a BAR decodes with memory decode off");
	conf1(b, 1, 0x10, true, 0xffffffffu);
	cr_assert_eq(conf1(b, 1, 0x10, false, 0), 0xffffc000u, "size mask");
	conf1(b, 1, 0x10, true, 0xc0010000u);
	conf1(b, 1, 0x04, true, PCI_COMMAND_MEMORY);
	cr_assert_eq(pci_bar_addr(&f, 0), 0xc0010000u);
	cr_assert(moved >= 3, "bars_changed ran %u times", moved);
	cr_assert(hw_bus_mmio(b, 0xc0010008, false, &v, 4));
	cr_assert_eq(v, 8, "a BAR access at its offset");
	cr_assert(hw_bus_mmio(b, 0xc0000000, false, &v, 4), "the window answers where no BAR is");
	cr_assert_eq(v, 0xffffffffu);
	cr_assert_eq(pci_host_intx(h, intx, 8), 1);
	cr_assert_eq(intx[0].slot, 1);
	cr_assert_eq(intx[0].ioapic_pin, PCI_IOAPIC_PIN_FIRST);
	cr_assert_eq(conf1(b, 1, 0x3c, false, 0) >> 8 & 0xff, 1, "interrupt pin INTA");
	hw_bus_free(b);
}

/* The capability bytes the model is shown: an MSI-X control's writes land here. */
static unsigned cap_at[8], cap_v[8], caps;
static void cap_write(struct pci_func *f, unsigned at, uint8_t v)
{
	(void)f;
	if (caps < 8)
		cap_at[caps] = at, cap_v[caps++] = v;
}

Test(pci, capability_writes_and_msi_routes)
{
	struct hw_bus *b = hw_bus_new(dom);
	struct pci_func f = { .bar_size = { 0x4000 }, .bar_io = bar_io, .cap_write = cap_write };
	struct pci_func g = { .bar_size = { 0x4000 }, .bar_io = bar_io };
	struct xc_error err;
	struct pci_host *h = pci_host_new(b, &err);

	cr_assert(h, "%s", err.msg);
	cr_assert_eq(pci_host_add(h, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(pci_host_add(h, &g, &err), 0, "%s", err.msg);
	conf1(b, 1, 0x3c, true, 0x0000000b);		/* below 0x40: the host's */
	cr_assert_eq(caps, 0, "a header write reached the model");
	conf1(b, 1, 0x84, true, 0xc0000000u);		/* a control word's high byte, as a dword */
	cr_assert_eq(caps, 4, "%u capability bytes seen", caps);
	cr_assert_eq(cap_at[3], 0x87);
	cr_assert_eq(cap_v[3], 0xc0);
	conf1(b, 2, 0x84, true, 0xc0000000u);		/* a function without the hook ignores it */
	cr_assert_eq(g.cfg[0x87], 0);
	/* Each (slot, vector) its own GSI past the IOAPIC's. */
	cr_assert_eq(pci_msi_gsi(&f, 0), PCI_MSI_GSI_FIRST + PCI_MSI_VECTORS);
	cr_assert_eq(pci_msi_gsi(&g, 1), PCI_MSI_GSI_FIRST + 2 * PCI_MSI_VECTORS + 1);
	cr_assert_eq(pci_msi_route(&f, PCI_MSI_VECTORS, 0xfee00000, 0x41, &err), -1,
		     "a vector past the function's GSIs routed");
	/* No VM here: KVM's refusal comes back, named. */
	cr_assert_eq(pci_msi_route(&f, 0, 0xfee00000, 0x41, &err), -1);
	cr_assert(strstr(err.msg, "KVM_SET_GSI_ROUTING"), "%s", err.msg);
	hw_bus_free(b);
}

/* ------------------------------------------------------- virtqueues */

#define DESC	0x1000
#define AVAIL	0x2000
#define USED	0x3000

static void desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *e = ram + DESC + 16 * i;

	memcpy(e, &addr, 8);
	memcpy(e + 8, &len, 4);
	memcpy(e + 12, &flags, 2);
	memcpy(e + 14, &next, 2);
}

static void offer(uint16_t slot, uint16_t head, uint16_t idx)
{
	memcpy(ram + AVAIL + 4 + 2 * slot, &head, 2);
	memcpy(ram + AVAIL + 2, &idx, 2);
}

static struct virtq mapped(uint16_t size)
{
	struct virtq q = { .size = size, .ready = 1, .desc = DESC, .avail = AVAIL, .used = USED };
	char why[160];

	memset(ram, 0, 0x4000);
	cr_assert_eq(virtq_map(&q, dom, why, sizeof(why)), 0, "%s", why);
	return q;
}

Test(virtq, pop_push_and_dirty)
{
	struct virtq q = mapped(8);
	static struct virtq_chain c;
	uint8_t hdr[4] = { 1, 2, 3, 4 };

	memcpy(ram + 0x8000, hdr, 4);
	desc(0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 3);
	desc(3, 0x9000, 512, VIRTQ_DESC_F_WRITE, 0);
	offer(0, 0, 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), 1);
	cr_assert_eq(c.nr, 1);
	cr_assert_eq(c.nw, 1);
	cr_assert_eq(c.wlen, 512);
	cr_assert_eq(virtq_pop(&q, dom, &c), 0, "one chain offered, two taken");
	cr_assert_eq(virtq_write(&c, 0, "xy", 2), 2);
	dirty_lo = UINT64_MAX, dirty_hi = 0;
	virtq_push(&q, dom, &c, 2);
	cr_assert_eq(*(uint16_t *)(ram + USED + 2), 1, "used idx");
	cr_assert_eq(*(uint32_t *)(ram + USED + 4), 0, "used id: the head");
	cr_assert_eq(*(uint32_t *)(ram + USED + 8), 2, "used len");
	cr_assert(dirty_lo <= 0x9000 && dirty_hi > 0x9000, "the data page was not marked dirty");
	cr_assert(dirty_lo <= USED + 2 && dirty_hi >= USED + 12, "the used ring was not marked dirty");
}

/* An indirect table's buffers, as Linux gives a request once INDIRECT_DESC is accepted. */
static void table_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		       uint16_t next)
{
	uint8_t *e = ram + table + 16 * i;

	memcpy(e, &addr, 8);
	memcpy(e + 8, &len, 4);
	memcpy(e + 12, &flags, 2);
	memcpy(e + 14, &next, 2);
}

Test(virtq, indirect_tables)
{
	struct virtq q = mapped(8);
	static struct virtq_chain c;
	const uint64_t t = 0x6000;

	q.indirect = true;
	table_desc(t, 0, 0x8000, 16, VIRTQ_DESC_F_NEXT, 1);
	for (unsigned i = 1; i < 255; i++)	/* more buffers than the ring has entries */
		table_desc(t, i, 0x10000 + 512ull * i, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
			   i + 1);
	table_desc(t, 255, 0x9000, 1, VIRTQ_DESC_F_WRITE, 0);
	desc(2, t, 16 * 256, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0, 2, 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), 1);
	cr_assert_eq(c.head, 2, "the used id is the ring's head, not the table's");
	cr_assert_eq(c.nr, 1);
	cr_assert_eq(c.nw, 255);
	cr_assert_eq(c.wlen, 254 * 512 + 1);
	cr_assert_eq(c.iov[1].iov_base, ram + 0x10200);

	q = mapped(8);
	q.indirect = true;
	desc(0, 0x8000, 16, VIRTQ_DESC_F_NEXT, 1);	/* one more: 257 buffers */
	desc(1, t, 16 * 256, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0, 0, 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), -1, "a chain of 257 buffers was taken");

	q = mapped(8);
	desc(2, t, 16 * 256, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0, 2, 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), -1, "a table taken without INDIRECT_DESC negotiated");

	static const struct {
		const char *what;
		uint32_t len;
		uint16_t flags;
		uint16_t inner_flags;
	} bad[] = {
		{ "a table with NEXT", 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 0 },
		{ "a table of 24 bytes", 24, VIRTQ_DESC_F_INDIRECT, 0 },
		{ "an empty table", 0, VIRTQ_DESC_F_INDIRECT, 0 },
		{ "a table of 257 entries", 16 * 257, VIRTQ_DESC_F_INDIRECT, 0 },
		{ "a nested table", 32, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_INDIRECT },
		{ "a loop in a table", 32, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT },
	};
	for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		q = mapped(8);
		q.indirect = true;
		table_desc(t, 0, 0x8000, 16, bad[k].inner_flags, 0);
		table_desc(t, 1, 0x9000, 16, VIRTQ_DESC_F_WRITE, 0);
		desc(0, t, bad[k].len, bad[k].flags, 1);
		desc(1, 0x9000, 16, VIRTQ_DESC_F_WRITE, 0);
		offer(0, 0, 1);
		cr_assert_eq(virtq_pop(&q, dom, &c), -1, "%s was taken", bad[k].what);
	}
	q = mapped(8);
	q.indirect = true;
	desc(0, RAM_BYTES - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0, 0, 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), -1, "a table past RAM was read");
}

Test(virtq, broken_rings_and_chains)
{
	struct virtq q = { .size = 3, .ready = 1, .desc = DESC, .avail = AVAIL, .used = USED };
	static struct virtq_chain c;
	char why[160];

	cr_assert_eq(virtq_map(&q, dom, why, sizeof(why)), -1, "size 3 accepted");
	q.size = 8;
	q.desc = DESC + 8;
	cr_assert_eq(virtq_map(&q, dom, why, sizeof(why)), -1, "unaligned descriptors accepted");
	q.desc = RAM_BYTES - 64;
	cr_assert_eq(virtq_map(&q, dom, why, sizeof(why)), -1, "a ring past RAM accepted");
	cr_assert(strstr(why, "not inside guest RAM"), "%s", why);
	q.desc = DESC;
	q.last_avail = 20, q.used_idx = 3;
	cr_assert_not(virtq_state_valid(&q, dom, why, sizeof(why)), "indices 17 apart in 8 accepted");

	q = mapped(8);
	desc(0, 0x8000, 16, VIRTQ_DESC_F_NEXT, 0);	/* a loop */
	offer(0, 0, 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), -1, "a descriptor loop was followed");
	cr_assert(q.broken);

	q = mapped(8);
	desc(0, 0x8000, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(1, 0x9000, 16, 0, 0);			/* readable after writable */
	offer(0, 0, 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), -1, "readable after writable accepted");

	q = mapped(8);
	desc(0, RAM_BYTES - 8, 16, 0, 0);		/* buffer past RAM */
	offer(0, 0, 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), -1, "a buffer past RAM accepted");

	q = mapped(8);
	offer(0, 0, 9);					/* 9 available in a ring of 8 */
	cr_assert_eq(virtq_pop(&q, dom, &c), -1, "an index past the ring accepted");
}

/*
 * EVENT_IDX (split-ring.tex): the device asks for the next kick by writing
 * avail_event when it finds the ring empty, and interrupts only when the
 * driver's used_event lies among the entries used since the last interrupt.
 */
Test(virtq, event_idx_kicks_and_interrupts)
{
	struct virtq q = mapped(8);
	static struct virtq_chain c;
	const uint64_t avail_event = USED + 4 + 8 * 8, used_event = AVAIL + 4 + 2 * 8;
	uint16_t ev;

	q.event_idx = true;
	for (unsigned i = 0; i < 4; i++)
		desc(i, 0x8000 + 0x100 * i, 16, VIRTQ_DESC_F_WRITE, 0);
	offer(0, 0, 1);
	offer(1, 1, 2);
	cr_assert_eq(virtq_pop(&q, dom, &c), 1);
	cr_assert_eq(virtq_pop(&q, dom, &c), 1);
	dirty_lo = UINT64_MAX, dirty_hi = 0;
	cr_assert_eq(virtq_pop(&q, dom, &c), 0, "two chains offered, three taken");
	memcpy(&ev, ram + avail_event, 2);
	cr_assert_eq(ev, 2, "an empty ring asks for a kick at entry 2: avail_event %u", ev);
	cr_assert_eq(q.avail_event, 2, "the published avail_event is not kept for the image");
	cr_assert(dirty_lo <= avail_event && dirty_hi >= avail_event + 2,
		  "avail_event was written but not marked dirty (0x%llx..0x%llx)",
		  (unsigned long long)dirty_lo, (unsigned long long)dirty_hi);

	/* The first push always interrupts; then only as used_event asks. */
	virtq_push(&q, dom, &c, 0);
	cr_assert(virtq_wants_interrupt(&q), "the first used entry raised no interrupt");
	cr_assert(q.signalled && q.signalled_used == 1, "signalled %d at %u", q.signalled,
		  q.signalled_used);
	ev = 3;					/* the driver wants one once entry 3 is used */
	memcpy(ram + used_event, &ev, 2);
	virtq_push(&q, dom, &c, 0);
	cr_assert_not(virtq_wants_interrupt(&q), "entry 1 used interrupted a driver waiting for 3");
	virtq_push(&q, dom, &c, 0);
	virtq_push(&q, dom, &c, 0);
	cr_assert(virtq_wants_interrupt(&q), "entries 2 and 3 used and no interrupt (used_event 3)");
	cr_assert_eq(q.signalled_used, 4);

	/* Without EVENT_IDX the flag decides, and used_event is not read. */
	q.event_idx = false;
	virtq_push(&q, dom, &c, 0);
	cr_assert(virtq_wants_interrupt(&q), "no NO_INTERRUPT flag and no interrupt");
	*(uint16_t *)(ram + AVAIL) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	cr_assert_not(virtq_wants_interrupt(&q), "NO_INTERRUPT ignored");
	q.last_avail = 2;			/* and no avail_event is written */
	ev = 0x5a5a;
	memcpy(ram + avail_event, &ev, 2);
	cr_assert_eq(virtq_pop(&q, dom, &c), 0);
	cr_assert_eq(*(uint16_t *)(ram + avail_event), 0x5a5a, "avail_event written without EVENT_IDX");
}

/* The driver makes entry 0 available just as the device publishes avail_event 0, and reads it too late to kick. */
static void offer_on_publish(uint64_t gpa)
{
	if (gpa == USED + 4 + 8 * 8)
		offer(0, 0, 1);
}

/* A chain made available while the device publishes avail_event is taken, not left waiting for a kick. */
Test(virtq, event_idx_looks_again_after_publishing)
{
	struct virtq q = mapped(8);
	static struct virtq_chain c;

	q.event_idx = true;
	desc(0, 0x8000, 16, VIRTQ_DESC_F_WRITE, 0);
	on_dirty = offer_on_publish;
	int rc = virtq_pop(&q, dom, &c);

	on_dirty = NULL;
	cr_assert_eq(rc, 1, "an entry made available while avail_event was published was not taken");
	cr_assert_eq(virtq_pop(&q, dom, &c), 0);
	cr_assert_eq(*(uint16_t *)(ram + USED + 4 + 8 * 8), 1, "avail_event did not move to 1");
}
