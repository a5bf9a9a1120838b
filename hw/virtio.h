/* SPDX-License-Identifier: MIT */
/*
 * virtio 1.x devices on the PCI transport (hw/virtio_pci.c).  A device type
 * (virtio-blk, virtio-rng) gives its ID, queues, features and config space
 * and handles one request chain at a time; the transport does the rest:
 * PCI identity and capabilities, the common configuration, queue set-up,
 * notifications through KVM_IOEVENTFD, interrupts through KVM_IRQFD (MSI-X
 * vectors routed to the guest's messages; INTx, level-triggered, with a
 * resample fd, until the driver enables MSI-X), indirect descriptor tables,
 * and one thread per device that takes requests off its queues, so a
 * request costs the guest no exit to user space.  Pause drains the thread;
 * resume re-kicks every queue and re-raises a pending interrupt.
 */
#ifndef SR_HW_VIRTIO_H
#define SR_HW_VIRTIO_H

#include <stdint.h>

#include "bus.h"
#include "sr.h"
#include "pci.h"
#include "virtq.h"

#define VIRTIO_F_VERSION_1	32
#define VIRTIO_QUEUES_MAX	4

#define VIRTIO_ID_BLOCK		2
#define VIRTIO_ID_RNG		4

struct virtio_dev;

struct virtio_type {
	const char *name;		/* DEVICE record name */
	uint16_t device_id;		/* VIRTIO_ID_* */
	uint32_t class_code;		/* PCI class, subclass, prog-if */
	unsigned nqueues;
	/*
	 * One chain taken from queue q, on the device's thread: do it and
	 * return how many bytes were written into its writable part.
	 */
	uint32_t (*request)(struct virtio_dev *vd, unsigned q, struct virtq_chain *c);
	/*
	 * Optional: the type's own section of the saved state (docs/format.md
	 * §6.1; virtio-blk: BLK), and the check of an image's against this
	 * device before it is taken.
	 */
	void (*save)(struct virtio_dev *vd, struct sr_virtio_state *s);
	int (*load)(struct virtio_dev *vd, const struct sr_virtio_state *s, struct xc_error *err);
	void (*free)(struct virtio_dev *vd);
};

struct virtio_dev_config {
	const struct virtio_type *type;
	uint64_t features;		/* offered besides VIRTIO_F_VERSION_1 */
	const void *config;		/* device config space, read-only to the guest */
	size_t config_len;
	void *priv;			/* the type's */
};

/* Makes the device, puts it on the PCI bus and on the device bus (which owns it). */
struct virtio_dev *virtio_pci_new(struct hw_bus *b, struct pci_host *h,
				  const struct virtio_dev_config *c, struct xc_error *err);

void *virtio_priv(const struct virtio_dev *vd);
struct xc_domain *virtio_domain(const struct virtio_dev *vd);
/* Whether the driver accepted feature bit. */
bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit);

/*
 * Decodes a DEVICE record's data the reader has validated (§6.1) into s;
 * -1 with err when it is not a virtio state this sr reads.
 */
int virtio_state_decode(const char *name, uint32_t version, uint32_t instance, const void *data,
			size_t len, struct sr_virtio_state *s, struct xc_error *err);

/* Exits from the guest's point of view, for measurements: notifies and ISR reads seen as MMIO exits. */
struct virtio_counters {
	uint64_t requests, interrupts, mmio_notifies, isr_reads;
};
void virtio_counters(const struct virtio_dev *vd, struct virtio_counters *out);

/* ------------------------------------------------- the device types */

enum virtio_blk_cache {
	VIRTIO_BLK_WRITEBACK,		/* the host's page cache; FLUSH is fdatasync */
	VIRTIO_BLK_NONE,		/* O_DIRECT (a bounce buffer where alignment demands) */
};

/* A disk: --disk FILE[,ro][,cache=none|writeback]. */
struct virtio_blk_opts {
	char path[4096];
	bool ro;
	enum virtio_blk_cache cache;
	bool cache_given;		/* cache= was said (a restore: the operator's beats the image's) */
	uint32_t disk;			/* its DISK record's index in an image */
	/*
	 * A restore: the file that was checked against its DISK record, open in
	 * the disk's final mode; the device takes that descriptor and never
	 * opens the path again (a name can be made to point at another file,
	 * even one given the same inode number).
	 */
	bool want_id;
	int checked_fd;
};

/* Parses FILE[,ro][,cache=none|writeback]; -1 with why. */
int virtio_blk_parse(const char *arg, struct virtio_blk_opts *o, char *why, size_t len);

/*
 * A virtio-blk device on a raw file: read, write, flush (fdatasync),
 * get-id, discard (a hole punched), write-zeroes.  The file's size, in
 * 512-byte sectors rounded down, is the capacity.  Only a regular file is
 * taken (opened without blocking on a FIFO or taking a terminal), and with
 * want_id only the descriptor checked_fd.
 */
struct virtio_dev *virtio_blk_new(struct hw_bus *b, struct pci_host *h,
				  const struct virtio_blk_opts *o, struct xc_error *err);
const struct virtio_blk_opts *virtio_blk_opts(const struct virtio_dev *vd);
/* The open disk file (identity, snapshot: read it with pread only). */
int virtio_blk_fd(const struct virtio_dev *vd);

/*
 * A save's watch on the blocks its disk identity keeps from before the
 * pause (libsr's sr_disk_sample): from the return on, each write (OUT,
 * DISCARD, WRITE_ZEROES) that touches one of the n blocks of bs bytes at
 * off[] sets its bit, and every write is counted.  A write that does not
 * see the watch was done before it began: its data is in what the caller
 * reads after this returns.  A new watch replaces the last.
 */
#define VIRTIO_BLK_WATCH_MAX	64
void virtio_blk_watch(struct virtio_dev *vd, const uint64_t *off, unsigned n, uint32_t bs);

/* Since the watch began: the blocks written (bit i: off[i]) and, in *writes, how many writes. */
uint64_t virtio_blk_touched(struct virtio_dev *vd, uint64_t *writes);
/*
 * The same, and the watch goes on from nothing: a write done after this
 * is in what the next call returns (a write done meanwhile may be in
 * either, never in neither).
 */
uint64_t virtio_blk_touched_take(struct virtio_dev *vd, uint64_t *writes);

/* A virtio-rng device: every buffer filled from getrandom(). */
struct virtio_dev *virtio_rng_new(struct hw_bus *b, struct pci_host *h, struct xc_error *err);

#endif
