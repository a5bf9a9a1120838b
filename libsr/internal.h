/* SPDX-License-Identifier: MIT */
/* libsr internals shared between its files; not installed. */
#ifndef SR_INTERNAL_H
#define SR_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>

/*
 * xxhash from the system library; on x86-64 its _dispatch entry points
 * pick SSE2, AVX2 or AVX-512 at run time.
 */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif

#include "sr.h"

struct sr_block_spec {
	uint32_t kind;
	const char *name;
	uint32_t scope;
	uint32_t min_len, max_len, granule;
};

extern const struct sr_block_spec sr_block_specs[];
extern const unsigned sr_block_spec_count;

const struct sr_block_spec *sr_block_spec_find(uint32_t kind);
uint32_t sr_rec_min_length(uint32_t type);

/* Fills err (when non-NULL) and returns -1. */
int sr_set_error(struct sr_error *err, enum sr_err_code code, uint64_t index,
		 uint64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Checks a DISK record's body (device.c) and adds the disk to env. */
int sr_disk_rec_check(struct sr_device_env *env, const void *body, uint32_t len,
		      struct sr_error *err);

static inline uint32_t sr_pad8(uint32_t len)
{
	return (SR_REC_ALIGN - (len & (SR_REC_ALIGN - 1))) & (SR_REC_ALIGN - 1);
}

/*
 * A record whose checksum was computed elsewhere (a worker): the body is
 * written as is, hash as its checksum.  sr_record_hash() is that checksum;
 * the body must not change in between.  sr_writer_hashes() is false for an
 * SR_WRITER_NO_HASH writer, whose checksums are 0.
 */
int sr_write_record_hashed(struct sr_writer *w, uint32_t type, const struct iovec *iov, int n,
			   uint64_t hash, struct sr_error *err);
uint64_t sr_record_hash(uint32_t type, const struct iovec *iov, int n);
bool sr_writer_hashes(const struct sr_writer *w);

/*
 * Batches for the pipe (batch.c): a deferred batch only records each
 * page's pfn and source on sr_batch_add(); sr_batch_encode() does the
 * encoding later (on a worker); sr_batch_iov() lays out the record.
 */
void sr_batch_defer(struct sr_batch *b);
void sr_batch_encode(struct sr_batch *b);
int sr_batch_iov(struct sr_batch *b, struct sr_rec_page_data *hdr, struct iovec *iov);

#include "pool.h"

#endif
