/* SPDX-License-Identifier: MIT */
/*
 * Record reader.  Every record is read whole, its checksum verified, then
 * every field checked against the spec and the records before it, and only
 * then handed out.  Memory use is one record plus a read-ahead buffer.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <lz4.h>

#include "sr.h"
#include "internal.h"

/* Small enough that little page data goes through it (see read_placed). */
#define RD_AHEAD	(64u << 10)
#define RD_PREFIX_MAX	(sizeof(struct sr_rec_page_data) + SR_BATCH_MAX_PAGES * sizeof(struct sr_page_desc))

/*
 * A placed PAGE_DATA record (see sr_reader_set_page_sink): its data already
 * where it belongs, waiting for its checksum to be verified and its lz4
 * pages decoded, on a worker or inline.
 */
struct rd_job {
	struct sr_pool_job pj;
	uint64_t seq;			/* submission order */
	uint64_t first, end;		/* pfns [first, end) hold all its pages */
	uint64_t index, offset;
	struct sr_rhdr h;
	uint32_t pad;
	uint64_t stored;
	uint8_t prefix[RD_PREFIX_MAX];	/* page header and descriptors */
	size_t prefix_len;
	struct iovec iov[SR_BATCH_MAX_PAGES + 1];	/* data pieces, then the trailer */
	unsigned niov;
	struct { uint32_t i, len; uint64_t pfn; void *dst; const uint8_t *src; }
		lz4[SR_BATCH_MAX_PAGES];
	unsigned nlz4;
	uint8_t *staging;		/* lz4 bytes */
	size_t staging_cap;
	uint8_t trailer[SR_REC_ALIGN + 8];
	bool failed;
	struct sr_error err;
};
#define RD_BODY_MAX	(SR_REC_LENGTH_MAX + SR_REC_ALIGN + 8)

#define COVER_BLOCK 4096	/* pages per bit of a region's full map */

struct sr_reader {
	int fd;
	bool eof, ended, done;
	bool stop_at_end;		/* bytes after END are not ours */
	uint64_t offset;		/* stream bytes consumed */
	uint64_t index;			/* index of the next record */
	struct sr_ihdr ihdr;
	XXH3_state_t stream;

	/* read-ahead */
	uint8_t *ahead;
	size_t apos, alen;

	/* current record: body, padding, trailer */
	uint8_t *body;
	size_t body_cap;

	/* what the stream has shown so far */
	bool have_domain, have_hvm;
	struct sr_rec_domain dom;
	struct sr_region regions[SR_MAX_REGIONS];
	uint8_t vcpu_seen[SR_MAX_VCPUS];
	uint32_t vcpus_seen;
	unsigned ndev;
	struct { char name[32]; uint32_t instance; } dev[SR_MAX_DEVICES];
	bool any_pages, any_iter, any_throttle;
	uint32_t page_iter, last_iter, last_throttle;
	uint64_t *covered[SR_MAX_REGIONS];	/* a bit per page some PAGE_DATA described */
	uint64_t *full[SR_MAX_REGIONS];		/* a bit per COVER_BLOCK pages known covered */

	/* placed page data */
	bool placing;
	struct sr_page_sink sink;
	struct sr_pool *pool;
	struct rd_job *jobs;
	unsigned njobs;
	uint64_t seq, oldest;		/* jobs [oldest, seq) may be in flight */
	bool failed;			/* a placed record failed: fail_err, for good */
	struct sr_error fail_err;
	uint32_t flight_iter;
	struct iovec scratch[SR_BATCH_MAX_PAGES + 1];
	struct sr_reader_stats stats;
};

/* Current record's context for error messages. */
struct rd_ctx {
	struct sr_reader *r;
	struct sr_error *err;
	uint64_t index, offset;
	const char *name;
};

#define RERR(c, code, fmt, ...)						\
	rd_error(c, code, sr_set_error((c)->err, code, (c)->index, (c)->offset,	\
				       fmt, ##__VA_ARGS__))

static int rd_error(struct rd_ctx *c, enum sr_err_code code, int rc)
{
	(void)code;
	if (c->err)
		c->err->rec_name = c->name;
	return rc;
}

static int rd_io_error(struct sr_error *err, uint64_t index, uint64_t offset)
{
	int e = errno;

	sr_set_error(err, SR_E_IO, index, offset, "read: %s", strerror(e));
	if (err)
		err->sys_errno = e;
	return -1;
}

/* Reads up to n bytes; returns bytes read (< n only at end of file). */
static ssize_t rd_read(struct sr_reader *r, void *dst, size_t n, struct sr_error *err,
		       uint64_t index)
{
	uint8_t *d = dst;
	size_t got = 0;

	while (got < n) {
		size_t avail = r->alen - r->apos;

		if (avail) {
			size_t take = avail < n - got ? avail : n - got;

			memcpy(d + got, r->ahead + r->apos, take);
			r->apos += take;
			got += take;
			continue;
		}
		if (r->eof)
			break;
		/* Large remainders bypass the read-ahead buffer. */
		uint8_t *into = n - got >= RD_AHEAD ? d + got : r->ahead;
		size_t want = n - got >= RD_AHEAD ? n - got : RD_AHEAD;
		ssize_t k = read(r->fd, into, want);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return rd_io_error(err, index, r->offset + got);
		}
		if (k == 0) {
			r->eof = true;
			break;
		}
		if (into == r->ahead) {
			r->apos = 0;
			r->alen = k;
		} else {
			got += k;
		}
	}
	r->offset += got;
	return got;
}

/* Moves past n bytes of the pieces from v[i] on; returns the first piece not used up. */
static unsigned iov_advance(struct iovec *v, unsigned i, size_t n)
{
	while (n) {
		size_t take = n < v[i].iov_len ? n : v[i].iov_len;

		v[i].iov_base = (uint8_t *)v[i].iov_base + take;
		v[i].iov_len -= take;
		n -= take;
		if (!v[i].iov_len)
			i++;
	}
	return i;
}

/*
 * Reads exactly the bytes of iov[0..n) unless the stream ends first:
 * whatever the read-ahead holds is copied, the rest read straight into the
 * pieces.  Returns bytes read.  iov is left alone.
 */
static ssize_t rd_readv(struct sr_reader *r, const struct iovec *iov, unsigned n,
			struct sr_error *err, uint64_t index)
{
	struct iovec *v = r->scratch;
	size_t got = 0;
	unsigned i = 0;

	memcpy(v, iov, n * sizeof(*v));
	while (i < n && r->apos < r->alen) {
		size_t avail = r->alen - r->apos;
		size_t take = avail < v[i].iov_len ? avail : v[i].iov_len;

		memcpy(v[i].iov_base, r->ahead + r->apos, take);
		r->apos += take;
		got += take;
		i = iov_advance(v, i, take);
	}
	while (i < n && !r->eof) {
		ssize_t k = readv(r->fd, v + i, n - i < IOV_MAX ? (int)(n - i) : IOV_MAX);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return rd_io_error(err, index, r->offset + got);
		}
		if (k == 0) {
			r->eof = true;
			break;
		}
		got += k;
		i = iov_advance(v, i, k);
	}
	r->offset += got;
	return got;
}

static int check_header(struct sr_reader *r, struct sr_error *err)
{
	const struct sr_ihdr *h = &r->ihdr;
	uint64_t hash;

	if (memcmp(h->magic, SR_MAGIC, 8))
		return sr_set_error(err, SR_E_MAGIC, SR_NO_INDEX, 0,
				    "magic is not \"" SR_MAGIC "\"");
	if (h->endian != SR_ENDIAN_MARKER) {
		if (h->endian == __builtin_bswap32(SR_ENDIAN_MARKER))
			return sr_set_error(err, SR_E_ENDIAN, SR_NO_INDEX, 12,
					    "image was written big-endian");
		return sr_set_error(err, SR_E_HEADER, SR_NO_INDEX, 12,
				    "endianness marker 0x%08x is not 0x%08x",
				    h->endian, SR_ENDIAN_MARKER);
	}
	hash = XXH3_64bits(h, offsetof(struct sr_ihdr, hash));
	if (hash != h->hash)
		return sr_set_error(err, SR_E_CHECKSUM, SR_NO_INDEX, 0,
				    "header hash stored 0x%016llx, computed 0x%016llx",
				    (unsigned long long)h->hash, (unsigned long long)hash);
	if (h->version_major != SR_VERSION_MAJOR || h->version_minor > SR_VERSION_MINOR)
		return sr_set_error(err, SR_E_VERSION, SR_NO_INDEX, 8,
				    "image is version %u.%u, this reader handles %u.0-%u.%u",
				    h->version_major, h->version_minor, SR_VERSION_MAJOR,
				    SR_VERSION_MAJOR, SR_VERSION_MINOR);
	if (h->page_size != SR_PAGE_SIZE)
		return sr_set_error(err, SR_E_HEADER, SR_NO_INDEX, 16,
				    "page size %u, only %u is supported", h->page_size,
				    SR_PAGE_SIZE);
	if ((h->flags & ~SR_IHDR_F_INFO_MASK) & ~SR_IHDR_F_KNOWN)
		return sr_set_error(err, SR_E_HEADER, SR_NO_INDEX, 20,
				    "unknown mandatory header flags 0x%08x", h->flags);
	if (!memchr(h->creator, 0, sizeof(h->creator)))
		return sr_set_error(err, SR_E_HEADER, SR_NO_INDEX, 32,
				    "creator string is not NUL-terminated");
	for (size_t i = strlen(h->creator); i < sizeof(h->creator); i++)
		if (h->creator[i])
			return sr_set_error(err, SR_E_HEADER, SR_NO_INDEX, 32 + i,
					    "creator byte %zu after its NUL is not zero", i);
	return 0;
}

struct sr_reader *sr_reader_open(int fd, struct sr_error *err)
{
	struct sr_reader *r = calloc(1, sizeof(*r));
	ssize_t n;

	if (!r || !(r->ahead = malloc(RD_AHEAD))) {
		free(r);
		sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, 0, "allocating reader");
		return NULL;
	}
	r->fd = fd;
	XXH3_64bits_reset(&r->stream);
	n = rd_read(r, &r->ihdr, sizeof(r->ihdr), err, SR_NO_INDEX);
	if (n < 0)
		goto fail;
	if (n < (ssize_t)sizeof(r->ihdr)) {
		/* A short text file is foreign, not a cut image: its first bytes say so. */
		if (n > 0 && memcmp(r->ihdr.magic, SR_MAGIC, n < 8 ? (size_t)n : 8))
			sr_set_error(err, SR_E_MAGIC, SR_NO_INDEX, 0,
				     "magic is not \"" SR_MAGIC "\"");
		else
			sr_set_error(err, SR_E_TRUNCATED, SR_NO_INDEX, n,
				     "image header needs %zu bytes, stream has %zd",
				     sizeof(r->ihdr), n);
		goto fail;
	}
	if (check_header(r, err))
		goto fail;
	XXH3_64bits_update(&r->stream, &r->ihdr, sizeof(r->ihdr));
	return r;
fail:
	sr_reader_free(r);
	return NULL;
}

void sr_reader_free(struct sr_reader *r)
{
	if (!r)
		return;
	sr_pool_free(r->pool);		/* finishes what is in flight */
	for (unsigned i = 0; i < r->njobs; i++)
		free(r->jobs[i].staging);
	for (unsigned i = 0; i < SR_MAX_REGIONS; i++) {
		free(r->covered[i]);
		free(r->full[i]);
	}
	free(r->jobs);
	free(r->ahead);
	free(r->body);
	free(r);
}

const struct sr_ihdr *sr_reader_header(const struct sr_reader *r)
{
	return &r->ihdr;
}

uint64_t sr_reader_offset(const struct sr_reader *r)
{
	return r->offset;
}

const struct sr_rec_domain *sr_reader_domain(const struct sr_reader *r,
					     const struct sr_region **regions)
{
	if (!r->have_domain)
		return NULL;
	if (regions)
		*regions = r->regions;
	return &r->dom;
}

/* ------------------------------------------------------- per-type checks */

static int check_domain(struct rd_ctx *c, const uint8_t *body, uint32_t len)
{
	struct sr_reader *r = c->r;
	struct sr_rec_domain d;
	uint64_t total = 0;

	if (r->have_domain)
		return RERR(c, SR_E_DUPLICATE, "second DOMAIN record");
	memcpy(&d, body, sizeof(d));
	if (d.region_count < 1 || d.region_count > SR_MAX_REGIONS)
		return RERR(c, SR_E_RANGE, "region_count %u not in 1..%u", d.region_count,
			    SR_MAX_REGIONS);
	if ((uint64_t)len != sizeof(d) + (uint64_t)d.region_count * sizeof(struct sr_region))
		return RERR(c, SR_E_LENGTH, "length %u does not match %u regions", len,
			    d.region_count);
	if (d.vcpu_count < 1 || d.vcpu_count > SR_MAX_VCPUS)
		return RERR(c, SR_E_RANGE, "vcpu_count %u not in 1..%u", d.vcpu_count,
			    SR_MAX_VCPUS);
	if (d.guest_kind != SR_GUEST_TEST && d.guest_kind != SR_GUEST_LINUX)
		return RERR(c, SR_E_RANGE, "unknown guest_kind %u", d.guest_kind);
	if (d.flags)
		return RERR(c, SR_E_RANGE, "reserved flags 0x%x set", d.flags);
	if (!memchr(d.name, 0, sizeof(d.name)))
		return RERR(c, SR_E_RANGE, "name is not NUL-terminated");
	if (!sr_name_valid(d.name))
		return RERR(c, SR_E_RANGE, "name is not 1..%u characters of [A-Za-z0-9._-] without "
			    "a leading dot", SR_NAME_MAX);
	for (size_t i = strlen(d.name); i < sizeof(d.name); i++)
		if (d.name[i])
			return RERR(c, SR_E_PADDING, "name byte %zu after its NUL is not zero", i);

	memcpy(r->regions, body + sizeof(d), d.region_count * sizeof(struct sr_region));
	for (uint32_t i = 0; i < d.region_count; i++) {
		const struct sr_region *g = &r->regions[i];

		if (!g->size || (g->gpa | g->size) & (SR_PAGE_SIZE - 1))
			return RERR(c, SR_E_RANGE, "region %u (gpa 0x%llx size 0x%llx) empty or not page aligned",
				    i, (unsigned long long)g->gpa, (unsigned long long)g->size);
		if (g->gpa + g->size < g->gpa || g->gpa + g->size > (1ull << 52))
			return RERR(c, SR_E_RANGE, "region %u ends past the 52-bit address space", i);
		if (g->flags & ~SR_REGION_F_KNOWN)
			return RERR(c, SR_E_RANGE, "region %u has unknown flags 0x%x", i, g->flags);
		total += g->size;
		if (total > SR_MAX_MEMORY)
			return RERR(c, SR_E_RANGE, "regions add up to more than %llu bytes",
				    (unsigned long long)SR_MAX_MEMORY);
		for (uint32_t j = 0; j < i; j++) {
			const struct sr_region *h = &r->regions[j];

			if (g->gpa < h->gpa + h->size && h->gpa < g->gpa + g->size)
				return RERR(c, SR_E_RANGE, "regions %u and %u overlap", j, i);
			if (g->slot == h->slot)
				return RERR(c, SR_E_DUPLICATE, "regions %u and %u share slot %u",
					    j, i, g->slot);
		}
	}
	for (uint32_t i = 0; i < d.region_count; i++) {
		uint64_t pages = r->regions[i].size / SR_PAGE_SIZE;

		r->covered[i] = calloc((pages + 63) / 64, 8);
		r->full[i] = calloc(pages / COVER_BLOCK / 64 + 1, 8);
		if (!r->covered[i] || !r->full[i])
			return RERR(c, SR_E_NOMEM, "page bitmap of region %u", i);
	}
	r->dom = d;
	r->have_domain = true;
	return 0;
}

/* Sets bits [k, e) of bm. */
static void set_bits(uint64_t *bm, uint64_t k, uint64_t e)
{
	for (; k < e && k % 64; k++)
		bm[k / 64] |= 1ull << (k % 64);
	memset(&bm[k / 64], 0xff, (e - k) / 64 * 8);	/* whole words */
	for (k += (e - k) / 64 * 64; k < e; k++)
		bm[k / 64] |= 1ull << (k % 64);
}

/*
 * Marks pages [k, e) of a region's bitmap bm as covered.  Whole blocks of
 * COVER_BLOCK pages already known covered (full) are skipped, 64 at a time:
 * a record of 1024 zero runs over a 1 TiB region, each valid, would
 * otherwise cost 1024 fills of its 32 MiB bitmap.
 */
static void cover_pages(uint64_t *bm, uint64_t *full, uint64_t k, uint64_t e)
{
	uint64_t b = (k + COVER_BLOCK - 1) / COVER_BLOCK, b1 = e / COVER_BLOCK;

	if (b >= b1) {
		set_bits(bm, k, e);
		return;
	}
	set_bits(bm, k, b * COVER_BLOCK);
	set_bits(bm, b1 * COVER_BLOCK, e);
	while (b < b1) {
		if (b % 64 == 0 && b + 64 <= b1 && full[b / 64] == ~0ull) {
			b += 64;
			continue;
		}
		if (!(full[b / 64] >> (b % 64) & 1)) {
			memset(&bm[b * COVER_BLOCK / 64], 0xff, COVER_BLOCK / 8);
			full[b / 64] |= 1ull << (b % 64);
		}
		b++;
	}
}

/* Marks pages [first, first + n) of the region that holds them (checked) as covered. */
static void cover(struct sr_reader *r, uint64_t pfn, uint64_t n)
{
	for (uint32_t i = 0; i < r->dom.region_count; i++) {
		uint64_t base = r->regions[i].gpa >> SR_PAGE_SHIFT;

		if (pfn < base || pfn - base >= r->regions[i].size >> SR_PAGE_SHIFT)
			continue;
		cover_pages(r->covered[i], r->full[i], pfn - base, pfn - base + n);
		return;
	}
}

/* A PAGE_DATA record that passed its checks: its pages are in the image. */
static void cover_record(struct sr_reader *r, const uint8_t *body)
{
	struct sr_rec_page_data h;
	const struct sr_page_desc *d = (const struct sr_page_desc *)(body + sizeof(h));

	memcpy(&h, body, sizeof(h));
	for (uint32_t i = 0; i < h.count; i++)
		cover(r, d[i].pfn, d[i].enc == SR_PAGE_ZERO_RUN ? d[i].length : 1);
}

/*
 * The lowest pfn no PAGE_DATA record described, and how many pages were
 * missed in all; false when every page of every region was.
 */
static bool first_uncovered(const struct sr_reader *r, uint64_t *pfn, uint64_t *missing)
{
	bool any = false;

	*missing = 0;
	for (uint32_t i = 0; i < r->dom.region_count; i++) {
		uint64_t pages = r->regions[i].size >> SR_PAGE_SHIFT;

		for (uint64_t w = 0; w < (pages + 63) / 64; w++) {
			uint64_t valid = pages - w * 64 >= 64 ? ~0ull : (1ull << (pages - w * 64)) - 1;
			uint64_t gap = ~r->covered[i][w] & valid;
			uint64_t p = (r->regions[i].gpa >> SR_PAGE_SHIFT) + w * 64;

			if (!gap)
				continue;
			*missing += __builtin_popcountll(gap);
			p += __builtin_ctzll(gap);
			if (!any || p < *pfn)
				*pfn = p;
			any = true;
		}
	}
	return any;
}

static bool pfn_in_domain(const struct sr_reader *r, uint64_t pfn)
{
	uint64_t gpa = pfn << SR_PAGE_SHIFT;

	if (pfn >> (64 - SR_PAGE_SHIFT))
		return false;
	for (uint32_t i = 0; i < r->dom.region_count; i++)
		if (gpa >= r->regions[i].gpa && gpa - r->regions[i].gpa < r->regions[i].size)
			return true;
	return false;
}

/* Whether pfn .. pfn + n - 1 lie in one region of the domain. */
static bool run_in_domain(const struct sr_reader *r, uint64_t pfn, uint64_t n)
{
	if (pfn >> (64 - SR_PAGE_SHIFT) || n > (UINT64_MAX >> SR_PAGE_SHIFT) - pfn)
		return false;
	for (uint32_t i = 0; i < r->dom.region_count; i++) {
		uint64_t first = r->regions[i].gpa >> SR_PAGE_SHIFT;
		uint64_t pages = r->regions[i].size >> SR_PAGE_SHIFT;

		if (pfn >= first && pfn - first < pages)
			return n <= pages - (pfn - first);
	}
	return false;
}

static int check_page_data(struct rd_ctx *c, const uint8_t *body, uint32_t len)
{
	struct sr_reader *r = c->r;
	struct sr_rec_page_data h;
	const struct sr_page_desc *desc;
	uint64_t data = 0;

	if (r->have_hvm)
		return RERR(c, SR_E_SEQUENCE, "page data after HVM_CONTEXT");
	memcpy(&h, body, sizeof(h));
	if (h.count < 1 || h.count > SR_BATCH_MAX_PAGES)
		return RERR(c, SR_E_RANGE, "count %u not in 1..%u", h.count, SR_BATCH_MAX_PAGES);
	if ((uint64_t)len < sizeof(h) + (uint64_t)h.count * sizeof(*desc))
		return RERR(c, SR_E_LENGTH, "length %u too short for %u page descriptors",
			    len, h.count);
	if (r->any_pages && h.iteration < r->page_iter)
		return RERR(c, SR_E_SEQUENCE, "iteration %u after iteration %u", h.iteration,
			    r->page_iter);
	if (r->any_iter && h.iteration <= r->last_iter)
		return RERR(c, SR_E_SEQUENCE, "iteration %u pages after ITERATION %u closed it",
			    h.iteration, r->last_iter);
	desc = (const struct sr_page_desc *)(body + sizeof(h));
	for (uint32_t i = 0; i < h.count; i++) {
		const struct sr_page_desc *d = &desc[i];

		if (d->rsvd[0] | d->rsvd[1] | d->rsvd[2])
			return RERR(c, SR_E_RANGE, "page %u: reserved bytes not zero", i);
		switch (d->enc) {
		case SR_PAGE_RAW:
			if (d->length != SR_PAGE_SIZE)
				return RERR(c, SR_E_LENGTH, "page %u: raw length %u", i, d->length);
			break;
		case SR_PAGE_ZERO:
			if (d->length)
				return RERR(c, SR_E_LENGTH, "page %u: zero page with length %u",
					    i, d->length);
			break;
		case SR_PAGE_LZ4:
			if (!d->length || d->length >= SR_PAGE_SIZE)
				return RERR(c, SR_E_LENGTH, "page %u: lz4 length %u", i, d->length);
			break;
		case SR_PAGE_ZERO_RUN:
			if (!d->length)
				return RERR(c, SR_E_LENGTH, "page %u: zero run of 0 pages", i);
			if (!run_in_domain(r, d->pfn, d->length))
				return RERR(c, SR_E_RANGE, "page %u: zero run of %u pages from pfn "
					    "0x%llx leaves its region", i, d->length,
					    (unsigned long long)d->pfn);
			break;
		default:
			return RERR(c, SR_E_RANGE, "page %u: unknown encoding %u", i, d->enc);
		}
		if (!pfn_in_domain(r, d->pfn))
			return RERR(c, SR_E_RANGE, "page %u: pfn 0x%llx outside the domain's regions",
				    i, (unsigned long long)d->pfn);
		data += sr_page_data_len(d);
	}
	if (sizeof(h) + (uint64_t)h.count * sizeof(*desc) + data != len)
		return RERR(c, SR_E_LENGTH, "length %u, descriptors account for %llu", len,
			    (unsigned long long)(sizeof(h) + h.count * sizeof(*desc) + data));
	r->any_pages = true;
	r->page_iter = h.iteration;
	return 0;
}

static int check_iteration(struct rd_ctx *c, const uint8_t *body, uint32_t len)
{
	struct sr_reader *r = c->r;
	struct sr_rec_iteration it;

	if (len != sizeof(it))
		return RERR(c, SR_E_LENGTH, "length %u, expected %zu", len, sizeof(it));
	if (r->have_hvm)
		return RERR(c, SR_E_SEQUENCE, "ITERATION after HVM_CONTEXT");
	memcpy(&it, body, sizeof(it));
	if (it.flags & ~SR_ITER_F_FINAL)
		return RERR(c, SR_E_RANGE, "unknown flags 0x%x", it.flags);
	if (r->any_iter && it.iteration <= r->last_iter)
		return RERR(c, SR_E_SEQUENCE, "iteration %u after iteration %u", it.iteration,
			    r->last_iter);
	if (r->any_pages && it.iteration < r->page_iter)
		return RERR(c, SR_E_SEQUENCE, "ITERATION %u after pages of iteration %u",
			    it.iteration, r->page_iter);
	r->any_iter = true;
	r->last_iter = it.iteration;
	return 0;
}

static int check_throttle(struct rd_ctx *c, const uint8_t *body, uint32_t len)
{
	struct sr_reader *r = c->r;
	struct sr_rec_throttle t;
	uint32_t n;

	memcpy(&t, body, sizeof(t));
	n = t.vcpu_count;
	if (r->have_hvm)
		return RERR(c, SR_E_SEQUENCE, "THROTTLE after HVM_CONTEXT");
	if (n != r->dom.vcpu_count)
		return RERR(c, SR_E_RANGE, "vcpu_count %u, DOMAIN has %u", n, r->dom.vcpu_count);
	if (len != sizeof(t) + (n + 7) / 8 * 8)
		return RERR(c, SR_E_LENGTH, "length %u, expected %u for %u vCPUs", len,
			    (uint32_t)sizeof(t) + (n + 7) / 8 * 8, n);
	for (uint32_t i = 0; i < n; i++)
		if (body[sizeof(t) + i] > SR_THROTTLE_MAX)
			return RERR(c, SR_E_RANGE, "vCPU %u throttled %u%%, at most %u", i,
				    body[sizeof(t) + i], SR_THROTTLE_MAX);
	for (uint32_t i = sizeof(t) + n; i < len; i++)
		if (body[i])
			return RERR(c, SR_E_RANGE, "non-zero padding at body byte %u", i);
	if ((r->any_iter && t.iteration <= r->last_iter) ||
	    (r->any_throttle && t.iteration <= r->last_throttle))
		return RERR(c, SR_E_SEQUENCE, "THROTTLE %u after round %u was closed or throttled",
			    t.iteration, r->any_throttle && r->last_throttle > r->last_iter ?
			    r->last_throttle : r->last_iter);
	if (r->any_pages && t.iteration < r->page_iter)
		return RERR(c, SR_E_SEQUENCE, "THROTTLE %u after pages of iteration %u",
			    t.iteration, r->page_iter);
	r->any_throttle = true;
	r->last_throttle = t.iteration;
	return 0;
}

/* Field checks on known blocks, beyond their length. */
static int check_block_fields(struct rd_ctx *c, unsigned b, uint32_t kind,
			      const uint8_t *p, uint32_t len)
{
	const struct sr_block_spec *s = sr_block_spec_find(kind);
	struct sr_blk_count cnt;
	uint32_t v;
	uint64_t rflags;

	switch (kind) {
	case SR_BLK_CPUID:
	case SR_BLK_MSRS:
		memcpy(&cnt, p, sizeof(cnt));
		if ((uint64_t)cnt.count * s->granule != len - 8)
			return RERR(c, SR_E_LENGTH, "block %u (%s): count %u, length %u", b,
				    s->name, cnt.count, len);
		if (cnt.rsvd)
			return RERR(c, SR_E_RANGE, "block %u (%s): rsvd 0x%x set", b, s->name,
				    cnt.rsvd);
		for (uint32_t i = 0; i < cnt.count; i++) {
			/* kvm_cpuid_entry2.padding[3] / kvm_msr_entry.reserved */
			const uint8_t *e = p + 8 + (size_t)i * s->granule;
			size_t off = kind == SR_BLK_CPUID ? 28 : 4, n = kind == SR_BLK_CPUID ? 12 : 4;

			for (size_t k = off; k < off + n; k++)
				if (e[k])
					return RERR(c, SR_E_RANGE, "block %u (%s): entry %u has reserved "
						    "byte %zu set", b, s->name, i, k);
		}
		break;
	case SR_BLK_MP_STATE:
		memcpy(&v, p, 4);
		if (v > 10)
			return RERR(c, SR_E_RANGE, "block %u (MP_STATE): state %u", b, v);
		break;
	case SR_BLK_REGS:
		memcpy(&rflags, p + 136, 8);
		if (!(rflags & 2))
			return RERR(c, SR_E_RANGE, "block %u (REGS): rflags 0x%llx lacks bit 1", b,
				    (unsigned long long)rflags);
		break;
	case SR_BLK_TSC_KHZ:
		memcpy(&v, p, 4);
		if (v < 1000 || v > 10000000)
			return RERR(c, SR_E_RANGE, "block %u (TSC_KHZ): %u kHz", b, v);
		memcpy(&v, p + 4, 4);
		if (v)
			return RERR(c, SR_E_RANGE, "block %u (TSC_KHZ): rsvd 0x%x set", b, v);
		break;
	}
	return 0;
}

static int check_context(struct rd_ctx *c, uint32_t scope, const uint8_t *body,
			 uint32_t len)
{
	struct sr_reader *r = c->r;
	struct sr_rec_context h;
	const uint8_t *pos = body + sizeof(h), *end = body + len;
	uint64_t seen = 0;

	memcpy(&h, body, sizeof(h));
	if (scope == SR_SCOPE_HVM) {
		if (r->have_hvm)
			return RERR(c, SR_E_DUPLICATE, "second HVM_CONTEXT record");
		if (h.id)
			return RERR(c, SR_E_RANGE, "id %u, must be 0", h.id);
	} else {
		if (!r->have_hvm)
			return RERR(c, SR_E_SEQUENCE, "vCPU context before HVM_CONTEXT");
		if (h.id >= r->dom.vcpu_count)
			return RERR(c, SR_E_RANGE, "vCPU id %u, domain has %u vCPUs", h.id,
				    r->dom.vcpu_count);
		if (r->vcpu_seen[h.id])
			return RERR(c, SR_E_DUPLICATE, "second context for vCPU %u", h.id);
	}
	if (h.block_count > 64)
		return RERR(c, SR_E_RANGE, "block_count %u exceeds 64", h.block_count);

	for (unsigned b = 0; b < h.block_count; b++) {
		struct sr_block_hdr bh;
		const struct sr_block_spec *s;
		uint32_t pad;

		if (end - pos < (ptrdiff_t)sizeof(bh))
			return RERR(c, SR_E_LENGTH, "block %u header runs past the body", b);
		memcpy(&bh, pos, sizeof(bh));
		pos += sizeof(bh);
		pad = sr_pad8(bh.length);
		if ((uint64_t)bh.length + pad > (uint64_t)(end - pos))
			return RERR(c, SR_E_LENGTH, "block %u length %u runs past the body", b,
				    bh.length);
		s = sr_block_spec_find(bh.kind);
		if (!s) {
			if (!(bh.kind & SR_BLOCK_OPTIONAL))
				return RERR(c, SR_E_TYPE, "block %u: unknown mandatory kind 0x%x",
					    b, bh.kind);
		} else {
			unsigned bit = s - sr_block_specs;

			if (s->scope != scope)
				return RERR(c, SR_E_RANGE, "block %u: %s does not belong here", b,
					    s->name);
			if (seen & (1ull << bit))
				return RERR(c, SR_E_DUPLICATE, "block %u: second %s block", b,
					    s->name);
			seen |= 1ull << bit;
			if (bh.length < s->min_len || bh.length > s->max_len ||
			    (bh.length - s->min_len) % s->granule)
				return RERR(c, SR_E_LENGTH, "block %u (%s): length %u", b, s->name,
					    bh.length);
			if (check_block_fields(c, b, bh.kind, pos, bh.length))
				return -1;
		}
		for (uint32_t k = 0; k < pad; k++)
			if (pos[bh.length + k])
				return RERR(c, SR_E_PADDING, "block %u: padding not zero", b);
		pos += bh.length + pad;
	}
	if (pos != end)
		return RERR(c, SR_E_LENGTH, "%td bytes after the last block", end - pos);
	for (unsigned i = 0; i < sr_block_spec_count; i++) {
		const struct sr_block_spec *s = &sr_block_specs[i];

		if (s->scope == scope && !(s->kind & SR_BLOCK_OPTIONAL) && !(seen & (1ull << i)))
			return RERR(c, SR_E_MISSING, "no %s block", s->name);
	}
	if (scope == SR_SCOPE_HVM) {
		r->have_hvm = true;
	} else {
		r->vcpu_seen[h.id] = 1;
		r->vcpus_seen++;
	}
	return 0;
}

static int check_device(struct rd_ctx *c, const uint8_t *body, uint32_t len)
{
	struct sr_rec_device d;

	memcpy(&d, body, sizeof(d));
	if (!d.name[0] || !memchr(d.name, 0, sizeof(d.name)))
		return RERR(c, SR_E_RANGE, "device name empty or not NUL-terminated");
	for (size_t i = strlen(d.name); i < sizeof(d.name); i++)
		if (d.name[i])
			return RERR(c, SR_E_PADDING, "device name byte %zu after its NUL is not zero", i);
	if (len - sizeof(d) > SR_DEVICE_DATA_MAX)
		return RERR(c, SR_E_LENGTH, "device state of %zu bytes exceeds %u",
			    len - sizeof(d), SR_DEVICE_DATA_MAX);
	/* A device whose layout the spec gives is checked here, for --verify and restore alike. */
	if (!strcmp(d.name, "serial8250")) {
		const uint8_t *st = body + sizeof(d);
		uint16_t head, count;

		if (d.version != 1 || d.instance != 0 || len - sizeof(d) != SR_SERIAL8250_LEN)
			return RERR(c, SR_E_RANGE, "serial8250: version %u instance %u, %zu bytes; the "
				    "spec has version 1, instance 0, %u bytes", d.version, d.instance,
				    len - sizeof(d), SR_SERIAL8250_LEN);
		memcpy(&head, st + 12, 2);
		memcpy(&count, st + 14, 2);
		if (st[10] || st[11])
			return RERR(c, SR_E_RANGE, "serial8250: rsvd set");
		if (head >= 256 || count > 256)
			return RERR(c, SR_E_RANGE, "serial8250: rx_head %u, rx_count %u (256 bytes)",
				    head, count);
	}
	for (unsigned i = 0; i < c->r->ndev; i++)
		if (!strcmp(c->r->dev[i].name, d.name) && c->r->dev[i].instance == d.instance)
			return RERR(c, SR_E_DUPLICATE, "device \"%s\" instance %u twice", d.name,
				    d.instance);
	if (c->r->ndev == SR_MAX_DEVICES)
		return RERR(c, SR_E_RANGE, "more than %u DEVICE records", SR_MAX_DEVICES);
	memcpy(c->r->dev[c->r->ndev].name, d.name, sizeof(d.name));
	c->r->dev[c->r->ndev++].instance = d.instance;
	return 0;
}

static int check_end(struct rd_ctx *c, const uint8_t *body, uint32_t len)
{
	struct sr_reader *r = c->r;
	struct sr_rec_end e;
	uint64_t hash, pfn = 0, missing;

	if (len != sizeof(e))
		return RERR(c, SR_E_LENGTH, "length %u, expected %zu", len, sizeof(e));
	memcpy(&e, body, sizeof(e));
	if (e.record_count != c->index)
		return RERR(c, SR_E_MISSING, "END counts %llu records, stream has %llu",
			    (unsigned long long)e.record_count, (unsigned long long)c->index);
	hash = XXH3_64bits_digest(&r->stream);
	if (hash != e.stream_hash)
		return RERR(c, SR_E_STREAM_HASH, "stored 0x%016llx, computed 0x%016llx",
			    (unsigned long long)e.stream_hash, (unsigned long long)hash);
	if (!r->have_hvm)
		return RERR(c, SR_E_MISSING, "no HVM_CONTEXT record");
	if (r->vcpus_seen != r->dom.vcpu_count)
		return RERR(c, SR_E_MISSING, "%u of %u vCPU contexts present", r->vcpus_seen,
			    r->dom.vcpu_count);
	if (first_uncovered(r, &pfn, &missing))
		return RERR(c, SR_E_MISSING, "pfn 0x%llx is in no PAGE_DATA record (%llu of the "
			    "domain's pages are missing)", (unsigned long long)pfn,
			    (unsigned long long)missing);
	return 0;
}

static int check_record(struct rd_ctx *c, uint32_t type, const uint8_t *body, uint32_t len)
{
	struct sr_reader *r = c->r;

	if (type != SR_REC_DOMAIN && !r->have_domain)
		return RERR(c, SR_E_SEQUENCE, "first record must be DOMAIN");
	if (len < sr_rec_min_length(type))
		return RERR(c, SR_E_LENGTH, "length %u below the minimum %u", len,
			    sr_rec_min_length(type));
	switch (type) {
	case SR_REC_DOMAIN:	return check_domain(c, body, len);
	case SR_REC_PAGE_DATA:	return check_page_data(c, body, len);
	case SR_REC_ITERATION:	return check_iteration(c, body, len);
	case SR_REC_THROTTLE:	return check_throttle(c, body, len);
	case SR_REC_HVM_CONTEXT: return check_context(c, SR_SCOPE_HVM, body, len);
	case SR_REC_VCPU_CONTEXT: return check_context(c, SR_SCOPE_VCPU, body, len);
	case SR_REC_DEVICE:	return check_device(c, body, len);
	case SR_REC_END:	return check_end(c, body, len);
	}
	return 0;
}

/* ------------------------------------------------------- placed page data */

int sr_reader_set_page_sink(struct sr_reader *r, const struct sr_page_sink *sink,
			    struct sr_error *err)
{
	unsigned n = sink->threads ? sink->threads * 2 : 1;

	if (r->placing || !sink->page_addr || sink->threads > 256)
		return sr_set_error(err, SR_E_INVAL, SR_NO_INDEX, r->offset,
				    "page sink: %s", r->placing ? "already set" :
				    !sink->page_addr ? "no page_addr" : "more than 256 threads");
	r->jobs = calloc(n, sizeof(*r->jobs));
	if (!r->jobs)
		return sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, r->offset,
				    "page sink: %u jobs", n);
	r->njobs = n;
	if (sink->threads && !(r->pool = sr_pool_new(sink->threads, sink->thread_start, sink->thread_arg))) {
		free(r->jobs);
		r->jobs = NULL;
		r->njobs = 0;
		return sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, r->offset,
				    "page sink: starting %u threads", sink->threads);
	}
	r->sink = *sink;
	r->placing = true;
	return 0;
}

void sr_reader_stop_at_end(struct sr_reader *r)
{
	r->stop_at_end = true;
}

void sr_reader_stats(const struct sr_reader *r, struct sr_reader_stats *st)
{
	*st = r->stats;
}

/* Page i (pfn) of record index at offset: len bytes of lz4 that must decode to one page. */
static int decode_lz4_page(const void *src, uint32_t len, void *dst, unsigned i, uint64_t pfn,
			   uint64_t index, uint64_t offset, struct sr_error *err)
{
	int n = LZ4_decompress_safe(src, dst, len, SR_PAGE_SIZE);

	if (n == (int)SR_PAGE_SIZE)
		return 0;
	sr_set_error(err, SR_E_DECODE, index, offset,
		     "page %u (pfn 0x%llx): lz4 data decodes to %d bytes", i,
		     (unsigned long long)pfn, n);
	if (err)
		err->rec_name = "PAGE_DATA";
	return -1;
}

static void job_fail(struct rd_job *j, enum sr_err_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void job_fail(struct rd_job *j, enum sr_err_code code, const char *fmt, ...)
{
	char msg[sizeof(j->err.msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sr_set_error(&j->err, code, j->index, j->offset, "%s", msg);
	j->err.rec_name = "PAGE_DATA";
	j->failed = true;
}

/* A placed record's checksum over the bytes where they landed, then its lz4 pages. */
static void rd_job_verify(struct sr_pool_job *pj)
{
	struct rd_job *j = (struct rd_job *)((char *)pj - offsetof(struct rd_job, pj));
	XXH3_state_t st;
	uint64_t hash;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, &j->h, sizeof(j->h));
	XXH3_64bits_update(&st, j->prefix, j->prefix_len);
	for (unsigned i = 0; i + 1 < j->niov; i++)
		XXH3_64bits_update(&st, j->iov[i].iov_base, j->iov[i].iov_len);
	XXH3_64bits_update(&st, j->trailer, j->pad);
	hash = XXH3_64bits_digest(&st);
	if (hash != j->stored)
		return job_fail(j, SR_E_CHECKSUM, "stored 0x%016llx, computed 0x%016llx",
				(unsigned long long)j->stored, (unsigned long long)hash);
	for (uint32_t k = 0; k < j->pad; k++)
		if (j->trailer[k])
			return job_fail(j, SR_E_PADDING, "record padding not zero");
	for (unsigned k = 0; k < j->nlz4 && !j->failed; k++)
		j->failed = decode_lz4_page(j->lz4[k].src, j->lz4[k].len, j->lz4[k].dst, j->lz4[k].i,
					    j->lz4[k].pfn, j->index, j->offset, &j->err) < 0;
}

/* Waits for the oldest record in flight to be verified and decoded. */
static struct rd_job *rd_wait_oldest(struct sr_reader *r)
{
	struct rd_job *j = &r->jobs[r->oldest % r->njobs];

	sr_pool_wait(r->pool, &j->pj);
	j->pj.state = SR_JOB_IDLE;
	r->oldest++;
	return j;
}

/*
 * Waits for the oldest record in flight; returns its failure.  A failure
 * ends reading, so every later record in flight is waited for too: once the
 * caller hears of it, no worker touches its pages any more, and it may
 * discard them (guest memory goes before the reader is freed).
 */
static int rd_retire(struct sr_reader *r, struct sr_error *err)
{
	struct rd_job *j = rd_wait_oldest(r);

	if (!j->failed)
		return 0;
	r->failed = true;
	r->fail_err = j->err;
	while (r->oldest < r->seq)
		rd_wait_oldest(r);
	if (err)
		*err = r->fail_err;
	return -1;
}

static int rd_drain(struct sr_reader *r, struct sr_error *err)
{
	while (r->oldest < r->seq)
		if (rd_retire(r, err))
			return -1;
	return 0;
}

/*
 * Waits for every record in flight whose pages may share a pfn with
 * [first, end): a page twice in one round lands in stream order, so the
 * later copy wins as it does when records are read one by one (landing
 * first would let the earlier record hash or decode over it).  Spans, not
 * pages, are compared: sr-save's records of a round do not overlap, and a
 * writer whose do only costs the overlap its parallelism.
 */
static int rd_wait_overlap(struct sr_reader *r, uint64_t first, uint64_t end,
			   struct sr_error *err)
{
	for (uint64_t k = r->seq; k-- > r->oldest;) {
		const struct rd_job *j = &r->jobs[k % r->njobs];

		if (j->first < end && first < j->end) {
			while (r->oldest <= k)
				if (rd_retire(r, err))
					return -1;
			return 0;
		}
	}
	return 0;
}

static void add_piece(struct rd_job *j, void *p, size_t len)
{
	struct iovec *last = j->niov ? &j->iov[j->niov - 1] : NULL;

	if (last && (uint8_t *)last->iov_base + last->iov_len == p)
		last->iov_len += len;
	else
		j->iov[j->niov++] = (struct iovec){ p, len };
}

static int body_reserve(struct sr_reader *r, struct rd_ctx *c, size_t total)
{
	size_t cap = total < (64u << 10) ? (64u << 10) : total;
	uint8_t *nb;

	if (total <= r->body_cap)
		return 0;
	nb = realloc(r->body, cap);
	if (!nb)
		return RERR(c, SR_E_NOMEM, "record buffer of %zu bytes", cap);
	r->body = nb;
	r->body_cap = cap;
	return 0;
}

static int check_record(struct rd_ctx *c, uint32_t type, const uint8_t *body, uint32_t len);

/*
 * Reads a PAGE_DATA record's page header and descriptors into the body
 * buffer (*have: bytes read), then, when the record can be placed, its data
 * straight to its pages.  Returns 1 placed (*stored: its hash), 0 when it
 * is to be read the ordinary way (the rest of it), -1 on error.
 */
static int read_placed(struct sr_reader *r, struct rd_ctx *c, const struct sr_rhdr *h,
		       size_t *have, uint64_t *stored, struct sr_error *err)
{
	struct rd_ctx quiet = *c;
	struct sr_rec_page_data ph;
	const struct sr_page_desc *d;
	struct rd_job *j;
	uint32_t pad = sr_pad8(h->length), page_iter = r->page_iter;
	uint64_t next = 0;
	size_t pre, lz4_bytes = 0, want;
	uint8_t *stage;
	bool any_pages = r->any_pages;
	ssize_t n;
	int bad;

	*have = 0;
	if (h->length < sizeof(ph))
		return 0;
	n = rd_read(r, r->body, sizeof(ph), err, c->index);
	if (n < 0)
		return -1;
	*have = n;
	if ((size_t)n < sizeof(ph))
		return 0;
	memcpy(&ph, r->body, sizeof(ph));
	if (ph.count < 1 || ph.count > SR_BATCH_MAX_PAGES)
		return 0;
	pre = sizeof(ph) + (size_t)ph.count * sizeof(*d);
	if (h->length < pre)
		return 0;
	n = rd_read(r, r->body + sizeof(ph), pre - sizeof(ph), err, c->index);
	if (n < 0)
		return -1;
	*have += n;
	if (*have < pre)
		return 0;

	/*
	 * Every check the record will get, quietly: a record that fails one is
	 * read whole and its checksum verified first, so a corrupt record is
	 * reported as one, whichever way it is read.
	 */
	quiet.err = NULL;
	bad = check_record(&quiet, h->type, r->body, h->length);
	r->any_pages = any_pages;
	r->page_iter = page_iter;
	if (bad)
		return 0;
	d = (const struct sr_page_desc *)(r->body + sizeof(ph));
	for (unsigned i = 0; i < ph.count; i++) {
		if (i && d[i].pfn < next)
			return 0;
		next = d[i].pfn + (d[i].enc == SR_PAGE_ZERO_RUN ? d[i].length : 1);
		if (d[i].enc == SR_PAGE_LZ4)
			lz4_bytes += d[i].length;
	}

	/* Another round's pages wait for this one's to land; so do this round's overlapping ones. */
	if (r->oldest < r->seq && ph.iteration != r->flight_iter && rd_drain(r, err))
		return -1;
	if (rd_wait_overlap(r, d[0].pfn, next, err))
		return -1;
	while (r->seq - r->oldest >= r->njobs)
		if (rd_retire(r, err))
			return -1;
	j = &r->jobs[r->seq % r->njobs];
	if (lz4_bytes > j->staging_cap) {
		uint8_t *ns = realloc(j->staging, lz4_bytes);

		if (!ns)
			return RERR(c, SR_E_NOMEM, "lz4 staging of %zu bytes", lz4_bytes);
		j->staging = ns;
		j->staging_cap = lz4_bytes;
	}
	j->niov = j->nlz4 = 0;
	stage = j->staging;
	for (unsigned i = 0; i < ph.count; i++) {
		uint32_t len = sr_page_data_len(&d[i]);
		void *dst;

		if (!len)
			continue;
		dst = r->sink.page_addr(r->sink.arg, d[i].pfn);
		if (!dst)
			return 0;
		if (d[i].enc == SR_PAGE_LZ4) {
			j->lz4[j->nlz4].i = i;
			j->lz4[j->nlz4].len = len;
			j->lz4[j->nlz4].pfn = d[i].pfn;
			j->lz4[j->nlz4].dst = dst;
			j->lz4[j->nlz4++].src = stage;
			add_piece(j, stage, len);
			stage += len;
		} else {
			add_piece(j, dst, SR_PAGE_SIZE);
		}
	}
	j->iov[j->niov++] = (struct iovec){ j->trailer, pad + 8 };
	if (r->sink.batch)
		r->sink.batch(r->sink.arg, d, ph.count);

	want = h->length - pre + pad + 8;
	n = rd_readv(r, j->iov, j->niov, err, c->index);
	if (n < 0)
		return -1;
	if ((size_t)n < want)
		return RERR(c, SR_E_TRUNCATED, "stream ends %zu bytes into a %zu byte record",
			    *have + n + sizeof(*h), (size_t)h->length + pad + 8 + sizeof(*h));
	memcpy(stored, j->trailer + pad, 8);
	j->seq = r->seq++;
	j->first = d[0].pfn;
	j->end = next;
	j->index = c->index;
	j->offset = c->offset;
	j->h = *h;
	j->pad = pad;
	j->stored = *stored;
	memcpy(j->prefix, r->body, pre);
	j->prefix_len = pre;
	j->failed = false;
	j->pj.fn = rd_job_verify;
	if (r->oldest + 1 == r->seq)
		r->flight_iter = ph.iteration;
	sr_pool_submit(r->pool, &j->pj);
	if (!r->pool && rd_drain(r, err))
		return -1;
	r->stats.placed++;
	return 1;
}

static int reader_next(struct sr_reader *r, struct sr_record *rec, struct sr_error *err)
{
	struct rd_ctx c = { .r = r, .err = err, .index = r->index, .offset = r->offset,
			    .name = NULL };
	struct sr_rhdr h;
	uint64_t stored, hash;
	uint32_t pad;
	size_t total, have = 0;
	ssize_t n;
	XXH3_state_t rs;

	if (r->failed) {
		if (err)
			*err = r->fail_err;
		return -1;
	}
	if (r->done)
		return 0;
	n = rd_read(r, &h, sizeof(h), err, c.index);
	if (n < 0)
		return -1;
	if (n == 0) {
		if (rd_drain(r, err))
			return -1;
		return RERR(&c, SR_E_MISSING, "stream ends after %llu records without END",
			    (unsigned long long)c.index);
	}
	if (n < (ssize_t)sizeof(h)) {
		if (rd_drain(r, err))
			return -1;
		return RERR(&c, SR_E_TRUNCATED, "stream ends inside a record header");
	}
	c.name = sr_rec_type_name(h.type);
	if (h.length > SR_REC_LENGTH_MAX)
		return RERR(&c, SR_E_LENGTH, "length %u exceeds the %u byte cap", h.length,
			    SR_REC_LENGTH_MAX);
	pad = sr_pad8(h.length);
	total = (size_t)h.length + pad + 8;
	if (h.type == SR_REC_PAGE_DATA && r->placing) {
		int rc;

		if (body_reserve(r, &c, RD_PREFIX_MAX))
			return -1;
		rc = read_placed(r, &c, &h, &have, &stored, err);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			if (check_record(&c, h.type, r->body, h.length))	/* passed quietly */
				return -1;
			cover_record(r, r->body);
			memset(rec, 0, sizeof(*rec));
			rec->type = h.type;
			rec->length = h.length;
			rec->index = c.index;
			rec->offset = c.offset;
			rec->hash = stored;
			rec->known = rec->placed = true;
			rec->body = r->body;
			r->index++;
			XXH3_64bits_update(&r->stream, &h, sizeof(h));
			XXH3_64bits_update(&r->stream, &stored, sizeof(stored));
			return 1;
		}
	}
	/* Nothing read the ordinary way overtakes a placed record. */
	if (rd_drain(r, err))
		return -1;
	if (h.type == SR_REC_PAGE_DATA)
		r->stats.buffered++;
	if (body_reserve(r, &c, total))
		return -1;
	n = rd_read(r, r->body + have, total - have, err, c.index);
	if (n < 0)
		return -1;
	n += have;
	if ((size_t)n < total)
		return RERR(&c, SR_E_TRUNCATED, "stream ends %zu bytes into a %zu byte record",
			    (size_t)n + sizeof(h), total + sizeof(h));

	memcpy(&stored, r->body + h.length + pad, 8);
	XXH3_64bits_reset(&rs);
	XXH3_64bits_update(&rs, &h, sizeof(h));
	XXH3_64bits_update(&rs, r->body, h.length + pad);
	hash = XXH3_64bits_digest(&rs);
	if (hash != stored)
		return RERR(&c, SR_E_CHECKSUM, "stored 0x%016llx, computed 0x%016llx",
			    (unsigned long long)stored, (unsigned long long)hash);
	for (uint32_t k = 0; k < pad; k++)
		if (r->body[h.length + k])
			return RERR(&c, SR_E_PADDING, "record padding not zero");

	rec->type = h.type;
	rec->length = h.length;
	rec->index = c.index;
	rec->offset = c.offset;
	rec->hash = stored;
	rec->body = r->body;
	rec->placed = false;
	rec->known = sr_rec_type_name(h.type) != NULL;
	if (!rec->known) {
		if (!(h.type & SR_REC_OPTIONAL))
			return RERR(&c, SR_E_TYPE, "unknown mandatory record type 0x%08x", h.type);
		if (!r->have_domain)
			return RERR(&c, SR_E_SEQUENCE, "first record must be DOMAIN");
	} else if (check_record(&c, h.type, r->body, h.length)) {
		return -1;
	} else if (h.type == SR_REC_PAGE_DATA) {
		cover_record(r, r->body);
	}
	r->index++;
	if (h.type != SR_REC_END) {
		XXH3_64bits_update(&r->stream, &h, sizeof(h));
		XXH3_64bits_update(&r->stream, &stored, sizeof(stored));
		return 1;
	}

	/* END: nothing may follow (unless the stream is not ours beyond it). */
	uint8_t extra;

	if (r->stop_at_end) {
		r->ended = r->done = true;
		return 0;
	}
	c.offset = r->offset;
	n = rd_read(r, &extra, 1, err, c.index);
	if (n < 0)
		return -1;
	if (n > 0)
		return sr_set_error(err, SR_E_TRAILING, c.index + 1, c.offset,
				    "bytes follow the END record");
	r->ended = r->done = true;
	return 0;
}

int sr_reader_next(struct sr_reader *r, struct sr_record *rec, struct sr_error *err)
{
	int rc = reader_next(r, rec, err);

	/* A record still in flight comes first: a failure of its is the one to report. */
	if (rc < 0 && !r->failed && r->oldest < r->seq) {
		struct sr_error first;

		if (rd_drain(r, &first) && err)
			*err = first;
	}
	return rc;
}

/* ------------------------------------------------------------ views */

void sr_page_iter_init(const struct sr_record *rec, struct sr_page_iter *it)
{
	const struct sr_rec_page_data *h = rec->body;

	it->count = h->count;
	it->iteration = h->iteration;
	it->desc = (const struct sr_page_desc *)(h + 1);
	it->data = rec->placed ? NULL : (const uint8_t *)(it->desc + h->count);
	it->i = 0;
	it->rec_index = rec->index;
	it->rec_offset = rec->offset;
}

int sr_page_iter_next(struct sr_page_iter *it, const struct sr_page_desc **desc,
		      void *dst, struct sr_error *err)
{
	const struct sr_page_desc *d;

	if (it->i >= it->count)
		return 0;
	d = &it->desc[it->i];
	*desc = d;
	if (dst && it->data && d->enc != SR_PAGE_ZERO_RUN) {
		switch (d->enc) {
		case SR_PAGE_ZERO:
			memset(dst, 0, SR_PAGE_SIZE);
			break;
		case SR_PAGE_RAW:
			memcpy(dst, it->data, SR_PAGE_SIZE);
			break;
		case SR_PAGE_LZ4:
			if (decode_lz4_page(it->data, d->length, dst, it->i, d->pfn, it->rec_index,
					    it->rec_offset, err))
				return -1;
			break;
		}
	}
	if (it->data)
		it->data += sr_page_data_len(d);
	it->i++;
	return 1;
}

const struct sr_rec_context *sr_context_begin(const struct sr_record *rec,
					      struct sr_block_iter *it)
{
	const struct sr_rec_context *h = rec->body;

	it->pos = (const uint8_t *)(h + 1);
	it->end = (const uint8_t *)rec->body + rec->length;
	it->left = h->block_count;
	return h;
}

bool sr_context_next(struct sr_block_iter *it, struct sr_block *blk)
{
	struct sr_block_hdr bh;

	if (!it->left)
		return false;
	memcpy(&bh, it->pos, sizeof(bh));
	blk->kind = bh.kind;
	blk->length = bh.length;
	blk->data = it->pos + sizeof(bh);
	it->pos += sizeof(bh) + bh.length + sr_pad8(bh.length);
	it->left--;
	return true;
}

bool sr_context_find(const struct sr_record *rec, uint32_t kind, struct sr_block *blk)
{
	struct sr_block_iter it;

	sr_context_begin(rec, &it);
	while (sr_context_next(&it, blk))
		if (blk->kind == kind)
			return true;
	return false;
}

const struct sr_rec_device *sr_device_view(const struct sr_record *rec,
					   const void **data, size_t *len)
{
	const struct sr_rec_device *d = rec->body;

	*data = d + 1;
	*len = rec->length - sizeof(*d);
	return d;
}
