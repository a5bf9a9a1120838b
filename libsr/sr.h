/* SPDX-License-Identifier: MIT */
/*
 * libsr: the sr image stream.
 *
 * A writer turns records into a checksummed, strictly sequential byte stream
 * on an fd; a reader takes one back, validating each record completely
 * before handing it out.  Neither ever seeks, so both work on pipes and
 * sockets.  The library never prints and never exits: every failure is
 * returned as a struct sr_error.
 */
#ifndef SR_H
#define SR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "sr_format.h"

#define SR_LIBRARY_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors */

#define SR_ERROR_CODES(X)						\
	X(OK,          "ok")						\
	X(IO,          "I/O error")					\
	X(NOMEM,       "out of memory")					\
	X(INVAL,       "invalid argument")				\
	X(TRUNCATED,   "truncated")					\
	X(MAGIC,       "not an sr image")				\
	X(VERSION,     "unsupported version")				\
	X(ENDIAN,      "foreign endianness")				\
	X(HEADER,      "bad image header")				\
	X(CHECKSUM,    "checksum mismatch")				\
	X(LENGTH,      "bad length")					\
	X(PADDING,     "non-zero padding")				\
	X(TYPE,        "unknown mandatory record")			\
	X(SEQUENCE,    "record out of sequence")			\
	X(RANGE,       "value out of range")				\
	X(DUPLICATE,   "duplicate")					\
	X(DECODE,      "page does not decode")				\
	X(STREAM_HASH, "stream hash mismatch")				\
	X(MISSING,     "missing record")				\
	X(TRAILING,    "data after END")

enum sr_err_code {
#define SR_X_ENUM(name, text) SR_E_##name,
	SR_ERROR_CODES(SR_X_ENUM)
#undef SR_X_ENUM
};

#define SR_NO_INDEX UINT64_MAX

/*
 * An error as a value.  index is the record index (SR_NO_INDEX for the image
 * header or for errors not tied to a record), offset the stream offset of
 * that record's header (or where the failing access was).
 */
struct sr_error {
	enum sr_err_code code;
	int sys_errno;			/* errno for SR_E_IO, else 0 */
	uint64_t index;
	uint64_t offset;
	const char *rec_name;		/* record type name, or NULL */
	char msg[200];
};

/* Short name of an error code, e.g. "checksum mismatch". */
const char *sr_strerror(enum sr_err_code code);

/*
 * Domain names: 1..SR_NAME_MAX characters from [A-Za-z0-9._-], not starting
 * with a dot.  A name becomes a file name (the control socket NAME.sock) and
 * is printed on terminals, so nothing else is accepted anywhere: the writer,
 * the reader and the tools' --name all use this check.
 */
#define SR_NAME_MAX 48
bool sr_name_valid(const char *name);

/*
 * Formats err as one line: "record 12 (PAGE_DATA) at offset 4096: checksum
 * mismatch: stored 0x.., computed 0x..".  Returns buf.
 */
char *sr_error_format(const struct sr_error *err, char *buf, size_t len);

/* ------------------------------------------------------------ names */

/* "PAGE_DATA", or NULL when type is unknown. */
const char *sr_rec_type_name(uint32_t type);
/* Type for a name (case-insensitive); returns -1 when unknown. */
int sr_rec_type_from_name(const char *name, uint32_t *type);
/* "REGS", or NULL when kind is unknown. */
const char *sr_block_kind_name(uint32_t kind);
const char *sr_page_enc_name(unsigned enc);

/* ------------------------------------------------------------ writer */

struct sr_writer;

/* Description of the image header a writer emits. */
struct sr_image_info {
	uint32_t flags;			/* SR_IHDR_F_* */
	const char *creator;		/* "sr-save 0.1.0"; truncated to 23 chars */
	uint64_t created_ns;		/* 0: now */
};

/* Writer flags. */
#define SR_WRITER_NO_HASH	(1u << 0)	/* benchmarks only: image won't verify */

/*
 * Creates a writer on fd and writes the image header.  The fd stays owned by
 * the caller.  Returns NULL with err filled on failure.
 */
struct sr_writer *sr_writer_open(int fd, const struct sr_image_info *info,
				 unsigned flags, struct sr_error *err);

/*
 * Writes one record whose body is the concatenation of iov[0..n).  Bodies
 * larger than SR_REC_LENGTH_MAX are refused.  The iov memory is only read
 * during the call.
 */
int sr_write_record_iov(struct sr_writer *w, uint32_t type,
			const struct iovec *iov, int n, struct sr_error *err);
int sr_write_record(struct sr_writer *w, uint32_t type, const void *body,
		    size_t len, struct sr_error *err);

/*
 * Lets a stuck write be abandoned: once *flag is non-zero, a write that a
 * signal interrupts fails with ECANCELED instead of being retried (the
 * caller sets the flag, then signals the writing thread).
 */
void sr_writer_set_cancel(struct sr_writer *w, const volatile int *flag);

/* Writes the END record and flushes.  No record may follow. */
int sr_write_end(struct sr_writer *w, struct sr_error *err);

/* Flushes buffered bytes to the fd. */
int sr_writer_flush(struct sr_writer *w, struct sr_error *err);

/* Stream bytes and records written so far. */
uint64_t sr_writer_offset(const struct sr_writer *w);
uint64_t sr_writer_records(const struct sr_writer *w);

/* Frees the writer; does not flush and does not close the fd. */
void sr_writer_free(struct sr_writer *w);

/* Typed record writers: one per record type. */
int sr_write_domain(struct sr_writer *w, const struct sr_rec_domain *dom,
		    const struct sr_region *regions, struct sr_error *err);
int sr_write_iteration(struct sr_writer *w, const struct sr_rec_iteration *it,
		       struct sr_error *err);
/* THROTTLE for round iteration: pct[i] is vCPU i's throttle (0..99), n = vCPU count. */
int sr_write_throttle(struct sr_writer *w, uint32_t iteration, const uint8_t *pct, uint32_t n,
		      struct sr_error *err);
int sr_write_device(struct sr_writer *w, const char *name, uint32_t version,
		    uint32_t instance, const void *data, size_t len,
		    struct sr_error *err);

/* One context block to write: kind and a borrowed pointer to its bytes. */
struct sr_block {
	uint32_t kind;
	uint32_t length;
	const void *data;
};

/* HVM_CONTEXT (id 0) or VCPU_CONTEXT (id = vCPU id). */
int sr_write_context(struct sr_writer *w, uint32_t type, uint32_t id,
		     const struct sr_block *blocks, unsigned n,
		     struct sr_error *err);

/* --------------------------------------------------- page batch encoder */

enum sr_compress {
	SR_COMPRESS_NONE = 0,
	SR_COMPRESS_LZ4 = 1,
};

/*
 * The source pages do not change while a batch is built and written
 * (a paused guest): raw pages are then written straight from the source
 * instead of being copied into the batch first.
 */
#define SR_BATCH_STABLE_SOURCE	(1u << 0)

struct sr_batch;

struct sr_batch *sr_batch_new(enum sr_compress mode, unsigned flags);
void sr_batch_free(struct sr_batch *b);

/* Starts a new, empty batch for the given pre-copy iteration. */
void sr_batch_reset(struct sr_batch *b, uint32_t iteration);

/*
 * Encodes one page (zero detection, then lz4 if enabled, falling back to raw
 * when lz4 does not shrink it; after a run of pages lz4 could not shrink, it
 * is not tried for a growing stretch of pages).  Returns the number of pages in the batch;
 * the batch is full at SR_BATCH_MAX_PAGES and must be written before the next
 * add.  Returns -1 when called on a full batch.
 */
int sr_batch_add(struct sr_batch *b, uint64_t pfn, const void *page);

/*
 * Adds npages all-zero pages from pfn on, never read: ZERO_RUN descriptors
 * (one per 2^32 - 1 pages).  For memory the guest never touched (a hole in
 * its memfd), which a save must not read, since reading allocates it.
 * Returns the number of descriptors in the batch, or -1 when it has no
 * room for them (write it first).
 */
int sr_batch_add_zero_run(struct sr_batch *b, uint64_t pfn, uint64_t npages);

/* Descriptors in the batch, and the pages they cover. */
unsigned sr_batch_count(const struct sr_batch *b);
uint64_t sr_batch_pages(const struct sr_batch *b);

/* The bytes of page data a descriptor carries (a ZERO_RUN's length counts pages). */
static inline uint32_t sr_page_data_len(const struct sr_page_desc *d)
{
	return d->enc == SR_PAGE_ZERO_RUN ? 0 : d->length;
}

/* Writes the batch as one PAGE_DATA record and resets it (same iteration). */
int sr_write_page_batch(struct sr_writer *w, struct sr_batch *b,
			struct sr_error *err);

/* Running totals over every batch this encoder wrote. */
struct sr_batch_stats {
	uint64_t pages, raw, zero, lz4;	/* zero counts the pages of zero runs too */
	uint64_t lz4_skipped;		/* pages sent raw without trying lz4 (adaptive) */
	uint64_t data_bytes;		/* encoded page bytes */
};
void sr_batch_stats(const struct sr_batch *b, struct sr_batch_stats *st);

/* ------------------------------------------------------------ page pipe */

/*
 * A page pipe writes page batches as sr_write_page_batch() does, but a pool
 * of worker threads encodes and hashes them while the caller fills the next
 * one; the caller's thread writes them, in the order they were filled.
 * Pages are read by a worker after sr_pipe_add() returns: a page may be read
 * at any time until the sr_pipe_flush() that follows, so the caller keeps
 * it mapped until then (a running guest's page is read as it is then, as a
 * live save's dirty log expects).  With threads 0 no thread is started and
 * each batch is encoded and written when it fills.
 */
struct sr_pipe_opts {
	enum sr_compress mode;
	unsigned flags;			/* SR_BATCH_* */
	unsigned threads;		/* encoding workers, 0..64 */
	/*
	 * Optional: called on the caller's thread after each batch is written
	 * with the pages it covered and the stream offset; non-zero cancels
	 * (the call that wrote it fails: "cancelled").
	 */
	int (*written)(void *arg, uint64_t pages, uint64_t offset);
	void *arg;
	/* Optional: runs first on each worker thread (a tool's sandbox goes on there). */
	void (*thread_start)(void *thread_arg);
	void *thread_arg;
};

struct sr_pipe;
struct sr_pipe *sr_pipe_new(struct sr_writer *w, const struct sr_pipe_opts *o,
			    struct sr_error *err);
/* Frees the pipe, dropping what was not flushed. */
void sr_pipe_free(struct sr_pipe *p);

/* Adds one page, or a ZERO_RUN of npages never read, as sr_batch_add*() do. */
int sr_pipe_add(struct sr_pipe *p, uint64_t pfn, const void *page, struct sr_error *err);
int sr_pipe_add_zero_run(struct sr_pipe *p, uint64_t pfn, uint64_t npages,
			 struct sr_error *err);

/* Writes everything added so far; afterwards no page is read any more. */
int sr_pipe_flush(struct sr_pipe *p, struct sr_error *err);

/* Flushes, then tags the batches that follow with a new pre-copy iteration. */
int sr_pipe_set_iteration(struct sr_pipe *p, uint32_t iteration, struct sr_error *err);

/* Pages added but not yet written. */
uint64_t sr_pipe_pending_pages(const struct sr_pipe *p);

/* Totals over every batch, as sr_batch_stats(); exact after a flush. */
void sr_pipe_stats(const struct sr_pipe *p, struct sr_batch_stats *st);

/* ------------------------------------------------------------ reader */

struct sr_reader;

/*
 * Creates a reader on fd and reads and checks the image header.  The fd
 * stays owned by the caller.  Memory use is bounded by one record.
 */
struct sr_reader *sr_reader_open(int fd, struct sr_error *err);
void sr_reader_free(struct sr_reader *r);

const struct sr_ihdr *sr_reader_header(const struct sr_reader *r);

/* A validated record.  body stays valid until the next sr_reader_next(). */
struct sr_record {
	uint32_t type;
	uint32_t length;
	uint64_t index;
	uint64_t offset;
	uint64_t hash;
	bool known;			/* false: unknown optional record, skip it */
	bool placed;			/* PAGE_DATA whose pages are in place (page sink) */
	const void *body;		/* placed: the page header and descriptors only */
};

/*
 * Reads, checks and returns the next record.  Returns 1 with rec filled,
 * 0 after END was read, its counts and stream hash verified, every required
 * record seen, every page of every region described by some PAGE_DATA
 * record (else SR_E_MISSING naming the lowest pfn that was not) and end of
 * file reached; -1 on error.  Checksums are checked
 * before anything in a record is interpreted.
 */
int sr_reader_next(struct sr_reader *r, struct sr_record *rec,
		   struct sr_error *err);

/* Stream bytes consumed so far. */
uint64_t sr_reader_offset(const struct sr_reader *r);

/*
 * For a stream that goes on after the image (a migration's handshake on the
 * same connection): END is the last thing read; what follows is not looked
 * at, so the reader never waits for it.
 */
void sr_reader_stop_at_end(struct sr_reader *r);

/*
 * Placed page data: a reader with a page sink reads a PAGE_DATA record's
 * raw pages straight to where page_addr() says, reads its lz4 pages into a
 * staging buffer and, once the record's checksum has verified over the bytes
 * where they landed, decodes them straight to their pages.  No record
 * buffer: the consumer gets the record with placed set and only its page
 * header and descriptors in body (walk them with sr_page_iter, dst NULL).
 *
 * Only a record whose descriptors pass every check and whose pfns ascend
 * (no page twice, runs not overlapping) is placed; any other is read whole
 * and checked first, as without a sink, and its pages are the consumer's
 * to decode.  A placed record's pages land before its checksum is known:
 * its memory is the consumer's to discard when the reader fails.
 *
 * With threads > 0, workers verify and decode placed records while the
 * next is read; a record's failure is returned by a later sr_reader_next(),
 * at the latest the one that reads END, and the error names that record.
 * Records of one iteration may be in flight together; the reader waits for
 * them before reading another iteration's pages or any other record, and
 * for those whose pfn span meets a record's before placing it, so a page
 * sent twice lands in stream order and the later copy wins, as on every
 * other path.  Once sr_reader_next() has returned an error, no record is in
 * flight: the sink's memory may go, then the reader.  Until then the memory
 * page_addr() returns must stay valid (sr_reader_free() waits for what is in
 * flight: free the reader first).
 */
struct sr_page_sink {
	/* Where pfn's 4096 bytes go; NULL: that record is read the ordinary way. */
	void *(*page_addr)(void *arg, uint64_t pfn);
	/* Optional: a placed record's descriptors, before any of its data is read. */
	void (*batch)(void *arg, const struct sr_page_desc *desc, unsigned n);
	void *arg;
	unsigned threads;		/* workers; 0: verify and decode inline */
	/* Optional: runs first on each worker thread (a tool's sandbox goes on there). */
	void (*thread_start)(void *thread_arg);
	void *thread_arg;
};
int sr_reader_set_page_sink(struct sr_reader *r, const struct sr_page_sink *sink,
			    struct sr_error *err);

struct sr_reader_stats {
	uint64_t placed, buffered;	/* PAGE_DATA records read each way */
};
void sr_reader_stats(const struct sr_reader *r, struct sr_reader_stats *st);

/* The DOMAIN record, once read (NULL before). */
const struct sr_rec_domain *sr_reader_domain(const struct sr_reader *r,
					     const struct sr_region **regions);

/*
 * Walks the pages of a validated PAGE_DATA record in order.  The iterator
 * borrows the record's body.
 */
struct sr_page_iter {
	const struct sr_page_desc *desc;
	const uint8_t *data;
	unsigned i, count;
	uint32_t iteration;
	uint64_t rec_index, rec_offset;
};
void sr_page_iter_init(const struct sr_record *rec, struct sr_page_iter *it);

/*
 * Returns the next descriptor: 1 with *desc set and, when dst is non-NULL,
 * the page decoded into dst (4096 bytes) -- except for a ZERO_RUN, which
 * covers desc->length pages and leaves dst alone, and a placed record's
 * pages, which are in place already; 0 when no page is left;
 * -1 with SR_E_DECODE when lz4 data does not decode to exactly one page.
 */
int sr_page_iter_next(struct sr_page_iter *it, const struct sr_page_desc **desc,
		      void *dst, struct sr_error *err);

/* Iterates the blocks of a validated HVM_CONTEXT or VCPU_CONTEXT record. */
struct sr_block_iter {
	const uint8_t *pos, *end;
	unsigned left;
};
const struct sr_rec_context *sr_context_begin(const struct sr_record *rec,
					      struct sr_block_iter *it);
/* Returns false when no block is left. */
bool sr_context_next(struct sr_block_iter *it, struct sr_block *blk);
/* Finds a block by kind; returns false when absent. */
bool sr_context_find(const struct sr_record *rec, uint32_t kind,
		     struct sr_block *blk);

const struct sr_rec_device *sr_device_view(const struct sr_record *rec,
					   const void **data, size_t *len);

/* ------------------------------------------------ virtio device state */

/*
 * A virtio device's state, decoded (libsr/device.c; docs/format.md §6.1).
 * The section structs are the wire structs themselves: sr is little-endian
 * only (the reader refuses a big-endian image), so encoding a section is
 * copying it.  A device model fills one of these at the pause and encodes it
 * into a DEVICE record's data; a restorer gets one back from a validated
 * record.
 */
struct sr_virtio_state {
	uint32_t device_id;			/* SR_VIRTIO_ID_* */
	uint32_t instance;			/* DEVICE instance */
	uint16_t major, minor;			/* decoded: the image's; encoded: ours */
	struct sr_virtio_transport tr;		/* tr.num_queues entries of q[] used */
	struct sr_virtio_queue q[SR_VIRTIO_MAX_QUEUES];
	struct sr_virtio_pci pci;
	bool has_msix;				/* MSIX section present */
	struct sr_virtio_msix msix;
	struct sr_msix_entry msix_table[SR_VIRTIO_MSIX_MAX];
	uint64_t msix_pba;			/* bit i: vector i pending */
	struct sr_virtio_blk blk;		/* virtio-blk only */
	unsigned skipped;			/* decoded: unknown optional sections skipped */
};

/* "virtio-blk" for SR_VIRTIO_ID_BLOCK, ...; NULL for a type sr does not know. */
const char *sr_virtio_name(uint32_t device_id);

/*
 * Encodes s (device_id, tr, q, pci, msix, blk; major/minor/instance are not
 * read: the layout written is SR_VIRTIO_VERSION) as a DEVICE record's data
 * into buf.  Returns the length, or -1 with err set (SR_E_INVAL: cap too
 * small, device type unknown, too many queues).  The result is what
 * sr_device_validate() checks; the encoder does not validate: a device model
 * saves what its device holds, and the reader tells if that is not a state
 * the spec allows (tests write broken devices through it on purpose).
 */
#define SR_VIRTIO_DATA_MAX	(16 + 8 + sizeof(struct sr_virtio_transport) +	\
				 SR_VIRTIO_MAX_QUEUES * sizeof(struct sr_virtio_queue) + \
				 8 + sizeof(struct sr_virtio_pci) +		\
				 8 + sizeof(struct sr_virtio_msix) +		\
				 SR_VIRTIO_MSIX_MAX * sizeof(struct sr_msix_entry) + 8 + \
				 8 + sizeof(struct sr_virtio_blk))
ssize_t sr_virtio_encode(const struct sr_virtio_state *s, void *buf, size_t cap,
			 struct sr_error *err);

/* Writes s as a DEVICE record named sr_virtio_name(s->device_id), instance s->instance. */
int sr_write_virtio(struct sr_writer *w, const struct sr_virtio_state *s, struct sr_error *err);

/*
 * What a DEVICE record is checked against: the guest's RAM (DOMAIN's
 * regions), the DISK records before it and the PCI slots of the devices
 * before it.  The reader keeps one; sr_device_env_init() gives an empty one
 * for a caller that checks device data on its own (fuzzers, tests).
 */
struct sr_device_env {
	const struct sr_region *regions;
	unsigned nregions;
	unsigned ndisks;
	struct {
		uint32_t disk, flags;
		uint64_t size;
		bool used;			/* a virtio-blk names it */
	} disks[SR_MAX_DISKS];
	uint32_t slots;				/* bit n: PCI slot n taken */
	uint64_t index, offset;			/* the record, for error messages */
};
void sr_device_env_init(struct sr_device_env *env, const struct sr_region *regions,
			unsigned nregions);

/*
 * The one validator for DEVICE data (docs/format.md §3.7, §6): for a device
 * whose name the spec gives (serial8250, virtio-*) every field is checked;
 * any other name passes.  On success a virtio device's state is decoded
 * into *out (when out is non-NULL and the device is virtio; *is_virtio says
 * which), the env takes its slot and disk, and 0 is returned.  On failure
 * -1, err naming env->index/offset and, in msg, the device, the field and
 * its byte offset in the record body, e.g. "virtio-blk 0: body byte 116:
 * queue 0 size 3 is not a power of two".  sr-dump --verify, sr-restore and
 * the fuzzers reach it through the reader.
 */
int sr_device_validate(struct sr_device_env *env, const char *name, uint32_t version,
		       uint32_t instance, const void *data, size_t len,
		       struct sr_virtio_state *out, bool *is_virtio, struct sr_error *err);

/*
 * Decodes a virtio DEVICE record the reader has validated (sr_device_view()
 * gives name, data, len).  Returns 0, or -1 when it is not a virtio device's
 * record.  The restorer's path: record -> state -> device model.
 */
int sr_virtio_view(const struct sr_record *rec, struct sr_virtio_state *s, struct sr_error *err);

/* ------------------------------------------------------------ disks */

/* A DISK record, decoded; paths NUL-terminated. */
struct sr_disk_info {
	uint32_t disk, flags;			/* SR_DISK_F_* */
	uint8_t cache;				/* enum sr_disk_cache */
	uint8_t snap_method;			/* enum sr_snap_method */
	uint64_t snap_ns;
	struct sr_disk_id id, snap_id;
	char path[SR_DISK_PATH_MAX + 1];
	char snap_path[SR_DISK_PATH_MAX + 1];	/* "" without SNAPSHOT */
};

/* Writes a DISK record (after DOMAIN, before the DEVICE that names it). */
int sr_write_disk(struct sr_writer *w, const struct sr_disk_info *d, struct sr_error *err);

/* Decodes a DISK record the reader has validated. */
void sr_disk_view(const struct sr_record *rec, struct sr_disk_info *d);

/* ------------------------------------------------ synthetic image generator */

/*
 * Writes a complete image from synthetic guest memory through the same
 * writer calls sr-save makes.  Used by tests and benchmarks.
 */
struct sr_gen_params {
	uint64_t mem_bytes;		/* guest RAM, multiple of 4096 */
	uint32_t vcpus;
	uint32_t iterations;		/* pre-copy rounds after round 0 */
	uint32_t dirty_pages;		/* pages re-sent per later round */
	enum sr_compress compress;
	uint64_t seed;
	/* Page mix in percent; the rest is random data. */
	unsigned pct_zero, pct_text;
	/* The last pct_hole% of RAM was never touched: zero, sent in round 0 as zero runs. */
	unsigned pct_hole;
	/*
	 * Pages skip_first .. skip_first + skip_pages - 1 (before the hole) are
	 * sent in no round: an image that lacks them, which a reader refuses.
	 */
	uint64_t skip_first, skip_pages;
	unsigned writer_flags;		/* SR_WRITER_* */
	/*
	 * RAM in this many regions (0: one), of equal size but the last, each
	 * followed by a gap of its own size in guest-physical space.
	 */
	unsigned regions;
	/*
	 * Devices after the serial8250: blk virtio-blk devices (each on a DISK
	 * record of its own) and rng virtio-rng devices, in a state a driver
	 * leaves them in (features negotiated, queues ready in region 0).
	 * broken (SR_GEN_BREAK_*) spoils the first virtio device on purpose.
	 */
	unsigned blk, rng;
	/*
	 * Each DISK record carries a snapshot (§3.8.3, as sr-save -c
	 * --disk-snapshot writes it); a SNAP_* break implies it.
	 */
	bool snapshot;
	unsigned broken;
};

/* What sr_gen_params.broken spoils in the first virtio device; each a reader must refuse. */
#define SR_GEN_BREAKS(X)						\
	X(NONE,         "none")						\
	X(RING_OUTSIDE, "ring-outside")	/* used ring past the end of guest RAM */ \
	X(QSIZE3,       "qsize3")	/* queue size 3 */		\
	X(INDEX,        "index")	/* last_avail_idx size + 1 past last_used_idx */ \
	X(UNALIGNED,    "unaligned")	/* descriptor table at 8 mod 16 */ \
	X(INFLIGHT,     "inflight")	/* one request in flight: not drained */ \
	X(FEATURE,      "feature")	/* driver accepted a feature never offered */ \
	X(UNKNOWN_BIT,  "unknown-bit")	/* a device feature bit the spec does not know */ \
	X(SLOT,         "slot")		/* two devices in one PCI slot */ \
	X(NO_DISK,      "no-disk")	/* virtio-blk names a disk with no DISK record */ \
	X(VERSION,      "version")	/* state version 2.0 */		\
	X(SECTION,      "section")	/* an unknown mandatory section */ \
	X(OPTIONAL,     "optional")	/* an unknown optional section: valid, skipped */ \
	X(DISK_PATH,    "disk-path")	/* DISK path not absolute */	\
	X(SNAP_RO,      "snap-ro")	/* a snapshot of a read-only disk */ \
	X(SNAP_SIZE,    "snap-size")	/* snapshot's size not the disk's */ \
	X(SNAP_HASH,    "snap-hash")	/* snapshot's hash not the disk's */ \
	X(SNAP_SAMPLE,  "snap-sample")	/* snapshot hashed otherwise than the disk */ \
	X(SNAP_SELF,    "snap-self")	/* the snapshot's path is the disk's */

enum sr_gen_break {
#define SR_X_ENUM(name, text) SR_GEN_BREAK_##name,
	SR_GEN_BREAKS(SR_X_ENUM)
#undef SR_X_ENUM
};

/* SR_GEN_BREAK_* for a name ("qsize3"), or -1. */
int sr_gen_break_from_name(const char *name);

/*
 * A virtio device of type device_id in the state a driver leaves it in,
 * its rings in guest RAM at ring_base (three pages per queue); virtio-blk
 * on disk `disk` of disk_size bytes.  What sr_gen_write() writes.
 */
void sr_gen_virtio(struct sr_virtio_state *s, uint32_t device_id, uint32_t instance,
		   uint8_t slot, uint64_t ring_base, uint32_t disk, uint64_t disk_size);

/* Fills mem with the page mix of p (deterministic for a seed). */
void sr_gen_fill(void *mem, uint64_t bytes, const struct sr_gen_params *p);

/*
 * Writes a whole image of mem (p->mem_bytes, filled by the caller): round 0
 * sends every page, each later round rewrites p->dirty_pages pages of mem
 * and sends them again.
 */
int sr_gen_write(int fd, const struct sr_gen_params *p, void *mem,
		 struct sr_error *err);

/* Allocates and fills memory with sr_gen_fill(), then sr_gen_write(). */
int sr_gen_image(int fd, const struct sr_gen_params *p, struct sr_error *err);

#endif /* SR_H */
