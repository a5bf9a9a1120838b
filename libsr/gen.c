/* SPDX-License-Identifier: MIT */
/*
 * Synthetic images: guest memory with a chosen mix of zero, text-like and
 * random pages, written through the same record writers sr-save uses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sr.h"
#include "internal.h"

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_page(uint8_t *pg, uint64_t pfn, uint64_t seed, const struct sr_gen_params *p)
{
	static const char *const words[] = {
		"save ", "restore ", "page ", "vcpu ", "kvm ", "record ", "the ", "of ",
		"dirty ", "clock ", "stream ", "batch ", "\n", "memory ", "guest ", "0x1f ",
	};
	uint64_t s = seed ^ (pfn * 0x2545f4914f6cdd1dull);
	unsigned pick = splitmix(&s) % 100;

	if (pick < p->pct_zero) {
		memset(pg, 0, SR_PAGE_SIZE);
	} else if (pick < p->pct_zero + p->pct_text) {
		size_t o = 0;

		while (o < SR_PAGE_SIZE) {
			const char *w = words[splitmix(&s) & 15];
			size_t l = strlen(w);

			if (l > SR_PAGE_SIZE - o)
				l = SR_PAGE_SIZE - o;
			memcpy(pg + o, w, l);
			o += l;
		}
	} else {
		for (size_t o = 0; o < SR_PAGE_SIZE; o += 8) {
			uint64_t v = splitmix(&s);

			memcpy(pg + o, &v, 8);
		}
	}
}

/* The first pfn of the untouched tail (pct_hole). */
static uint64_t hole_start(uint64_t npages, const struct sr_gen_params *p)
{
	return p->pct_hole >= 100 ? 0 : npages - npages * p->pct_hole / 100;
}

void sr_gen_fill(void *mem, uint64_t bytes, const struct sr_gen_params *p)
{
	uint64_t npages = bytes / SR_PAGE_SIZE, hole = hole_start(npages, p);

	for (uint64_t pfn = 0; pfn < npages; pfn++)
		if (pfn < hole)
			fill_page((uint8_t *)mem + pfn * SR_PAGE_SIZE, pfn, p->seed, p);
		else
			memset((uint8_t *)mem + pfn * SR_PAGE_SIZE, 0, SR_PAGE_SIZE);
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* Deterministic block contents with the fields a reader checks made valid. */
static void *make_block(uint32_t kind, uint32_t *len, uint64_t *seed)
{
	const struct sr_block_spec *s = sr_block_spec_find(kind);
	uint32_t l = s->min_len;
	uint8_t *b;

	if (kind == SR_BLK_CPUID)
		l = 8 + 4 * 40;
	else if (kind == SR_BLK_MSRS)
		l = 8 + 12 * 16;
	b = malloc(l);
	if (!b)
		return NULL;
	for (uint32_t o = 0; o < l; o++)
		b[o] = (uint8_t)splitmix(seed);
	switch (kind) {
	case SR_BLK_CPUID:
	case SR_BLK_MSRS: {
		struct sr_blk_count c = { .count = (l - 8) / s->granule };

		memcpy(b, &c, sizeof(c));
		/* Reserved fields of each entry are zero, as KVM leaves them. */
		for (uint32_t i = 0; i < c.count; i++)
			if (kind == SR_BLK_CPUID)
				memset(b + 8 + i * 40 + 28, 0, 12);
			else
				memset(b + 8 + i * 16 + 4, 0, 4);
		break;
	}
	case SR_BLK_MP_STATE:
		memset(b, 0, 4);
		break;
	case SR_BLK_REGS:
		b[136] |= 2;
		break;
	case SR_BLK_TSC_KHZ: {
		struct sr_blk_tsc_khz t = { .tsc_khz = 2400000 };

		memcpy(b, &t, sizeof(t));
		break;
	}
	}
	*len = l;
	return b;
}

static int write_context(struct sr_writer *w, uint32_t type, uint32_t id, uint32_t scope,
			 uint64_t seed, struct sr_error *err)
{
	struct sr_block blk[32];
	unsigned n = 0;
	int rc;

	for (unsigned i = 0; i < sr_block_spec_count; i++) {
		if (sr_block_specs[i].scope != scope)
			continue;
		blk[n].kind = sr_block_specs[i].kind;
		blk[n].data = make_block(blk[n].kind, &blk[n].length, &seed);
		if (!blk[n].data) {
			rc = sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, 0, "context block");
			goto out;
		}
		n++;
	}
	rc = sr_write_context(w, type, id, blk, n, err);
out:
	for (unsigned i = 0; i < n; i++)
		free((void *)blk[i].data);
	return rc;
}

/*
 * RAM in p->regions regions: page i of mem is in region i / per (the last
 * takes the rest), and region r starts at pfn 2 * r * per, so each region
 * is followed by a gap of its size.
 */
static unsigned gen_regions(const struct sr_gen_params *p)
{
	return p->regions ? p->regions : 1;
}

static uint64_t gen_region_of(const struct sr_gen_params *p, uint64_t npages, uint64_t i)
{
	uint64_t per = npages / gen_regions(p), r = i / per;

	return r < gen_regions(p) ? r : gen_regions(p) - 1;
}

static uint64_t gen_pfn(const struct sr_gen_params *p, uint64_t npages, uint64_t i)
{
	return gen_region_of(p, npages, i) * (npages / gen_regions(p)) + i;
}

/* Zero runs over pages [from, to) of mem: a run never leaves its region. */
static int add_zero_runs(struct sr_batch *b, const struct sr_gen_params *p, uint64_t npages,
			 uint64_t from, uint64_t to)
{
	uint64_t per = npages / gen_regions(p);

	while (from < to) {
		uint64_t r = gen_region_of(p, npages, from);
		uint64_t end = r + 1 == gen_regions(p) ? npages : (r + 1) * per;

		if (end > to)
			end = to;
		if (sr_batch_add_zero_run(b, gen_pfn(p, npages, from), end - from) < 0)
			return -1;
		from = end;
	}
	return 0;
}

static int send_pages(struct sr_writer *w, struct sr_batch *b, const struct sr_gen_params *p,
		      const uint8_t *mem, const uint64_t *pfns, uint64_t n, struct sr_error *err)
{
	uint64_t npages = p->mem_bytes / SR_PAGE_SIZE;

	for (uint64_t i = 0; i < n; i++) {
		if (sr_batch_add(b, gen_pfn(p, npages, pfns[i]),
				 mem + pfns[i] * SR_PAGE_SIZE) == SR_BATCH_MAX_PAGES &&
		    sr_write_page_batch(w, b, err))
			return -1;
	}
	return sr_write_page_batch(w, b, err);
}

/* Drops the pfns the parameters leave out; returns how many are left. */
static uint64_t drop_skipped(uint64_t *pfns, uint64_t n, const struct sr_gen_params *p)
{
	uint64_t k = 0;

	for (uint64_t i = 0; i < n; i++)
		if (pfns[i] < p->skip_first || pfns[i] - p->skip_first >= p->skip_pages)
			pfns[k++] = pfns[i];
	return k;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static const char *const gen_break_names[] = {
#define SR_X_ROW(name, text) [SR_GEN_BREAK_##name] = text,
	SR_GEN_BREAKS(SR_X_ROW)
#undef SR_X_ROW
};

int sr_gen_break_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof(gen_break_names) / sizeof(gen_break_names[0]); i++)
		if (!strcmp(gen_break_names[i], name))
			return (int)i;
	return -1;
}

#define GEN_QSIZE	256u
#define GEN_DISK_SIZE	(64ull << 20)

void sr_gen_virtio(struct sr_virtio_state *s, uint32_t device_id, uint32_t instance,
		   uint8_t slot, uint64_t ring_base, uint32_t disk, uint64_t disk_size)
{
	bool blk = device_id == SR_VIRTIO_ID_BLOCK;
	uint64_t feat = 1ull << SR_VIRTIO_F_VERSION_1 | 1ull << SR_VIRTIO_F_EVENT_IDX |
			(blk ? 1ull << 9 /* FLUSH */ | 1ull << 2 /* SEG_MAX */ : 0);

	memset(s, 0, sizeof(*s));
	s->device_id = device_id;
	s->instance = instance;
	s->tr.device_features = feat;
	s->tr.driver_features = feat;
	s->tr.num_queues = 1;
	s->tr.config_msix_vector = SR_VIRTIO_NO_VECTOR;
	s->tr.status = SR_VIRTIO_S_ACKNOWLEDGE | SR_VIRTIO_S_DRIVER | SR_VIRTIO_S_FEATURES_OK |
		       SR_VIRTIO_S_DRIVER_OK;
	s->tr.isr = 1;
	s->q[0] = (struct sr_virtio_queue){
		.desc = ring_base, .avail = ring_base + SR_PAGE_SIZE,
		.used = ring_base + 2 * SR_PAGE_SIZE, .size = GEN_QSIZE, .max_size = GEN_QSIZE,
		.last_avail_idx = 1000 + instance, .last_used_idx = 1000 + instance,
		.signalled_used = 999 + instance, .msix_vector = SR_VIRTIO_NO_VECTOR,
		.avail_event = 1000 + instance, .ready = 1, .flags = SR_VQ_F_SIGNALLED,
	};
	s->pci = (struct sr_virtio_pci){
		.bar = { 0xc0000000u + slot * 0x10000u, 0, 0, 0, 0xc0008000u + slot * 0x10000u },
		.command = 0x0007, .slot = slot, .interrupt_pin = 1, .interrupt_line = 10 + slot % 6,
	};
	if (blk) {
		uint64_t cap = disk_size / 512;
		uint32_t seg_max = GEN_QSIZE - 2;

		s->blk.capacity = cap;
		s->blk.disk = disk;
		snprintf((char *)s->blk.serial, sizeof(s->blk.serial), "sr-disk%u", disk);
		memcpy(s->blk.config, &cap, 8);
		memcpy(s->blk.config + 12, &seg_max, 4);
	}
}

/* A DISK record for virtio-blk k, with a synthetic identity. */
static void gen_disk(struct sr_disk_info *d, uint32_t k, uint64_t seed, bool bad_path)
{
	memset(d, 0, sizeof(*d));
	d->disk = k;
	d->id = (struct sr_disk_id){ .size = GEN_DISK_SIZE, .dev = 0x803, .ino = 1000 + k,
				     .mtime_ns = 1764400000123456789ull + k, .hash = splitmix(&seed),
				     .hash_blocks = SR_DISK_SAMPLE_BLOCKS,
				     .hash_block_size = SR_DISK_SAMPLE_BS };
	snprintf(d->path, sizeof(d->path), "%s/var/lib/sr/disk%u.img", bad_path ? "." : "", k);
}

/* Disk 0's snapshot, as sr-save -c --disk-snapshot records it; spoilt as p->broken asks. */
static void gen_snapshot(struct sr_disk_info *d, unsigned broken)
{
	d->flags |= SR_DISK_F_SNAPSHOT;
	d->snap_method = SR_SNAP_REFLINK;
	d->snap_ns = 1234567;
	d->snap_id = d->id;
	d->snap_id.ino += 100;
	d->snap_id.mtime_ns += 1000;
	snprintf(d->snap_path, sizeof(d->snap_path), "/var/lib/sr/ckpt.sr.disk%u", d->disk);
	switch (broken) {
	case SR_GEN_BREAK_SNAP_RO:	d->flags |= SR_DISK_F_READ_ONLY; break;
	case SR_GEN_BREAK_SNAP_SIZE:	d->snap_id.size -= 4096; break;
	case SR_GEN_BREAK_SNAP_HASH:	d->snap_id.hash ^= 1; break;
	case SR_GEN_BREAK_SNAP_SAMPLE:	d->snap_id.hash_blocks /= 2; break;
	case SR_GEN_BREAK_SNAP_SELF:	memcpy(d->snap_path, d->path, sizeof(d->path)); break;
	}
}

/* The virtio devices of p (after the DOMAIN's first region's first pages), broken as asked. */
static int gen_devices(struct sr_writer *w, const struct sr_gen_params *p,
		       const struct sr_region *reg, struct sr_error *err)
{
	static struct sr_disk_info disk;
	struct sr_virtio_state s;
	unsigned n = p->blk + p->rng;

	for (unsigned k = 0; k < p->blk; k++) {
		gen_disk(&disk, k, p->seed + k, k == 0 && p->broken == SR_GEN_BREAK_DISK_PATH);
		if (p->snapshot || (p->broken >= SR_GEN_BREAK_SNAP_RO &&
				    p->broken <= SR_GEN_BREAK_SNAP_SELF))
			gen_snapshot(&disk, k ? SR_GEN_BREAK_NONE : p->broken);
		if (sr_write_disk(w, &disk, err))
			return -1;
	}
	for (unsigned k = 0; k < n; k++) {
		bool blk = k < p->blk;
		uint64_t base = reg[0].gpa + 0x10000 + 3ull * SR_PAGE_SIZE * k;
		uint8_t buf[SR_VIRTIO_DATA_MAX + 64];
		ssize_t len;

		sr_gen_virtio(&s, blk ? SR_VIRTIO_ID_BLOCK : SR_VIRTIO_ID_ENTROPY,
			      blk ? k : k - p->blk, (uint8_t)(2 + k), base, k, GEN_DISK_SIZE);
		if (!blk) {
			/* virtio-rng with MSI-X: vector 0 for config changes, 1 for its queue. */
			s.has_msix = true;
			s.msix.table_size = 2;
			s.msix.control = SR_MSIX_CTRL_ENABLE;
			for (unsigned v = 0; v < 2; v++)
				s.msix_table[v] = (struct sr_msix_entry){ .addr = 0xfee00000u,
									  .data = 0x4041 + v };
			s.tr.config_msix_vector = 0;
			s.q[0].msix_vector = 1;
			s.msix_pba = 2;		/* the queue's interrupt pending */
		}
		if (k == 0) {
			struct sr_virtio_queue *q = &s.q[0];

			switch (p->broken) {
			case SR_GEN_BREAK_RING_OUTSIDE:
				q->used = reg[0].gpa + reg[0].size - 1024; break;
			case SR_GEN_BREAK_QSIZE3:	q->size = 3; break;
			case SR_GEN_BREAK_INDEX:	q->last_avail_idx += q->size + 1; break;
			case SR_GEN_BREAK_UNALIGNED:	q->desc += 8; break;
			case SR_GEN_BREAK_INFLIGHT:	q->last_avail_idx++; break;
			case SR_GEN_BREAK_FEATURE:
				s.tr.driver_features |= 1ull << SR_VIRTIO_F_INDIRECT_DESC; break;
			case SR_GEN_BREAK_UNKNOWN_BIT:	s.tr.device_features |= 1ull << 50; break;
			case SR_GEN_BREAK_SLOT:		s.pci.slot = 3; break;
			case SR_GEN_BREAK_NO_DISK:	s.blk.disk = 9; break;
			}
		}
		len = sr_virtio_encode(&s, buf, sizeof(buf) - 64, err);
		if (len < 0)
			return -1;
		if (k == 0 && (p->broken == SR_GEN_BREAK_SECTION || p->broken == SR_GEN_BREAK_OPTIONAL)) {
			/* One more section of 8 bytes, of a kind no reader knows. */
			struct sr_block_hdr h = { .kind = 0x0777u | (p->broken == SR_GEN_BREAK_OPTIONAL ?
								     SR_VSEC_OPTIONAL : 0), .length = 8 };
			uint32_t count;

			memcpy(buf + len, &h, sizeof(h));
			memset(buf + len + sizeof(h), 0x5a, 8);
			len += 16;
			memcpy(&count, buf + 4, 4);
			count++;
			memcpy(buf + 4, &count, 4);
		}
		if (sr_write_device(w, sr_virtio_name(s.device_id),
				    k == 0 && p->broken == SR_GEN_BREAK_VERSION ? 2u << 16 :
				    SR_VIRTIO_VERSION, s.instance, buf, (size_t)len, err))
			return -1;
	}
	return 0;
}

int sr_gen_write(int fd, const struct sr_gen_params *p, void *mem, struct sr_error *err)
{
	struct sr_image_info info = { .flags = p->iterations ? SR_IHDR_F_LIVE : 0,
				      .creator = "sr-gen " SR_LIBRARY_VERSION };
	uint64_t npages = p->mem_bytes / SR_PAGE_SIZE;
	struct sr_rec_domain dom = { .guest_kind = SR_GUEST_TEST, .vcpu_count = p->vcpus,
				     .region_count = gen_regions(p), .boot_entry = 0x100000 };
	struct sr_region reg[SR_MAX_REGIONS];
	uint64_t per = npages / gen_regions(p);
	struct sr_writer *w = NULL;
	struct sr_batch *b = NULL;
	uint64_t *pfns = NULL, seed = p->seed;
	/* A serial8250 v1 state as a quiet UART leaves it: transmitter empty, nothing received. */
	uint8_t serial[SR_SERIAL8250_LEN] = { [4] = 0x60, [5] = 0xb0 };
	int rc = -1;

	for (unsigned r = 0; r < gen_regions(p); r++)
		reg[r] = (struct sr_region){ .gpa = 2 * r * per * SR_PAGE_SIZE,
					     .size = (r + 1 == gen_regions(p) ? npages - r * per : per) *
						     SR_PAGE_SIZE,
					     .flags = SR_REGION_F_RAM, .slot = r };
	strcpy(dom.name, "synthetic");
	for (int i = 0; i < 16; i++)
		dom.uuid[i] = (uint8_t)splitmix(&seed);
	b = sr_batch_new(p->compress, p->iterations ? 0 : SR_BATCH_STABLE_SOURCE);
	pfns = malloc(sizeof(*pfns) * (npages ? npages : 1));
	if (!b || !pfns) {
		sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, 0, "generator buffers");
		goto out;
	}
	w = sr_writer_open(fd, &info, p->writer_flags, err);
	if (!w || sr_write_domain(w, &dom, reg, err))
		goto out;

	for (uint64_t i = 0; i < npages; i++)
		pfns[i] = i;
	sr_batch_reset(b, 0);
	/*
	 * Pages in ascending pfn order, as sr-save sends them; the untouched
	 * tail as two zero runs, as sr-save sends memfd holes.
	 */
	if (send_pages(w, b, p, mem, pfns, drop_skipped(pfns, hole_start(npages, p), p), err))
		goto out;
	if (hole_start(npages, p) < npages) {
		uint64_t h = hole_start(npages, p), half = (npages - h) / 2;

		if (add_zero_runs(b, p, npages, h, h + half) ||
		    add_zero_runs(b, p, npages, h + half, npages) ||
		    sr_write_page_batch(w, b, err))
			goto out;
	}
	for (uint32_t it = 0; it <= p->iterations; it++) {
		uint64_t dirty = p->dirty_pages < npages ? p->dirty_pages : npages;
		struct sr_rec_iteration rec = { .iteration = it, .pages_sent = it ? dirty : npages,
						.pages_dirtied = it < p->iterations ? dirty : 0,
						.flags = it == p->iterations ? SR_ITER_F_FINAL : 0 };

		uint64_t before = sr_writer_offset(w);

		if (it) {
			/* Distinct pfns: a random start and a stride coprime to npages. */
			uint64_t start = splitmix(&seed) % npages;
			uint64_t stride = 1 + splitmix(&seed) % 97;

			while (gcd(stride, npages) != 1)
				stride++;
			for (uint64_t i = 0; i < dirty; i++)
				pfns[i] = (start + i * stride) % npages;
			qsort(pfns, dirty, sizeof(*pfns), cmp_u64);
			for (uint64_t i = 0; i < dirty; i++)
				fill_page((uint8_t *)mem + pfns[i] * SR_PAGE_SIZE, pfns[i],
					  p->seed + it, p);
			sr_batch_reset(b, it);
			if (send_pages(w, b, p, mem, pfns, drop_skipped(pfns, dirty, p), err))
				goto out;
		}
		rec.bytes = sr_writer_offset(w) - before;
		rec.duration_ns = 1000000;	/* synthetic: 1 ms per round */
		if (it > 0 && it < p->iterations) {
			/* Throttled pre-copy rounds, as auto-converge writes them. */
			uint8_t pct[SR_MAX_VCPUS];

			for (uint32_t v = 0; v < p->vcpus; v++)
				pct[v] = (uint8_t)((10 + 10 * it + v) % (SR_THROTTLE_MAX + 1));
			if (sr_write_throttle(w, it, pct, p->vcpus, err))
				goto out;
		}
		if (sr_write_iteration(w, &rec, err))
			goto out;
	}
	if (write_context(w, SR_REC_HVM_CONTEXT, 0, SR_SCOPE_HVM, p->seed, err))
		goto out;
	for (uint32_t v = 0; v < p->vcpus; v++)
		if (write_context(w, SR_REC_VCPU_CONTEXT, v, SR_SCOPE_VCPU, p->seed + v + 1, err))
			goto out;
	if (sr_write_device(w, "serial8250", 1, 0, serial, sizeof(serial), err) ||
	    gen_devices(w, p, reg, err))
		goto out;
	rc = sr_write_end(w, err);
out:
	sr_writer_free(w);
	sr_batch_free(b);
	free(pfns);
	return rc;
}

int sr_gen_image(int fd, const struct sr_gen_params *p, struct sr_error *err)
{
	void *mem;
	int rc;

	if (!p->mem_bytes || p->mem_bytes % SR_PAGE_SIZE || !p->vcpus || p->vcpus > SR_MAX_VCPUS ||
	    p->regions > SR_MAX_REGIONS || p->regions > p->mem_bytes / SR_PAGE_SIZE)
		return sr_set_error(err, SR_E_INVAL, SR_NO_INDEX, 0,
				    "bad generator parameters");
	mem = malloc(p->mem_bytes);
	if (!mem)
		return sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, 0, "%llu bytes of guest memory",
				    (unsigned long long)p->mem_bytes);
	sr_gen_fill(mem, p->mem_bytes, p);
	rc = sr_gen_write(fd, p, mem, err);
	free(mem);
	return rc;
}
