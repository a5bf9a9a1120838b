/* SPDX-License-Identifier: MIT */
/*
 * The test guests' hypercall interface and boot info: shared by the guests
 * and their runner.
 *
 * Hypercalls are 32-bit port writes (outl) to SR_HC_PORT + op; the value is
 * the argument.  Strings are passed by guest-physical address, NUL
 * terminated, at most SR_HC_STR_MAX bytes, inside guest RAM.
 *
 *   PRINT  (gpa)     print the string on the console
 *   SYNC   (stage)   the guest reached a stage; the runner logs it
 *   SAVE   (0)       ask the runner to save the domain now (sr-run --save-to)
 *   ASSERT (gpa)     the guest found a failure; the string says where and what;
 *                    the domain stops and the runner exits 1
 *   DONE   (status)  the guest finished: 0 = PASS, anything else = FAIL
 */
#ifndef SR_GUEST_ABI_H
#define SR_GUEST_ABI_H

#include <stdint.h>

#include "x86_layout.h"

#define SR_HC_PORT	0x0500
#define SR_HC_PRINT	0x00
#define SR_HC_SYNC	0x04
#define SR_HC_SAVE	0x08
#define SR_HC_ASSERT	0x0c
#define SR_HC_DONE	0x10
#define SR_HC_STR_MAX	4096

/* Guest-physical layout of the test guest. */
#define SR_GUEST_BOOTINFO	0x5000ull	/* struct sr_bootinfo, written by the runner */
#define SR_GUEST_STATUS		0x6000ull	/* struct sr_guest_status, written by the guest */
#define SR_GUEST_TRAMPOLINE	0x8000ull	/* AP start-up code (SIPI vector 0x08) */
#define SR_GUEST_LOAD		0x100000ull	/* the image is loaded and entered here */
#define SR_GUEST_WORK		0x800000ull	/* workload pages start here */
#define SR_GUEST_MAX_CPUS	16
#define SR_GUEST_MAX_HIGH_PAGES	4096		/* 16 MiB above 4 GiB at most */

#define SR_BOOTINFO_MAGIC	0x4f464e49544f4f42ull	/* "BOOTINFO" */

struct sr_bootinfo {
	uint64_t magic;
	uint64_t mem_bytes;		/* RAM from gpa 0 (below the hole: x86_layout.h) */
	uint32_t vcpus;
	uint32_t rounds;		/* workload rounds before DONE; 0 = run until stopped */
	uint32_t save_round;		/* BSP issues SAVE after this round; 0 = never */
	uint32_t pages_per_round;	/* pages each vCPU rewrites per round; 0 = its whole slice */
	uint32_t working_set_pages;	/* pages per vCPU slice; 0 = all RAM after SR_GUEST_WORK */
	uint32_t round_delay_us;	/* pause between rounds (dirty rate knob) */
	uint32_t restores;		/* incremented by sr-restore on each restore */
	uint32_t flags;
	uint32_t finish;		/* set by the runner (sr-ctl NAME finish): wrap up, verdict */
	uint32_t mode;			/* SR_MODE_*: a timing test instead of the workload */
	uint32_t high_pages;		/* vCPU 0 rewrites and checks this many pages of
					   high RAM every round (0 in older images) */
	uint64_t high_bytes;		/* RAM from X86_HIGH_RAM_START (4 GiB) */
};

#define SR_BOOTINFO_F_QUIET	(1u << 0)	/* print only stage and verdict lines */
#define SR_BOOTINFO_F_PREFILL	(1u << 1)	/* round 1 writes the whole slice */

/*
 * Timing tests (one vCPU); each prints what it measured on a line of its
 * own for the host-side test to judge, then its verdict.
 *   TSC_DEADLINE  arm the LAPIC TSC deadline 2 s ahead, ask for a SAVE, and
 *                 report how long after resuming the interrupt came
 *   PIT_PAUSE     count 100 Hz PIT ticks against kvmclock until a gap of 3
 *                 s or more (a pause), then report the ticks in the gap
 *                 and in the second after it
 *   PORT_LOOP     write port 0x80 in a loop while dirtying pages; report,
 *                 each second, how much of it the vCPU ran (gaps of 20 ms
 *                 or more count as kept out) and those gaps' 10th, 50th
 *                 and 90th percentiles; until finish
 */
#define SR_MODE_WORKLOAD	0
#define SR_MODE_TSC_DEADLINE	1
#define SR_MODE_PIT_PAUSE	2
#define SR_MODE_PORT_LOOP	3

/* Written by the guest so a host-side test can follow the workload. */
struct sr_guest_status {
	uint64_t generation[SR_GUEST_MAX_CPUS];	/* round being written by each vCPU */
	uint64_t first_pfn[SR_GUEST_MAX_CPUS];	/* each vCPU's slice */
	uint64_t slice_pages;
	uint64_t lapic_ticks[SR_GUEST_MAX_CPUS];
	uint64_t pit_ticks;
};

/*
 * Each workload page holds, for generation g written by vCPU c at pfn p:
 * word 0 = g, word 1 = p, word 2 = c, word 511 = ~g, words 3..510 = g ^ p ^ i.
 */

#endif
