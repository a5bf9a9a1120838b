/* SPDX-License-Identifier: MIT */
/*
 * The virtio PCI transport, modern only (virtio 1.x, VIRTIO_F_VERSION_1).
 *
 * Why PCI and not virtio-mmio: sr boots Debian's stock kernel, which has
 * virtio_mmio as a module without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES and no
 * device tree on x86, so an mmio device is found only through ACPI tables
 * (a DSDT with LNRO0005 devices, in a hardware-reduced FADT that also drops
 * the PIC and the PIT, which sr's guests use).  PCI over the conf1 ports
 * with INTx lines in the MP table is found by the same kernel with nothing
 * but the modules in the initramfs (docs: virtio-devices reference, section
 * 0; kvmtool's x86 transport).  Modern rather than legacy: one layout, 64-bit
 * ring addresses, and the feature negotiation Linux checks.
 *
 * BAR0 (16 KiB, memory): common configuration at 0, ISR at 0x1000, device
 * configuration at 0x2000, notifications at 0x3000 (4 bytes per queue).
 * Each queue's notify address is a KVM ioeventfd once the BAR decodes; the
 * device thread waits on them.  The interrupt is an irqfd on the function's
 * IOAPIC pin with a resample fd: KVM lowers the line at the guest's EOI and
 * tells the thread, which raises it again while the ISR is still set.  The
 * guest's ISR read (which acknowledges) is the only exit per interrupt.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "virtio.h"

#define BAR_SIZE	0x4000
#define COMMON_OFF	0x0000
#define COMMON_LEN	0x40
#define ISR_OFF		0x1000
#define DEVCFG_OFF	0x2000
#define NOTIFY_OFF	0x3000
#define NOTIFY_MULT	4

#define CAP_COMMON	1
#define CAP_NOTIFY	2
#define CAP_ISR		3
#define CAP_DEVICE	4

#define S_ACKNOWLEDGE	1
#define S_DRIVER	2
#define S_DRIVER_OK	4
#define S_FEATURES_OK	8
#define S_NEEDS_RESET	64
#define S_FAILED	128

#define NO_VECTOR	0xffff

struct virtio_dev {
	struct hw_device dev;
	struct hw_device_ops ops;	/* the transport's, named for the type */
	struct pci_func pci;
	const struct virtio_type *type;
	void *priv;
	struct hw_bus *bus;
	struct xc_domain *d;
	uint64_t features;		/* offered */
	uint8_t config[256];
	size_t config_len;

	/* Transport state, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint8_t status, config_gen;
	uint16_t queue_select;
	struct virtq q[VIRTIO_QUEUES_MAX];
	uint32_t isr;			/* atomics: read-to-clear by the guest */

	/* The device thread. */
	pthread_t thread;
	bool thread_running, hold, idle, quit;
	int ctl_fd;			/* eventfd: look at hold/quit, and re-kick */
	int kick_fd[VIRTIO_QUEUES_MAX];	/* ioeventfds */
	uint64_t kick_addr[VIRTIO_QUEUES_MAX];	/* where each is assigned; 0: not */
	int irq_fd, resample_fd;
	struct virtq_chain chain;	/* the thread's */
	struct virtio_counters count;
};

static void wr16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, v); wr16(p + 2, v >> 16); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, v); wr32(p + 4, v >> 32); }
static uint64_t rdn(const void *data, unsigned len)
{
	uint64_t v = 0;

	memcpy(&v, data, len);		/* x86: little-endian like the bus */
	return v;
}

void *virtio_priv(const struct virtio_dev *vd) { return vd->priv; }
struct xc_domain *virtio_domain(const struct virtio_dev *vd) { return vd->d; }

bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
	return vd->driver_features >> bit & 1;
}

void virtio_counters(const struct virtio_dev *vd, struct virtio_counters *out)
{
	out->requests = __atomic_load_n(&vd->count.requests, __ATOMIC_RELAXED);
	out->interrupts = __atomic_load_n(&vd->count.interrupts, __ATOMIC_RELAXED);
	out->mmio_notifies = __atomic_load_n(&vd->count.mmio_notifies, __ATOMIC_RELAXED);
	out->isr_reads = __atomic_load_n(&vd->count.isr_reads, __ATOMIC_RELAXED);
}

static void kick_thread(struct virtio_dev *vd)
{
	uint64_t one = 1;
	ssize_t n = write(vd->ctl_fd, &one, sizeof(one));

	(void)n;
}

static void raise_irq(struct virtio_dev *vd)
{
	uint64_t one = 1;
	ssize_t n;

	__atomic_fetch_or(&vd->isr, 1, __ATOMIC_SEQ_CST);
	n = write(vd->irq_fd, &one, sizeof(one));
	(void)n;
	__atomic_fetch_add(&vd->count.interrupts, 1, __ATOMIC_RELAXED);
}

/* ----------------------------------------------------------- the thread */

/* Under lock: every request the driver made available, until a pause asks. */
static void process_queues(struct virtio_dev *vd)
{
	if (!(vd->status & S_DRIVER_OK))
		return;
	for (unsigned qi = 0; qi < vd->type->nqueues; qi++) {
		struct virtq *q = &vd->q[qi];
		bool pushed = false;
		int rc;

		while (!__atomic_load_n(&vd->hold, __ATOMIC_ACQUIRE) &&
		       (rc = virtq_pop(q, vd->d, &vd->chain)) > 0) {
			uint32_t len = vd->type->request(vd, qi, &vd->chain);

			virtq_push(q, vd->d, &vd->chain, len);
			pushed = true;
			__atomic_fetch_add(&vd->count.requests, 1, __ATOMIC_RELAXED);
		}
		if (q->broken && !(vd->status & S_NEEDS_RESET)) {
			vd->status |= S_NEEDS_RESET;	/* the driver broke the ring's rules */
			vd->config_gen++;
			__atomic_fetch_or(&vd->isr, 2, __ATOMIC_SEQ_CST);
			pushed = true;
		}
		if (pushed && virtq_wants_interrupt(q))
			raise_irq(vd);
	}
}

static void drain_fd(int fd)
{
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));

	(void)n;
}

static void *device_thread(void *arg)
{
	struct virtio_dev *vd = arg;
	struct pollfd p[2 + VIRTIO_QUEUES_MAX];
	unsigned n = 2 + vd->type->nqueues;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	hw_bus_thread_started(vd->bus);
	p[0] = (struct pollfd){ .fd = vd->ctl_fd, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = vd->resample_fd, .events = POLLIN };
	for (unsigned i = 0; i < vd->type->nqueues; i++)
		p[2 + i] = (struct pollfd){ .fd = vd->kick_fd[i], .events = POLLIN };
	for (;;) {
		pthread_mutex_lock(&vd->lock);
		while (vd->hold && !vd->quit) {
			vd->idle = true;
			pthread_cond_broadcast(&vd->cond);
			pthread_cond_wait(&vd->cond, &vd->lock);
		}
		vd->idle = false;
		if (vd->quit) {
			pthread_mutex_unlock(&vd->lock);
			return NULL;
		}
		process_queues(vd);
		pthread_mutex_unlock(&vd->lock);
		if (poll(p, n, -1) < 0 && errno != EINTR)
			return NULL;
		for (unsigned i = 0; i < n; i++)
			if (p[i].revents & POLLIN)
				drain_fd(p[i].fd);
		/* The guest's EOI lowered the line: raise it again while the ISR says so. */
		if ((p[1].revents & POLLIN) && __atomic_load_n(&vd->isr, __ATOMIC_SEQ_CST)) {
			uint64_t one = 1;
			ssize_t k = write(vd->irq_fd, &one, sizeof(one));

			(void)k;
		}
	}
}

static int vd_start(struct hw_device *dev, struct xc_error *err)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;
	sigset_t all, old;
	int e;

	if (vd->thread_running)
		return 0;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&vd->thread, NULL, device_thread, vd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e)
		return xc_set_error(err, e, "starting the %s thread", vd->type->name);
	vd->thread_running = true;
	return 0;
}

/* Returns once the thread is between requests and takes no new ones. */
static void vd_pause(struct hw_device *dev)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;

	pthread_mutex_lock(&vd->lock);
	__atomic_store_n(&vd->hold, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vd->lock);
	if (!vd->thread_running)
		return;
	kick_thread(vd);
	pthread_mutex_lock(&vd->lock);
	while (!vd->idle)
		pthread_cond_wait(&vd->cond, &vd->lock);
	pthread_mutex_unlock(&vd->lock);
}

/*
 * The thread looks at every queue again (a notify eaten by the pause, or
 * one from before a save, is made up), and a pending interrupt is raised
 * again: a restored guest waits for both.
 */
static void vd_resume(struct hw_device *dev)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;
	uint64_t one = 1;

	pthread_mutex_lock(&vd->lock);
	vd->hold = false;
	pthread_cond_broadcast(&vd->cond);
	pthread_mutex_unlock(&vd->lock);
	kick_thread(vd);
	if (__atomic_load_n(&vd->isr, __ATOMIC_SEQ_CST) && write(vd->irq_fd, &one, sizeof(one)) < 0)
		return;
}

/* ------------------------------------------------------------ registers */

/* Under lock: the device forgets the driver (status 0). */
static void reset_locked(struct virtio_dev *vd)
{
	vd->dfselect = vd->gfselect = 0;
	vd->driver_features = 0;
	vd->status = 0;
	vd->queue_select = 0;
	__atomic_store_n(&vd->isr, 0, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < VIRTIO_QUEUES_MAX; i++)
		vd->q[i] = (struct virtq){ .size = VIRTQ_SIZE_MAX };
}

static void vd_reset(struct hw_device *dev)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;

	pthread_mutex_lock(&vd->lock);
	reset_locked(vd);
	pthread_mutex_unlock(&vd->lock);
}

static struct virtq *selected(struct virtio_dev *vd)
{
	return vd->queue_select < vd->type->nqueues ? &vd->q[vd->queue_select] : NULL;
}

static void common_read(struct virtio_dev *vd, unsigned off, void *data, unsigned len)
{
	uint8_t r[COMMON_LEN] = { 0 };
	struct virtq *q = selected(vd);

	wr32(r + 0x00, vd->dfselect);
	wr32(r + 0x04, vd->dfselect < 2 ? (uint32_t)(vd->features >> (32 * vd->dfselect)) : 0);
	wr32(r + 0x08, vd->gfselect);
	wr32(r + 0x0c, vd->gfselect < 2 ? (uint32_t)(vd->driver_features >> (32 * vd->gfselect)) : 0);
	wr16(r + 0x10, NO_VECTOR);
	wr16(r + 0x12, vd->type->nqueues);
	r[0x14] = vd->status;
	r[0x15] = vd->config_gen;
	wr16(r + 0x16, vd->queue_select);
	if (q) {
		wr16(r + 0x18, q->size);
		wr16(r + 0x1a, NO_VECTOR);
		wr16(r + 0x1c, q->ready);
		wr16(r + 0x1e, vd->queue_select);	/* notify_off: queue i at NOTIFY_OFF + 4 i */
		wr64(r + 0x20, q->desc);
		wr64(r + 0x28, q->avail);
		wr64(r + 0x30, q->used);
	}
	memcpy(data, r + off, len);
}

/* FEATURES_OK only for a subset of what was offered that includes VERSION_1. */
static void set_status(struct virtio_dev *vd, uint8_t v)
{
	uint8_t was = vd->status;

	if (!v) {
		reset_locked(vd);
		return;
	}
	if ((v & S_FEATURES_OK) && !(was & S_FEATURES_OK) &&
	    ((vd->driver_features & ~vd->features) ||
	     !(vd->driver_features >> VIRTIO_F_VERSION_1 & 1)))
		v &= ~S_FEATURES_OK;
	vd->status = v | (was & S_NEEDS_RESET);
	if ((v & S_DRIVER_OK) && !(was & S_DRIVER_OK))
		kick_thread(vd);
}

static void enable_queue(struct virtio_dev *vd, struct virtq *q)
{
	char why[160];

	q->ready = 1;
	q->last_avail = q->used_idx = 0;
	if (virtq_map(q, vd->d, why, sizeof(why))) {
		q->broken = true;
		vd->status |= S_NEEDS_RESET;
	}
}

static void common_write(struct virtio_dev *vd, unsigned off, const void *data, unsigned len)
{
	uint64_t v = rdn(data, len);
	struct virtq *q = selected(vd);
	bool setup = q && !q->ready && !(vd->status & S_DRIVER_OK);

	switch (off) {
	case 0x00: vd->dfselect = v; break;
	case 0x08: vd->gfselect = v; break;
	case 0x0c:
		if (vd->gfselect < 2 && !(vd->status & S_FEATURES_OK)) {
			unsigned sh = 32 * vd->gfselect;

			vd->driver_features = (vd->driver_features & ~(0xffffffffull << sh)) |
					      (v & 0xffffffffull) << sh;
		}
		break;
	case 0x14: set_status(vd, v); break;
	case 0x16: vd->queue_select = v; break;
	case 0x18:
		if (setup && v && v <= VIRTQ_SIZE_MAX && !(v & (v - 1)))
			q->size = v;
		break;
	case 0x1c:
		if (setup && v == 1)
			enable_queue(vd, q);
		break;
	case 0x20: case 0x24: case 0x28: case 0x2c: case 0x30: case 0x34:
		if (setup) {
			uint64_t *a = off < 0x28 ? &q->desc : off < 0x30 ? &q->avail : &q->used;

			if (len == 8)
				*a = v;
			else if (off & 4)
				*a = (*a & 0xffffffffull) | v << 32;
			else
				*a = (*a & ~0xffffffffull) | (v & 0xffffffffull);
		}
		break;
	}
}

static void bar_io(struct pci_func *f, unsigned bar, uint64_t off, bool is_write, void *data,
		   unsigned len)
{
	struct virtio_dev *vd = (struct virtio_dev *)((char *)f - offsetof(struct virtio_dev, pci));

	if (bar != 0)
		goto floating;
	if (off >= ISR_OFF && off < ISR_OFF + 4) {
		/* Read-to-clear, without the lock: the thread may be deep in a request. */
		if (!is_write) {
			uint32_t isr = __atomic_exchange_n(&vd->isr, 0, __ATOMIC_SEQ_CST);

			memset(data, 0, len);
			if (off == ISR_OFF)
				*(uint8_t *)data = isr;
			__atomic_fetch_add(&vd->count.isr_reads, 1, __ATOMIC_RELAXED);
		}
		return;
	}
	if (off >= NOTIFY_OFF && off < NOTIFY_OFF + NOTIFY_MULT * vd->type->nqueues) {
		/* No ioeventfd there yet: the exit does the same. */
		if (is_write) {
			uint64_t one = 1;

			if (write(vd->kick_fd[(off - NOTIFY_OFF) / NOTIFY_MULT], &one, 8) < 0)
				return;
			__atomic_fetch_add(&vd->count.mmio_notifies, 1, __ATOMIC_RELAXED);
		} else {
			memset(data, 0, len);
		}
		return;
	}
	if (off >= DEVCFG_OFF && off + len <= DEVCFG_OFF + vd->config_len) {
		if (!is_write)
			memcpy(data, vd->config + off - DEVCFG_OFF, len);	/* fixed after creation */
		return;
	}
	if (off + len <= COMMON_LEN) {
		pthread_mutex_lock(&vd->lock);
		if (is_write)
			common_write(vd, off, data, len);
		else
			common_read(vd, off, data, len);
		pthread_mutex_unlock(&vd->lock);
		return;
	}
floating:
	if (!is_write)
		memset(data, 0xff, len);
}

/* Under the PCI host's lock: the notify ioeventfds follow BAR0. */
static void bars_changed(struct pci_func *f)
{
	struct virtio_dev *vd = (struct virtio_dev *)((char *)f - offsetof(struct virtio_dev, pci));
	uint64_t base = pci_bar_addr(f, 0);
	int vm = xc_domain_vm_fd(vd->d);

	for (unsigned i = 0; i < vd->type->nqueues; i++) {
		uint64_t at = base ? base + NOTIFY_OFF + NOTIFY_MULT * i : 0;
		struct kvm_ioeventfd io = { .fd = vd->kick_fd[i] };

		if (at == vd->kick_addr[i])
			continue;
		if (vd->kick_addr[i]) {
			io.addr = vd->kick_addr[i];
			io.flags = KVM_IOEVENTFD_FLAG_DEASSIGN;
			ioctl(vm, KVM_IOEVENTFD, &io);
			vd->kick_addr[i] = 0;
		}
		io.addr = at;
		io.flags = 0;		/* any length, no data match: the address is the queue */
		if (at && !ioctl(vm, KVM_IOEVENTFD, &io))
			vd->kick_addr[i] = at;
	}
}

/* ------------------------------------------------------- state, and life */

/*
 * The transport's state, version 1: the function's config space, then the
 * fields below and one entry per queue, little-endian; the type's state
 * follows.  Taken paused and drained, so no chain is in flight.
 */
#define STATE_HEAD	(PCI_CFG_SIZE + 28)
#define STATE_QUEUE	32

size_t virtio_state_type_offset(unsigned nqueues)
{
	return STATE_HEAD + STATE_QUEUE * nqueues;
}

static long vd_save(struct hw_device *dev, void *buf, size_t len)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;
	size_t need = STATE_HEAD + STATE_QUEUE * vd->type->nqueues;
	uint8_t *p = buf;
	long extra = 0;

	if (len < need)
		return -1;
	pthread_mutex_lock(&vd->lock);
	memcpy(p, vd->pci.cfg, PCI_CFG_SIZE);
	p += PCI_CFG_SIZE;
	wr32(p, vd->dfselect);
	wr32(p + 4, vd->gfselect);
	wr64(p + 8, vd->driver_features);
	p[16] = vd->status;
	p[17] = vd->config_gen;
	wr16(p + 18, vd->queue_select);
	wr32(p + 20, __atomic_load_n(&vd->isr, __ATOMIC_SEQ_CST));
	p[24] = vd->pci.slot;
	p[25] = vd->pci.ioapic_pin;
	wr16(p + 26, vd->type->nqueues);
	p += 28;
	for (unsigned i = 0; i < vd->type->nqueues; i++, p += STATE_QUEUE) {
		const struct virtq *q = &vd->q[i];

		wr16(p, q->size);
		wr16(p + 2, q->ready);
		wr16(p + 4, q->last_avail);
		wr16(p + 6, q->used_idx);
		wr64(p + 8, q->desc);
		wr64(p + 16, q->avail);
		wr64(p + 24, q->used);
	}
	if (vd->type->save)
		extra = vd->type->save(vd, p, len - need);
	pthread_mutex_unlock(&vd->lock);
	return extra < 0 ? -1 : (long)need + extra;
}

static int vd_load(struct hw_device *dev, uint32_t version, const void *buf, size_t len,
		   struct xc_error *err)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;
	size_t need = STATE_HEAD + STATE_QUEUE * vd->type->nqueues;
	const uint8_t *p = buf;
	struct virtq q[VIRTIO_QUEUES_MAX] = { 0 };
	char why[160];

	if (version != 1 || len < need)
		return xc_set_error(err, 0, "DEVICE %s: version %u, %zu bytes; this sr reads version 1, "
				    "at least %zu bytes", vd->type->name, version, len, need);
	if (memcmp(p, vd->pci.cfg, 4) || p[PCI_CLASS_PROG + 2] != vd->pci.cfg[PCI_CLASS_PROG + 2])
		return xc_set_error(err, 0, "DEVICE %s: PCI identity %02x%02x:%02x%02x is not this device's",
				    vd->type->name, p[1], p[0], p[3], p[2]);
	const uint8_t *t = p + PCI_CFG_SIZE;
	uint64_t drv = rdn(t + 8, 8);

	/* The guest found the device in this slot on this line (its MP table says so). */
	if (t[24] != vd->pci.slot || t[25] != vd->pci.ioapic_pin || rdn(t + 26, 2) != vd->type->nqueues)
		return xc_set_error(err, 0, "DEVICE %s: PCI slot %u, IOAPIC pin %u, %u queues; here it "
				    "is slot %u, pin %u, %u queues", vd->type->name, t[24], t[25],
				    (unsigned)rdn(t + 26, 2), vd->pci.slot, vd->pci.ioapic_pin,
				    vd->type->nqueues);
	if (drv & ~vd->features)
		return xc_set_error(err, 0, "DEVICE %s: driver features 0x%llx beyond the offered 0x%llx",
				    vd->type->name, (unsigned long long)drv,
				    (unsigned long long)vd->features);
	for (unsigned i = 0; i < vd->type->nqueues; i++) {
		const uint8_t *e = t + 28 + STATE_QUEUE * i;

		q[i] = (struct virtq){ .size = rdn(e, 2), .ready = rdn(e + 2, 2),
				       .last_avail = rdn(e + 4, 2), .used_idx = rdn(e + 6, 2),
				       .desc = rdn(e + 8, 8), .avail = rdn(e + 16, 8),
				       .used = rdn(e + 24, 8) };
		if (!virtq_state_valid(&q[i], vd->d, why, sizeof(why)))
			return xc_set_error(err, 0, "DEVICE %s queue %u: %s", vd->type->name, i, why);
		if (q[i].ready)
			virtq_map(&q[i], vd->d, why, sizeof(why));
	}
	if (pci_func_load_cfg(&vd->pci, p, err))
		return -1;
	if (vd->type->load && vd->type->load(vd, p + need, len - need, err))
		return -1;
	pthread_mutex_lock(&vd->lock);
	vd->dfselect = rdn(t, 4);
	vd->gfselect = rdn(t + 4, 4);
	vd->driver_features = drv;
	vd->status = t[16];
	vd->config_gen = t[17];
	vd->queue_select = rdn(t + 18, 2);
	__atomic_store_n(&vd->isr, rdn(t + 20, 4) & 3, __ATOMIC_SEQ_CST);
	memcpy(vd->q, q, sizeof(q));
	pthread_mutex_unlock(&vd->lock);
	return 0;
}

static void vd_free(struct hw_device *dev)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;

	if (vd->thread_running) {
		pthread_mutex_lock(&vd->lock);
		vd->quit = true;
		pthread_cond_broadcast(&vd->cond);
		pthread_mutex_unlock(&vd->lock);
		kick_thread(vd);
		pthread_join(vd->thread, NULL);
	}
	if (vd->irq_fd >= 0) {
		struct kvm_irqfd irq = { .fd = vd->irq_fd, .gsi = vd->pci.ioapic_pin,
					 .flags = KVM_IRQFD_FLAG_DEASSIGN };

		ioctl(xc_domain_vm_fd(vd->d), KVM_IRQFD, &irq);
	}
	for (unsigned i = 0; i < VIRTIO_QUEUES_MAX; i++)
		if (vd->kick_fd[i] >= 0)
			close(vd->kick_fd[i]);
	if (vd->ctl_fd >= 0)
		close(vd->ctl_fd);
	if (vd->irq_fd >= 0)
		close(vd->irq_fd);
	if (vd->resample_fd >= 0)
		close(vd->resample_fd);
	if (vd->type->free)
		vd->type->free(vd);
	pthread_cond_destroy(&vd->cond);
	pthread_mutex_destroy(&vd->lock);
	free(vd);
}

/* The four vendor capabilities, from 0x40: common, ISR, device, notify. */
static void write_caps(struct virtio_dev *vd)
{
	static const struct { uint8_t type; uint32_t off; } caps[] = {
		{ CAP_COMMON, COMMON_OFF }, { CAP_ISR, ISR_OFF }, { CAP_DEVICE, DEVCFG_OFF },
		{ CAP_NOTIFY, NOTIFY_OFF },
	};
	uint8_t *cfg = vd->pci.cfg;
	unsigned at = 0x40;

	cfg[PCI_CAP_PTR] = at;
	wr16(cfg + PCI_STATUS, PCI_STATUS_CAP_LIST);
	for (unsigned i = 0; i < 4; i++) {
		uint8_t *c = cfg + at;
		uint32_t len = caps[i].type == CAP_COMMON ? COMMON_LEN :
			       caps[i].type == CAP_ISR ? 1 :
			       caps[i].type == CAP_DEVICE ? vd->config_len :
			       NOTIFY_MULT * vd->type->nqueues;
		unsigned size = caps[i].type == CAP_NOTIFY ? 20 : 16;

		c[0] = 0x09;			/* vendor-specific */
		c[1] = i < 3 ? at + size : 0;	/* next */
		c[2] = size;
		c[3] = caps[i].type;
		c[4] = 0;			/* BAR0 */
		wr32(c + 8, caps[i].off);
		wr32(c + 12, len);
		if (caps[i].type == CAP_NOTIFY)
			wr32(c + 16, NOTIFY_MULT);
		at += size;
	}
}

struct virtio_dev *virtio_pci_new(struct hw_bus *b, struct pci_host *h,
				  const struct virtio_dev_config *c, struct xc_error *err)
{
	struct virtio_dev *vd = calloc(1, sizeof(*vd));
	const struct virtio_type *t = c->type;

	if (!vd) {
		xc_set_error(err, ENOMEM, "a %s device", t->name);
		return NULL;
	}
	if (t->nqueues > VIRTIO_QUEUES_MAX || c->config_len > sizeof(vd->config)) {
		free(vd);
		xc_set_error(err, EINVAL, "%s: too many queues or too much config", t->name);
		return NULL;
	}
	vd->ops = (struct hw_device_ops){
		.name = t->name, .version = 1, .reset = vd_reset, .start = vd_start,
		.pause = vd_pause, .resume = vd_resume, .save = vd_save, .load = vd_load,
		.free = vd_free,
	};
	vd->dev.ops = &vd->ops;
	vd->type = t;
	vd->priv = c->priv;
	vd->bus = b;
	vd->d = hw_bus_domain(b);
	vd->features = c->features | 1ull << VIRTIO_F_VERSION_1;
	memcpy(vd->config, c->config, c->config_len);
	vd->config_len = c->config_len;
	pthread_mutex_init(&vd->lock, NULL);
	pthread_cond_init(&vd->cond, NULL);
	reset_locked(vd);
	vd->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vd->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vd->resample_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (unsigned i = 0; i < VIRTIO_QUEUES_MAX; i++)
		vd->kick_fd[i] = i < t->nqueues ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
	if (vd->ctl_fd < 0 || vd->irq_fd < 0 || vd->resample_fd < 0 ||
	    (t->nqueues && vd->kick_fd[t->nqueues - 1] < 0)) {
		xc_set_error(err, errno, "eventfds for %s", t->name);
		goto fail;
	}
	/* Identity: virtio's vendor, 0x1040 + type (modern only), revision 1. */
	wr16(vd->pci.cfg + PCI_VENDOR_ID, 0x1af4);
	wr16(vd->pci.cfg + PCI_DEVICE_ID, 0x1040 + t->device_id);
	vd->pci.cfg[PCI_REVISION] = 1;
	vd->pci.cfg[PCI_CLASS_PROG] = t->class_code;
	vd->pci.cfg[PCI_CLASS_PROG + 1] = t->class_code >> 8;
	vd->pci.cfg[PCI_CLASS_PROG + 2] = t->class_code >> 16;
	wr16(vd->pci.cfg + PCI_SUBSYS_VENDOR, 0x1af4);
	wr16(vd->pci.cfg + PCI_SUBSYS_ID, 0x40 + t->device_id);
	write_caps(vd);
	vd->pci.bar_size[0] = BAR_SIZE;
	vd->pci.intx = true;
	vd->pci.bar_io = bar_io;
	vd->pci.bars_changed = bars_changed;
	if (pci_host_add(h, &vd->pci, err))
		goto fail;
	struct kvm_irqfd irq = { .fd = vd->irq_fd, .gsi = vd->pci.ioapic_pin,
				 .flags = KVM_IRQFD_FLAG_RESAMPLE, .resamplefd = vd->resample_fd };

	if (ioctl(xc_domain_vm_fd(vd->d), KVM_IRQFD, &irq)) {
		xc_set_error(err, errno, "KVM_IRQFD (resample) for %s on GSI %u", t->name,
			     vd->pci.ioapic_pin);
		goto fail;	/* the slot stays taken: the domain is not built */
	}
	hw_bus_add_device(b, &vd->dev);
	return vd;
fail:
	if (vd->irq_fd >= 0)
		close(vd->irq_fd);
	vd->irq_fd = -1;		/* never assigned */
	vd_free(&vd->dev);		/* the type's free takes c->priv with it */
	return NULL;
}
