/* SPDX-License-Identifier: MIT */
/*
 * Device state records: the one validator for DEVICE data (serial8250 and
 * the virtio devices, docs/format.md §3.7 and §6) and the DISK record
 * (§3.8), with their encoders and views.  The reader calls the checks, so
 * sr-dump --verify, sr-restore and the fuzzers refuse the same images.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "sr.h"
#include "internal.h"

#define VSEC_HDR	sizeof(struct sr_block_hdr)
#define DEV_HDR		sizeof(struct sr_rec_device)	/* data starts at this body byte */

/* ------------------------------------------------------------ types */

struct virtio_type {
	uint32_t id;
	const char *name;
	uint64_t features;		/* device-specific bits this reader knows */
	uint16_t max_queues;
};

#define BIT(n) (1ull << (n))
#define TRANSPORT_FEATURES (BIT(SR_VIRTIO_F_INDIRECT_DESC) | BIT(SR_VIRTIO_F_EVENT_IDX) | \
			    BIT(SR_VIRTIO_F_VERSION_1))

static const struct virtio_type virtio_types[] = {
	{ SR_VIRTIO_ID_BLOCK, "virtio-blk",
	  BIT(1) | BIT(2) | BIT(4) | BIT(5) | BIT(6) | BIT(9) | BIT(10) | BIT(11) | BIT(12) |
	  BIT(13) | BIT(14), SR_VIRTIO_MAX_QUEUES },
	{ SR_VIRTIO_ID_ENTROPY, "virtio-rng", 0, 1 },
};

static const struct virtio_type *type_by_id(uint32_t id)
{
	for (size_t i = 0; i < sizeof(virtio_types) / sizeof(virtio_types[0]); i++)
		if (virtio_types[i].id == id)
			return &virtio_types[i];
	return NULL;
}

static const struct virtio_type *type_by_name(const char *name)
{
	for (size_t i = 0; i < sizeof(virtio_types) / sizeof(virtio_types[0]); i++)
		if (!strcmp(virtio_types[i].name, name))
			return &virtio_types[i];
	return NULL;
}

const char *sr_virtio_name(uint32_t device_id)
{
	const struct virtio_type *t = type_by_id(device_id);

	return t ? t->name : NULL;
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static size_t msix_len(uint32_t n)
{
	return sizeof(struct sr_virtio_msix) + n * sizeof(struct sr_msix_entry) + 8 * ((n + 63) / 64);
}

/* ------------------------------------------------------------ encoding */

struct enc {
	uint8_t *buf;
	size_t cap, len;
	bool overflow;
};

static void enc_put(struct enc *e, const void *p, size_t n)
{
	if (e->overflow || n > e->cap - e->len) {
		e->overflow = true;
		return;
	}
	memcpy(e->buf + e->len, p, n);
	e->len += n;
}

static void enc_section(struct enc *e, uint32_t kind, const void *a, size_t alen,
			const void *b, size_t blen)
{
	static const uint8_t zeros[8];
	struct sr_block_hdr h = { .kind = kind, .length = (uint32_t)(alen + blen) };

	enc_put(e, &h, sizeof(h));
	enc_put(e, a, alen);
	if (blen)
		enc_put(e, b, blen);
	enc_put(e, zeros, sr_pad8(h.length));
}

ssize_t sr_virtio_encode(const struct sr_virtio_state *s, void *buf, size_t cap,
			 struct sr_error *err)
{
	struct enc e = { .buf = buf, .cap = cap };
	struct sr_virtio_hdr h = { .device_id = s->device_id, .section_count = 2 };
	uint8_t msix[SR_VIRTIO_DATA_MAX];	/* header, table, pba */
	size_t mlen = 0;

	if (!type_by_id(s->device_id) || s->tr.num_queues > SR_VIRTIO_MAX_QUEUES ||
	    (s->has_msix && s->msix.table_size > SR_VIRTIO_MSIX_MAX))
		return sr_set_error(err, SR_E_INVAL, SR_NO_INDEX, 0,
				    "virtio device %u: unknown type, %u queues or %u MSI-X vectors",
				    s->device_id, s->tr.num_queues, s->msix.table_size);
	if (s->has_msix) {
		uint64_t pba = s->msix_pba;

		memcpy(msix, &s->msix, sizeof(s->msix));
		mlen = sizeof(s->msix);
		memcpy(msix + mlen, s->msix_table, s->msix.table_size * sizeof(s->msix_table[0]));
		mlen += s->msix.table_size * sizeof(s->msix_table[0]);
		if (s->msix.table_size) {
			memcpy(msix + mlen, &pba, sizeof(pba));
			mlen += sizeof(pba);
		}
		h.section_count++;
	}
	if (s->device_id == SR_VIRTIO_ID_BLOCK)
		h.section_count++;
	enc_put(&e, &h, sizeof(h));
	enc_section(&e, SR_VSEC_TRANSPORT, &s->tr, sizeof(s->tr), s->q,
		    s->tr.num_queues * sizeof(s->q[0]));
	enc_section(&e, SR_VSEC_PCI, &s->pci, sizeof(s->pci), NULL, 0);
	if (s->has_msix)
		enc_section(&e, SR_VSEC_MSIX, msix, mlen, NULL, 0);
	if (s->device_id == SR_VIRTIO_ID_BLOCK)
		enc_section(&e, SR_VSEC_BLK, &s->blk, sizeof(s->blk), NULL, 0);
	if (e.overflow)
		return sr_set_error(err, SR_E_INVAL, SR_NO_INDEX, 0,
				    "virtio device state does not fit in %zu bytes", cap);
	return (ssize_t)e.len;
}

int sr_write_virtio(struct sr_writer *w, const struct sr_virtio_state *s, struct sr_error *err)
{
	uint8_t buf[SR_VIRTIO_DATA_MAX];
	ssize_t n = sr_virtio_encode(s, buf, sizeof(buf), err);

	if (n < 0)
		return -1;
	return sr_write_device(w, sr_virtio_name(s->device_id), SR_VIRTIO_VERSION, s->instance,
			       buf, (size_t)n, err);
}

/* ------------------------------------------------------------ decoding */

/* What an error names: the record (env), the device and the body byte. */
struct vctx {
	struct sr_device_env *env;
	struct sr_error *err;
	const char *name;
	uint32_t instance;
};

#define VERR(v, code, off, fmt, ...)						\
	sr_set_error((v)->err, code, (v)->env->index, (v)->env->offset,		\
		     "%s %u: body byte %llu: " fmt, (v)->name, (v)->instance,	\
		     (unsigned long long)(DEV_HDR + (off)), ##__VA_ARGS__)

/* Where each known section sits in the data, for error messages. */
struct vsecs {
	size_t tr, pci, msix, blk;	/* data offset of the section's bytes; 0: absent */
};

static const struct {
	uint32_t kind;
	const char *name;
	uint32_t only;			/* device id it belongs to; 0: every type */
} vsec_specs[] = {
	{ SR_VSEC_TRANSPORT, "TRANSPORT", 0 },
	{ SR_VSEC_PCI, "PCI", 0 },
	{ SR_VSEC_MSIX, "MSIX", 0 },
	{ SR_VSEC_BLK, "BLK", SR_VIRTIO_ID_BLOCK },
};

static int decode_section(struct vctx *v, struct sr_virtio_state *s, struct vsecs *at,
			  unsigned i, uint32_t kind, const uint8_t *p, uint32_t n, size_t off)
{
	size_t *where = NULL;

	switch (kind) {
	case SR_VSEC_TRANSPORT: {
		uint16_t nq;

		if (n < sizeof(s->tr))
			return VERR(v, SR_E_LENGTH, off - VSEC_HDR + 4, "TRANSPORT length %u", n);
		memcpy(&s->tr, p, sizeof(s->tr));
		nq = s->tr.num_queues;
		if (nq < 1 || nq > SR_VIRTIO_MAX_QUEUES)
			return VERR(v, SR_E_RANGE, off + offsetof(struct sr_virtio_transport,
								 num_queues),
				    "num_queues %u, not 1..%u", nq, SR_VIRTIO_MAX_QUEUES);
		if (n != sizeof(s->tr) + nq * sizeof(s->q[0]))
			return VERR(v, SR_E_LENGTH, off - VSEC_HDR + 4,
				    "TRANSPORT length %u, %zu for %u queues", n,
				    sizeof(s->tr) + nq * sizeof(s->q[0]), nq);
		memcpy(s->q, p + sizeof(s->tr), nq * sizeof(s->q[0]));
		where = &at->tr;
		break;
	}
	case SR_VSEC_PCI:
		if (n != sizeof(s->pci))
			return VERR(v, SR_E_LENGTH, off - VSEC_HDR + 4, "PCI length %u, not %zu",
				    n, sizeof(s->pci));
		memcpy(&s->pci, p, n);
		where = &at->pci;
		break;
	case SR_VSEC_MSIX: {
		uint16_t ts;

		if (n < sizeof(s->msix))
			return VERR(v, SR_E_LENGTH, off - VSEC_HDR + 4, "MSIX length %u", n);
		memcpy(&s->msix, p, sizeof(s->msix));
		ts = s->msix.table_size;
		if (ts < 1 || ts > SR_VIRTIO_MSIX_MAX)
			return VERR(v, SR_E_RANGE, off, "MSIX table_size %u, not 1..%u", ts,
				    SR_VIRTIO_MSIX_MAX);
		if (n != msix_len(ts))
			return VERR(v, SR_E_LENGTH, off - VSEC_HDR + 4,
				    "MSIX length %u, %zu for %u vectors", n, msix_len(ts), ts);
		memcpy(s->msix_table, p + sizeof(s->msix), ts * sizeof(s->msix_table[0]));
		memcpy(&s->msix_pba, p + sizeof(s->msix) + ts * sizeof(s->msix_table[0]), 8);
		s->has_msix = true;
		where = &at->msix;
		break;
	}
	case SR_VSEC_BLK:
		if (n != sizeof(s->blk))
			return VERR(v, SR_E_LENGTH, off - VSEC_HDR + 4, "BLK length %u, not %zu",
				    n, sizeof(s->blk));
		memcpy(&s->blk, p, n);
		where = &at->blk;
		break;
	}
	(void)i;
	*where = off;
	return 0;
}

/*
 * The structure of a virtio device's data: header, sections, lengths,
 * versions; fills s and the sections' offsets.  Field values are checked
 * afterwards (check_virtio).
 */
static int decode_virtio(struct vctx *v, uint32_t version, const uint8_t *data, size_t len,
			 struct sr_virtio_state *s, struct vsecs *at)
{
	const struct virtio_type *t = type_by_name(v->name);
	struct sr_virtio_hdr h;
	size_t pos = sizeof(h);
	unsigned seen = 0;

	memset(s, 0, sizeof(*s));
	memset(at, 0, sizeof(*at));
	if (!t)
		return sr_set_error(v->err, SR_E_TYPE, v->env->index, v->env->offset,
				    "unknown virtio device \"%s\"", v->name);
	if (version >> 16 != SR_VIRTIO_VERSION_MAJOR)
		return sr_set_error(v->err, SR_E_VERSION, v->env->index, v->env->offset,
				    "%s %u: body byte %zu: state version %u.%u, this reader reads "
				    "%u.x", v->name, v->instance, offsetof(struct sr_rec_device, version),
				    version >> 16, version & 0xffff, SR_VIRTIO_VERSION_MAJOR);
	if (len < sizeof(h))
		return VERR(v, SR_E_LENGTH, 0, "%zu bytes of state, the header alone is %zu",
			    len, sizeof(h));
	memcpy(&h, data, sizeof(h));
	if (h.device_id != t->id)
		return VERR(v, SR_E_RANGE, 0, "device_id %u, a %s is %u", h.device_id, t->name,
			    t->id);
	if (h.section_count < 1 || h.section_count > SR_VIRTIO_MAX_SECTIONS)
		return VERR(v, SR_E_RANGE, 4, "section_count %u, not 1..%u", h.section_count,
			    SR_VIRTIO_MAX_SECTIONS);
	if (h.rsvd)
		return VERR(v, SR_E_PADDING, 8, "rsvd not zero");
	s->device_id = t->id;
	s->instance = v->instance;
	s->major = version >> 16;
	s->minor = version & 0xffff;

	for (unsigned i = 0; i < h.section_count; i++) {
		struct sr_block_hdr sh;
		size_t k, n = sizeof(vsec_specs) / sizeof(vsec_specs[0]);
		uint32_t pad;

		if (len - pos < sizeof(sh))
			return VERR(v, SR_E_LENGTH, pos, "section %u header runs past the data", i);
		memcpy(&sh, data + pos, sizeof(sh));
		pos += sizeof(sh);
		pad = sr_pad8(sh.length);
		if ((uint64_t)sh.length + pad > len - pos)
			return VERR(v, SR_E_LENGTH, pos - 4, "section %u length %u runs past the "
				    "data", i, sh.length);
		if (!all_zero(data + pos + sh.length, pad))
			return VERR(v, SR_E_PADDING, pos + sh.length, "section %u padding not zero",
				    i);
		for (k = 0; k < n && vsec_specs[k].kind != sh.kind; k++)
			;
		if (k == n) {
			if (!(sh.kind & SR_VSEC_OPTIONAL))
				return VERR(v, SR_E_TYPE, pos - 8, "section %u: unknown mandatory "
					    "kind 0x%x (state %u.%u, this reader %u.%u)", i, sh.kind,
					    s->major, s->minor, SR_VIRTIO_VERSION_MAJOR,
					    SR_VIRTIO_VERSION_MINOR);
			s->skipped++;
		} else {
			if (vsec_specs[k].only && vsec_specs[k].only != t->id)
				return VERR(v, SR_E_RANGE, pos - 8, "section %u: %s does not belong "
					    "in a %s", i, vsec_specs[k].name, t->name);
			if (seen & (1u << k))
				return VERR(v, SR_E_DUPLICATE, pos - 8, "section %u: second %s",
					    i, vsec_specs[k].name);
			seen |= 1u << k;
			if (decode_section(v, s, at, i, sh.kind, data + pos, sh.length, pos))
				return -1;
		}
		pos += sh.length + pad;
	}
	if (pos != len)
		return VERR(v, SR_E_LENGTH, pos, "%zu bytes after the last section", len - pos);
	if (!at->tr)
		return VERR(v, SR_E_MISSING, 4, "no TRANSPORT section");
	if (!at->pci)
		return VERR(v, SR_E_MISSING, 4, "no PCI section");
	if (t->id == SR_VIRTIO_ID_BLOCK && !at->blk)
		return VERR(v, SR_E_MISSING, 4, "no BLK section");
	return 0;
}

/* ------------------------------------------------------------ checks */

/* [gpa, gpa + n) inside one RAM region of the domain. */
static bool in_ram(const struct sr_device_env *env, uint64_t gpa, uint64_t n)
{
	for (unsigned i = 0; i < env->nregions; i++) {
		const struct sr_region *r = &env->regions[i];

		if ((r->flags & SR_REGION_F_RAM) && gpa >= r->gpa && n <= r->size &&
		    gpa - r->gpa <= r->size - n)
			return true;
	}
	return false;
}

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int check_vector(struct vctx *v, const struct sr_virtio_state *s, size_t off,
			const char *what, uint16_t vec)
{
	uint16_t n = s->has_msix ? s->msix.table_size : 0;

	if (vec != SR_VIRTIO_NO_VECTOR && vec >= n)
		return VERR(v, SR_E_RANGE, off, "%s 0x%x: %s", what, vec, n ?
			    "beyond the MSI-X table" : "no MSI-X capability (0xffff expected)");
	return 0;
}

#define QOFF(i, f) (at->tr + sizeof(struct sr_virtio_transport) + \
		    (i) * sizeof(struct sr_virtio_queue) + offsetof(struct sr_virtio_queue, f))

static int check_queue(struct vctx *v, const struct sr_virtio_state *s, const struct vsecs *at,
		       unsigned i)
{
	const struct sr_virtio_queue *q = &s->q[i];
	bool event_idx = s->tr.driver_features & BIT(SR_VIRTIO_F_EVENT_IDX);
	const struct { const char *name; uint64_t gpa, len; unsigned align; size_t off; } ring[3] = {
		{ "descriptor table", q->desc, 16ull * q->size, 16, QOFF(i, desc) },
		{ "available ring", q->avail, 6 + 2ull * q->size, 2, QOFF(i, avail) },
		{ "used ring", q->used, 6 + 8ull * q->size, 4, QOFF(i, used) },
	};
	uint16_t inflight;

	if (!is_pow2(q->max_size) || q->max_size > SR_VIRTIO_QUEUE_SIZE_MAX)
		return VERR(v, SR_E_RANGE, QOFF(i, max_size), "queue %u max_size %u is not a "
			    "power of two in 1..%u", i, q->max_size, SR_VIRTIO_QUEUE_SIZE_MAX);
	if (!is_pow2(q->size) || q->size > q->max_size)
		return VERR(v, SR_E_RANGE, QOFF(i, size), "queue %u size %u is not a power of two "
			    "in 1..%u (max_size)", i, q->size, q->max_size);
	if (check_vector(v, s, QOFF(i, msix_vector), "queue msix_vector", q->msix_vector))
		return -1;
	if (q->ready > 1)
		return VERR(v, SR_E_RANGE, QOFF(i, ready), "queue %u ready %u", i, q->ready);
	if (q->flags & ~SR_VQ_F_SIGNALLED)
		return VERR(v, SR_E_RANGE, QOFF(i, flags), "queue %u flags 0x%x", i, q->flags);
	if (q->used_flags & ~SR_VRING_USED_F_NO_NOTIFY)
		return VERR(v, SR_E_RANGE, QOFF(i, used_flags), "queue %u used_flags 0x%x", i,
			    q->used_flags);
	if (q->rsvd)
		return VERR(v, SR_E_PADDING, QOFF(i, rsvd), "queue %u rsvd not zero", i);
	if (!event_idx && (q->flags & SR_VQ_F_SIGNALLED))
		return VERR(v, SR_E_RANGE, QOFF(i, flags), "queue %u: SIGNALLED without EVENT_IDX "
			    "negotiated", i);
	if (!event_idx && q->avail_event)
		return VERR(v, SR_E_RANGE, QOFF(i, avail_event), "queue %u avail_event %u without "
			    "EVENT_IDX negotiated", i, q->avail_event);
	if (!q->ready) {
		if (q->last_avail_idx || q->last_used_idx || q->signalled_used || q->used_flags ||
		    q->avail_event || q->flags)
			return VERR(v, SR_E_RANGE, QOFF(i, last_avail_idx), "queue %u is not ready "
				    "but has been used (indices %u/%u)", i, q->last_avail_idx,
				    q->last_used_idx);
		return 0;
	}
	if (!(s->tr.status & SR_VIRTIO_S_FEATURES_OK))
		return VERR(v, SR_E_RANGE, QOFF(i, ready), "queue %u ready before FEATURES_OK", i);
	for (unsigned k = 0; k < 3; k++) {
		if (ring[k].gpa & (ring[k].align - 1))
			return VERR(v, SR_E_RANGE, ring[k].off, "queue %u %s at 0x%llx is not "
				    "aligned to %u", i, ring[k].name,
				    (unsigned long long)ring[k].gpa, ring[k].align);
		if (!in_ram(v->env, ring[k].gpa, ring[k].len))
			return VERR(v, SR_E_RANGE, ring[k].off, "queue %u %s 0x%llx+%llu is outside "
				    "guest RAM", i, ring[k].name, (unsigned long long)ring[k].gpa,
				    (unsigned long long)ring[k].len);
	}
	for (unsigned a = 0; a < 3; a++)
		for (unsigned b = a + 1; b < 3; b++)
			if (overlap(ring[a].gpa, ring[a].len, ring[b].gpa, ring[b].len))
				return VERR(v, SR_E_RANGE, ring[b].off, "queue %u %s overlaps its "
					    "%s", i, ring[b].name, ring[a].name);
	inflight = (uint16_t)(q->last_avail_idx - q->last_used_idx);
	if (inflight > q->size)
		return VERR(v, SR_E_RANGE, QOFF(i, last_avail_idx), "queue %u last_avail_idx %u "
			    "is %u entries past last_used_idx %u, beyond the ring of %u", i,
			    q->last_avail_idx, inflight, q->last_used_idx, q->size);
	/* Every type this reader knows drains at the pause (§6.1.6). */
	if (inflight)
		return VERR(v, SR_E_RANGE, QOFF(i, last_avail_idx), "queue %u has %u requests in "
			    "flight (last_avail_idx %u, last_used_idx %u): not drained", i,
			    inflight, q->last_avail_idx, q->last_used_idx);
	return 0;
}

#define TOFF(f) (at->tr + offsetof(struct sr_virtio_transport, f))

static int check_transport(struct vctx *v, const struct virtio_type *t,
			   const struct sr_virtio_state *s, const struct vsecs *at)
{
	const struct sr_virtio_transport *tr = &s->tr;
	uint64_t known = TRANSPORT_FEATURES | t->features, extra;
	uint8_t st = tr->status;

	if (tr->num_queues > t->max_queues)
		return VERR(v, SR_E_RANGE, TOFF(num_queues), "num_queues %u, a %s has at most %u",
			    tr->num_queues, t->name, t->max_queues);
	if ((extra = tr->device_features & ~known))
		return VERR(v, SR_E_RANGE, TOFF(device_features), "device_features bit %d is not "
			    "a %s feature this reader knows", __builtin_ctzll(extra), t->name);
	if (!(tr->device_features & BIT(SR_VIRTIO_F_VERSION_1)))
		return VERR(v, SR_E_RANGE, TOFF(device_features), "device_features lack VERSION_1");
	if ((extra = tr->driver_features & ~tr->device_features))
		return VERR(v, SR_E_RANGE, TOFF(driver_features), "driver_features bit %d was not "
			    "offered", __builtin_ctzll(extra));
	if (tr->num_queues > 1 && !(tr->device_features & BIT(SR_VIRTIO_BLK_F_MQ)))
		return VERR(v, SR_E_RANGE, TOFF(num_queues), "%u queues without MQ offered",
			    tr->num_queues);
	if (st & ~(SR_VIRTIO_S_ACKNOWLEDGE | SR_VIRTIO_S_DRIVER | SR_VIRTIO_S_DRIVER_OK |
		   SR_VIRTIO_S_FEATURES_OK | SR_VIRTIO_S_NEEDS_RESET | SR_VIRTIO_S_FAILED))
		return VERR(v, SR_E_RANGE, TOFF(status), "status 0x%x has unknown bits", st);
	if ((st & SR_VIRTIO_S_FEATURES_OK) &&
	    (st & (SR_VIRTIO_S_ACKNOWLEDGE | SR_VIRTIO_S_DRIVER)) !=
	    (SR_VIRTIO_S_ACKNOWLEDGE | SR_VIRTIO_S_DRIVER))
		return VERR(v, SR_E_RANGE, TOFF(status), "status 0x%x: FEATURES_OK without "
			    "ACKNOWLEDGE and DRIVER", st);
	if ((st & SR_VIRTIO_S_DRIVER_OK) && !(st & SR_VIRTIO_S_FEATURES_OK))
		return VERR(v, SR_E_RANGE, TOFF(status), "status 0x%x: DRIVER_OK without "
			    "FEATURES_OK", st);
	if ((st & SR_VIRTIO_S_FEATURES_OK) && !(tr->driver_features & BIT(SR_VIRTIO_F_VERSION_1)))
		return VERR(v, SR_E_RANGE, TOFF(driver_features), "FEATURES_OK without VERSION_1 "
			    "accepted");
	if (tr->isr & ~3u)
		return VERR(v, SR_E_RANGE, TOFF(isr), "isr 0x%x has unknown bits", tr->isr);
	if (check_vector(v, s, TOFF(config_msix_vector), "config_msix_vector",
			 tr->config_msix_vector))
		return -1;
	if (!all_zero(tr->rsvd, sizeof(tr->rsvd)))
		return VERR(v, SR_E_PADDING, TOFF(rsvd), "TRANSPORT rsvd not zero");
	for (unsigned i = 0; i < tr->num_queues; i++)
		if (check_queue(v, s, at, i))
			return -1;
	return 0;
}

#define POFF(f) (at->pci + offsetof(struct sr_virtio_pci, f))

static int check_pci(struct vctx *v, const struct sr_virtio_state *s, const struct vsecs *at)
{
	const struct sr_virtio_pci *p = &s->pci;

	if (p->command & ~SR_PCI_CMD_KNOWN)
		return VERR(v, SR_E_RANGE, POFF(command), "PCI command 0x%x has unknown bits",
			    p->command);
	if (p->bus || p->function)
		return VERR(v, SR_E_RANGE, POFF(bus), "PCI %02x:%02x.%x: only bus 0, function 0",
			    p->bus, p->slot, p->function);
	if (p->slot < 1 || p->slot > 31)
		return VERR(v, SR_E_RANGE, POFF(slot), "PCI slot %u, not 1..31", p->slot);
	if (v->env->slots & (1u << p->slot))
		return VERR(v, SR_E_DUPLICATE, POFF(slot), "PCI slot %u taken by an earlier "
			    "device", p->slot);
	if (p->interrupt_pin > 4)
		return VERR(v, SR_E_RANGE, POFF(interrupt_pin), "PCI interrupt_pin %u",
			    p->interrupt_pin);
	if (!all_zero(p->rsvd, sizeof(p->rsvd)))
		return VERR(v, SR_E_PADDING, POFF(rsvd), "PCI rsvd not zero");
	return 0;
}

static int check_msix(struct vctx *v, const struct sr_virtio_state *s, const struct vsecs *at)
{
	const struct sr_virtio_msix *m = &s->msix;
	uint16_t n = m->table_size;

	if (!s->has_msix)
		return 0;
	if (m->control & ~(SR_MSIX_CTRL_ENABLE | SR_MSIX_CTRL_MASKALL))
		return VERR(v, SR_E_RANGE, at->msix + 2, "MSIX control 0x%x", m->control);
	if (m->rsvd)
		return VERR(v, SR_E_PADDING, at->msix + 4, "MSIX rsvd not zero");
	for (unsigned i = 0; i < n; i++)
		if (s->msix_table[i].vector_control & ~1u)
			return VERR(v, SR_E_RANGE, at->msix + 8 + 16 * i + 12, "MSIX entry %u "
				    "vector_control 0x%x", i, s->msix_table[i].vector_control);
	if (n < 64 && (s->msix_pba >> n))
		return VERR(v, SR_E_RANGE, at->msix + 8 + 16 * n, "MSIX pending bit beyond the "
			    "%u vectors", n);
	return 0;
}

#define BOFF(f) (at->blk + offsetof(struct sr_virtio_blk, f))

static int check_blk(struct vctx *v, const struct sr_virtio_state *s, const struct vsecs *at,
		     unsigned *disk_slot)
{
	const struct sr_virtio_blk *b = &s->blk;
	const struct sr_device_env *env = v->env;
	uint64_t cfg_cap;
	uint16_t cfg_nq;
	bool ro = s->tr.device_features & BIT(SR_VIRTIO_BLK_F_RO);
	unsigned d;

	if (b->rsvd || b->rsvd2)
		return VERR(v, SR_E_PADDING, b->rsvd ? BOFF(rsvd) : BOFF(rsvd2), "BLK rsvd not zero");
	for (d = 0; d < env->ndisks && env->disks[d].disk != b->disk; d++)
		;
	if (d == env->ndisks)
		return VERR(v, SR_E_SEQUENCE, BOFF(disk), "disk %u: no DISK record before this "
			    "device", b->disk);
	if (env->disks[d].used)
		return VERR(v, SR_E_DUPLICATE, BOFF(disk), "disk %u is an earlier device's",
			    b->disk);
	if (b->capacity > env->disks[d].size / 512)
		return VERR(v, SR_E_RANGE, BOFF(capacity), "capacity %llu sectors, disk %u has "
			    "%llu bytes", (unsigned long long)b->capacity, b->disk,
			    (unsigned long long)env->disks[d].size);
	if (ro != !!(env->disks[d].flags & SR_DISK_F_READ_ONLY))
		return VERR(v, SR_E_RANGE, TOFF(device_features), "RO %s but disk %u is %s",
			    ro ? "offered" : "not offered", b->disk,
			    ro ? "writable" : "read-only");
	memcpy(&cfg_cap, b->config, 8);
	memcpy(&cfg_nq, b->config + 34, 2);
	if (cfg_cap != b->capacity)
		return VERR(v, SR_E_RANGE, BOFF(config), "config capacity %llu, BLK capacity %llu",
			    (unsigned long long)cfg_cap, (unsigned long long)b->capacity);
	if (b->config[32] > 1)
		return VERR(v, SR_E_RANGE, BOFF(config) + 32, "config writeback %u", b->config[32]);
	if ((s->tr.device_features & BIT(SR_VIRTIO_BLK_F_MQ)) && cfg_nq != s->tr.num_queues)
		return VERR(v, SR_E_RANGE, BOFF(config) + 34, "config num_queues %u, TRANSPORT "
			    "has %u", cfg_nq, s->tr.num_queues);
	if (!all_zero(b->config + 60, 4))
		return VERR(v, SR_E_PADDING, BOFF(config) + 60, "config bytes 60..63 not zero");
	*disk_slot = d;
	return 0;
}

static int check_virtio(struct vctx *v, uint32_t version, const void *data, size_t len,
			struct sr_virtio_state *s)
{
	struct vsecs at;
	unsigned disk = SR_MAX_DISKS;

	if (decode_virtio(v, version, data, len, s, &at))
		return -1;
	/* MSIX first: the transport's vectors are checked against its table. */
	if (check_msix(v, s, &at) || check_transport(v, type_by_id(s->device_id), s, &at) ||
	    check_pci(v, s, &at))
		return -1;
	if (s->device_id == SR_VIRTIO_ID_BLOCK && check_blk(v, s, &at, &disk))
		return -1;
	/* Every check passed: the device takes its slot and disk. */
	v->env->slots |= 1u << s->pci.slot;
	if (disk < SR_MAX_DISKS)
		v->env->disks[disk].used = true;
	return 0;
}

/* serial8250, version 1 (§6): the 16550A UART. */
static int check_serial(struct vctx *v, uint32_t version, const uint8_t *st, size_t len)
{
	uint16_t head, count;

	if (version != 1 || v->instance != 0 || len != SR_SERIAL8250_LEN)
		return sr_set_error(v->err, SR_E_RANGE, v->env->index, v->env->offset,
				    "serial8250: version %u instance %u, %zu bytes; the spec has "
				    "version 1, instance 0, %u bytes", version, v->instance, len,
				    SR_SERIAL8250_LEN);
	memcpy(&head, st + 12, 2);
	memcpy(&count, st + 14, 2);
	if (st[10] || st[11])
		return sr_set_error(v->err, SR_E_RANGE, v->env->index, v->env->offset,
				    "serial8250: rsvd set");
	if (head >= 256 || count > 256)
		return sr_set_error(v->err, SR_E_RANGE, v->env->index, v->env->offset,
				    "serial8250: rx_head %u, rx_count %u (256 bytes)", head, count);
	return 0;
}

void sr_device_env_init(struct sr_device_env *env, const struct sr_region *regions,
			unsigned nregions)
{
	memset(env, 0, sizeof(*env));
	env->regions = regions;
	env->nregions = nregions;
	env->index = SR_NO_INDEX;
}

int sr_device_validate(struct sr_device_env *env, const char *name, uint32_t version,
		       uint32_t instance, const void *data, size_t len,
		       struct sr_virtio_state *out, bool *is_virtio, struct sr_error *err)
{
	struct vctx v = { .env = env, .err = err, .name = name, .instance = instance };
	struct sr_virtio_state local;

	if (is_virtio)
		*is_virtio = false;
	if (!strcmp(name, "serial8250"))
		return check_serial(&v, version, data, len);
	if (strncmp(name, "virtio-", 7))
		return 0;		/* a model without a specified layout */
	if (is_virtio)
		*is_virtio = true;
	return check_virtio(&v, version, data, len, out ? out : &local);
}

int sr_virtio_view(const struct sr_record *rec, struct sr_virtio_state *s, struct sr_error *err)
{
	struct sr_device_env env;
	struct vsecs at;
	const void *data;
	size_t len;
	const struct sr_rec_device *d = sr_device_view(rec, &data, &len);
	struct vctx v = { .env = &env, .err = err, .name = d->name, .instance = d->instance };

	sr_device_env_init(&env, NULL, 0);
	env.index = rec->index;
	env.offset = rec->offset;
	return decode_virtio(&v, d->version, data, len, s, &at);
}

/* ------------------------------------------------------------ DISK */

#define DERR(env, err, d, off, code, fmt, ...)					\
	sr_set_error(err, code, (env)->index, (env)->offset, "disk %u: body byte %llu: " fmt, \
		     d, (unsigned long long)(off), ##__VA_ARGS__)

static int check_disk_id(struct sr_device_env *env, struct sr_error *err, uint32_t d,
			 const struct sr_disk_id *id, size_t off, const char *what)
{
	if (id->hash_blocks > SR_DISK_HASH_BLOCKS_MAX)
		return DERR(env, err, d, off + offsetof(struct sr_disk_id, hash_blocks), SR_E_RANGE,
			    "%s hash_blocks %u, at most %u", what, id->hash_blocks,
			    SR_DISK_HASH_BLOCKS_MAX);
	if (id->hash_blocks ? !is_pow2(id->hash_block_size) ||
	    id->hash_block_size < SR_DISK_HASH_BS_MIN || id->hash_block_size > SR_DISK_HASH_BS_MAX :
	    id->hash_block_size != 0)
		return DERR(env, err, d, off + offsetof(struct sr_disk_id, hash_block_size),
			    SR_E_RANGE, "%s hash_block_size %u with %u blocks", what,
			    id->hash_block_size, id->hash_blocks);
	return 0;
}

static int check_path(struct sr_device_env *env, struct sr_error *err, uint32_t d,
		      const uint8_t *p, uint16_t n, size_t off, const char *what)
{
	if (p[0] != '/')
		return DERR(env, err, d, off, SR_E_RANGE, "%s is not absolute", what);
	if (memchr(p, 0, n))
		return DERR(env, err, d, off, SR_E_RANGE, "%s has a NUL byte", what);
	return 0;
}

#define DOFF(f) offsetof(struct sr_rec_disk, f)
#define IDOFF(f) (DOFF(snap_id) + offsetof(struct sr_disk_id, f))

/*
 * A snapshot (§3.8.3) is a copy of a writable disk as it was at the pause:
 * hashed as the disk was, of its size and hash, and another file.
 */
static int check_snapshot(struct sr_device_env *env, struct sr_error *err,
			  const struct sr_rec_disk *r, const uint8_t *paths)
{
	const struct sr_disk_id *id = &r->id, *sn = &r->snap_id;

	if (r->flags & SR_DISK_F_READ_ONLY)
		return DERR(env, err, r->disk, DOFF(flags), SR_E_RANGE, "SNAPSHOT on a read-only "
			    "disk");
	if (sn->hash_blocks != id->hash_blocks || sn->hash_block_size != id->hash_block_size)
		return DERR(env, err, r->disk, IDOFF(hash_blocks), SR_E_RANGE, "snap_id hashed as "
			    "%u x %u bytes, id as %u x %u", sn->hash_blocks, sn->hash_block_size,
			    id->hash_blocks, id->hash_block_size);
	if (sn->size != id->size)
		return DERR(env, err, r->disk, IDOFF(size), SR_E_RANGE, "snap_id size %llu, the "
			    "disk's %llu: not a copy of it", (unsigned long long)sn->size,
			    (unsigned long long)id->size);
	if (sn->hash != id->hash)
		return DERR(env, err, r->disk, IDOFF(hash), SR_E_RANGE, "snap_id hash 0x%016llx, "
			    "the disk's 0x%016llx: not a copy of it", (unsigned long long)sn->hash,
			    (unsigned long long)id->hash);
	if (r->snap_path_len == r->path_len && !memcmp(paths, paths + r->path_len, r->path_len))
		return DERR(env, err, r->disk, sizeof(*r) + r->path_len, SR_E_RANGE, "snap_path is "
			    "the disk's own path");
	return 0;
}

int sr_disk_rec_check(struct sr_device_env *env, const void *body, uint32_t len,
		      struct sr_error *err)
{
	struct sr_rec_disk r;
	const uint8_t *paths = (const uint8_t *)body + sizeof(r);
	bool snap;

	memcpy(&r, body, sizeof(r));
	snap = r.flags & SR_DISK_F_SNAPSHOT;
	if (r.disk >= SR_MAX_DISKS)
		return DERR(env, err, r.disk, DOFF(disk), SR_E_RANGE, "index, not 0..%u",
			    SR_MAX_DISKS - 1);
	for (unsigned i = 0; i < env->ndisks; i++)
		if (env->disks[i].disk == r.disk)
			return DERR(env, err, r.disk, DOFF(disk), SR_E_DUPLICATE, "a second DISK "
				    "record with this index");
	if (r.flags & ~SR_DISK_F_KNOWN)
		return DERR(env, err, r.disk, DOFF(flags), SR_E_RANGE, "flags 0x%x", r.flags);
	if (r.cache > SR_DISK_CACHE_NONE)
		return DERR(env, err, r.disk, DOFF(cache), SR_E_RANGE, "cache %u", r.cache);
	if (r.snap_method > SR_SNAP_COPY || !snap != !r.snap_method)
		return DERR(env, err, r.disk, DOFF(snap_method), SR_E_RANGE, "snap_method %u %s "
			    "SNAPSHOT", r.snap_method, snap ? "with" : "without");
	if (r.path_len < 1 || r.path_len > SR_DISK_PATH_MAX)
		return DERR(env, err, r.disk, DOFF(path_len), SR_E_RANGE, "path_len %u, not 1..%u",
			    r.path_len, SR_DISK_PATH_MAX);
	if (snap ? r.snap_path_len < 1 || r.snap_path_len > SR_DISK_PATH_MAX : r.snap_path_len)
		return DERR(env, err, r.disk, DOFF(snap_path_len), SR_E_RANGE, "snap_path_len %u "
			    "%s SNAPSHOT", r.snap_path_len, snap ? "with" : "without");
	if (r.rsvd)
		return DERR(env, err, r.disk, DOFF(rsvd), SR_E_PADDING, "rsvd not zero");
	if (!snap && (r.snap_ns || !all_zero(&r.snap_id, sizeof(r.snap_id))))
		return DERR(env, err, r.disk, r.snap_ns ? DOFF(snap_ns) : DOFF(snap_id), SR_E_RANGE,
			    "snapshot fields set without SNAPSHOT");
	if (len != sizeof(r) + r.path_len + r.snap_path_len)
		return DERR(env, err, r.disk, DOFF(path_len), SR_E_LENGTH, "body of %u bytes, "
			    "%zu for paths of %u and %u bytes", len,
			    sizeof(r) + r.path_len + r.snap_path_len, r.path_len, r.snap_path_len);
	if (check_disk_id(env, err, r.disk, &r.id, DOFF(id), "id") ||
	    (snap && check_disk_id(env, err, r.disk, &r.snap_id, DOFF(snap_id), "snap_id")) ||
	    check_path(env, err, r.disk, paths, r.path_len, sizeof(r), "path") ||
	    (snap && check_path(env, err, r.disk, paths + r.path_len, r.snap_path_len,
				sizeof(r) + r.path_len, "snap_path")))
		return -1;
	if (snap && check_snapshot(env, err, &r, paths))
		return -1;
	if (env->ndisks == SR_MAX_DISKS)	/* unreachable: indices are unique and < 16 */
		return DERR(env, err, r.disk, 0, SR_E_RANGE, "more than %u disks", SR_MAX_DISKS);
	env->disks[env->ndisks].disk = r.disk;
	env->disks[env->ndisks].flags = r.flags;
	env->disks[env->ndisks].size = r.id.size;
	env->disks[env->ndisks++].used = false;
	return 0;
}

int sr_write_disk(struct sr_writer *w, const struct sr_disk_info *d, struct sr_error *err)
{
	struct sr_rec_disk r = {
		.disk = d->disk, .flags = d->flags, .cache = d->cache,
		.snap_method = d->snap_method, .snap_ns = d->snap_ns, .id = d->id,
		.snap_id = d->snap_id,
	};
	size_t pl = strnlen(d->path, sizeof(d->path));
	size_t sl = strnlen(d->snap_path, sizeof(d->snap_path));
	struct iovec iov[3] = { { &r, sizeof(r) }, { (void *)d->path, pl },
				{ (void *)d->snap_path, sl } };

	if (pl > SR_DISK_PATH_MAX || sl > SR_DISK_PATH_MAX)
		return sr_set_error(err, SR_E_INVAL, sr_writer_records(w), sr_writer_offset(w),
				    "disk %u: path longer than %u bytes", d->disk, SR_DISK_PATH_MAX);
	r.path_len = (uint16_t)pl;
	r.snap_path_len = (uint16_t)sl;
	return sr_write_record_iov(w, SR_REC_DISK, iov, 3, err);
}

void sr_disk_view(const struct sr_record *rec, struct sr_disk_info *d)
{
	struct sr_rec_disk r;
	const char *paths = (const char *)rec->body + sizeof(r);

	memcpy(&r, rec->body, sizeof(r));
	memset(d, 0, sizeof(*d));
	d->disk = r.disk;
	d->flags = r.flags;
	d->cache = r.cache;
	d->snap_method = r.snap_method;
	d->snap_ns = r.snap_ns;
	d->id = r.id;
	d->snap_id = r.snap_id;
	memcpy(d->path, paths, r.path_len);
	memcpy(d->snap_path, paths + r.path_len, r.snap_path_len);
}
