/* SPDX-License-Identifier: MIT */
/*
 * The self-checking test guest.
 *
 * Every vCPU puts each class of CPU state the save image must carry into a
 * recognisable, non-default state, then runs workload rounds that rewrite
 * pages of its own memory slice with generation numbers while keeping a model
 * of what each page must hold.  Every round it re-checks its registers, the
 * pages it touches, its timers and kvmclock; at the save point it asks the
 * runner to save and checks everything after it comes back.  Any mismatch is
 * an ASSERT hypercall naming the first difference; success is DONE(0).
 */
#include "guest.h"

#define STACK_SIZE	16384
#define LAPIC_PERIOD	10000000u	/* 10 ms at KVM's 1 GHz APIC bus */
#define PIT_HZ		100
#define TIMER_CHECK_NS	200000000ull
#define TIMER_WAIT_NS	5000000000ull

extern char trampoline_start[], trampoline_end[];
extern uint64_t gdt_tss[];
extern char stacks[];

struct tss {
	uint32_t rsvd0;
	uint64_t rsp[3];
	uint64_t rsvd1;
	uint64_t ist[7];
	uint64_t rsvd2;
	uint16_t rsvd3, iomap;
} __attribute__((packed));

static struct tss tss[MAX_CPUS];

enum { M_STAR, M_LSTAR, M_CSTAR, M_SFMASK, M_SYSENTER_CS, M_SYSENTER_ESP, M_SYSENTER_EIP,
       M_PAT, M_TSC_AUX, M_FS_BASE, M_GS_BASE, M_KERNEL_GS_BASE, M_COUNT };

static const struct {
	uint32_t msr;
	const char *name;
} msrs[M_COUNT] = {
	[M_STAR] = { MSR_STAR, "STAR" }, [M_LSTAR] = { MSR_LSTAR, "LSTAR" },
	[M_CSTAR] = { MSR_CSTAR, "CSTAR" }, [M_SFMASK] = { MSR_SFMASK, "SFMASK" },
	[M_SYSENTER_CS] = { MSR_SYSENTER_CS, "SYSENTER_CS" },
	[M_SYSENTER_ESP] = { MSR_SYSENTER_ESP, "SYSENTER_ESP" },
	[M_SYSENTER_EIP] = { MSR_SYSENTER_EIP, "SYSENTER_EIP" }, [M_PAT] = { MSR_PAT, "PAT" },
	[M_TSC_AUX] = { MSR_TSC_AUX, "TSC_AUX" }, [M_FS_BASE] = { MSR_FS_BASE, "FS_BASE" },
	[M_GS_BASE] = { MSR_GS_BASE, "GS_BASE" },
	[M_KERNEL_GS_BASE] = { MSR_KERNEL_GS_BASE, "KERNEL_GS_BASE" },
};

struct cpu_state {
	uint64_t msr[M_COUNT];
	uint16_t ds, es, fs, gs, ss;
	uint64_t cr0, cr3, cr4, cr8, efer, xcr0;
	uint64_t dr[4], dr7;
	uint8_t fp[4096] __attribute__((aligned(64)));
};

static struct cpu_state want[MAX_CPUS];
static uint8_t fp_now[MAX_CPUS][4096] __attribute__((aligned(64)));
static uint8_t fp_pat[MAX_CPUS][640];

static bool has_avx, has_xsave, has_tsc_aux;
static volatile uint32_t ap_ready[MAX_CPUS], ap_done[MAX_CPUS];
static uint32_t *const model = (uint32_t *)0x400000;	/* generation of each work page */
static uint64_t slice_pages;

/* ------------------------------------------------------------ set up */

static void tss_load(unsigned cpu)
{
	uint64_t base = (uint64_t)(uintptr_t)&tss[cpu], limit = sizeof(tss[0]) - 1;

	tss[cpu].rsp[0] = (uint64_t)(uintptr_t)stacks + (cpu + 1) * STACK_SIZE;
	tss[cpu].iomap = sizeof(tss[0]);
	gdt_tss[2 * cpu] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
			   (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt_tss[2 * cpu + 1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(0x48 + 16 * cpu));
}

static void detect_features(void)
{
	uint32_t a, b, c, d;

	cpuid(1, 0, &a, &b, &c, &d);
	has_xsave = c & (1u << 26);
	has_avx = has_xsave && (c & (1u << 28));
	cpuid(0x80000001, 0, &a, &b, &c, &d);
	has_tsc_aux = d & (1u << 27);
}

#define READ_CR(n) ({ uint64_t v; __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v)); v; })
#define READ_DR(n) ({ uint64_t v; __asm__ volatile("mov %%db" #n ", %0" : "=r"(v)); v; })
#define WRITE_DR(n, v) __asm__ volatile("mov %0, %%db" #n : : "r"((uint64_t)(v)))
#define READ_SEG(s) ({ uint16_t v; __asm__ volatile("mov %%" #s ", %0" : "=r"(v)); v; })

static uint64_t read_xcr0(void)
{
	uint32_t lo, hi;

	if (!has_xsave)
		return 0;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

/* Puts every state class in a recognisable state, different per vCPU. */
static void set_state(unsigned cpu)
{
	struct cpu_state *w = &want[cpu];
	uint64_t base = 0xffff800000000000ull | ((uint64_t)(cpu + 1) << 32);
	uint64_t x;

	if (has_xsave) {
		__asm__ volatile("mov %%cr4, %0; or $(1 << 18), %0; mov %0, %%cr4" : "=r"(x));
		x = has_avx ? 7 : 3;
		__asm__ volatile("xsetbv" : : "c"(0), "a"((uint32_t)x), "d"(0));
	}
	w->msr[M_STAR] = 0x0023001000000000ull | (0x1000u * (cpu + 1));
	w->msr[M_LSTAR] = base | 0x11110;
	w->msr[M_CSTAR] = base | 0x22220;
	w->msr[M_SFMASK] = 0x47700 | cpu;
	w->msr[M_SYSENTER_CS] = 0x10;
	/* 32 bits: AMD keeps only the low half of the SYSENTER MSRs (KVM too, for AMD guests). */
	w->msr[M_SYSENTER_ESP] = 0x33330000u | cpu;
	w->msr[M_SYSENTER_EIP] = 0x44440000u | cpu;
	w->msr[M_PAT] = 0x0007010600070106ull;		/* PA0 stays write-back */
	w->msr[M_TSC_AUX] = 0x5a00 | cpu;
	w->msr[M_FS_BASE] = base | 0x55550;
	w->msr[M_GS_BASE] = base | 0x66660;
	w->msr[M_KERNEL_GS_BASE] = base | 0x77770;

	/* Selectors first: loading FS/GS resets their bases. */
	__asm__ volatile("mov %0, %%ds; mov %1, %%es; mov %2, %%fs; mov %3, %%gs; mov %4, %%ss"
			 : : "r"(0x20), "r"(0x28), "r"(0x30), "r"(0x38), "r"(0x40));
	for (int i = 0; i < M_COUNT; i++)
		if (i != M_TSC_AUX || has_tsc_aux)
			wrmsr(msrs[i].msr, w->msr[i]);
	__asm__ volatile("mov %0, %%cr8" : : "r"(2ull));
	WRITE_DR(0, base | 0x1000);
	WRITE_DR(1, base | 0x2000);
	WRITE_DR(2, base | 0x3000);
	WRITE_DR(3, base | 0x4000);
	WRITE_DR(7, 0xf0400);				/* RW0/LEN0 set, no breakpoint enabled */

	for (int i = 0; i < 8; i++) {
		int64_t v = (int64_t)(cpu * 1000 + i + 1) * (i & 1 ? -7 : 3);

		memcpy(&fp_pat[cpu][8 * i], &v, 8);
	}
	*(uint16_t *)&fp_pat[cpu][64] = 0x0f7f;		/* round toward zero, 64-bit precision */
	*(uint32_t *)&fp_pat[cpu][68] = 0x7f80;		/* MXCSR: round toward zero */
	for (int i = 0; i < 512; i++)
		fp_pat[cpu][128 + i] = (uint8_t)(cpu * 31 + i * 7 + 1);
	fp_load(fp_pat[cpu], has_avx);
	if (has_avx && avx_faulted) {
		has_avx = false;
		printf("cpu %u: CPUID offers AVX but VEX instructions fault here (nested TCG): "
		       "YMM upper halves NOT checked\n", cpu);
	}

	w->ds = 0x20;
	w->es = 0x28;
	w->fs = 0x30;
	w->gs = 0x38;
	w->ss = 0x40;
	w->cr0 = READ_CR(0);
	w->cr3 = READ_CR(3);
	w->cr4 = READ_CR(4);
	w->cr8 = 2;
	w->efer = rdmsr(MSR_EFER);
	w->xcr0 = read_xcr0();
	w->dr[0] = base | 0x1000;
	w->dr[1] = base | 0x2000;
	w->dr[2] = base | 0x3000;
	w->dr[3] = base | 0x4000;
	w->dr7 = READ_DR(7);
	fp_save(w->fp, w->xcr0);
}

#define CHECK_EQ(what, got, exp)						\
	GUEST_ASSERT((got) == (exp), "%s is 0x%lx, expected 0x%lx", what,	\
		     (uint64_t)(got), (uint64_t)(exp))

static void check_fp_bytes(unsigned cpu, unsigned from, unsigned to, const char *what)
{
	for (unsigned i = from; i < to; i++)
		GUEST_ASSERT(fp_now[cpu][i] == want[cpu].fp[i],
			     "%s differs at save-area byte %u: 0x%x, expected 0x%x", what, i,
			     fp_now[cpu][i], want[cpu].fp[i]);
}

static void check_state(unsigned cpu)
{
	struct cpu_state *w = &want[cpu];

	for (int i = 0; i < M_COUNT; i++)
		if (i != M_TSC_AUX || has_tsc_aux)
			CHECK_EQ(msrs[i].name, rdmsr(msrs[i].msr), w->msr[i]);
	CHECK_EQ("DS", READ_SEG(ds), w->ds);
	CHECK_EQ("ES", READ_SEG(es), w->es);
	CHECK_EQ("FS", READ_SEG(fs), w->fs);
	CHECK_EQ("GS", READ_SEG(gs), w->gs);
	CHECK_EQ("SS", READ_SEG(ss), w->ss);
	CHECK_EQ("CR0", READ_CR(0), w->cr0);
	CHECK_EQ("CR3", READ_CR(3), w->cr3);
	CHECK_EQ("CR4", READ_CR(4), w->cr4);
	CHECK_EQ("CR8", READ_CR(8), w->cr8);
	CHECK_EQ("EFER", rdmsr(MSR_EFER), w->efer);
	CHECK_EQ("XCR0", read_xcr0(), w->xcr0);
	CHECK_EQ("DR0", READ_DR(0), w->dr[0]);
	CHECK_EQ("DR1", READ_DR(1), w->dr[1]);
	CHECK_EQ("DR2", READ_DR(2), w->dr[2]);
	CHECK_EQ("DR3", READ_DR(3), w->dr[3]);
	CHECK_EQ("DR7", READ_DR(7), w->dr7);
	fp_save(fp_now[cpu], w->xcr0);
	check_fp_bytes(cpu, 0, 5, "x87 FCW/FSW/FTW");
	check_fp_bytes(cpu, 24, 28, "MXCSR");
	check_fp_bytes(cpu, 32, 160, "x87 register stack");
	check_fp_bytes(cpu, 160, 416, "XMM registers");
	if (has_avx)
		check_fp_bytes(cpu, 576, 832, "YMM upper halves");
}

static const char *const gpr_names[] = {
	"", "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R8", "R9", "R10", "R11",
	"R12", "R13", "R14", "R15", "?", "RFLAGS.DF",
};

static void hold_gprs(unsigned cpu, uint64_t round, bool save)
{
	int r = gpr_hold(0x5352000000000000ull ^ ((uint64_t)cpu << 40) ^ round, 20000, save);

	GUEST_ASSERT(r == 0, "%s changed while held%s", gpr_names[r < 18 ? r : 16],
		     save ? " across the save" : "");
}

/* ------------------------------------------------------------ workload */

static uint64_t *page_at(uint64_t idx)
{
	return (uint64_t *)(uintptr_t)(SR_GUEST_WORK + idx * PAGE_SIZE);
}

static void fill_page(uint64_t idx, uint32_t gen, unsigned cpu)
{
	uint64_t *p = page_at(idx), pfn = (SR_GUEST_WORK >> 12) + idx;

	p[0] = gen;
	p[1] = pfn;
	p[2] = cpu;
	for (int i = 3; i < 511; i++)
		p[i] = gen ^ pfn ^ i;
	p[511] = ~(uint64_t)gen;
}

static void check_page(uint64_t idx, unsigned cpu)
{
	uint64_t *p = page_at(idx), pfn = (SR_GUEST_WORK >> 12) + idx;
	uint32_t gen = model[idx];

	if (!gen) {
		GUEST_ASSERT(p[0] == 0 && p[511] == 0, "pfn 0x%lx never written but holds 0x%lx",
			     pfn, p[0]);
		return;
	}
	GUEST_ASSERT(p[0] == gen, "pfn 0x%lx holds generation %lu, model says %u", pfn, p[0], gen);
	GUEST_ASSERT(p[1] == pfn && p[2] == cpu, "pfn 0x%lx header (%lx, %lx) wrong", pfn, p[1], p[2]);
	for (int i = 3; i < 511; i++)
		GUEST_ASSERT(p[i] == (gen ^ pfn ^ i), "pfn 0x%lx word %d is 0x%lx, expected 0x%lx",
			     pfn, i, p[i], gen ^ pfn ^ i);
	GUEST_ASSERT(p[511] == ~(uint64_t)gen, "pfn 0x%lx last word 0x%lx", pfn, p[511]);
}

static void check_slice(unsigned cpu)
{
	for (uint64_t i = 0; i < slice_pages; i++)
		check_page(cpu * slice_pages + i, cpu);
}

struct timer_watch {
	uint64_t last_ns, base_ns, lapic, pit;
};

static void wait_tick(unsigned cpu, const char *what, uint64_t (*count)(unsigned),
		      uint64_t seen)
{
	uint64_t t0 = kvmclock_ns(cpu);

	while (count(cpu) == seen) {
		GUEST_ASSERT(kvmclock_ns(cpu) - t0 < TIMER_WAIT_NS,
			     "the %s stopped interrupting (count %lu for %lu ms)", what, seen,
			     (kvmclock_ns(cpu) - t0) / 1000000);
		__asm__ volatile("sti; pause" ::: "memory");
	}
}

static uint64_t lapic_count_of(unsigned cpu) { return lapic_ticks(cpu); }
static uint64_t pit_count_of(unsigned cpu) { (void)cpu; return pit_ticks(); }

static void check_time(unsigned cpu, struct timer_watch *tw)
{
	uint64_t now = kvmclock_ns(cpu);

	GUEST_ASSERT(now >= tw->last_ns, "kvmclock went backwards: %lu after %lu", now, tw->last_ns);
	tw->last_ns = now;
	if (now - tw->base_ns < TIMER_CHECK_NS)
		return;
	if (lapic_ticks(cpu) == tw->lapic)
		wait_tick(cpu, "LAPIC timer", lapic_count_of, tw->lapic);
	if (cpu == 0 && pit_ticks() == tw->pit)
		wait_tick(cpu, "PIT", pit_count_of, tw->pit);
	tw->lapic = lapic_ticks(cpu);
	tw->pit = pit_ticks();
	tw->base_ns = kvmclock_ns(cpu);
	tw->last_ns = tw->base_ns;
}

/* Sleeps (HLT, woken by the 10 ms LAPIC tick) so an idle guest leaves the host CPU free. */
static void delay_us(unsigned cpu, uint32_t us)
{
	uint64_t end = kvmclock_ns(cpu) + (uint64_t)us * 1000;

	while (kvmclock_ns(cpu) < end)
		__asm__ volatile("sti; hlt" ::: "memory");
}

/*
 * kvmclock and the TSC read together: the two reads are not one instruction,
 * and a vCPU preempted between them (the nested box) skews the pair.  Of 8
 * tries, the TSC read that sat between the closest two kvmclock reads.
 */
static void paired_read(unsigned cpu, uint64_t *ns, uint64_t *tsc)
{
	uint64_t best = ~0ull;

	for (int i = 0; i < 8; i++) {
		uint64_t a = kvmclock_ns(cpu), t = rdtsc(), b = kvmclock_ns(cpu);

		if (b - a < best) {
			best = b - a;
			*ns = a + (b - a) / 2;
			*tsc = t;
		}
	}
}

static void save_point(unsigned cpu, uint32_t round)
{
	uint64_t t0 = 0, t1 = 0, tsc0 = 0, tsc1 = 0;
	uint32_t restores = bootinfo->restores;

	check_slice(cpu);
	printf("round %u: requesting save\n", round);
	paired_read(cpu, &t0, &tsc0);
	hold_gprs(cpu, round, true);
	paired_read(cpu, &t1, &tsc1);
	check_state(cpu);
	check_slice(cpu);
	/* Quiet output is the same on every restore of one image: no timings in it. */
	if (bootinfo->flags & SR_BOOTINFO_F_QUIET)
		printf("round %u: after the save point: restores %u -> %u, registers and %lu pages "
		       "intact\n", round, restores, bootinfo->restores, slice_pages);
	else
		printf("round %u: after the save point: restores %u -> %u, kvmclock jump %lu ms, "
		       "tsc jump %lu ms, registers and %lu pages intact\n", round, restores,
		       bootinfo->restores, (t1 - t0) / 1000000,
		       tsc_ticks_ns(cpu, tsc1 - tsc0) / 1000000, slice_pages);
}

static void run_cpu(unsigned cpu)
{
	struct timer_watch tw = { 0 };
	uint64_t cursor = 0, per_round = bootinfo->pages_per_round;
	bool quiet = bootinfo->flags & SR_BOOTINFO_F_QUIET;

	if (!per_round || per_round > slice_pages)
		per_round = slice_pages;
	status->first_pfn[cpu] = (SR_GUEST_WORK >> 12) + cpu * slice_pages;
	set_state(cpu);
	check_state(cpu);
	tw.base_ns = tw.last_ns = kvmclock_ns(cpu);
	for (uint32_t round = 1; (!bootinfo->rounds || round <= bootinfo->rounds) && !bootinfo->finish;
	     round++) {
		uint64_t n = round == 1 && (bootinfo->flags & SR_BOOTINFO_F_PREFILL) ? slice_pages
										    : per_round;

		status->generation[cpu] = round;
		for (uint64_t i = 0; i < n; i++, cursor++) {
			uint64_t idx = cpu * slice_pages + cursor % slice_pages;

			check_page(idx, cpu);
			fill_page(idx, round, cpu);
			model[idx] = round;
		}
		check_state(cpu);
		hold_gprs(cpu, round, false);
		check_time(cpu, &tw);
		if (cpu == 0 && !quiet)
			printf("round %u: %lu pages rewritten, lapic %lu pit %lu ticks\n", round,
			       per_round, lapic_ticks(0), pit_ticks());
		if (cpu == 0 && round == bootinfo->save_round)
			save_point(cpu, round);
		if (bootinfo->round_delay_us)
			delay_us(cpu, bootinfo->round_delay_us);
	}
	check_slice(cpu);
	check_state(cpu);
}

static void timers_on(unsigned cpu)
{
	lapic_enable();
	GUEST_ASSERT(kvmclock_enable(cpu), "kvmclock (KVM_FEATURE_CLOCKSOURCE2) not offered");
	lapic_timer_periodic(LAPIC_PERIOD);
	__asm__ volatile("sti");
}

void ap_main(unsigned cpu);
void ap_main(unsigned cpu)
{
	idt_load();
	tss_load(cpu);
	timers_on(cpu);
	ap_ready[cpu] = 1;
	run_cpu(cpu);
	ap_done[cpu] = 1;
	for (;;)
		__asm__ volatile("sti; hlt");
}

void guest_main(void);
void guest_main(void)
{
	uint32_t n;
	uint64_t t0;

	idt_init();
	idt_load();
	tss_load(0);
	GUEST_ASSERT(bootinfo->magic == SR_BOOTINFO_MAGIC, "no boot info at 0x%x", (unsigned)SR_GUEST_BOOTINFO);
	n = bootinfo->vcpus;
	GUEST_ASSERT(n >= 1 && n <= MAX_CPUS, "%u vCPUs", n);
	GUEST_ASSERT(bootinfo->mem_bytes >= SR_GUEST_WORK + n * 16 * PAGE_SIZE,
		     "%lu bytes of RAM is too little", bootinfo->mem_bytes);
	slice_pages = (bootinfo->mem_bytes - SR_GUEST_WORK) / PAGE_SIZE / n;
	if (bootinfo->working_set_pages && bootinfo->working_set_pages < slice_pages)
		slice_pages = bootinfo->working_set_pages;
	status->slice_pages = slice_pages;
	detect_features();
	timers_on(0);
	pit_periodic(PIT_HZ);
	printf("sr test guest: %u vCPU%s, %lu MiB, %lu pages per vCPU, %u rounds, save after round %u, "
	       "AVX %s\n", n, n > 1 ? "s" : "", bootinfo->mem_bytes >> 20, slice_pages,
	       bootinfo->rounds, bootinfo->save_round, has_avx ? "offered" : "not offered: YMM not checked");
	memcpy((void *)(uintptr_t)SR_GUEST_TRAMPOLINE, trampoline_start,
	       trampoline_end - trampoline_start);
	for (unsigned id = 1; id < n; id++) {
		lapic_start_ap(id);
		t0 = kvmclock_ns(0);
		while (!ap_ready[id])
			GUEST_ASSERT(kvmclock_ns(0) - t0 < TIMER_WAIT_NS, "vCPU %u did not start", id);
	}
	sync_stage(1);
	run_cpu(0);
	for (unsigned id = 1; id < n; id++) {
		t0 = kvmclock_ns(0);
		while (!ap_done[id]) {
			GUEST_ASSERT(kvmclock_ns(0) - t0 < 60 * TIMER_WAIT_NS,
				     "vCPU %u did not finish", id);
			pause_cpu();
		}
	}
	sync_stage(2);
	if (bootinfo->flags & SR_BOOTINFO_F_QUIET)
		printf("PASS: %u vCPU%s, %u rounds%s, registers, %lu pages per vCPU, LAPIC and PIT "
		       "timers, kvmclock all verified\n", n, n > 1 ? "s" : "", bootinfo->rounds,
		       bootinfo->finish ? " (finished on request)" : "", slice_pages);
	else
		printf("PASS: %u vCPU%s, %u rounds%s, registers, %lu pages per vCPU, LAPIC (%lu ticks) "
		       "and PIT (%lu ticks) timers, kvmclock all verified\n", n, n > 1 ? "s" : "",
		       bootinfo->rounds, bootinfo->finish ? " (finished on request)" : "",
		       slice_pages, lapic_ticks(0), pit_ticks());
	done(0);
}
