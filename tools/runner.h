/* SPDX-License-Identifier: MIT */
/*
 * The runner of a domain: what sr-run and sr-restore become once a VM
 * exists.  It owns the console, the guest hypercalls, the control socket
 * and the main loop.
 */
#ifndef SR_RUNNER_H
#define SR_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#include "xc.h"

/* sr-run / sr-restore exit statuses beyond 0..2. */
#define EXIT_GUEST_FAIL		1	/* ASSERT, or DONE with a non-zero status */
#define EXIT_VM_ERROR		3	/* KVM error, unexpected shutdown */
#define EXIT_SIGNAL		4	/* ended by SIGINT/SIGTERM or sr-ctl destroy */

struct runner;

/* The threads a runner has, for runner_config.thread_start. */
enum runner_thread {
	RUNNER_THREAD_VCPU,
	RUNNER_THREAD_CONSOLE,		/* writes the guest's console out */
	RUNNER_THREAD_INPUT,		/* stdin into the UART */
	RUNNER_THREAD_SAVE,		/* a control-socket save */
	RUNNER_THREAD_SAVE_WORKER,	/* a save's page encoders */
	RUNNER_THREAD_CONTROL,		/* the calling thread, once the domain runs */
	RUNNER_THREAD_DEVICE,		/* a device model's I/O thread (hw/virtio_pci.c) */
};

struct virtio_blk_opts;
struct hw_bus;

struct runner_config {
	const char *name;		/* domain name; control socket NAME.sock */
	unsigned vcpus;
	uint64_t mem_bytes;
	bool test_guest;		/* strict port I/O: unknown ports stop the domain */
	const char *save_to;		/* target of a guest-requested SAVE, or NULL */
	bool verbose;
	bool dirty_ring;		/* create the VM with per-vCPU dirty rings */
	bool serial;			/* an 8250 UART at 0x3f8 (Linux guests) */
	bool pci;			/* a PCI bus on the conf1 ports (Linux guests) */
	const struct virtio_blk_opts *disks;	/* virtio-blk devices, in PCI slot order */
	unsigned ndisks;
	bool rng;			/* a virtio-rng device after the disks */
	uint32_t guest_kind;		/* SR_GUEST_* written into saved images */
	uint64_t boot_entry, boot_arg;
	uint8_t uuid[16];
	/*
	 * Optional: runs first on each thread the runner (or its domain)
	 * starts, and on the caller's once the domain runs and its threads
	 * exist; sr-restore installs its sandbox there.
	 */
	void (*thread_start)(enum runner_thread kind);
	/* NAME.lock already held (runner_claim_name's lock_fd; the runner closes it). */
	bool claimed;
	int lock_fd;
};

/*
 * Claims NAME for this process before any work: creates $SR_RUN_DIR (0700)
 * and flocks NAME.lock, so a second domain of the same name is refused at
 * once.  *lock_fd goes into runner_config (claimed); runner_listen claims it
 * itself when nobody did.
 */
int runner_claim_name(const char *name, int *lock_fd, struct xc_error *err);

struct runner *runner_new(const struct runner_config *cfg, struct xc_error *err);
struct xc_domain *runner_domain(struct runner *r);
const struct runner_config *runner_config(const struct runner *r);
/* The MSRs a save carries, listed before the domain first ran. */
const struct hvmctx_msr_list *runner_msrs(const struct runner *r);

/* The UART, when the runner has one (cfg.serial), else NULL. */
struct serial *runner_serial(struct runner *r);

/* The device models' bus (NULL without cfg.pci). */
struct hw_bus *runner_bus(struct runner *r);

/* How long the last pause took to drain the devices (a save reports it), ns. */
uint64_t runner_drain_ns(const struct runner *r);

/* The PCI functions' interrupt lines, for the Linux guest's MP table; how many of max. */
unsigned runner_pci_intx(struct runner *r, struct xc_pci_intx *out, unsigned max);

/* A restore's DISK record, checked, as the disk a virtio-blk DEVICE that names it opens. */
int runner_add_image_disk(struct runner *r, const struct virtio_blk_opts *o, struct xc_error *err);

/*
 * A DEVICE record from an image: the UART, or a device model on the bus;
 * a virtio-blk or virtio-rng the runner lacks is made first (in the
 * image's order, so each gets the PCI slot it had).  -1 with err.
 */
int runner_device_load(struct runner *r, const char *name, uint32_t version, uint32_t instance,
		       const void *data, size_t len, struct xc_error *err);

/* Opens the control socket (after the domain exists). */
int runner_listen(struct runner *r, struct xc_error *err);

/*
 * Starts the domain: signals blocked (SIGINT/TERM/HUP come through the
 * loop), MSRs listed, vCPUs running (or parked, start_paused).  Returns 0,
 * or an exit status with err filled; nothing is printed.
 */
int runner_start(struct runner *r, bool start_paused, struct xc_error *err);

/* After runner_start: runs the domain until it ends; returns the tool's exit status. */
int runner_loop(struct runner *r);

/* runner_start, then runner_loop; a failed start is printed. */
int runner_run(struct runner *r, bool start_paused);

void runner_free(struct runner *r);

/*
 * What a running save shares with the runner's control loop (atomics).
 * cancel goes from 0 to SAVE_CANCEL (sr-ctl cancel, a stall: the save gives
 * up, the domain resumes) or to SAVE_HELD (a migration's "pending": the
 * receiver may be told to go, so nothing but the client's word ends the
 * wait), each by compare-and-swap: the first one wins, never both.
 */
#define SAVE_CANCEL	1
#define SAVE_HELD	2
struct save_job_state {
	volatile int cancel;
	volatile int prepared;		/* the image is complete: awaiting the commit */
	volatile uint64_t pages, total, bytes;
	volatile uint64_t progress_ns;	/* CLOCK_MONOTONIC of the last byte progress */
};

struct save_req;

/*
 * Saves the domain to out_fd for a control-socket client (runner_save.c),
 * as q asks.  Progress lines go to client_fd and into js; js->cancel aborts.
 * Returns 1 when the domain must now end, 0 when it lives on, -1 on failure
 * (the domain is then as it was).  Runs on a thread of its own.
 */
int runner_save(struct runner *r, int out_fd, const struct save_req *q, int client_fd,
		struct save_job_state *js, char *msg, size_t len);

/* A save's worker threads start here (hvmctx_save_opts.thread_start, arg: the runner). */
void runner_save_worker_started(void *arg);

/* A guest-requested save to path (via path.tmp, fsync, rename); 0 or -1. */
int runner_guest_save(struct runner *r, const char *path, char *msg, size_t len);

#endif
