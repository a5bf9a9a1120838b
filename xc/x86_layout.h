/* SPDX-License-Identifier: MIT */
/*
 * The guest-physical layout of every sr x86 guest, in one place: sr-run
 * lays RAM out by it, the Linux boot writes its e820 map and MP table from
 * it, KVM gets its private pages from it, the test guest finds its memory
 * by it, and a restore refuses regions that break it.  Freestanding (the
 * test guest includes it too).
 *
 *   0x00000000 .. low end     RAM: all of it up to 3 GiB
 *   0xc0000000 .. 0xfec00000  device MMIO window (a 32-bit PCI hole), empty
 *                             today: virtio devices' registers go here
 *   0xfec00000 .. +4 KiB      IOAPIC (KVM's in-kernel irqchip)
 *   0xfee00000 .. +4 KiB      local APIC (every vCPU's, in-kernel)
 *   0xfeffc000 .. +4 KiB      identity-map page (KVM_SET_IDENTITY_MAP_ADDR)
 *   0xfeffd000 .. +12 KiB     TSS (KVM_SET_TSS_ADDR takes three pages)
 *   4 GiB .. 4 GiB + rest     RAM above the hole: whatever did not fit below
 *
 * So a guest of up to 3 GiB has one region at 0, as every guest had before
 * the hole, and a bigger one two: RAM below the hole and RAM from 4 GiB.
 *
 * Why 3 GiB: the hole must hold the fixed x86 pages at its top (KVM's api.rst:
 * the TSS "must not conflict with any memory slot or any mmio address"; RAM
 * over the APICs hides them from the guest) and a window for device MMIO
 * below 4 GiB, where 32-bit BARs and virtio-mmio devices must live.  QEMU's pc
 * machine puts the boundary at 3 GiB for big guests and Cloud Hypervisor
 * starts its 32-bit device area there too: 1004 MiB of window is room for any
 * number of virtio devices, and a boundary on 1 GiB keeps low RAM in whole
 * 1 GiB page-table entries.  The cost is 1 GiB of address space, not of RAM.
 */
#ifndef SR_X86_LAYOUT_H
#define SR_X86_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#define X86_LOW_RAM_MAX		0xc0000000ull	/* RAM below the hole ends here at most */
#define X86_MMIO_START		0xc0000000ull	/* device MMIO window */
#define X86_MMIO_END		0xfec00000ull
#define X86_FIXED_START		0xfec00000ull	/* the fixed pages: never RAM, never a device */
#define X86_IOAPIC_ADDR		0xfec00000ull
#define X86_LAPIC_ADDR		0xfee00000ull
#define X86_IDENTITY_MAP_ADDR	0xfeffc000ull
#define X86_TSS_ADDR		0xfeffd000ull	/* three pages, to 0xff000000 */
#define X86_KVM_PAGES_END	0xff000000ull
#define X86_HOLE_END		0x100000000ull
#define X86_HIGH_RAM_START	0x100000000ull	/* RAM above the hole starts here */

/* How much of ram bytes of guest RAM lies below the hole, and how much above it. */
static inline uint64_t x86_low_ram(uint64_t ram)
{
	return ram < X86_LOW_RAM_MAX ? ram : X86_LOW_RAM_MAX;
}

static inline uint64_t x86_high_ram(uint64_t ram)
{
	return ram - x86_low_ram(ram);
}

/* Whether RAM at [gpa, gpa + size) would cover the fixed pages (size > 0). */
static inline bool x86_covers_fixed(uint64_t gpa, uint64_t size)
{
	return gpa < X86_HOLE_END && size > X86_FIXED_START - (gpa < X86_FIXED_START ? gpa : X86_FIXED_START);
}

#endif
