/* SPDX-License-Identifier: MIT */
/* libsr internals shared between its files; not installed. */
#ifndef SR_INTERNAL_H
#define SR_INTERNAL_H

#include <stdarg.h>

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

static inline uint32_t sr_pad8(uint32_t len)
{
	return (SR_REC_ALIGN - (len & (SR_REC_ALIGN - 1))) & (SR_REC_ALIGN - 1);
}

#endif
