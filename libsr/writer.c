/* SPDX-License-Identifier: MIT */
/*
 * Record writer: frames records, hashes them and gathers the bytes into
 * writev() calls.  Small pieces are copied into one buffer; large pieces
 * (page data) are referenced in place and flushed before the call returns,
 * so a caller's memory is only borrowed for the duration of a call.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#include "sr.h"
#include "internal.h"

#define WR_BUF_SIZE	(256u << 10)
#define WR_COPY_MAX	1024u		/* pieces up to this size are copied */
#define WR_IOV_MAX	1024

struct sr_writer {
	int fd;
	unsigned flags;
	bool failed, ended;
	bool has_external;
	uint64_t offset;		/* bytes accepted into the stream */
	uint64_t records;
	uint8_t *buf;
	size_t buf_len;
	int niov;
	struct iovec iov[WR_IOV_MAX];
	XXH3_state_t stream_state;
	XXH3_state_t rec_state;
	const volatile int *cancel;
};

void sr_writer_set_cancel(struct sr_writer *w, const volatile int *flag)
{
	w->cancel = flag;
}

static const uint8_t zeros[8];

static int wr_fail(struct sr_writer *w, struct sr_error *err, int e, const char *what)
{
	w->failed = true;
	sr_set_error(err, SR_E_IO, w->records, w->offset, "%s: %s", what, strerror(e));
	if (err)
		err->sys_errno = e;
	return -1;
}

int sr_writer_flush(struct sr_writer *w, struct sr_error *err)
{
	struct iovec *iov = w->iov;
	int n = w->niov;

	if (w->failed)
		return sr_set_error(err, SR_E_IO, w->records, w->offset, "writer already failed");
	while (n > 0) {
		ssize_t done = writev(w->fd, iov, n > IOV_MAX ? IOV_MAX : n);

		if (done < 0) {
			if (errno == EINTR && !(w->cancel && *w->cancel))
				continue;
			return wr_fail(w, err, errno == EINTR ? ECANCELED : errno, "write");
		}
		if (done == 0)
			return wr_fail(w, err, EIO, "write returned 0");
		while (n > 0 && (size_t)done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	w->niov = 0;
	w->buf_len = 0;
	w->has_external = false;
	return 0;
}

/* Which hashes a piece of the stream feeds. */
#define H_REC		1u
#define H_STREAM	2u

/* Queues len bytes of the stream. */
static int wr_put(struct sr_writer *w, const void *p, size_t len, unsigned hash,
		  struct sr_error *err)
{
	if (!len)
		return 0;
	if (!(w->flags & SR_WRITER_NO_HASH)) {
		if (hash & H_REC)
			XXH3_64bits_update(&w->rec_state, p, len);
		if (hash & H_STREAM)
			XXH3_64bits_update(&w->stream_state, p, len);
	}
	w->offset += len;

	if (len <= WR_COPY_MAX) {
		struct iovec *last = w->niov ? &w->iov[w->niov - 1] : NULL;

		if (w->buf_len + len > WR_BUF_SIZE || w->niov == WR_IOV_MAX)
			if (sr_writer_flush(w, err))
				return -1;
		last = w->niov ? &w->iov[w->niov - 1] : NULL;
		memcpy(w->buf + w->buf_len, p, len);
		if (last && (uint8_t *)last->iov_base + last->iov_len == w->buf + w->buf_len) {
			last->iov_len += len;
		} else {
			w->iov[w->niov].iov_base = w->buf + w->buf_len;
			w->iov[w->niov].iov_len = len;
			w->niov++;
		}
		w->buf_len += len;
		return 0;
	}
	if (w->niov == WR_IOV_MAX && sr_writer_flush(w, err))
		return -1;
	w->iov[w->niov].iov_base = (void *)p;
	w->iov[w->niov].iov_len = len;
	w->niov++;
	w->has_external = true;
	return 0;
}

struct sr_writer *sr_writer_open(int fd, const struct sr_image_info *info,
				 unsigned flags, struct sr_error *err)
{
	struct sr_writer *w = calloc(1, sizeof(*w));
	struct sr_ihdr h;
	struct timespec ts;

	if (!w || !(w->buf = malloc(WR_BUF_SIZE))) {
		free(w);
		sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, 0, "allocating writer");
		return NULL;
	}
	w->fd = fd;
	w->flags = flags;
	XXH3_64bits_reset(&w->stream_state);

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SR_MAGIC, 8);
	h.version_major = SR_VERSION_MAJOR;
	h.version_minor = SR_VERSION_MINOR;
	h.endian = SR_ENDIAN_MARKER;
	h.page_size = SR_PAGE_SIZE;
	h.flags = info ? info->flags : 0;
	h.created_ns = info ? info->created_ns : 0;
	if (!h.created_ns) {
		clock_gettime(CLOCK_REALTIME, &ts);
		h.created_ns = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
	}
	strncpy(h.creator, info && info->creator ? info->creator : "libsr " SR_LIBRARY_VERSION,
		sizeof(h.creator) - 1);
	h.hash = XXH3_64bits(&h, offsetof(struct sr_ihdr, hash));
	if (wr_put(w, &h, sizeof(h), H_STREAM, err)) {
		sr_writer_free(w);
		return NULL;
	}
	/* Records count from 0; the header is not one. */
	return w;
}

/* hash: the record's checksum, computed already (sr_record_hash), or NULL. */
static int write_record(struct sr_writer *w, uint32_t type, const struct iovec *iov, int n,
			const uint64_t *hash_in, struct sr_error *err)
{
	struct sr_rhdr h = { .type = type, .length = 0 };
	unsigned body_hash = hash_in ? 0 : H_REC;
	uint64_t total = 0, hash = 0;

	if (w->failed)
		return sr_set_error(err, SR_E_IO, w->records, w->offset, "writer already failed");
	if (w->ended)
		return sr_set_error(err, SR_E_SEQUENCE, w->records, w->offset,
				    "record written after END");
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (total > SR_REC_LENGTH_MAX)
		return sr_set_error(err, SR_E_LENGTH, w->records, w->offset,
				    "%s body of %llu bytes exceeds the %u byte cap",
				    sr_rec_type_name(type) ? sr_rec_type_name(type) : "record",
				    (unsigned long long)total, SR_REC_LENGTH_MAX);
	h.length = (uint32_t)total;

	/*
	 * The body is hashed once, into the record checksum; the stream hash
	 * takes each record's header and checksum, which bind its body.
	 */
	XXH3_64bits_reset(&w->rec_state);
	if (wr_put(w, &h, sizeof(h), body_hash | H_STREAM, err))
		return -1;
	for (int i = 0; i < n; i++)
		if (wr_put(w, iov[i].iov_base, iov[i].iov_len, body_hash, err))
			return -1;
	if (wr_put(w, zeros, sr_pad8(h.length), body_hash, err))
		return -1;
	if (hash_in)
		hash = *hash_in;
	else if (!(w->flags & SR_WRITER_NO_HASH))
		hash = XXH3_64bits_digest(&w->rec_state);
	if (wr_put(w, &hash, sizeof(hash), H_STREAM, err))
		return -1;
	w->records++;
	if (w->has_external)
		return sr_writer_flush(w, err);
	return 0;
}

int sr_write_record_iov(struct sr_writer *w, uint32_t type,
			const struct iovec *iov, int n, struct sr_error *err)
{
	return write_record(w, type, iov, n, NULL, err);
}

int sr_write_record_hashed(struct sr_writer *w, uint32_t type, const struct iovec *iov, int n,
			   uint64_t hash, struct sr_error *err)
{
	return write_record(w, type, iov, n, &hash, err);
}

uint64_t sr_record_hash(uint32_t type, const struct iovec *iov, int n)
{
	struct sr_rhdr h = { .type = type };
	XXH3_state_t st;

	for (int i = 0; i < n; i++)
		h.length += iov[i].iov_len;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, &h, sizeof(h));
	for (int i = 0; i < n; i++)
		XXH3_64bits_update(&st, iov[i].iov_base, iov[i].iov_len);
	XXH3_64bits_update(&st, zeros, sr_pad8(h.length));
	return XXH3_64bits_digest(&st);
}

bool sr_writer_hashes(const struct sr_writer *w)
{
	return !(w->flags & SR_WRITER_NO_HASH);
}

int sr_write_record(struct sr_writer *w, uint32_t type, const void *body,
		    size_t len, struct sr_error *err)
{
	struct iovec iov = { .iov_base = (void *)body, .iov_len = len };

	return sr_write_record_iov(w, type, &iov, len ? 1 : 0, err);
}

int sr_write_end(struct sr_writer *w, struct sr_error *err)
{
	struct sr_rec_end end = { .record_count = w->records, .stream_hash = 0 };

	if (!(w->flags & SR_WRITER_NO_HASH))
		end.stream_hash = XXH3_64bits_digest(&w->stream_state);
	if (sr_write_record(w, SR_REC_END, &end, sizeof(end), err))
		return -1;
	w->ended = true;
	return sr_writer_flush(w, err);
}

uint64_t sr_writer_offset(const struct sr_writer *w)
{
	return w->offset;
}

uint64_t sr_writer_records(const struct sr_writer *w)
{
	return w->records;
}

void sr_writer_free(struct sr_writer *w)
{
	if (!w)
		return;
	free(w->buf);
	free(w);
}

int sr_write_domain(struct sr_writer *w, const struct sr_rec_domain *dom,
		    const struct sr_region *regions, struct sr_error *err)
{
	struct iovec iov[2] = {
		{ (void *)dom, sizeof(*dom) },
		{ (void *)regions, sizeof(*regions) * dom->region_count },
	};

	if (!memchr(dom->name, 0, sizeof(dom->name)) || !sr_name_valid(dom->name))
		return sr_set_error(err, SR_E_INVAL, w->records, w->offset,
				    "domain name is not 1..%u characters of [A-Za-z0-9._-] without "
				    "a leading dot", SR_NAME_MAX);
	return sr_write_record_iov(w, SR_REC_DOMAIN, iov, 2, err);
}

int sr_write_throttle(struct sr_writer *w, uint32_t iteration, const uint8_t *pct, uint32_t n,
		      struct sr_error *err)
{
	struct sr_rec_throttle t = { .iteration = iteration, .vcpu_count = n };
	static const uint8_t zero[8];
	struct iovec iov[3] = {
		{ &t, sizeof(t) },
		{ (void *)pct, n },
		{ (void *)zero, (8 - n % 8) % 8 },
	};

	return sr_write_record_iov(w, SR_REC_THROTTLE, iov, 3, err);
}

int sr_write_iteration(struct sr_writer *w, const struct sr_rec_iteration *it,
		       struct sr_error *err)
{
	return sr_write_record(w, SR_REC_ITERATION, it, sizeof(*it), err);
}

int sr_write_device(struct sr_writer *w, const char *name, uint32_t version,
		    uint32_t instance, const void *data, size_t len,
		    struct sr_error *err)
{
	struct sr_rec_device d;
	struct iovec iov[2] = { { &d, sizeof(d) }, { (void *)data, len } };

	if (strlen(name) >= sizeof(d.name) || len > SR_DEVICE_DATA_MAX)
		return sr_set_error(err, SR_E_INVAL, w->records, w->offset,
				    "device name or state too long");
	memset(&d, 0, sizeof(d));
	strcpy(d.name, name);
	d.version = version;
	d.instance = instance;
	return sr_write_record_iov(w, SR_REC_DEVICE, iov, 2, err);
}

#define CTX_MAX_BLOCKS 64

int sr_write_context(struct sr_writer *w, uint32_t type, uint32_t id,
		     const struct sr_block *blocks, unsigned n,
		     struct sr_error *err)
{
	struct sr_rec_context hdr = { .id = id, .block_count = n };
	struct sr_block_hdr bh[CTX_MAX_BLOCKS];
	struct iovec iov[1 + 3 * CTX_MAX_BLOCKS];
	int k = 0;

	if ((type != SR_REC_HVM_CONTEXT && type != SR_REC_VCPU_CONTEXT) || n > CTX_MAX_BLOCKS)
		return sr_set_error(err, SR_E_INVAL, w->records, w->offset,
				    "bad context type 0x%x or %u blocks", type, n);
	iov[k++] = (struct iovec){ &hdr, sizeof(hdr) };
	for (unsigned i = 0; i < n; i++) {
		bh[i].kind = blocks[i].kind;
		bh[i].length = blocks[i].length;
		iov[k++] = (struct iovec){ &bh[i], sizeof(bh[i]) };
		iov[k++] = (struct iovec){ (void *)blocks[i].data, blocks[i].length };
		iov[k++] = (struct iovec){ (void *)zeros, sr_pad8(blocks[i].length) };
	}
	return sr_write_record_iov(w, type, iov, k, err);
}
