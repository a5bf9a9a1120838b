/* SPDX-License-Identifier: MIT */
/*
 * xc: domain control over /dev/kvm.
 *
 * A domain is a KVM VM with an in-kernel irqchip and PIT, guest RAM in
 * memfd-backed regions, and vCPUs that each run on their own thread.  The
 * library never prints and never exits: failures come back as struct
 * xc_error, and what the guest does comes back through an ops table and an
 * event fd the caller polls.
 */
#ifndef XC_H
#define XC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "x86_layout.h"

struct xc_error {
	int sys_errno;			/* errno of the failing call, or 0 */
	char msg[256];
};

/* Fills err and returns -1. */
int xc_set_error(struct xc_error *err, int sys_errno, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define XC_MAX_VCPUS	64
#define XC_MAX_REGIONS	8

/* Fixed addresses KVM needs on x86 below 4 GiB, in the hole (x86_layout.h). */
#define XC_IDENTITY_MAP_ADDR	X86_IDENTITY_MAP_ADDR
#define XC_TSS_ADDR		X86_TSS_ADDR

struct xc_domain;
struct xc_vcpu;

/* What a vCPU thread does after an exit handler returns. */
enum xc_action {
	XC_CONTINUE = 0,		/* re-enter the guest */
	XC_PARK,			/* stop this vCPU until xc_domain_resume() */
	XC_STOP,			/* the domain is finished (status set) */
};

/*
 * Exit handlers, called on the vCPU's thread.  data is the I/O buffer inside
 * kvm_run; for an "in" the handler fills it.  A NULL handler treats the exit
 * as an error that stops the domain.
 */
struct xc_exit_ops {
	enum xc_action (*pio)(void *opaque, struct xc_vcpu *v, uint16_t port, bool out,
			      void *data, unsigned size, unsigned count);
	enum xc_action (*mmio)(void *opaque, struct xc_vcpu *v, uint64_t gpa, bool write,
			       void *data, unsigned len);
};

/* Why a domain stopped. */
enum xc_stop_reason {
	XC_RUNNING = 0,
	XC_STOP_GUEST,			/* a handler returned XC_STOP */
	XC_STOP_SHUTDOWN,		/* triple fault / KVM_EXIT_SHUTDOWN */
	XC_STOP_ERROR,			/* internal error, failed entry, unhandled exit */
	XC_STOP_DESTROYED,		/* xc_domain_stop() */
};

struct xc_domain_config {
	unsigned vcpus;
	const struct xc_exit_ops *ops;
	void *opaque;			/* handed to every ops call */
	bool dirty_ring;		/* track dirty pages with per-vCPU rings
					   (KVM_CAP_DIRTY_LOG_RING) instead of bitmaps */
	const long *extra_caps;		/* further KVM_CAP_* the caller relies on */
	unsigned n_extra_caps;
	/* Optional: runs on each vCPU thread before its first KVM_RUN (a tool's sandbox). */
	void (*thread_start)(void *opaque, struct xc_vcpu *v);
	/*
	 * Optional, for device models: paused runs once per pause, every vCPU
	 * parked, before the pause returns (devices drain their requests, so a
	 * save that follows sees what they wrote); resuming runs before the
	 * vCPUs run again (devices re-kick their queues).  pausing runs as a
	 * pause of a running domain begins, the vCPUs just kicked, and must not
	 * block: devices are asked to stop there, so they finish the request in
	 * hand while the vCPUs leave the guest and paused finds them done.  All
	 * under the domain's run lock: they must not call back into pause or
	 * resume.
	 */
	void (*pausing)(void *opaque);
	void (*paused)(void *opaque);
	void (*resuming)(void *opaque);
};

/*
 * Opens /dev/kvm, checks every capability sr needs (the error names each
 * missing one), creates the VM with its TSS, identity map, irqchip and PIT2.
 */
struct xc_domain *xc_domain_create(const struct xc_domain_config *cfg,
				   struct xc_error *err);

/* Stops every vCPU thread and frees everything, guest memory included. */
void xc_domain_destroy(struct xc_domain *d);

int xc_domain_vm_fd(const struct xc_domain *d);
unsigned xc_domain_vcpus(const struct xc_domain *d);

/* ------------------------------------------------------------ memory */

/*
 * Adds RAM at gpa (page aligned) backed by a fresh memfd mapped MAP_SHARED.
 * Slots are numbered from 0 in the order regions are added.  RAM over the
 * fixed pages below 4 GiB (IOAPIC, LAPIC, KVM's identity map and TSS) or
 * past what the guest can address (xc_guest_phys_bits) is refused.
 */
int xc_mem_add(struct xc_domain *d, uint64_t gpa, uint64_t size, struct xc_error *err);

/*
 * Adds bytes of guest RAM laid out as x86_layout.h says: one region from 0
 * up to 3 GiB, the rest as a second region from 4 GiB.
 */
int xc_mem_add_ram(struct xc_domain *d, uint64_t bytes, struct xc_error *err);

/*
 * The guest-physical address bits the vCPUs get (CPUID 0x80000008 EAX[7:0]
 * of what KVM offers; 36 when it does not say): RAM must end below 2^bits.
 */
unsigned xc_guest_phys_bits(const struct xc_domain *d);

struct xc_region {
	unsigned slot;
	uint64_t gpa, size;
	uint8_t *hva;
	int memfd;
	bool dirty_log;
};
unsigned xc_mem_regions(const struct xc_domain *d, const struct xc_region **regions);

/*
 * Hands [off, off+len) of a region's memory back to the host (a hole punched
 * in its memfd): it reads as zero again and costs no memory.
 */
int xc_mem_discard(struct xc_domain *d, unsigned slot, uint64_t off, uint64_t len,
		   struct xc_error *err);

/*
 * Allocates and maps [off, off+len) of a region now, in one call, so that
 * writing it next takes no page fault per page (a restore about to fill a
 * run of pages).  -1 when the kernel cannot (before Linux 5.14) or the
 * range is outside the region; the writes then fault pages in as usual.
 */
int xc_mem_prefault(struct xc_domain *d, unsigned slot, uint64_t off, uint64_t len);

/* Host address for [gpa, gpa+len) if it lies inside one region, else NULL. */
void *xc_gpa_to_hva(const struct xc_domain *d, uint64_t gpa, uint64_t len);

/* ------------------------------------------------------------- vCPUs */

/*
 * Creates vCPU id and sets its CPUID from KVM_GET_SUPPORTED_CPUID with the
 * per-vCPU APIC ids filled in.  vCPUs must be created in id order.
 */
struct xc_vcpu *xc_vcpu_create(struct xc_domain *d, unsigned id, struct xc_error *err);
struct xc_vcpu *xc_vcpu_get(const struct xc_domain *d, unsigned id);
int xc_vcpu_fd(const struct xc_vcpu *v);
unsigned xc_vcpu_id(const struct xc_vcpu *v);
/* The TSC rate (kHz) KVM gave the vCPU when it was made, the host's; 0 if KVM would not say. */
uint32_t xc_vcpu_native_tsc_khz(const struct xc_vcpu *v);
struct kvm_run *xc_vcpu_run_area(const struct xc_vcpu *v);

/* The CPUID KVM offers, as set on new vCPUs (owned by the domain). */
const struct kvm_cpuid2 *xc_domain_cpuid(const struct xc_domain *d);

/*
 * Starts one thread per created vCPU.  With start_paused, the threads wait
 * for xc_domain_resume() before the first KVM_RUN.
 */
int xc_domain_start(struct xc_domain *d, bool start_paused, struct xc_error *err);

/*
 * Pauses every vCPU: returns once each is out of KVM_RUN and parked.
 * Pausing a paused domain is a no-op.
 */
int xc_domain_pause(struct xc_domain *d, struct xc_error *err);
int xc_domain_resume(struct xc_domain *d, struct xc_error *err);
bool xc_domain_paused(const struct xc_domain *d);

/* Ends the domain: every vCPU stops and its thread is joined. */
void xc_domain_stop(struct xc_domain *d);

/*
 * An eventfd that becomes readable when a vCPU parked itself (XC_PARK) or
 * the domain stopped.  Read it with xc_domain_event().
 */
int xc_domain_event_fd(const struct xc_domain *d);

struct xc_event {
	enum xc_stop_reason stopped;	/* XC_RUNNING while it still runs */
	int status;			/* XC_STOP_GUEST: the status set by the handler */
	unsigned parked;		/* vCPUs that parked themselves, as a count */
	char msg[256];			/* XC_STOP_SHUTDOWN / XC_STOP_ERROR: what happened */
};
void xc_domain_event(struct xc_domain *d, struct xc_event *ev);

/* Sets the status reported with XC_STOP (call from a handler). */
void xc_domain_set_status(struct xc_domain *d, int status);
struct xc_domain *xc_vcpu_domain(const struct xc_vcpu *v);

/* --------------------------------------------------------- dirty log */

enum xc_dirty_mode {
	XC_DIRTY_BITMAP,		/* KVM_GET_DIRTY_LOG fetches and clears */
	XC_DIRTY_CLEAR,			/* manual protect: KVM_CLEAR_DIRTY_LOG clears */
	XC_DIRTY_RING,			/* per-vCPU dirty rings (domain created with dirty_ring) */
};

/* Which modes this kernel offers. */
bool xc_dirty_mode_supported(const struct xc_domain *d, enum xc_dirty_mode mode);

/* Turns dirty logging on or off for one region (memory slot). */
int xc_dirty_log_enable_region(struct xc_domain *d, unsigned slot, enum xc_dirty_mode mode,
				bool on, struct xc_error *err);

/*
 * Turns dirty logging on or off for every region.  Mode XC_DIRTY_CLEAR must
 * be chosen before the first enable and stays for the domain's life.
 */
int xc_dirty_log_enable(struct xc_domain *d, enum xc_dirty_mode mode, bool on,
			struct xc_error *err);

/*
 * Fetches the dirty bitmap of a region (one bit per page, bit i = page
 * gpa + i * 4096) into bitmap, which holds size/4096 bits rounded up to 64.
 * In XC_DIRTY_BITMAP mode the fetch also re-arms tracking; in XC_DIRTY_CLEAR
 * mode pages stay dirty until xc_dirty_log_clear().  In XC_DIRTY_RING mode
 * every vCPU's ring is harvested and reset first (a vCPU whose ring fills
 * harvests on its own), so the bitmap holds every page dirtied since the
 * previous fetch and tracking is re-armed.
 */
int xc_dirty_log_get(struct xc_domain *d, unsigned slot, uint64_t *bitmap,
		     struct xc_error *err);

/*
 * Pages the host wrote into guest memory (a device model's used rings and
 * read data), which KVM's dirty log never sees: marked here while the
 * region logs dirty pages, and ORed into what xc_dirty_log_get() returns.
 * Lock-free; any thread.  Addresses outside RAM are ignored.
 */
void xc_mark_dirty(struct xc_domain *d, uint64_t gpa, uint64_t len);

/* Re-arms tracking for pages [first, first + count) whose bits are set in mask. */
int xc_dirty_log_clear(struct xc_domain *d, unsigned slot, uint64_t first, uint32_t count,
		       const uint64_t *mask, struct xc_error *err);

/* ---------------------------------------------------------- throttle */

/*
 * Auto-converge: a throttled vCPU is kept out of KVM_RUN for pct% of each
 * period (10 ms of running and the rest out, as QEMU's cpu-throttle), so a
 * guest that dirties memory faster than a save can send it slows down.
 * 0 turns it off.  Safe from any thread; pause and stop end a throttle sleep.
 */
#define XC_THROTTLE_MAX	99
int xc_vcpu_set_throttle(struct xc_vcpu *v, unsigned pct);
void xc_domain_set_throttle(struct xc_domain *d, unsigned pct);
unsigned xc_vcpu_throttle(const struct xc_vcpu *v);
/*
 * Total time the vCPU has been kept out by its throttle, and the part of it
 * that its sleeps overran their share (the thread woke late: host load).
 */
uint64_t xc_vcpu_throttled_ns(struct xc_vcpu *v);
uint64_t xc_vcpu_throttle_late_ns(struct xc_vcpu *v);

/*
 * Dirty-ring entries harvested from this vCPU so far (wraps at 2^32): the
 * difference between two reads is what it dirtied in between.
 */
uint32_t xc_vcpu_dirty_harvested(const struct xc_vcpu *v);

/* -------------------------------------------------------------- boot */

/* Copies a flat image file into guest RAM at gpa; returns its size or -1. */
long xc_load_file(struct xc_domain *d, const char *path, uint64_t gpa, uint64_t max,
		  struct xc_error *err);

/* Whether path starts with the ELF magic. */
bool xc_is_elf(const char *path);

/*
 * Loads the PT_LOAD segments of an x86-64 ELF executable at their physical
 * addresses (p_paddr), zero-filling up to p_memsz, and returns e_entry.
 * Every segment and the entry must lie inside [lo, hi); the whole file is
 * checked before anything is copied.
 */
int xc_load_elf(struct xc_domain *d, const char *path, uint64_t lo, uint64_t hi, uint64_t *entry,
		struct xc_error *err);

/* Puts a vCPU in 32-bit flat protected mode (paging off) at entry. */
int xc_vcpu_boot_pm32(struct xc_vcpu *v, uint64_t entry, struct xc_error *err);

/* A PCI function's INTx line, for the MP table: bus 0, slot, pin 1..4 (INTA..D), IOAPIC pin. */
struct xc_pci_intx {
	uint8_t slot, pin, ioapic_pin;
};

/* Linux x86-64 boot protocol (xc/linux.c). */
struct xc_linux_boot {
	const char *kernel;		/* bzImage */
	const char *initrd;		/* or NULL */
	const char *cmdline;
	const struct xc_pci_intx *pci_intx;	/* PCI interrupt routing; may be empty */
	unsigned n_pci_intx;
};

/*
 * Loads kernel, initrd and command line into RAM at gpa 0 (at least 128
 * MiB; RAM above the hole, at 4 GiB, goes into the e820 map as well),
 * writes boot_params with an e820 map, an MP table for all vCPUs,
 * page tables and a GDT, and puts vCPU 0 (created) in long mode at the
 * 64-bit entry.  *entry receives the entry address.
 */
int xc_linux_boot(struct xc_domain *d, const struct xc_linux_boot *b, uint64_t *entry,
		  struct xc_error *err);

/* --------------------------------------------------------- capability */

/* The /dev/kvm fd (system ioctls such as KVM_GET_MSR_INDEX_LIST). */
int xc_domain_kvm_fd(const struct xc_domain *d);

/* KVM_CHECK_EXTENSION on the VM (falls back to /dev/kvm). */
int xc_check_cap(const struct xc_domain *d, long cap);

/* -------------------------------------------------------- host probe */

/* The module behind /dev/kvm. */
enum xc_kvm_flavour {
	XC_KVM_NONE,			/* no KVM module loaded */
	XC_KVM_INTEL,			/* kvm_intel: VMX */
	XC_KVM_AMD,			/* kvm_amd: SVM */
	XC_KVM_PVM,			/* kvm_pvm: paravirtual, runs only PVM-enabled kernels */
	XC_KVM_OTHER,			/* kvm without a vendor module sr knows */
};
const char *xc_kvm_flavour_name(enum xc_kvm_flavour f);

#define XC_PROBE_BUDGET_MS	500
#define XC_PROBE_MAX_CAPS	32

struct xc_probe_opts {
	const char *sysfs;		/* where module/ lives; NULL: /sys */
	const char *dev;		/* NULL: /dev/kvm */
	unsigned budget_ms;		/* probe guest deadline; 0: XC_PROBE_BUDGET_MS */
};

struct xc_host {
	enum xc_kvm_flavour flavour;
	bool pvm_loaded;		/* kvm_pvm is loaded (even beside a vendor module) */
	bool dev_present;		/* /dev/kvm opened read-write */
	char dev_msg[128];		/* why it did not open */
	int dev_errno;			/* and open()'s errno (EACCES: not in the kvm group) */
	int api_version;		/* -1 when unknown */
	unsigned ncaps;
	struct {
		const char *name;	/* KVM_CAP_ without the prefix */
		bool required;		/* sr refuses to run without it */
		int value;		/* KVM_CHECK_EXTENSION; -1 not asked */
	} caps[XC_PROBE_MAX_CAPS];
	bool guest_ran;			/* the probe guest reached its port write */
	char guest_msg[160];		/* what the probe guest did */
	unsigned probe_us;		/* how long it took */
	bool usable;			/* sr's guests can run here */
	char why[400];			/* when not: one line, naming what to do */
	bool other_host;		/* when not: a host with kvm_intel or kvm_amd would do */
};

/*
 * Identifies the KVM module, reads the API version and the capabilities sr
 * uses, and runs a probe guest of a few instructions in a throwaway VM,
 * bounded by o->budget_ms.  Returns 0 when sr's guests can run here, -1
 * (h->why says why) when not.  Installs the vCPU kick signal handler.
 */
int xc_host_probe(struct xc_host *h, const struct xc_probe_opts *o);

#endif /* XC_H */
