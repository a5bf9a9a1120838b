/* SPDX-License-Identifier: MIT */
/* Test guest runtime: port I/O, hypercalls, printing, LAPIC, PIT, kvmclock. */
#ifndef SR_GUEST_H
#define SR_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "abi.h"

#define MAX_CPUS	SR_GUEST_MAX_CPUS
#define PAGE_SIZE	4096ull

#define LAPIC_BASE	X86_LAPIC_ADDR
#define IOAPIC_BASE	X86_IOAPIC_ADDR
#define VEC_LAPIC_TIMER	0x40
#define VEC_PIT		0x50
#define VEC_SPURIOUS	0xff

#define MSR_EFER		0xc0000080
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SFMASK		0xc0000084
#define MSR_FS_BASE		0xc0000100
#define MSR_GS_BASE		0xc0000101
#define MSR_KERNEL_GS_BASE	0xc0000102
#define MSR_TSC_AUX		0xc0000103
#define MSR_SYSENTER_CS		0x174
#define MSR_SYSENTER_ESP	0x175
#define MSR_SYSENTER_EIP	0x176
#define MSR_PAT			0x277
#define MSR_KVM_SYSTEM_TIME_NEW	0x4b564d01

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c,
			 uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

static inline void pause_cpu(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline uint32_t mmio_read32(uint64_t a)
{
	return *(volatile uint32_t *)a;
}

static inline void mmio_write32(uint64_t a, uint32_t v)
{
	*(volatile uint32_t *)a = v;
}

extern volatile struct sr_bootinfo *const bootinfo;
extern volatile struct sr_guest_status *const status;

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sync_stage(uint32_t stage);
void done(uint32_t status) __attribute__((noreturn));
void fail_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
unsigned this_cpu(void);

#define GUEST_ASSERT(cond, fmt, ...)						\
	do {									\
		if (!(cond))							\
			fail_at(__FILE__, __LINE__, "%s: " fmt, #cond, ##__VA_ARGS__); \
	} while (0)

/* Interrupts and timers. */
struct isr_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};
void idt_init(void);
void idt_load(void);
void lapic_enable(void);
void lapic_timer_periodic(uint32_t count);
void lapic_start_ap(unsigned apic_id);
void pit_periodic(uint32_t hz);
uint64_t lapic_ticks(unsigned cpu);
uint64_t pit_ticks(void);

/* kvmclock: nanoseconds; 0 when kvmclock is not offered. */
bool kvmclock_enable(unsigned cpu);
uint64_t kvmclock_ns(unsigned cpu);
/* A count of TSC ticks in ns, at the rate kvmclock gives this vCPU. */
uint64_t tsc_ticks_ns(unsigned cpu, uint64_t ticks);

/* boot.S */
int gpr_hold(uint64_t seed, uint64_t spins, uint64_t save);
void fp_load(const void *pat, int avx);
void fp_save(void *area, uint64_t xcr0_mask);
extern char fp_load_vex[], fp_load_vex_end[], fp_load_sse[];
extern volatile bool avx_faulted;

#endif
