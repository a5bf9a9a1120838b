/* SPDX-License-Identifier: MIT */
/* hvmctx internals shared between its files; not installed. */
#ifndef HVMCTX_PRIV_H
#define HVMCTX_PRIV_H

#include <stdint.h>
#include <time.h>

#include "sr.h"
#include "xc.h"

/* KVM's paravirtual MSRs, carried besides KVM_GET_MSR_INDEX_LIST (vcpu.c). */
extern const uint32_t hvmctx_pv_msrs[];
extern const unsigned hvmctx_n_pv_msrs;

/*
 * CPU compatibility (cpu.c): the image's CPUID feature bits and MSR list
 * against what this host's KVM offers; fails naming what is missing.
 */
int hvmctx_check_cpu(struct xc_domain *d, const struct sr_record *vcpu, struct xc_error *err);
int hvmctx_check_msrs(struct xc_domain *d, const struct sr_record *vcpu, struct xc_error *err);

static inline uint64_t hvmctx_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

#endif
