/* SPDX-License-Identifier: MIT */
/* Test guest runtime. */
#include "guest.h"

volatile struct sr_bootinfo *const bootinfo = (void *)SR_GUEST_BOOTINFO;
volatile struct sr_guest_status *const status = (void *)SR_GUEST_STATUS;

void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;

	while (n--)
		*p++ = (uint8_t)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

unsigned this_cpu(void)
{
	return mmio_read32(LAPIC_BASE + 0x20) >> 24;
}

/* ------------------------------------------------------------ printing */

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct out *o, uint64_t v, unsigned base, int width, char pad, bool neg)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (width-- > n)
		put(o, pad);
	while (n)
		put(o, tmp[--n]);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		int width = 0, lng = 0;
		char pad = ' ';

		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0')
			pad = '0';
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 'd': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);

			put_num(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, width, pad, v < 0);
			break;
		}
		case 'u':
			put_num(&o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, width, pad, false);
			break;
		case 'x':
			put_num(&o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, width, pad, false);
			break;
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, (uintptr_t)va_arg(ap, void *), 16, width, pad, false);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);

			while (*s)
				put(&o, *s++);
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		default:
			put(&o, '%');
			put(&o, *fmt);
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

static char print_buf[MAX_CPUS][512];

void printf(const char *fmt, ...)
{
	char *b = print_buf[this_cpu() % MAX_CPUS];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, sizeof(print_buf[0]), fmt, ap);
	va_end(ap);
	outl(SR_HC_PORT + SR_HC_PRINT, (uint32_t)(uintptr_t)b);
}

void sync_stage(uint32_t stage)
{
	outl(SR_HC_PORT + SR_HC_SYNC, stage);
}

void done(uint32_t st)
{
	for (;;)
		outl(SR_HC_PORT + SR_HC_DONE, st);
}

void fail_at(const char *file, int line, const char *fmt, ...)
{
	static char buf[MAX_CPUS][512];
	char *b = buf[this_cpu() % MAX_CPUS];
	va_list ap;
	int n;

	n = snprintf(b, sizeof(buf[0]), "cpu %u %s:%d: ", this_cpu(), file, line);
	va_start(ap, fmt);
	vsnprintf(b + n, sizeof(buf[0]) - n, fmt, ap);
	va_end(ap);
	for (;;)
		outl(SR_HC_PORT + SR_HC_ASSERT, (uint32_t)(uintptr_t)b);
}

/* ---------------------------------------------------------- interrupts */

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
extern char isr_stubs[];

static volatile uint64_t lapic_count[MAX_CPUS];
volatile bool avx_faulted;
static volatile uint64_t pit_count;

void idt_init(void)
{
	for (int v = 0; v < 256; v++) {
		uint64_t a = (uint64_t)(uintptr_t)isr_stubs + 16 * v;

		idt[v].off0 = a & 0xffff;
		idt[v].sel = 0x18;
		idt[v].ist = 0;
		idt[v].type = 0x8e;		/* present, DPL 0, 64-bit interrupt gate */
		idt[v].off1 = (a >> 16) & 0xffff;
		idt[v].off2 = a >> 32;
		idt[v].zero = 0;
	}
}

void idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) p = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };

	__asm__ volatile("lidt %0" : : "m"(p));
}

static void lapic_eoi(void)
{
	mmio_write32(LAPIC_BASE + 0xb0, 0);
}

void isr_dispatch(struct isr_frame *f);
void isr_dispatch(struct isr_frame *f)
{
	unsigned cpu;

	switch (f->vector) {
	case VEC_LAPIC_TIMER:
		cpu = this_cpu() % MAX_CPUS;
		lapic_count[cpu]++;
		status->lapic_ticks[cpu] = lapic_count[cpu];
		lapic_eoi();
		return;
	case VEC_PIT:
	case VEC_PIT + 1:
		pit_count++;
		status->pit_ticks = pit_count;
		lapic_eoi();
		return;
	case VEC_SPURIOUS:
		return;
	case 6:
		if (f->rip >= (uint64_t)(uintptr_t)fp_load_vex &&
		    f->rip < (uint64_t)(uintptr_t)fp_load_vex_end) {
			avx_faulted = true;
			f->rip = (uint64_t)(uintptr_t)fp_load_sse;
			return;
		}
		break;
	}
	fail_at("isr", (int)f->vector, "exception %lu error 0x%lx at rip 0x%lx rsp 0x%lx",
		f->vector, f->error, f->rip, f->rsp);
}

uint64_t lapic_ticks(unsigned cpu)
{
	return lapic_count[cpu];
}

uint64_t pit_ticks(void)
{
	return pit_count;
}

void lapic_enable(void)
{
	mmio_write32(LAPIC_BASE + 0xf0, 0x100 | VEC_SPURIOUS);	/* SVR: enable */
	mmio_write32(LAPIC_BASE + 0x350, 0x10000);		/* LINT0 masked: no ExtINT */
	mmio_write32(LAPIC_BASE + 0x360, 0x10000);		/* LINT1 masked */
}

void lapic_timer_periodic(uint32_t count)
{
	mmio_write32(LAPIC_BASE + 0x3e0, 0xb);			/* divide by 1 */
	mmio_write32(LAPIC_BASE + 0x320, VEC_LAPIC_TIMER | (1u << 17));	/* periodic */
	mmio_write32(LAPIC_BASE + 0x380, count);
}

static void lapic_icr(unsigned apic_id, uint32_t low)
{
	mmio_write32(LAPIC_BASE + 0x310, apic_id << 24);
	mmio_write32(LAPIC_BASE + 0x300, low);
	while (mmio_read32(LAPIC_BASE + 0x300) & (1u << 12))
		pause_cpu();
}

void lapic_start_ap(unsigned apic_id)
{
	lapic_icr(apic_id, 0x4500);				/* INIT */
	lapic_icr(apic_id, 0x4600 | (SR_GUEST_TRAMPOLINE >> 12));	/* SIPI */
	lapic_icr(apic_id, 0x4600 | (SR_GUEST_TRAMPOLINE >> 12));
}

static void ioapic_route(unsigned pin, uint8_t vector)
{
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin + 1);
	mmio_write32(IOAPIC_BASE + 0x10, 0);			/* destination APIC 0 */
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin);
	mmio_write32(IOAPIC_BASE + 0x10, vector);		/* fixed, edge, unmasked */
}

void pit_periodic(uint32_t hz)
{
	uint32_t div = 1193182 / hz;

	outb(0x21, 0xff);					/* the 8259s stay masked */
	outb(0xa1, 0xff);
	/* KVM's default routing sends the PIT's GSI 0 to IOAPIC pin 0; pin 2 covers the ISA override. */
	ioapic_route(0, VEC_PIT);
	ioapic_route(2, VEC_PIT + 1);
	outb(0x43, 0x34);					/* channel 0, lo/hi, rate generator */
	outb(0x40, div & 0xff);
	outb(0x40, div >> 8);
}

/* ------------------------------------------------------------ kvmclock */

struct pvclock {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t mul;
	int8_t shift;
	uint8_t flags, pad[2];
};

static volatile struct pvclock pvclock[MAX_CPUS] __attribute__((aligned(64)));

bool kvmclock_enable(unsigned cpu)
{
	uint32_t a, b, c, d;

	cpuid(0x40000000, 0, &a, &b, &c, &d);
	if (b != 0x4b4d564b)					/* "KVMK" */
		return false;
	cpuid(0x40000001, 0, &a, &b, &c, &d);
	if (!(a & (1u << 3)))					/* KVM_FEATURE_CLOCKSOURCE2 */
		return false;
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)(uintptr_t)&pvclock[cpu] | 1);
	return true;
}

static uint64_t scale_ticks(volatile struct pvclock *p, uint64_t delta)
{
	if (p->shift < 0)
		delta >>= -p->shift;
	else
		delta <<= p->shift;
	return (uint64_t)(((unsigned __int128)delta * p->mul) >> 32);
}

uint64_t tsc_ticks_ns(unsigned cpu, uint64_t ticks)
{
	return scale_ticks(&pvclock[cpu], ticks);
}

uint64_t kvmclock_ns(unsigned cpu)
{
	volatile struct pvclock *p = &pvclock[cpu];
	uint32_t v;
	uint64_t ns;

	do {
		v = p->version;
		__asm__ volatile("" ::: "memory");
		ns = p->system_time + scale_ticks(p, rdtsc() - p->tsc_timestamp);
		__asm__ volatile("" ::: "memory");
	} while ((v & 1) || v != p->version);
	return ns;
}
