/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, split-ring.tex), device side: pop a chain
 * of descriptors the driver made available, push it back used.  Every
 * address the guest gives is checked against guest RAM before use; a queue
 * whose driver breaks the rules is marked broken and left alone.  Pages the
 * device writes are marked dirty for a live save (xc_mark_dirty).
 */
#ifndef SR_HW_VIRTQ_H
#define SR_HW_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "xc.h"

#define VIRTQ_SIZE_MAX		256	/* offered as queue_size; a chain is at most this long */

#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2
#define VIRTQ_DESC_F_INDIRECT	4
#define VIRTQ_AVAIL_F_NO_INTERRUPT	1

#define VIRTIO_RING_F_INDIRECT_DESC	28
#define VIRTIO_RING_F_EVENT_IDX		29

/* What the driver set up and where the device is: all of a queue's saved state. */
struct virtq {
	uint16_t size;			/* a power of two up to VIRTQ_SIZE_MAX */
	uint16_t ready;
	uint64_t desc, avail, used;	/* guest-physical */
	uint16_t last_avail;		/* next avail entry the device takes */
	uint16_t used_idx;		/* next used entry the device fills */
	/* Host addresses while ready (virtq_map). */
	bool broken;
	bool indirect;			/* the driver accepted INDIRECT_DESC */
	bool event_idx;			/* the driver accepted EVENT_IDX */
	/* EVENT_IDX: the used index at the last interrupt (valid once signalled), what the device last published as avail_event. */
	bool signalled;
	uint16_t signalled_used;
	uint16_t avail_event;
	volatile uint16_t *avail_idx, *avail_flags, *avail_ring;
	volatile uint16_t *used_event_p;	/* after avail's ring */
	volatile uint16_t *used_idx_p;
	volatile uint16_t *avail_event_p;	/* after used's ring */
	volatile uint32_t *used_ring;	/* id, len pairs */
	const uint8_t *desc_p;
};

/* A popped chain: readable buffers first, then writable ones. */
struct virtq_chain {
	uint16_t head;
	unsigned nr, nw;		/* readable and writable segments */
	struct iovec iov[VIRTQ_SIZE_MAX];	/* nr readable, then nw writable */
	uint64_t gpa[VIRTQ_SIZE_MAX];
	uint64_t rlen, wlen;		/* bytes in each part */
};

/*
 * Checks the rings of q (sizes, alignment, inside RAM) and maps them.
 * -1 with why filled when they break the rules.
 */
int virtq_map(struct virtq *q, struct xc_domain *d, char *why, size_t len);

/*
 * The next available chain into c: 1, 0 when none is available, -1 when
 * the driver broke the rules (the queue is then broken).  A chain is at
 * most VIRTQ_SIZE_MAX buffers, counted across one indirect table (with
 * q->indirect) that ends it.  With q->event_idx, finding the ring empty
 * publishes avail_event (the driver kicks for the next entry) and looks
 * once more, so a chain made available meanwhile is not left unkicked.
 */
int virtq_pop(struct virtq *q, struct xc_domain *d, struct virtq_chain *c);

/*
 * Returns chain c to the driver with len bytes written into its writable
 * part: those pages are marked dirty first (the device wrote them; KVM's
 * log did not see it), then the used entry, then the used index.
 */
void virtq_push(struct virtq *q, struct xc_domain *d, const struct virtq_chain *c, uint32_t len);

/*
 * After pushes: whether the driver wants an interrupt.  Without EVENT_IDX,
 * unless it set NO_INTERRUPT; with it, when used_event lies among the
 * entries pushed since the last interrupt (the caller then raises one: it is
 * recorded as signalled).
 */
bool virtq_wants_interrupt(struct virtq *q);

/* Whether a state from an image is one this side can take (sizes, indices); else why. */
bool virtq_state_valid(const struct virtq *q, struct xc_domain *d, char *why, size_t len);

/* Copies out of / into a chain's readable or writable part, from byte off. */
uint64_t virtq_read(const struct virtq_chain *c, uint64_t off, void *buf, uint64_t len);
uint64_t virtq_write(struct virtq_chain *c, uint64_t off, const void *buf, uint64_t len);

/*
 * The iovecs of [off, off + len) of the readable (write false) or writable
 * part into out (at most max); returns how many.
 */
unsigned virtq_slice(const struct virtq_chain *c, bool writable, uint64_t off, uint64_t len,
		     struct iovec *out, unsigned max);

#endif
