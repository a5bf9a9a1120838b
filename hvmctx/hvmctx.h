/* SPDX-License-Identifier: MIT */
/*
 * hvmctx: capture and replay of a domain's state, and the save and restore
 * cores built on it.
 *
 * Every piece of state (a KVM structure, an MSR set) has one capture and
 * one apply function and one sr block kind, in one table (vcpu.c, vm.c).
 * The save core writes an sr image of a paused domain; the restore core
 * reads one into a fresh domain and leaves its vCPUs ready to run.  Like
 * every library here it never prints and never exits.
 */
#ifndef HVMCTX_H
#define HVMCTX_H

#include <stdbool.h>
#include <stdint.h>

#include "sr.h"
#include "xc.h"

/* A captured context: blocks pointing into memory the set owns. */
#define HVMCTX_MAX_BLOCKS 24

struct hvmctx_set {
	struct sr_block blk[HVMCTX_MAX_BLOCKS];
	void *owned[HVMCTX_MAX_BLOCKS];
	unsigned n;
};

void hvmctx_set_free(struct hvmctx_set *s);

/*
 * VM-wide state: PIT, PIC master and slave, IOAPIC, kvmclock, TSC kHz.
 * The clock is read by hvmctx_capture_clock(), at pause time.
 */
int hvmctx_capture_vm(struct xc_domain *d, const struct kvm_clock_data *clock,
		      struct hvmctx_set *out, struct xc_error *err);
int hvmctx_capture_clock(struct xc_domain *d, struct kvm_clock_data *clock,
			 struct xc_error *err);

/*
 * The MSRs a save carries: KVM's index list and the paravirtual range,
 * those vCPU v reads with the CPUID it has now, one ioctl each.  Made
 * before the domain runs (a vCPU ioctl waits while its vCPU is in
 * KVM_RUN), so a save's paused window does not pay for the probing; the
 * vCPUs of a domain share one CPUID, so one list serves them all.
 */
struct hvmctx_msr_list;
struct hvmctx_msr_list *hvmctx_msr_list_make(struct xc_vcpu *v, struct xc_error *err);
void hvmctx_msr_list_free(struct hvmctx_msr_list *l);

/*
 * Per-vCPU state, in capture order: MP state first, events last.  msrs:
 * from hvmctx_msr_list_make(), or NULL to probe the list here.
 */
int hvmctx_capture_vcpu(struct xc_vcpu *v, const struct hvmctx_msr_list *msrs,
			struct hvmctx_set *out, struct xc_error *err);

/*
 * Applies a validated HVM_CONTEXT record's PIT and irqchips (the TSC rate
 * and the clock have their own calls).
 */
int hvmctx_apply_vm(struct xc_domain *d, const struct sr_record *rec, struct xc_error *err);

/*
 * Sets the image's TSC rate on a new vCPU when this host's differs by more
 * than 250 ppm; must precede hvmctx_apply_vcpu() (the TSC MSR).
 */
int hvmctx_apply_tsc_khz(struct xc_vcpu *v, const struct sr_record *hvm, struct xc_error *err);

/* Applies a validated VCPU_CONTEXT record in restore order, then reads back to confirm. */
int hvmctx_apply_vcpu(struct xc_vcpu *v, const struct sr_record *rec, struct xc_error *err);

enum hvmctx_clock_mode {
	HVMCTX_CLOCK_ADVANCE,		/* guest time moves on by the wall time that passed */
	HVMCTX_CLOCK_FREEZE,		/* guest time resumes where it stopped */
};

/* ------------------------------------------------------------ save */

struct hvmctx_device {
	const char *name;
	uint32_t version, instance;
	const void *data;
	size_t len;
};

/* One pre-copy round, as reported to the caller and written as ITERATION. */
struct hvmctx_round {
	uint32_t iteration;
	bool final;
	uint64_t pages_sent;
	uint64_t pages_dirtied;		/* dirty when the round ended */
	uint64_t bytes;			/* stream bytes of the round */
	uint64_t duration_ns;
	unsigned throttle_pct;		/* the most any vCPU was throttled in the round */
};

enum hvmctx_throttle {
	HVMCTX_THROTTLE_AUTO = 0,	/* slow vCPUs down when pre-copy does not converge */
	HVMCTX_THROTTLE_OFF,
};

struct hvmctx_save_opts {
	enum sr_compress compress;
	unsigned threads;		/* workers encoding and hashing page batches; 0: none */
	void (*thread_start)(void *thread_arg);	/* optional: first on each worker */
	void *thread_arg;
	uint64_t bandwidth;		/* bytes/s the stream may take (a shared link); 0: all */
	const char *creator;
	uint32_t guest_kind;		/* SR_GUEST_* */
	const char *name;
	const uint8_t *uuid;		/* 16 bytes or NULL */
	uint64_t boot_entry, boot_arg;
	const struct hvmctx_device *devices;
	unsigned ndevices;
	/*
	 * DISK records, written just before the DEVICE records (so after
	 * capture_devices, which may fill them in: a disk's identity and
	 * snapshot are taken while the domain is paused and drained).
	 */
	const struct sr_disk_info *disks;
	unsigned ndisks;
	/* The MSRs to carry, made before the domain ran; NULL: probed while paused. */
	const struct hvmctx_msr_list *msrs;
	/* Called once the domain is paused, just before the DEVICE records are written. */
	void (*capture_devices)(void *arg);
	/*
	 * Optional, live: called after the last pre-copy round, the domain
	 * still running, just before it is paused, so that work the capture
	 * would do paused can be done ahead (a disk's sampled identity).
	 */
	void (*before_pause)(void *arg);
	/* Non-zero aborts the save; a write stuck on it gives up when signalled. */
	const volatile int *cancel;
	/* Called about every 1024 pages; returning non-zero aborts the save. */
	int (*progress)(void *arg, uint64_t pages_done, uint64_t pages_total, uint64_t bytes);
	void *progress_arg;

	/*
	 * Live save: the domain runs while its memory is copied; rounds re-send
	 * what it dirtied; the domain is paused only for the last remainder.
	 * Stop when the remainder fits downtime_ms at the measured rate, after
	 * max_iters rounds, when the dirty set stops shrinking, or when
	 * max_bytes_factor x RAM has been written.
	 */
	bool live;
	enum xc_dirty_mode dirty_mode;
	uint32_t downtime_ms;		/* 0: 50 */
	uint32_t max_iters;		/* 0: 30 */
	uint32_t max_bytes_factor;	/* 0: 3; checked after every batch */
	uint64_t max_bytes;		/* nonzero: the cap in bytes, instead of the factor */
	/*
	 * Auto-converge: after a round whose dirty set did not halve, the vCPUs
	 * (with the dirty ring: those that did the dirtying) are throttled,
	 * from 20% (or what the round's dirty/sent ratio calls for) up by at
	 * least 10 points a round to 99%; off again when the save ends.
	 */
	enum hvmctx_throttle throttle;
	void (*round)(void *arg, const struct hvmctx_round *r);
};

#define HVMCTX_DEFAULT_DOWNTIME_MS	50
#define HVMCTX_DEFAULT_MAX_ITERS	30
#define HVMCTX_DEFAULT_BYTES_FACTOR	3

struct hvmctx_save_stats {
	uint64_t pages, zero, raw, lz4;	/* pages sent, all rounds */
	uint64_t bytes;			/* stream bytes */
	uint64_t mem_bytes;		/* guest RAM */
	uint64_t duration_ns;
	uint32_t rounds;		/* including the final one */
	uint64_t downtime_ns;		/* pause to END written */
	uint64_t paused_at_ns;		/* live: CLOCK_MONOTONIC when the final round paused it */
	uint64_t capture_ns;		/* of which reading CPU and device state */
	/* The pause by phase (live: the final round; cold: from the capture on). */
	uint64_t pause_ns;		/* live: vCPUs stopped, the paused hook run, clock read */
	uint64_t capture_vm_ns, capture_vcpu_ns, capture_dev_ns;	/* capture_ns's parts */
	uint64_t final_pages_ns;	/* the dirty log read and the last pages sent */
	uint64_t state_ns;		/* contexts, DISK, DEVICE and END written */
	uint64_t downtime_target_ns;
	const char *stop_reason;	/* live: why pre-copy stopped */
	unsigned max_throttle_pct;	/* live: the most any vCPU was throttled */
	uint64_t throttled_ns;		/* live: vCPU time kept out, all vCPUs */
};

/*
 * Writes an sr image of d to fd.  Cold (o->live false): the domain must be
 * paused and stays paused.  Live: the domain must be running; it is paused
 * for the final round and left paused.  On failure dirty logging is off
 * again and the domain is running or paused exactly as it was on entry.
 */
int hvmctx_save(struct xc_domain *d, int fd, const struct hvmctx_save_opts *o,
		struct hvmctx_save_stats *st, struct xc_error *err);

/* ----------------------------------------------------------- restore */

struct hvmctx_restore;

/* What DOMAIN says, for building the domain. */
struct hvmctx_image {
	uint32_t guest_kind, vcpus, nregions;
	struct sr_region regions[SR_MAX_REGIONS];
	char name[64];
	uint8_t uuid[16];
	uint64_t boot_entry, boot_arg;
	uint64_t created_ns;
	char creator[24];
};

/*
 * Reads and checks the image header and DOMAIN record from fd.  Errors in
 * the image are reported as "record N (TYPE) at offset X: reason" with
 * err->sys_errno set to EBADMSG.
 */
struct hvmctx_restore *hvmctx_restore_begin(int fd, struct hvmctx_image *img,
					    struct xc_error *err);

struct hvmctx_restore_opts {
	enum hvmctx_clock_mode clock;
	/* A DEVICE record; return non-zero (with err set) to refuse it. */
	int (*device)(void *arg, const char *name, uint32_t version, uint32_t instance,
		      const void *data, size_t len, struct xc_error *err);
	void *device_arg;
	/* Threads that verify and decode page data while the next is read; 0: none. */
	unsigned threads;
	void (*thread_start)(void *thread_arg);	/* optional: first on each of them */
	void *thread_arg;
	/*
	 * A DISK record, once the image has verified and before any vCPU
	 * exists or any DEVICE is given (check the disk's identity here);
	 * return non-zero (with err set) to refuse it.  NULL: an image with a
	 * DISK is refused.
	 */
	int (*disk)(void *arg, const struct sr_disk_info *disk, struct xc_error *err);
	void *disk_arg;
	/*
	 * Optional: once every DISK record was given (ndisks of them, maybe 0),
	 * still before any vCPU exists; non-zero (with err set) refuses the
	 * image (a restorer told of disks the image does not have).
	 */
	int (*disks_done)(void *arg, unsigned ndisks, struct xc_error *err);
	/* Optional: after each record read, the stream's bytes so far (on the reading thread). */
	void (*progress)(void *arg, uint64_t bytes);
	void *progress_arg;
};

struct hvmctx_restore_stats {
	uint64_t pages, records, bytes;
	uint64_t placed, buffered;	/* PAGE_DATA records read straight to memory, or not */
	uint64_t stream_ns;		/* from the first byte of pages to END verified */
	int64_t clock_jump_ns;
	enum hvmctx_tsc {
		HVMCTX_TSC_AS_WRITTEN,	/* the TSC MSR as the image had it, nothing more */
		HVMCTX_TSC_ALIGNED,	/* that, with every vCPU's offset made vCPU 0's */
		HVMCTX_TSC_FROM_MSR,	/* vCPU 0's saved TSC moved on with kvmclock, for all */
		HVMCTX_TSC_CARRIED,	/* the saved offsets carried over (KVM's algorithm) */
	} tsc;
	const char *tsc_why;		/* why not carried, or NULL */
	uint64_t duration_ns;
};

/*
 * Fills d (created with img->vcpus vCPUs allowed and no vCPU yet) from the
 * rest of the stream: adds the regions, writes pages as they arrive, and
 * after END has verified applies the HVM state, creates and loads each
 * vCPU in turn (confirming its registers), then sets kvmclock and the TSC
 * offsets.  The vCPUs are then ready for xc_domain_start().  On failure no
 * vCPU has run and the caller destroys d.  An error in the stream carries
 * EBADMSG; a guest this host's KVM cannot run (CPU features, MSRs, TSC
 * rate, XSAVE size) carries EOPNOTSUPP, so a receiver can tell its source
 * the kind without the details.
 */
int hvmctx_restore_finish(struct hvmctx_restore *rs, struct xc_domain *d,
			  const struct hvmctx_restore_opts *o, struct hvmctx_restore_stats *st,
			  struct xc_error *err);

/* The stream goes on after END (a migration's handshake): never read past it. */
void hvmctx_restore_stop_at_end(struct hvmctx_restore *rs);

void hvmctx_restore_free(struct hvmctx_restore *rs);

#endif /* HVMCTX_H */
