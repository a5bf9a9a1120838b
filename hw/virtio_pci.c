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
 * configuration at 0x2000, notifications at 0x3000 (4 bytes per queue), the
 * MSI-X table at 0x3800 and its pending bits at 0x3c00.  Each queue's
 * notify address is a KVM ioeventfd once the BAR decodes; the device thread
 * waits on them.  Interrupts are MSI-X, as QEMU's: a vector for the config
 * and one per queue, each an irqfd on a GSI routed to the message the guest
 * programmed, so an interrupt costs the guest no exit (its EOI is the
 * local APIC's).  Until the driver enables MSI-X (or with a driver that
 * does not) it is INTx: an irqfd on the function's IOAPIC pin with a
 * resample fd: KVM lowers the line at the guest's EOI and tells the
 * thread, which raises it again while the ISR is still set; the guest's
 * ISR read (which acknowledges) is then an exit per interrupt.
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
#define MSIX_TABLE_OFF	0x3800
#define MSIX_PBA_OFF	0x3c00
#define MSIX_VECTORS	(VIRTIO_QUEUES_MAX + 1)	/* the config's and one per queue, at most */
#define MSIX_CTRL_MASK	0x40	/* the message control's high byte: function mask */
#define MSIX_CTRL_EN	0x80	/* MSI-X enable */

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
	uint64_t can;			/* what this sr's device can offer: features, or more after a load */
	uint8_t config[256];
	size_t config_len;

	/* Transport state, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t dfselect, gfselect;
	uint64_t driver_features;	/* what was offered of what the driver wrote */
	uint8_t unoffered;		/* bit n: word n as written had bits not offered (not saved) */
	uint8_t status, config_gen;
	uint16_t queue_select;
	struct virtq q[VIRTIO_QUEUES_MAX];
	uint32_t isr;			/* atomics: read-to-clear by the guest */

	/* The device thread. */
	pthread_t thread;
	bool thread_running, hold, idle, quit;
	bool loaded;			/* state from an image: its first start interrupts once */
	int ctl_fd;			/* eventfd: look at hold/quit, and re-kick */
	int kick_fd[VIRTIO_QUEUES_MAX];	/* ioeventfds */
	uint64_t kick_addr[VIRTIO_QUEUES_MAX];	/* where each is assigned; 0: not */
	int irq_fd, resample_fd;
	struct virtq_chain chain;	/* the thread's */

	/* MSI-X. Vectors the driver chose, under lock. */
	uint16_t config_vector, queue_vector[VIRTIO_QUEUES_MAX];
	unsigned nvec;			/* table entries: nqueues + 1 */
	unsigned msix_cap;		/* its capability's offset in config space */
	uint8_t msix_ctrl;		/* MSIX_CTRL_*, atomic: written under the PCI host's lock */
	/* The table and pending bits, under msix_lock (taken inside lock, never around another). */
	pthread_mutex_t msix_lock;
	struct sr_msix_entry table[MSIX_VECTORS];
	uint64_t pba;
	int msi_fd[MSIX_VECTORS];	/* irqfds on pci_msi_gsi(v) */
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

static void signal_fd(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));

	(void)n;
}

static bool msix_on(const struct virtio_dev *vd)
{
	return __atomic_load_n(&vd->msix_ctrl, __ATOMIC_ACQUIRE) & MSIX_CTRL_EN;
}

/* Under msix_lock: vector v's message, or its pending bit while it is masked. */
static void msix_fire_locked(struct virtio_dev *vd, unsigned v)
{
	if ((__atomic_load_n(&vd->msix_ctrl, __ATOMIC_ACQUIRE) & MSIX_CTRL_MASK) ||
	    (vd->table[v].vector_control & 1)) {
		vd->pba |= 1ull << v;
		return;
	}
	vd->pba &= ~(1ull << v);
	signal_fd(vd->msi_fd[v]);
}

/* Under msix_lock: every pending vector that is no longer masked is sent (with MSI-X on). */
static void msix_unmasked_locked(struct virtio_dev *vd)
{
	for (unsigned v = 0; msix_on(vd) && v < vd->nvec; v++)
		if (vd->pba >> v & 1)
			msix_fire_locked(vd, v);
}

/*
 * An interrupt for a queue (isr bit 1) or the config (bit 2): the vector
 * the driver gave it with MSI-X on (none: no interrupt), else the INTx line.
 */
static void raise_irq(struct virtio_dev *vd, uint32_t isr, uint16_t vector)
{
	if (msix_on(vd)) {
		if (vector >= vd->nvec)
			return;
		pthread_mutex_lock(&vd->msix_lock);
		msix_fire_locked(vd, vector);
		pthread_mutex_unlock(&vd->msix_lock);
	} else {
		__atomic_fetch_or(&vd->isr, isr, __ATOMIC_SEQ_CST);
		signal_fd(vd->irq_fd);
	}
	__atomic_fetch_add(&vd->count.interrupts, 1, __ATOMIC_RELAXED);
}

/* At a start or resume: what was pending is raised again (INTx's line; an unmasked MSI-X vector). */
static void reraise(struct virtio_dev *vd)
{
	if (msix_on(vd)) {
		pthread_mutex_lock(&vd->msix_lock);
		msix_unmasked_locked(vd);
		pthread_mutex_unlock(&vd->msix_lock);
	} else if (__atomic_load_n(&vd->isr, __ATOMIC_SEQ_CST)) {
		signal_fd(vd->irq_fd);
	}
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
			raise_irq(vd, 2, vd->config_vector);
		}
		if (pushed && virtq_wants_interrupt(q))
			raise_irq(vd, 1, vd->queue_vector[qi]);
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
		while (__atomic_load_n(&vd->hold, __ATOMIC_ACQUIRE) && !vd->quit) {
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
		if ((p[1].revents & POLLIN) && !msix_on(vd) &&
		    __atomic_load_n(&vd->isr, __ATOMIC_SEQ_CST))
			signal_fd(vd->irq_fd);
	}
}

/*
 * A restored device's first start: one interrupt for each ready queue.  One
 * the source raised just before its pause may still have been on its way
 * into KVM when the vCPUs' state was taken (an irqfd injection that fell
 * back to a workqueue), and is then in neither the image's local APICs nor
 * its ISR; the driver would wait for it forever.  A spurious one only makes
 * it look at the used ring (Firecracker interrupts unconditionally at a
 * save for the same reason).
 */
static void interrupt_restored(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	if (vd->status & S_DRIVER_OK)
		for (unsigned i = 0; i < vd->type->nqueues; i++)
			if (vd->q[i].ready)
				raise_irq(vd, 1, vd->queue_vector[i]);
	pthread_mutex_unlock(&vd->lock);
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
	/*
	 * The thread looks at every queue as it starts (a restored guest's
	 * notifies are not in the image); an interrupt the image has pending is
	 * raised again, as at a resume.
	 */
	reraise(vd);
	if (vd->loaded)
		interrupt_restored(vd);
	vd->loaded = false;
	return 0;
}

/*
 * The thread takes no new request from here on; a thread waiting for a
 * notify is woken to see that.  Not under the lock, which the thread holds
 * while it takes requests: it stops after the one in hand, and what the
 * driver made available since stays in the ring (the image's
 * last_avail_idx; the resume and a restore kick every queue), so a pause
 * waits for one request, not for a full queue of them.
 */
static void vd_hold(struct hw_device *dev)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;

	if (__atomic_exchange_n(&vd->hold, true, __ATOMIC_ACQ_REL) || !vd->thread_running)
		return;
	kick_thread(vd);
}

/* Returns once the thread is between requests and takes no new ones. */
static void vd_pause(struct hw_device *dev)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;

	vd_hold(dev);
	if (!vd->thread_running)
		return;
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

	pthread_mutex_lock(&vd->lock);
	__atomic_store_n(&vd->hold, false, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&vd->cond);
	pthread_mutex_unlock(&vd->lock);
	kick_thread(vd);
	reraise(vd);
}

/* ------------------------------------------------------------ registers */

/* Under lock: the device forgets the driver (status 0). */
static void reset_locked(struct virtio_dev *vd)
{
	vd->dfselect = vd->gfselect = 0;
	vd->driver_features = 0;
	vd->unoffered = 0;
	vd->status = 0;
	vd->queue_select = 0;
	vd->config_vector = NO_VECTOR;
	for (unsigned i = 0; i < VIRTIO_QUEUES_MAX; i++)
		vd->queue_vector[i] = NO_VECTOR;
	__atomic_store_n(&vd->isr, 0, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < VIRTIO_QUEUES_MAX; i++)
		vd->q[i] = (struct virtq){ .size = VIRTQ_SIZE_MAX };
}

/* A machine reset: the driver's state and, as PCI resets them, MSI-X off and every vector masked. */
static void vd_reset(struct hw_device *dev)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;

	pthread_mutex_lock(&vd->lock);
	reset_locked(vd);
	pthread_mutex_lock(&vd->msix_lock);
	__atomic_store_n(&vd->msix_ctrl, 0, __ATOMIC_RELEASE);
	vd->pci.cfg[vd->msix_cap + 3] = 0;
	for (unsigned v = 0; v < vd->nvec; v++)
		vd->table[v] = (struct sr_msix_entry){ .vector_control = 1 };
	vd->pba = 0;
	pthread_mutex_unlock(&vd->msix_lock);
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
	wr16(r + 0x10, vd->config_vector);
	wr16(r + 0x12, vd->type->nqueues);
	r[0x14] = vd->status;
	r[0x15] = vd->config_gen;
	wr16(r + 0x16, vd->queue_select);
	if (q) {
		wr16(r + 0x18, q->size);
		wr16(r + 0x1a, vd->queue_vector[vd->queue_select]);
		wr16(r + 0x1c, q->ready);
		wr16(r + 0x1e, vd->queue_select);	/* notify_off: queue i at NOTIFY_OFF + 4 i */
		wr64(r + 0x20, q->desc);
		wr64(r + 0x28, q->avail);
		wr64(r + 0x30, q->used);
	}
	memcpy(data, r + off, len);
}

/*
 * Only a status docs/format.md §6.1.3 allows, whatever the driver writes (a
 * save takes it; an image the reader refuses is a guest no restore runs):
 * no unknown bit; a bit once set stays until the reset (0; the driver may
 * not clear one), so the features stay what the queues were enabled with;
 * FEATURES_OK after ACKNOWLEDGE and DRIVER, for a subset of what was offered
 * that includes VERSION_1; DRIVER_OK only with FEATURES_OK.
 */
static void set_status(struct virtio_dev *vd, uint8_t v)
{
	const uint8_t known = S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK | S_FAILED;
	uint8_t was = vd->status;

	if (!v) {
		reset_locked(vd);
		return;
	}
	v = (v | was) & known;
	if ((v & S_FEATURES_OK) && !(was & S_FEATURES_OK) &&
	    ((v & (S_ACKNOWLEDGE | S_DRIVER)) != (S_ACKNOWLEDGE | S_DRIVER) ||
	     vd->unoffered || !(vd->driver_features >> VIRTIO_F_VERSION_1 & 1)))
		v &= ~S_FEATURES_OK;
	if (!(v & S_FEATURES_OK))
		v &= ~S_DRIVER_OK;
	vd->status = v | (was & S_NEEDS_RESET);
	if ((v & S_DRIVER_OK) && !(was & S_DRIVER_OK))
		kick_thread(vd);
}

static void enable_queue(struct virtio_dev *vd, struct virtq *q)
{
	char why[160];

	q->ready = 1;
	q->last_avail = q->used_idx = 0;
	q->indirect = virtio_has_feature(vd, VIRTIO_RING_F_INDIRECT_DESC);
	q->event_idx = virtio_has_feature(vd, VIRTIO_RING_F_EVENT_IDX);
	q->signalled = false;
	q->signalled_used = q->avail_event = 0;
	if (virtq_map(q, vd->d, why, sizeof(why))) {
		/* Not enabled (it reads back 0): a ready queue's rings are inside RAM (§6.1.3). */
		q->ready = 0;
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
	case 0x10: vd->config_vector = v < vd->nvec ? v : NO_VECTOR; break;	/* reads back what it took */
	case 0x0c:
		if (vd->gfselect < 2 && !(vd->status & S_FEATURES_OK)) {
			unsigned sh = 32 * vd->gfselect;
			uint64_t w = (v & 0xffffffffull) << sh;

			/*
			 * Bits not offered are not kept (an image's driver_features is a
			 * subset of the offer, §6.1.3) but refuse FEATURES_OK as before.
			 */
			vd->driver_features = (vd->driver_features & ~(0xffffffffull << sh)) |
					      (w & vd->features);
			vd->unoffered = (vd->unoffered & ~(1u << vd->gfselect)) |
					!!(w & ~vd->features) << vd->gfselect;
		}
		break;
	case 0x14: set_status(vd, v); break;
	case 0x16: vd->queue_select = v; break;
	case 0x18:
		if (setup && v && v <= VIRTQ_SIZE_MAX && !(v & (v - 1)))
			q->size = v;
		break;
	case 0x1a:
		if (q)
			vd->queue_vector[vd->queue_select] = v < vd->nvec ? v : NO_VECTOR;
		break;
	case 0x1c:
		/* After FEATURES_OK (which stays): the queue runs with the features it was enabled with. */
		if (setup && v == 1 && (vd->status & S_FEATURES_OK))
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

/* An entry as its 16 bytes in the BAR: address, data, vector control. */
static void entry_bytes(const struct sr_msix_entry *e, uint8_t b[16])
{
	wr64(b, e->addr);
	wr32(b + 8, e->data);
	wr32(b + 12, e->vector_control);
}

/*
 * The MSI-X table and pending bits (vCPU threads).  A new message is
 * routed before it can be sent; a vector unmasked sends what was pending.
 */
static void msix_io(struct virtio_dev *vd, uint64_t off, bool is_write, void *data, unsigned len)
{
	struct xc_error err;

	pthread_mutex_lock(&vd->msix_lock);
	if (off >= MSIX_PBA_OFF) {
		uint8_t b[8];

		wr64(b, vd->pba);
		if (!is_write)				/* read-only */
			memcpy(data, b + (off - MSIX_PBA_OFF), len);
	} else {
		unsigned v = (off - MSIX_TABLE_OFF) / 16, at = (off - MSIX_TABLE_OFF) % 16;
		struct sr_msix_entry *e = &vd->table[v];
		uint8_t b[16];

		entry_bytes(e, b);
		if (!is_write) {
			memcpy(data, b + at, len);
		} else {
			memcpy(b + at, data, len);
			e->addr = rdn(b, 8);
			e->data = rdn(b + 8, 4);
			e->vector_control = rdn(b + 12, 4) & 1;
			/* Routed once usable (KVM's table is set whole: not at every dword). */
			if (!(e->vector_control & 1) &&
			    pci_msi_route(&vd->pci, v, e->addr, e->data, &err))
				e->vector_control |= 1;	/* unroutable: it stays masked */
			msix_unmasked_locked(vd);
		}
	}
	pthread_mutex_unlock(&vd->msix_lock);
}

/* The message control's high byte (enable, function mask); the rest is read-only. */
static void cap_write(struct pci_func *f, unsigned at, uint8_t v)
{
	struct virtio_dev *vd = (struct virtio_dev *)((char *)f - offsetof(struct virtio_dev, pci));

	if (at != vd->msix_cap + 3)
		return;
	pthread_mutex_lock(&vd->msix_lock);
	f->cfg[at] = v & (MSIX_CTRL_EN | MSIX_CTRL_MASK);
	__atomic_store_n(&vd->msix_ctrl, f->cfg[at], __ATOMIC_RELEASE);
	msix_unmasked_locked(vd);
	pthread_mutex_unlock(&vd->msix_lock);
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
	if ((off >= MSIX_TABLE_OFF && off + len <= MSIX_TABLE_OFF + 16 * vd->nvec &&
	     (off ^ (off + len - 1)) < 16) ||
	    (off >= MSIX_PBA_OFF && off + len <= MSIX_PBA_OFF + 8)) {
		msix_io(vd, off, is_write, data, len);	/* an access inside one entry, or the PBA */
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

/* The MSIX section (§6.1.5): the control's two bits, the table, the pending bits. */
static void msix_save(struct virtio_dev *vd, struct sr_virtio_state *s)
{
	uint8_t ctrl = __atomic_load_n(&vd->msix_ctrl, __ATOMIC_ACQUIRE);

	s->has_msix = true;
	s->msix.table_size = vd->nvec;
	s->msix.control = (ctrl & MSIX_CTRL_EN ? SR_MSIX_CTRL_ENABLE : 0) |
			  (ctrl & MSIX_CTRL_MASK ? SR_MSIX_CTRL_MASKALL : 0);
	pthread_mutex_lock(&vd->msix_lock);
	memcpy(s->msix_table, vd->table, vd->nvec * sizeof(vd->table[0]));
	s->msix_pba = vd->pba;
	pthread_mutex_unlock(&vd->msix_lock);
}

/*
 * An image's MSIX section into the device (validated: vectors below its
 * table_size), its unmasked entries routed; an image without one (an older
 * sr's: INTx only) leaves MSI-X off and every entry masked.  Before the
 * device starts: no thread, no vCPU runs.
 */
static int msix_load(struct virtio_dev *vd, const struct sr_virtio_state *s, struct xc_error *err)
{
	uint8_t ctrl = 0;

	if (!s->has_msix)
		goto set;
	if (s->msix.table_size != vd->nvec)
		return xc_set_error(err, 0, "DEVICE %s: %u MSI-X vectors; this device has %u",
				    vd->type->name, s->msix.table_size, vd->nvec);
	for (unsigned v = 0; v < vd->nvec; v++) {
		const struct sr_msix_entry *e = &s->msix_table[v];

		if (!(e->vector_control & 1) && pci_msi_route(&vd->pci, v, e->addr, e->data, err))
			return -1;
	}
	ctrl = (s->msix.control & SR_MSIX_CTRL_ENABLE ? MSIX_CTRL_EN : 0) |
	       (s->msix.control & SR_MSIX_CTRL_MASKALL ? MSIX_CTRL_MASK : 0);
set:
	pthread_mutex_lock(&vd->msix_lock);
	for (unsigned v = 0; v < vd->nvec; v++)
		vd->table[v] = s->has_msix ? s->msix_table[v] :
			       (struct sr_msix_entry){ .vector_control = 1 };
	vd->pba = s->has_msix ? s->msix_pba : 0;
	vd->pci.cfg[vd->msix_cap + 3] = ctrl;
	__atomic_store_n(&vd->msix_ctrl, ctrl, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vd->msix_lock);
	return 0;
}

/*
 * The state, as docs/format.md §6.1 lays it out (devstate's encoder and
 * decoder): taken paused and drained, so no chain is in flight and every
 * ready queue has last_avail == used.
 */
static long vd_save(struct hw_device *dev, void *buf, size_t len)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;
	struct sr_virtio_state *s = calloc(1, sizeof(*s));
	struct sr_error err;
	ssize_t n;

	if (!s)
		return -1;
	pthread_mutex_lock(&vd->lock);
	s->device_id = vd->type->device_id;
	s->instance = vd->dev.instance;
	s->tr = (struct sr_virtio_transport){
		.device_features = vd->features, .driver_features = vd->driver_features,
		.device_feature_select = vd->dfselect, .driver_feature_select = vd->gfselect,
		.queue_select = vd->queue_select, .num_queues = vd->type->nqueues,
		.config_msix_vector = vd->config_vector, .status = vd->status,
		.isr = __atomic_load_n(&vd->isr, __ATOMIC_SEQ_CST), .config_generation = vd->config_gen,
	};
	for (unsigned i = 0; i < vd->type->nqueues; i++) {
		const struct virtq *q = &vd->q[i];

		s->q[i] = (struct sr_virtio_queue){
			.desc = q->desc, .avail = q->avail, .used = q->used, .size = q->size,
			.max_size = VIRTQ_SIZE_MAX, .last_avail_idx = q->last_avail,
			.last_used_idx = q->used_idx, .msix_vector = vd->queue_vector[i],
			.ready = q->ready, .notify_off = i,
			.signalled_used = q->signalled_used, .avail_event = q->avail_event,
			.flags = q->signalled ? SR_VQ_F_SIGNALLED : 0,
		};
	}
	for (unsigned b = 0; b < PCI_BARS; b++)
		memcpy(&s->pci.bar[b], vd->pci.cfg + PCI_BAR0 + 4 * b, 4);
	memcpy(&s->pci.command, vd->pci.cfg + PCI_COMMAND, 2);
	s->pci.slot = vd->pci.slot;
	s->pci.interrupt_pin = vd->pci.cfg[PCI_INTERRUPT_PIN];
	s->pci.interrupt_line = vd->pci.cfg[PCI_INTERRUPT_LINE];
	s->pci.cache_line_size = vd->pci.cfg[0x0c];
	s->pci.latency_timer = vd->pci.cfg[0x0d];
	msix_save(vd, s);
	if (vd->type->save)
		vd->type->save(vd, s);
	pthread_mutex_unlock(&vd->lock);
	n = sr_virtio_encode(s, buf, len, &err);
	free(s);
	return n;
}

int virtio_state_decode(const char *name, uint32_t version, uint32_t instance, const void *data,
			size_t len, struct sr_virtio_state *s, struct xc_error *err)
{
	struct sr_rec_device *d = calloc(1, sizeof(*d) + len);
	struct sr_record rec = { .type = SR_REC_DEVICE, .length = sizeof(*d) + len, .body = d };
	struct sr_error e;
	int rc;

	if (!d)
		return xc_set_error(err, ENOMEM, "DEVICE %s", name);
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->version = version;
	d->instance = instance;
	memcpy(d + 1, data, len);
	rc = sr_virtio_view(&rec, s, &e);
	free(d);
	return rc ? xc_set_error(err, 0, "DEVICE %s %u: %s", name, instance, e.msg) : 0;
}

/* What the guest found must be what this device is: same offer, same slot and line, same queues. */
static int check_state(const struct virtio_dev *vd, const struct sr_virtio_state *s,
		       struct xc_error *err)
{
	const char *n = vd->type->name;

	if (s->device_id != vd->type->device_id || s->tr.num_queues != vd->type->nqueues)
		return xc_set_error(err, 0, "DEVICE %s: device %u with %u queues is not this %u with %u",
				    n, s->device_id, s->tr.num_queues, vd->type->device_id,
				    vd->type->nqueues);
	/* An older sr's offer (without INDIRECT_DESC, say) is kept: the device does no more. */
	if (s->tr.device_features & ~vd->can)
		return xc_set_error(err, 0, "DEVICE %s: the guest was offered features 0x%llx, this "
				    "device can offer 0x%llx (bits 0x%llx are not its)", n,
				    (unsigned long long)s->tr.device_features,
				    (unsigned long long)vd->can,
				    (unsigned long long)(s->tr.device_features & ~vd->can));
	if (s->pci.slot != vd->pci.slot || s->pci.interrupt_pin != vd->pci.cfg[PCI_INTERRUPT_PIN])
		return xc_set_error(err, 0, "DEVICE %s: PCI slot %u pin %u; here it is slot %u pin %u",
				    n, s->pci.slot, s->pci.interrupt_pin, vd->pci.slot,
				    vd->pci.cfg[PCI_INTERRUPT_PIN]);
	for (unsigned i = 0; i < s->tr.num_queues; i++)
		if (s->q[i].max_size != VIRTQ_SIZE_MAX || s->q[i].size > VIRTQ_SIZE_MAX)
			return xc_set_error(err, 0, "DEVICE %s queue %u: size %u of %u; this device's "
					    "queues take %d", n, i, s->q[i].size, s->q[i].max_size,
					    VIRTQ_SIZE_MAX);
	return 0;
}

static int vd_load(struct hw_device *dev, uint32_t version, const void *buf, size_t len,
		   struct xc_error *err)
{
	struct virtio_dev *vd = (struct virtio_dev *)dev;
	struct sr_virtio_state *s = calloc(1, sizeof(*s));
	struct virtq q[VIRTIO_QUEUES_MAX] = { { 0 } };
	uint8_t cfg[PCI_CFG_SIZE];
	char why[160];
	int rc = -1;

	if (!s)
		return xc_set_error(err, ENOMEM, "DEVICE %s", vd->type->name);
	if (virtio_state_decode(vd->type->name, version, vd->dev.instance, buf, len, s, err) ||
	    check_state(vd, s, err))
		goto out;
	for (unsigned i = 0; i < s->tr.num_queues; i++) {
		const struct sr_virtio_queue *e = &s->q[i];

		q[i] = (struct virtq){ .size = e->size, .ready = e->ready, .last_avail = e->last_avail_idx,
				       .used_idx = e->last_used_idx, .desc = e->desc,
				       .avail = e->avail, .used = e->used,
				       .indirect = s->tr.driver_features >> VIRTIO_RING_F_INDIRECT_DESC & 1,
				       .event_idx = s->tr.driver_features >> VIRTIO_RING_F_EVENT_IDX & 1,
				       .signalled = e->flags & SR_VQ_F_SIGNALLED,
				       .signalled_used = e->signalled_used, .avail_event = e->avail_event };
		if (!virtq_state_valid(&q[i], vd->d, why, sizeof(why)) ||
		    (q[i].ready && virtq_map(&q[i], vd->d, why, sizeof(why)))) {
			xc_set_error(err, 0, "DEVICE %s queue %u: %s", vd->type->name, i, why);
			goto out;
		}
	}
	if (vd->type->load && vd->type->load(vd, s, err))
		goto out;
	memcpy(cfg, vd->pci.cfg, sizeof(cfg));
	for (unsigned b = 0; b < PCI_BARS; b++)
		memcpy(cfg + PCI_BAR0 + 4 * b, &s->pci.bar[b], 4);
	memcpy(cfg + PCI_COMMAND, &s->pci.command, 2);
	cfg[PCI_INTERRUPT_LINE] = s->pci.interrupt_line;
	cfg[0x0c] = s->pci.cache_line_size;
	cfg[0x0d] = s->pci.latency_timer;
	if (pci_func_load_cfg(&vd->pci, cfg, err) || msix_load(vd, s, err))
		goto out;
	pthread_mutex_lock(&vd->lock);
	vd->dfselect = s->tr.device_feature_select;
	vd->gfselect = s->tr.driver_feature_select;
	vd->features = s->tr.device_features;
	vd->driver_features = s->tr.driver_features;
	vd->status = s->tr.status;
	vd->config_gen = s->tr.config_generation;
	vd->queue_select = s->tr.queue_select;
	vd->config_vector = s->tr.config_msix_vector;
	for (unsigned i = 0; i < VIRTIO_QUEUES_MAX; i++)
		vd->queue_vector[i] = i < s->tr.num_queues ? s->q[i].msix_vector : NO_VECTOR;
	__atomic_store_n(&vd->isr, s->tr.isr, __ATOMIC_SEQ_CST);
	memcpy(vd->q, q, sizeof(q));
	vd->loaded = true;
	pthread_mutex_unlock(&vd->lock);
	rc = 0;
out:
	free(s);
	return rc;
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
	/* The irqfd and ioeventfds go with the VM's fd, which is closed next. */
	for (unsigned i = 0; i < VIRTIO_QUEUES_MAX; i++)
		if (vd->kick_fd[i] >= 0)
			close(vd->kick_fd[i]);
	if (vd->ctl_fd >= 0)
		close(vd->ctl_fd);
	if (vd->irq_fd >= 0)
		close(vd->irq_fd);
	if (vd->resample_fd >= 0)
		close(vd->resample_fd);
	for (unsigned v = 0; v < MSIX_VECTORS; v++)
		if (vd->msi_fd[v] >= 0)
			close(vd->msi_fd[v]);
	if (vd->type->free)
		vd->type->free(vd);
	pthread_cond_destroy(&vd->cond);
	pthread_mutex_destroy(&vd->msix_lock);
	pthread_mutex_destroy(&vd->lock);
	free(vd);
}

/*
 * The vendor capabilities, from 0x40: common, ISR, device (only with a
 * config space: Linux refuses a device capability of length 0), notify;
 * then MSI-X.
 */
static void write_caps(struct virtio_dev *vd)
{
	static const struct { uint8_t type; uint32_t off; } caps[] = {
		{ CAP_COMMON, COMMON_OFF }, { CAP_ISR, ISR_OFF }, { CAP_DEVICE, DEVCFG_OFF },
		{ CAP_NOTIFY, NOTIFY_OFF },
	};
	uint8_t *cfg = vd->pci.cfg, *prev = cfg + PCI_CAP_PTR;
	unsigned at = 0x40;

	wr16(cfg + PCI_STATUS, PCI_STATUS_CAP_LIST);
	for (unsigned i = 0; i < 4; i++) {
		uint8_t *c = cfg + at;
		uint32_t len = caps[i].type == CAP_COMMON ? COMMON_LEN :
			       caps[i].type == CAP_ISR ? 1 :
			       caps[i].type == CAP_DEVICE ? vd->config_len :
			       NOTIFY_MULT * vd->type->nqueues;
		unsigned size = caps[i].type == CAP_NOTIFY ? 20 : 16;

		if (!len)
			continue;
		*prev = at;			/* the previous one's next, or the list's head */
		c[0] = 0x09;			/* vendor-specific */
		c[2] = size;
		c[3] = caps[i].type;
		c[4] = 0;			/* BAR0 */
		wr32(c + 8, caps[i].off);
		wr32(c + 12, len);
		if (caps[i].type == CAP_NOTIFY)
			wr32(c + 16, NOTIFY_MULT);
		prev = c + 1;
		at += size;
	}
	/* Last (the vendor capabilities keep where an older sr put them): MSI-X, in BAR0. */
	*prev = at;
	cfg[at] = PCI_CAP_MSIX;
	wr16(cfg + at + 2, vd->nvec - 1);		/* table size - 1; disabled, unmasked */
	wr32(cfg + at + 4, MSIX_TABLE_OFF);		/* BIR 0 */
	wr32(cfg + at + 8, MSIX_PBA_OFF);
	vd->msix_cap = at;
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
		.name = t->name, .version = SR_VIRTIO_VERSION, .reset = vd_reset, .start = vd_start,
		.hold = vd_hold, .pause = vd_pause, .resume = vd_resume, .save = vd_save, .load = vd_load,
		.free = vd_free,
	};
	vd->dev.ops = &vd->ops;
	vd->type = t;
	vd->priv = c->priv;
	vd->bus = b;
	vd->d = hw_bus_domain(b);
	vd->features = c->features | 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_RING_F_INDIRECT_DESC |
		       1ull << VIRTIO_RING_F_EVENT_IDX;
	vd->can = vd->features;
	if (c->config_len)		/* virtio-rng has none: config is NULL (memcpy's UB) */
		memcpy(vd->config, c->config, c->config_len);
	vd->config_len = c->config_len;
	pthread_mutex_init(&vd->lock, NULL);
	pthread_mutex_init(&vd->msix_lock, NULL);
	pthread_cond_init(&vd->cond, NULL);
	reset_locked(vd);
	vd->nvec = t->nqueues + 1;
	for (unsigned v = 0; v < MSIX_VECTORS; v++) {
		vd->table[v].vector_control = 1;	/* masked, as PCI resets it */
		vd->msi_fd[v] = v < vd->nvec ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
	}
	vd->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vd->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vd->resample_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (unsigned i = 0; i < VIRTIO_QUEUES_MAX; i++)
		vd->kick_fd[i] = i < t->nqueues ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
	if (vd->ctl_fd < 0 || vd->irq_fd < 0 || vd->resample_fd < 0 ||
	    (t->nqueues && vd->kick_fd[t->nqueues - 1] < 0) || vd->msi_fd[vd->nvec - 1] < 0) {
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
	vd->pci.cap_write = cap_write;
	if (pci_host_add(h, &vd->pci, err))
		goto fail;
	/* Each vector's irqfd now; KVM routes its GSI once the guest programs the entry. */
	for (unsigned v = 0; v < vd->nvec; v++) {
		struct kvm_irqfd msi = { .fd = vd->msi_fd[v], .gsi = pci_msi_gsi(&vd->pci, v) };

		if (ioctl(xc_domain_vm_fd(vd->d), KVM_IRQFD, &msi)) {
			xc_set_error(err, errno, "KVM_IRQFD for %s's MSI-X vector %u on GSI %u",
				     t->name, v, msi.gsi);
			goto fail;
		}
	}
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
