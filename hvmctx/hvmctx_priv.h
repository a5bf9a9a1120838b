/* SPDX-License-Identifier: MIT */
/* hvmctx internals shared between its files; not installed. */
#ifndef HVMCTX_PRIV_H
#define HVMCTX_PRIV_H

#include <stdint.h>
#include <time.h>

static inline uint64_t hvmctx_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

#endif
