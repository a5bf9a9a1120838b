/* SPDX-License-Identifier: MIT */
/* hvmctx internals shared between its files; not installed. */
#ifndef HVMCTX_PRIV_H
#define HVMCTX_PRIV_H

#include <stdint.h>
#include <time.h>

#include "sr.h"
#include "xc.h"

#define MSR_IA32_TSC		0x10
#define MSR_IA32_TSC_DEADLINE	0x6e0

/* KVM's paravirtual MSRs, carried besides KVM_GET_MSR_INDEX_LIST (vcpu.c). */
extern const uint32_t hvmctx_pv_msrs[];
extern const unsigned hvmctx_n_pv_msrs;

/*
 * CPU compatibility (cpu.c): the image's CPUID feature bits and MSR list
 * against what this host's KVM offers; fails naming what is missing.
 */
int hvmctx_check_cpu(struct xc_domain *d, const struct sr_record *vcpu, struct xc_error *err);
int hvmctx_check_msrs(struct xc_domain *d, const struct sr_record *vcpu, struct xc_error *err);

/* Fills err for a guest this host's KVM cannot run: EOPNOTSUPP, no strerror (cpu.c). */
int hvmctx_host_lacks(struct xc_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* KVM_{HAS,GET,SET}_DEVICE_ATTR of the vCPU's KVM_VCPU_TSC_OFFSET (time.c). */
int hvmctx_tsc_offset_attr(struct xc_vcpu *v, unsigned long req, uint64_t *ofs);

/* Whether this vCPU's TSC runs at another rate than the host's (time.c). */
bool hvmctx_tsc_scaled(struct xc_vcpu *v);

/*
 * Sets guest time once every vCPU is loaded (time.c): kvmclock from the
 * HVM_CONTEXT record (saved_ns is the image's creation time), the TSC
 * offsets (carried, or aligned on vCPU 0), each armed TSC deadline again
 * against its final offset, then KVMCLOCK_CTRL on each vCPU.
 * vcpu[i] is vCPU i's VCPU_CONTEXT record.
 */
struct hvmctx_restore_stats;
int hvmctx_apply_time(struct xc_domain *d, const struct sr_record *hvm,
		      const struct sr_record *const *vcpu, enum hvmctx_clock_mode mode,
		      uint64_t saved_ns, struct hvmctx_restore_stats *st, struct xc_error *err);

static inline uint64_t hvmctx_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

#endif
