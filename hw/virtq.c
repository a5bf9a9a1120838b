/* SPDX-License-Identifier: MIT */
/* Split virtqueues, device side (hw/virtq.h). */
#include <stdio.h>
#include <string.h>

#include "virtq.h"

/*
 * The rings' sizes (split-ring.tex): descriptors 16 bytes each, aligned 16;
 * avail flags, idx, ring[size] (+ used_event), aligned 2; used flags, idx,
 * ring[size] of {id, len} (+ avail_event), aligned 4.
 */
static uint64_t desc_bytes(uint16_t n) { return 16ull * n; }
static uint64_t avail_bytes(uint16_t n) { return 6 + 2ull * n; }
static uint64_t used_bytes(uint16_t n) { return 6 + 8ull * n; }

static bool ring_ok(struct xc_domain *d, const char *what, uint64_t gpa, uint64_t len,
		    uint64_t align, char *why, size_t wlen)
{
	if (gpa & (align - 1)) {
		snprintf(why, wlen, "%s ring at 0x%llx is not %llu-byte aligned", what,
			 (unsigned long long)gpa, (unsigned long long)align);
		return false;
	}
	if (!d || !xc_gpa_to_hva(d, gpa, len)) {
		snprintf(why, wlen, "%s ring at 0x%llx+%llu is not inside guest RAM", what,
			 (unsigned long long)gpa, (unsigned long long)len);
		return false;
	}
	return true;
}

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

bool virtq_state_valid(const struct virtq *q, struct xc_domain *d, char *why, size_t len)
{
	if (!q->size || q->size > VIRTQ_SIZE_MAX || (q->size & (q->size - 1))) {
		snprintf(why, len, "queue size %u is not a power of two up to %d", q->size,
			 VIRTQ_SIZE_MAX);
		return false;
	}
	if (q->ready > 1) {
		snprintf(why, len, "ready is %u", q->ready);
		return false;
	}
	/* Drained at the save: every chain taken was returned. */
	if ((uint16_t)(q->last_avail - q->used_idx) > q->size) {
		snprintf(why, len, "last_avail %u and used %u are more than the ring's %u apart",
			 q->last_avail, q->used_idx, q->size);
		return false;
	}
	if (!q->ready)
		return true;
	if (!ring_ok(d, "descriptor", q->desc, desc_bytes(q->size), 16, why, len) ||
	    !ring_ok(d, "available", q->avail, avail_bytes(q->size), 2, why, len) ||
	    !ring_ok(d, "used", q->used, used_bytes(q->size), 4, why, len))
		return false;
	/*
	 * Apart, as an image's rings must be (docs/format.md §6.1.3): the
	 * device's own writes (used entries, avail_event) never land in the
	 * driver's rings.
	 */
	if (overlap(q->desc, desc_bytes(q->size), q->avail, avail_bytes(q->size)) ||
	    overlap(q->desc, desc_bytes(q->size), q->used, used_bytes(q->size)) ||
	    overlap(q->avail, avail_bytes(q->size), q->used, used_bytes(q->size))) {
		snprintf(why, len, "the rings at 0x%llx, 0x%llx and 0x%llx overlap",
			 (unsigned long long)q->desc, (unsigned long long)q->avail,
			 (unsigned long long)q->used);
		return false;
	}
	return true;
}

int virtq_map(struct virtq *q, struct xc_domain *d, char *why, size_t len)
{
	if (!virtq_state_valid(q, d, why, len))
		return -1;
	uint8_t *a = xc_gpa_to_hva(d, q->avail, avail_bytes(q->size));
	uint8_t *u = xc_gpa_to_hva(d, q->used, used_bytes(q->size));

	q->desc_p = xc_gpa_to_hva(d, q->desc, desc_bytes(q->size));
	q->avail_flags = (volatile uint16_t *)a;
	q->avail_idx = (volatile uint16_t *)(a + 2);
	q->avail_ring = (volatile uint16_t *)(a + 4);
	q->used_event_p = (volatile uint16_t *)(a + 4 + 2ull * q->size);
	q->used_idx_p = (volatile uint16_t *)(u + 2);
	q->used_ring = (volatile uint32_t *)(u + 4);
	q->avail_event_p = (volatile uint16_t *)(u + 4 + 8ull * q->size);
	q->broken = false;
	return 0;
}

/*
 * One descriptor's buffer into c: -1 when it breaks the rules (readable after
 * writable, outside RAM, more segments than a chain may have).
 */
static int add_buffer(struct virtq_chain *c, struct xc_domain *d, uint64_t addr, uint32_t len,
		      uint16_t flags)
{
	unsigned n = c->nr + c->nw;

	if (!(flags & VIRTQ_DESC_F_WRITE) && c->nw)
		return -1;
	if (!len)
		return 0;		/* an empty buffer carries nothing */
	void *p = xc_gpa_to_hva(d, addr, len);

	if (!p || n >= VIRTQ_SIZE_MAX)
		return -1;
	c->iov[n] = (struct iovec){ p, len };
	c->gpa[n] = addr;
	if (flags & VIRTQ_DESC_F_WRITE) {
		c->nw++;
		c->wlen += len;
	} else {
		c->nr++;
		c->rlen += len;
	}
	return 0;
}

/*
 * Follows a chain from entry i of table (entries long): -1 when it leaves
 * the table, loops, nests an indirect table or points at one it may not.
 */
static int walk(struct virtq *q, struct xc_domain *d, struct virtq_chain *c, const uint8_t *table,
		unsigned entries, uint16_t i, bool indirect)
{
	for (unsigned hops = 0;; hops++) {
		const uint8_t *e = table + 16ull * i;
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;

		if (i >= entries || hops >= entries)
			return -1;	/* out of the table, or a loop */
		memcpy(&addr, e, 8);
		memcpy(&len, e + 8, 4);
		memcpy(&flags, e + 12, 2);
		memcpy(&next, e + 14, 2);
		if (flags & VIRTQ_DESC_F_INDIRECT) {
			/* The one table this chain may have: not nested, not followed, not empty. */
			if (indirect || !q->indirect || (flags & VIRTQ_DESC_F_NEXT) ||
			    !len || len % 16 || len / 16 > VIRTQ_SIZE_MAX)
				return -1;
			const uint8_t *t = xc_gpa_to_hva(d, addr, len);

			return t ? walk(q, d, c, t, len / 16, 0, true) : -1;
		}
		if (add_buffer(c, d, addr, len, flags))
			return -1;
		if (!(flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = next;
	}
}

/*
 * EVENT_IDX: asks the driver to kick when it makes entry last_avail
 * available.  The store is seen before the avail index is read again (a
 * store then a load needs a full fence), so either the driver sees it and
 * kicks or the device sees the entry.
 */
static void publish_avail_event(struct virtq *q, struct xc_domain *d)
{
	q->avail_event = q->last_avail;
	__atomic_store_n(q->avail_event_p, q->avail_event, __ATOMIC_RELAXED);
	xc_mark_dirty(d, q->used + 4 + 8ull * q->size, 2);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int virtq_pop(struct virtq *q, struct xc_domain *d, struct virtq_chain *c)
{
	uint16_t avail, head;

	if (q->broken || !q->ready || !q->desc_p)
		return 0;
	avail = __atomic_load_n(q->avail_idx, __ATOMIC_ACQUIRE);
	if (avail == q->last_avail) {
		if (!q->event_idx)
			return 0;
		publish_avail_event(q, d);
		avail = __atomic_load_n(q->avail_idx, __ATOMIC_ACQUIRE);
		if (avail == q->last_avail)
			return 0;
	}
	if ((uint16_t)(avail - q->last_avail) > q->size)
		goto broken;		/* the driver's index ran past the ring */
	head = q->avail_ring[q->last_avail % q->size];
	c->head = head;
	c->nr = c->nw = 0;
	c->rlen = c->wlen = 0;
	if (walk(q, d, c, q->desc_p, q->size, head, false))
		goto broken;
	q->last_avail++;
	return 1;
broken:
	q->broken = true;
	return -1;
}

void virtq_push(struct virtq *q, struct xc_domain *d, const struct virtq_chain *c, uint32_t len)
{
	uint16_t slot = q->used_idx % q->size;
	uint64_t left = len;

	for (unsigned i = c->nr; i < c->nr + c->nw && left; i++) {
		uint64_t k = left < c->iov[i].iov_len ? left : c->iov[i].iov_len;

		xc_mark_dirty(d, c->gpa[i], k);
		left -= k;
	}
	q->used_ring[2 * slot] = c->head;
	q->used_ring[2 * slot + 1] = len;
	q->used_idx++;
	/* The entry before the index (the driver reads them in that order). */
	__atomic_store_n(q->used_idx_p, q->used_idx, __ATOMIC_RELEASE);
	xc_mark_dirty(d, q->used + 4 + 8ull * slot, 8);
	xc_mark_dirty(d, q->used + 2, 2);
}

bool virtq_wants_interrupt(struct virtq *q)
{
	/* The used index stored before the flag or event is read: a store then a load needs a full fence. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(*q->avail_flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t event = *q->used_event_p, old = q->signalled_used, now = q->used_idx;
	bool first = !q->signalled;

	q->signalled_used = now;
	q->signalled = true;
	/* split-ring.tex's vring_need_event: event in [old, now). */
	return first || (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

unsigned virtq_slice(const struct virtq_chain *c, bool writable, uint64_t off, uint64_t len,
		     struct iovec *out, unsigned max)
{
	unsigned first = writable ? c->nr : 0, end = writable ? c->nr + c->nw : c->nr, n = 0;

	for (unsigned i = first; i < end && len && n < max; i++) {
		uint64_t l = c->iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		uint64_t k = l - off < len ? l - off : len;

		out[n++] = (struct iovec){ (uint8_t *)c->iov[i].iov_base + off, k };
		len -= k;
		off = 0;
	}
	return n;
}

uint64_t virtq_read(const struct virtq_chain *c, uint64_t off, void *buf, uint64_t len)
{
	struct iovec v[VIRTQ_SIZE_MAX];
	unsigned n = virtq_slice(c, false, off, len, v, VIRTQ_SIZE_MAX);
	uint64_t done = 0;

	for (unsigned i = 0; i < n; i++) {
		memcpy((uint8_t *)buf + done, v[i].iov_base, v[i].iov_len);
		done += v[i].iov_len;
	}
	return done;
}

uint64_t virtq_write(struct virtq_chain *c, uint64_t off, const void *buf, uint64_t len)
{
	struct iovec v[VIRTQ_SIZE_MAX];
	unsigned n = virtq_slice(c, true, off, len, v, VIRTQ_SIZE_MAX);
	uint64_t done = 0;

	for (unsigned i = 0; i < n; i++) {
		memcpy(v[i].iov_base, (const uint8_t *)buf + done, v[i].iov_len);
		done += v[i].iov_len;
	}
	return done;
}
