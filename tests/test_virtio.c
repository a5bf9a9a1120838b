/* SPDX-License-Identifier: MIT */
/*
 * The virtio-pci transport (hw/virtio_pci.c) without KVM: the file is
 * included whole, so a test reaches the common configuration as a vCPU
 * does (common_write under the lock) and runs the device thread's pass
 * (process_queues) by hand; guest RAM is a buffer and KVM's ioctls succeed
 * doing nothing (ioctl is wrapped).  What the tests hold the transport to:
 * whatever a driver writes, the state vd_save() takes is one the image's
 * validator (libsr/device.c, docs/format.md §6.1) accepts, so no guest can
 * make its own image one that no restore takes.
 */
#include <criterion/criterion.h>

#include "../hw/virtio_pci.c"
#include "../hw/virtio_rng.c"

#define RAM_BYTES	(1u << 20)
static uint8_t ram[RAM_BYTES] __attribute__((aligned(4096)));
static struct xc_domain *const dom = (struct xc_domain *)ram;

void *xc_gpa_to_hva(const struct xc_domain *d, uint64_t gpa, uint64_t len)
{
	(void)d;
	return gpa < RAM_BYTES && len <= RAM_BYTES - gpa ? ram + gpa : NULL;
}

void xc_mark_dirty(struct xc_domain *d, uint64_t gpa, uint64_t len)
{
	(void)d; (void)gpa; (void)len;
}

int xc_domain_vm_fd(const struct xc_domain *d)
{
	(void)d;
	return -1;
}

/* KVM_IRQFD, KVM_IOEVENTFD, KVM_SET_GSI_ROUTING: taken, nothing done. */
int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...)
{
	(void)fd; (void)req;
	return 0;
}

/* ---------------------------------------------------------- the driver */

#define DESC	0x1000ull
#define AVAIL	0x2000ull
#define USED	0x3000ull
#define BUF	0x8000ull
#define QSIZE	8

static struct hw_bus *bus;
static struct virtio_dev *dev;

/* A new device on a new bus, guest RAM as it is (a restore's). */
static void new_device(void)
{
	struct xc_error err;
	struct pci_host *h;

	bus = hw_bus_new(dom);
	cr_assert(bus);
	h = pci_host_new(bus, &err);
	cr_assert(h, "%s", err.msg);
	dev = virtio_rng_new(bus, h, &err);
	cr_assert(dev, "%s", err.msg);
}

static void setup(void)
{
	memset(ram, 0, sizeof(ram));
	new_device();
}

static void teardown(void)
{
	hw_bus_free(bus);
}

static void wr(unsigned off, uint64_t v, unsigned len)
{
	pthread_mutex_lock(&dev->lock);
	common_write(dev, off, &v, len);
	pthread_mutex_unlock(&dev->lock);
}

static uint8_t status(void)
{
	return dev->status;
}

static void features(uint64_t f)
{
	wr(0x08, 0, 4);
	wr(0x0c, (uint32_t)f, 4);
	wr(0x08, 1, 4);
	wr(0x0c, f >> 32, 4);
}

/* Queue 0 at DESC, AVAIL, USED with QSIZE entries, enabled. */
static void queue_setup(void)
{
	wr(0x16, 0, 2);
	wr(0x18, QSIZE, 2);
	wr(0x20, DESC, 8);
	wr(0x28, AVAIL, 8);
	wr(0x30, USED, 8);
	wr(0x1c, 1, 2);
}

/* One 16-byte writable buffer made available on queue 0. */
static void make_available(void)
{
	uint16_t idx;

	memcpy(&idx, ram + AVAIL + 2, 2);
	uint16_t d = idx % QSIZE;
	uint64_t addr = BUF + 16 * d;
	uint32_t len = 16;
	uint16_t flags = VIRTQ_DESC_F_WRITE, next = 0;

	memcpy(ram + DESC + 16 * d, &addr, 8);
	memcpy(ram + DESC + 16 * d + 8, &len, 4);
	memcpy(ram + DESC + 16 * d + 12, &flags, 2);
	memcpy(ram + DESC + 16 * d + 14, &next, 2);
	memcpy(ram + AVAIL + 4 + 2 * d, &d, 2);
	idx++;
	memcpy(ram + AVAIL + 2, &idx, 2);
}

/* The device thread's pass over its queues. */
static void device_pass(void)
{
	pthread_mutex_lock(&dev->lock);
	process_queues(dev);
	pthread_mutex_unlock(&dev->lock);
}

/* What the save takes, checked as a reader checks the image: 0, or -1 with why. */
static int saved_state_valid(char *why, size_t len)
{
	static uint8_t buf[SR_VIRTIO_DATA_MAX];
	struct sr_region r = { .gpa = 0, .size = RAM_BYTES, .flags = SR_REGION_F_RAM };
	struct sr_device_env env;
	struct sr_error e;
	long n = vd_save(&dev->dev, buf, sizeof(buf));

	if (n < 0) {
		snprintf(why, len, "vd_save failed");
		return -1;
	}
	sr_device_env_init(&env, &r, 1);
	if (sr_device_validate(&env, "virtio-rng", SR_VIRTIO_VERSION, 0, buf, n, NULL, NULL, &e)) {
		snprintf(why, len, "%s", e.msg);
		return -1;
	}
	return 0;
}

#define F_EVENT_IDX	(1ull << VIRTIO_RING_F_EVENT_IDX)
#define F_V1		(1ull << VIRTIO_F_VERSION_1)

TestSuite(virtio_state, .init = setup, .fini = teardown);

/* One more request served, then: the queue's EVENT_IDX is the negotiated one, and the save is one a reader takes. */
static void runs_as_negotiated_and_saves_valid(void)
{
	char why[512];

	make_available();
	device_pass();
	cr_assert_eq(dev->q[0].event_idx, virtio_has_feature(dev, VIRTIO_RING_F_EVENT_IDX),
		     "the queue runs with EVENT_IDX %d, the driver's features say %d",
		     dev->q[0].event_idx, virtio_has_feature(dev, VIRTIO_RING_F_EVENT_IDX));
	cr_assert_eq(saved_state_valid(why, sizeof(why)), 0, "the image refuses the save: %s", why);
}

/*
 * A driver enables its queue with EVENT_IDX accepted, then takes the bit
 * back before FEATURES_OK: the queue must not run with EVENT_IDX (and save
 * SIGNALLED, avail_event) while the image says it was never negotiated.
 */
Test(virtio_state, event_idx_taken_back_after_queue_enable)
{
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER, 1);
	features(F_V1 | F_EVENT_IDX);
	queue_setup();
	features(F_V1);
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK, 1);
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK, 1);
	runs_as_negotiated_and_saves_valid();
}

/*
 * The same by clearing FEATURES_OK (a status write without it, not 0) once
 * the queue runs: the features are written again without EVENT_IDX and
 * FEATURES_OK set again.
 */
Test(virtio_state, event_idx_taken_back_by_clearing_features_ok)
{
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER, 1);
	features(F_V1 | F_EVENT_IDX);
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK, 1);
	queue_setup();
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK, 1);
	make_available();
	device_pass();
	cr_assert(dev->q[0].signalled, "the device did not interrupt with EVENT_IDX");
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER, 1);
	features(F_V1);
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK, 1);
	runs_as_negotiated_and_saves_valid();
}

/* A well-behaved driver's state saves valid, EVENT_IDX and all (the harness itself). */
Test(virtio_state, linux_order_saves_valid)
{
	char why[512];

	wr(0x14, S_ACKNOWLEDGE | S_DRIVER, 1);
	features(F_V1 | F_EVENT_IDX);
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK, 1);
	cr_assert(status() & S_FEATURES_OK);
	queue_setup();
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK, 1);
	make_available();
	make_available();
	device_pass();
	cr_assert_eq(dev->q[0].used_idx, 2);
	cr_assert(dev->q[0].event_idx && dev->q[0].signalled);
	cr_assert_eq(saved_state_valid(why, sizeof(why)), 0, "%s", why);
}

/* A small deterministic generator (xorshift64*). */
static uint64_t rnd_state;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545f4914f6cdd1dull;
}

/* A value a hostile driver might write at off: plausible ones mostly, anything sometimes. */
static uint64_t hostile_value(unsigned off)
{
	static const uint64_t addrs[] = { DESC, AVAIL, USED, DESC + 8, AVAIL + 1, USED + 2,
					  AVAIL + 16, RAM_BYTES - 64, RAM_BYTES, 1ull << 40, 0 };
	static const uint8_t st[] = { S_ACKNOWLEDGE | S_DRIVER,
				      S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK,
				      S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
				      S_DRIVER_OK, S_FEATURES_OK, 0x10, 0x20, S_FAILED, 0 };
	uint64_t r = rnd();

	if (r % 8 == 0)
		return rnd();
	switch (off) {
	case 0x0c: return r & 1 ? (uint32_t)(F_V1 | F_EVENT_IDX | 1ull << 28) : 1;
	case 0x14: return st[r / 8 % (sizeof(st) / sizeof(st[0]))];
	case 0x18: return 1u << (r / 8 % 10);
	case 0x20: case 0x28: case 0x30: return addrs[r / 8 % (sizeof(addrs) / sizeof(addrs[0]))];
	default: return r / 8 % 3;
	}
}

/* ------------------------------------------------------ restores of images */

/* The device's saved state, decoded (what an image's DEVICE record holds). */
static void saved_state(struct sr_virtio_state *s)
{
	static uint8_t buf[SR_VIRTIO_DATA_MAX];
	struct xc_error err;
	long n = vd_save(&dev->dev, buf, sizeof(buf));

	cr_assert(n > 0);
	cr_assert_eq(virtio_state_decode("virtio-rng", SR_VIRTIO_VERSION, 0, buf, n, s, &err), 0,
		     "%s", err.msg);
}

/* s restored into a new device (as sr-restore does after the reader's checks): 0, or -1 with why. */
static int restore(const struct sr_virtio_state *s, char *why, size_t len)
{
	static uint8_t buf[SR_VIRTIO_DATA_MAX];
	struct sr_region r = { .gpa = 0, .size = RAM_BYTES, .flags = SR_REGION_F_RAM };
	struct sr_device_env env;
	struct sr_error e;
	struct xc_error err;
	ssize_t n = sr_virtio_encode(s, buf, sizeof(buf), &e);

	cr_assert(n > 0, "%s", e.msg);
	sr_device_env_init(&env, &r, 1);
	if (sr_device_validate(&env, "virtio-rng", SR_VIRTIO_VERSION, 0, buf, n, NULL, NULL, &e)) {
		snprintf(why, len, "reader: %s", e.msg);
		return -1;
	}
	hw_bus_free(bus);
	new_device();
	if (vd_load(&dev->dev, SR_VIRTIO_VERSION, buf, n, &err)) {
		snprintf(why, len, "vd_load: %s", err.msg);
		return -1;
	}
	return 0;
}

static void driver_ready(uint64_t f)
{
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER, 1);
	features(f);
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK, 1);
	queue_setup();
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK, 1);
}

static uint16_t used_idx_in_ram(void)
{
	uint16_t v;

	memcpy(&v, ram + USED + 2, 2);
	return v;
}

static void set_used_event(uint16_t v)
{
	memcpy(ram + AVAIL + 4 + 2 * QSIZE, &v, 2);
}

static uint64_t interrupts(void)
{
	struct virtio_counters c;

	virtio_counters(dev, &c);
	return c.interrupts;
}

/*
 * An image of an older sr, which offered neither INDIRECT_DESC nor
 * EVENT_IDX: it restores, the queue runs without EVENT_IDX (no
 * avail_event written), and the offer stays the image's, so a driver that
 * resets and asks for EVENT_IDX is refused FEATURES_OK.
 */
Test(virtio_state, older_image_without_event_idx_restores_and_keeps_its_offer)
{
	struct sr_virtio_state s;
	char why[512];
	uint32_t offer;

	driver_ready(F_V1);
	make_available();
	device_pass();
	saved_state(&s);
	s.tr.device_features = F_V1;
	cr_assert_eq(restore(&s, why, sizeof(why)), 0, "%s", why);
	cr_assert_not(dev->q[0].event_idx);
	memset(ram + USED + 4 + 8 * QSIZE, 0x5a, 2);
	make_available();
	device_pass();
	cr_assert_eq(used_idx_in_ram(), 2, "the restored queue did not take the request");
	cr_assert_eq(*(uint16_t *)(ram + USED + 4 + 8 * QSIZE), 0x5a5a, "avail_event written");
	pthread_mutex_lock(&dev->lock);
	common_read(dev, 0x04, &offer, 4);
	pthread_mutex_unlock(&dev->lock);
	cr_assert_not(offer & F_EVENT_IDX, "the offer grew EVENT_IDX across the restore");
	wr(0x14, 0, 1);
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER, 1);
	features(F_V1 | F_EVENT_IDX);
	wr(0x14, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK, 1);
	cr_assert_not(status() & S_FEATURES_OK, "FEATURES_OK with EVENT_IDX the image never offered");
}

/*
 * The EVENT_IDX state goes across a restore: the driver asks for an
 * interrupt at the next entry (used_event = used) and gets it; asks for
 * none (used_event behind) and gets none; odd signalled_used and
 * avail_event values restore without harm and are overwritten.
 */
Test(virtio_state, event_idx_state_restored_interrupts_where_asked)
{
	struct sr_virtio_state s;
	char why[512];
	uint64_t before;

	driver_ready(F_V1 | F_EVENT_IDX);
	make_available();
	device_pass();
	cr_assert(dev->q[0].signalled);
	saved_state(&s);
	cr_assert(s.q[0].flags & SR_VQ_F_SIGNALLED);
	cr_assert_eq(s.q[0].signalled_used, 1);
	cr_assert_eq(s.q[0].avail_event, 1);
	cr_assert_eq(restore(&s, why, sizeof(why)), 0, "%s", why);
	cr_assert(dev->q[0].event_idx && dev->q[0].signalled && dev->q[0].signalled_used == 1);
	set_used_event(1);			/* interrupt me at entry 1 */
	make_available();
	before = interrupts();
	device_pass();
	cr_assert_eq(interrupts(), before + 1, "the restored queue did not interrupt where asked");
	set_used_event(0);			/* behind: no interrupt wanted */
	make_available();
	before = interrupts();
	device_pass();
	cr_assert_eq(interrupts(), before, "interrupted where the driver asked for none");
	saved_state(&s);
	s.q[0].signalled_used = 0xffff;
	s.q[0].avail_event = 0xbeef;
	cr_assert_eq(restore(&s, why, sizeof(why)), 0, "%s", why);
	device_pass();
	cr_assert_eq(*(uint16_t *)(ram + USED + 4 + 8 * QSIZE), 3, "avail_event not republished");
	saved_state(&s);
	cr_assert_eq(s.q[0].avail_event, 3);
}

/* A request type that asks for a pause while it runs, as vd_hold does from another thread. */
static uint32_t holding_request(struct virtio_dev *vd, unsigned q, struct virtq_chain *c)
{
	(void)q; (void)c;
	__atomic_store_n(&vd->hold, true, __ATOMIC_RELEASE);
	return 0;
}

/*
 * A pause stops the pass after the request in hand: what it pushed still
 * gets the interrupt the driver asked for (the decision is not skipped),
 * the rest waits in the ring, and the resume's pass takes it.
 */
Test(virtio_state, hold_mid_pass_still_interrupts_for_what_was_pushed)
{
	static struct virtio_type held;
	uint64_t before;

	driver_ready(F_V1 | F_EVENT_IDX);
	held = *dev->type;
	held.request = holding_request;
	dev->type = &held;
	make_available();
	make_available();
	before = interrupts();
	device_pass();
	cr_assert_eq(used_idx_in_ram(), 1, "the pass went on past the hold");
	cr_assert_eq(interrupts(), before + 1, "no interrupt for the entry pushed before the hold");
	__atomic_store_n(&dev->hold, false, __ATOMIC_RELEASE);
	dev->type = &rng_type;
	set_used_event(1);
	device_pass();
	cr_assert_eq(used_idx_in_ram(), 2, "the request left at the hold was not taken");
	cr_assert_eq(interrupts(), before + 2);
}

/* A config space write through conf1, as the guest's kernel makes it. */
static void pci_cfg_write32(unsigned reg, uint32_t v)
{
	uint32_t a = 0x80000000u | dev->pci.slot << 11 | reg;

	cr_assert(hw_bus_pio(bus, 0xcf8, true, &a, 4));
	cr_assert(hw_bus_pio(bus, 0xcfc, true, &v, 4));
}

/*
 * Wherever the driver puts BAR0 (the window the MP table gives, RAM, the
 * top of the 32-bit space after a sizing write), the save restores: the
 * reader and vd_load take what the running device took.
 */
Test(virtio_state, any_bar_the_guest_writes_restores)
{
	static const uint32_t bars[] = { 0xc0004000u, 0x00100000u, 0xffffc000u, 0 };
	struct sr_virtio_state s;
	char why[512];

	driver_ready(F_V1 | F_EVENT_IDX);
	for (unsigned i = 0; i < sizeof(bars) / sizeof(bars[0]); i++) {
		pci_cfg_write32(0x10, bars[i]);
		saved_state(&s);
		cr_assert_eq(restore(&s, why, sizeof(why)), 0, "BAR0 0x%x: %s", bars[i], why);
	}
}

/* A config space write through conf1 of len bytes at reg. */
static void pci_cfg_write(unsigned reg, uint32_t v, unsigned len)
{
	uint32_t a = 0x80000000u | dev->pci.slot << 11 | (reg & ~3u);

	cr_assert(hw_bus_pio(bus, 0xcf8, true, &a, 4));
	cr_assert(hw_bus_pio(bus, 0xcfc + (reg & 3), true, &v, len));
}

/*
 * Random writes to the common configuration, the PCI config space (command,
 * BARs, MSI-X control) and the MSI-X table, requests and device passes, as a
 * hostile driver makes them: after every step the state a save would take
 * is one the image's validator accepts, and every tenth step it is restored
 * (vd_load) and the driver goes on with the restored device.
 */
Test(virtio_state, hostile_driver_never_makes_an_unrestorable_state)
{
	static const unsigned offs[] = { 0x00, 0x08, 0x0c, 0x10, 0x14, 0x16, 0x18, 0x1a, 0x1c,
					 0x20, 0x28, 0x30 };
	struct sr_virtio_state s;
	char why[512], log[4096];

	for (unsigned run = 0; run < 2000; run++) {
		size_t at = 0;

		teardown();
		setup();
		rnd_state = 0x9e3779b97f4a7c15ull * (run + 1);
		log[0] = 0;
		for (unsigned step = 0; step < 60; step++) {
			uint64_t r = rnd() % 20;

			if (r < 12) {
				unsigned off = offs[rnd() % (sizeof(offs) / sizeof(offs[0]))];
				uint64_t v = hostile_value(off);
				unsigned len = off >= 0x20 ? 8 : off == 0x14 ? 1 : off < 0x10 ? 4 : 2;

				wr(off, v, len);
				at += snprintf(log + at, sizeof(log) - at, " w%x=%llx", off,
					       (unsigned long long)v);
			} else if (r < 14) {
				static const unsigned regs[] = { 0x04, 0x05, 0x10, 0x14, 0x3c };
				unsigned reg = rnd() % 6 < 5 ? regs[rnd() % 5] : dev->msix_cap + 3;
				uint32_t v = rnd() % 3 ? (uint32_t)rnd() : rnd() % 2 ? 0xffffffffu : 0;
				unsigned len = reg & 3 ? 1 : 4;

				pci_cfg_write(reg, v, len);
				at += snprintf(log + at, sizeof(log) - at, " cfg%x=%x", reg, v);
			} else if (r < 15) {
				uint64_t off = MSIX_TABLE_OFF + 4 * (rnd() % (4 * dev->nvec));
				uint32_t v = rnd() % 2 ? (uint32_t)rnd() : (uint32_t)rnd() % 2;

				bar_io(&dev->pci, 0, off, true, &v, 4);
				at += snprintf(log + at, sizeof(log) - at, " msix%llx=%x",
					       (unsigned long long)off, v);
			} else if (r < 17) {
				make_available();
				at += snprintf(log + at, sizeof(log) - at, " avail");
			} else {
				device_pass();
				at += snprintf(log + at, sizeof(log) - at, " pass");
			}
			if (at >= sizeof(log))
				at = sizeof(log) - 1;
			cr_assert_eq(saved_state_valid(why, sizeof(why)), 0,
				     "run %u step %u: the image refuses the save: %s\nwrites:%s", run,
				     step, why, log);
			if (step % 10 == 9) {
				saved_state(&s);
				cr_assert_eq(restore(&s, why, sizeof(why)), 0,
					     "run %u step %u: the restore refuses the save: %s\n"
					     "writes:%s", run, step, why, log);
				at += snprintf(log + at, sizeof(log) - at, " RESTORED");
			}
		}
	}
}

/*
 * A restored device's first start interrupts each ready queue once, even
 * where used_event asks for none: an interrupt on its way into KVM at the
 * save is in no image, and the driver would wait for it forever.  The
 * same device started fresh (no image) raises nothing.
 */
Test(virtio_state, restored_start_interrupts_each_ready_queue_once)
{
	struct sr_virtio_state s;
	struct xc_error err;
	char why[512];
	uint64_t before;

	driver_ready(F_V1 | F_EVENT_IDX);
	make_available();
	device_pass();
	set_used_event(0);			/* behind: the driver asks for no interrupt */
	saved_state(&s);
	cr_assert_eq(restore(&s, why, sizeof(why)), 0, "%s", why);
	before = interrupts();
	cr_assert_eq(vd_start(&dev->dev, &err), 0, "%s", err.msg);
	cr_assert_eq(interrupts(), before + 1, "the restored queue was not interrupted at the start "
		     "(%llu interrupts, %llu before)", (unsigned long long)interrupts(),
		     (unsigned long long)before);

	hw_bus_free(bus);
	memset(ram, 0, sizeof(ram));
	new_device();
	driver_ready(F_V1 | F_EVENT_IDX);
	before = interrupts();
	cr_assert_eq(vd_start(&dev->dev, &err), 0, "%s", err.msg);
	cr_assert_eq(interrupts(), before, "a device that was never restored interrupted at its start");
}
