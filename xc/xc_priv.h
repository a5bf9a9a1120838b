/* SPDX-License-Identifier: MIT */
/* xc internals shared between its files; not installed. */
#ifndef XC_PRIV_H
#define XC_PRIV_H

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "xc.h"

static inline uint64_t xc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Signal that knocks a vCPU thread out of KVM_RUN. */
#define XC_KICK_SIGNAL	SIGUSR1

/*
 * The kick signal arrived on this thread (async-signal-safe; nothing on a
 * thread that runs no vCPU).  from_timer: the throttle timer sent it.
 */
void xc_vcpu_kicked(bool from_timer);

struct xc_domain {
	int kvm_fd, vm_fd, event_fd;
	int run_size;
	struct kvm_cpuid2 *cpuid;
	const struct xc_exit_ops *ops;
	void *opaque;
	void (*thread_start)(void *opaque, struct xc_vcpu *v);
	void (*pausing_hook)(void *opaque);
	void (*paused_hook)(void *opaque);
	void (*resuming_hook)(void *opaque);

	struct xc_region regions[XC_MAX_REGIONS];
	unsigned nregions;

	struct xc_vcpu *vcpu[XC_MAX_VCPUS];
	unsigned nvcpus, nvcpus_max;

	/* Run state, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started;
	bool pause_req, stop_req;
	unsigned parked;		/* vCPU threads parked right now */
	unsigned running_threads;
	enum xc_stop_reason stopped;
	int status;
	char stop_msg[256];
	struct kvm_pit_state2 pit;	/* read at the pause, put back at the resume */
	bool pit_held;

	/* Dirty log */
	bool manual_protect;
	uint32_t ring_entries;		/* 0: no dirty ring */
	pthread_mutex_t ring_lock;
	uint64_t *ring_bits[XC_MAX_REGIONS];	/* harvested, not yet fetched */
	uint64_t *host_bits[XC_MAX_REGIONS];	/* written by the host (xc_mark_dirty), atomics */
};

void xc_vcpu_free(struct xc_vcpu *v);
/* Installs the handler of XC_KICK_SIGNAL (no SA_RESTART, so KVM_RUN returns EINTR). */
int xc_install_kick_handler(struct xc_error *err);
/* Lists in buf the required capabilities (and extra ones) that kvm_fd lacks; returns how many. */
int xc_missing_caps(int kvm_fd, const long *extra, unsigned n_extra, char *buf, size_t len);
/* A flat 4 GiB code (type 0xb) or data (0x3) segment. */
void xc_flat_seg(struct kvm_segment *s, uint16_t sel, uint8_t type);
/* Harvests every vCPU's dirty ring into ring_bits and resets the rings. */
int xc_ring_harvest(struct xc_domain *d);
void *xc_vcpu_ring(const struct xc_vcpu *v, uint32_t *fetch_index);
void xc_vcpu_ring_advance(struct xc_vcpu *v, uint32_t n);
bool xc_vcpu_self_parked(const struct xc_vcpu *v);
void xc_post_event(struct xc_domain *d);
int xc_set_region_flags(struct xc_domain *d, struct xc_region *r, bool dirty_log,
			struct xc_error *err);

#endif
