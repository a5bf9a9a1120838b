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
extern uint64_t gdt_tss[], pml4[];
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

static void fill_at(uint64_t *p, uint64_t pfn, uint32_t gen, unsigned cpu)
{
	p[0] = gen;
	p[1] = pfn;
	p[2] = cpu;
	for (int i = 3; i < 511; i++)
		p[i] = gen ^ pfn ^ i;
	p[511] = ~(uint64_t)gen;
}

static void fill_page(uint64_t idx, uint32_t gen, unsigned cpu)
{
	fill_at(page_at(idx), (SR_GUEST_WORK >> 12) + idx, gen, cpu);
}

/* The page at p (pfn) must hold generation gen written by cpu, or be untouched for gen 0. */
static void check_at(const uint64_t *p, uint64_t pfn, uint32_t gen, unsigned cpu)
{
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

static void check_page(uint64_t idx, unsigned cpu)
{
	check_at(page_at(idx), (SR_GUEST_WORK >> 12) + idx, model[idx], cpu);
}

/*
 * RAM above 4 GiB (sr-run --high-pages N): vCPU 0 rewrites and checks N pages
 * there every round, the first half at the start of that RAM and the rest at
 * its end, so both ends of the second region are written and verified.
 */
static uint32_t high_model[SR_GUEST_MAX_HIGH_PAGES];
static uint64_t high_pd[2][512] __attribute__((aligned(4096)));
static unsigned high_pds;

static uint64_t *high_page(uint32_t i)
{
	uint32_t n = bootinfo->high_pages;
	uint64_t gpa = i < n / 2 ? X86_HIGH_RAM_START + i * PAGE_SIZE
				 : X86_HIGH_RAM_START + bootinfo->high_bytes - (n - i) * PAGE_SIZE;

	return (uint64_t *)(uintptr_t)gpa;
}

/* Maps the 1 GiB holding gpa in 2 MiB pages: boot.S maps only the low 4 GiB. */
static void map_gib(uint64_t gpa)
{
	uint64_t *pdpt = (uint64_t *)(uintptr_t)(pml4[0] & ~0xfffull), gib = gpa >> 30;

	GUEST_ASSERT(gib < 512, "0x%lx lies past the 512 GiB one PDPT maps", gpa);
	if (pdpt[gib] & 1)
		return;
	GUEST_ASSERT(high_pds < 2, "more than two GiB of high RAM to map");
	for (uint64_t j = 0; j < 512; j++)
		high_pd[high_pds][j] = ((gib << 30) + (j << 21)) | 0x83;
	pdpt[gib] = (uintptr_t)high_pd[high_pds++] | 3;
}

static void high_setup(void)
{
	uint32_t n = bootinfo->high_pages;

	if (!n)
		return;
	GUEST_ASSERT(n <= SR_GUEST_MAX_HIGH_PAGES && n * PAGE_SIZE <= bootinfo->high_bytes,
		     "%u high pages asked for, %lu bytes of RAM above 4 GiB", n,
		     bootinfo->high_bytes);
	map_gib((uintptr_t)high_page(0));
	map_gib((uintptr_t)high_page(n - 1));
}

static void check_high(void)
{
	for (uint32_t i = 0; i < bootinfo->high_pages; i++)
		check_at(high_page(i), (uintptr_t)high_page(i) >> 12, high_model[i], 0);
}

static void write_high(uint32_t gen)
{
	for (uint32_t i = 0; i < bootinfo->high_pages; i++) {
		check_at(high_page(i), (uintptr_t)high_page(i) >> 12, high_model[i], 0);
		fill_at(high_page(i), (uintptr_t)high_page(i) >> 12, gen, 0);
		high_model[i] = gen;
	}
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

/* ", and N pages above 4 GiB" when there are any, for the verdict lines. */
static const char *high_note(void)
{
	static char buf[64];

	if (!bootinfo->high_pages)
		return "";
	snprintf(buf, sizeof(buf), ", and %u pages above 4 GiB", bootinfo->high_pages);
	return buf;
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
	check_high();
	/* Quiet output is the same on every restore of one image: no timings in it. */
	if (bootinfo->flags & SR_BOOTINFO_F_QUIET)
		printf("round %u: after the save point: restores %u -> %u, registers and %lu pages "
		       "intact%s\n", round, restores, bootinfo->restores, slice_pages, high_note());
	else
		printf("round %u: after the save point: restores %u -> %u, kvmclock jump %lu ms, "
		       "tsc jump %lu ms, registers and %lu pages intact%s\n", round, restores,
		       bootinfo->restores, (t1 - t0) / 1000000,
		       tsc_ticks_ns(cpu, tsc1 - tsc0) / 1000000, slice_pages, high_note());
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
		if (cpu == 0)
			write_high(round);
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
	if (cpu == 0)
		check_high();
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

/* ------------------------------------------------------------ timing tests */

#define MSR_TSC_DEADLINE	0x6e0
#define LVT_TSC_DEADLINE	(2u << 17)
#define MODE_WAIT_NS		20000000000ull

/* TSC ticks in ns nanoseconds, at the rate kvmclock gives vCPU 0. */
static uint64_t ns_ticks(uint64_t ns)
{
	uint64_t per = tsc_ticks_ns(0, 1ull << 20);	/* ns in 2^20 ticks; ns < 2^43 here */

	return (ns << 20) / (per ? per : 1);
}

static uint64_t ticks_ms(uint64_t ticks)
{
	return tsc_ticks_ns(0, ticks) / 1000000;
}

/*
 * The TSC deadline across a save: armed 2 s ahead, then SAVE.  After a
 * restore the TSC has moved on by the gap (--clock advance), so the deadline
 * has passed and the interrupt is due the moment the vCPU runs again.
 */
static void tsc_deadline_test(void)
{
	uint32_t a, b, c, d, restores = bootinfo->restores;
	uint64_t seen = lapic_ticks(0), armed, deadline, back, irq, from;

	cpuid(1, 0, &a, &b, &c, &d);
	GUEST_ASSERT(c & (1u << 24), "CPUID offers no TSC-deadline timer");
	mmio_write32(LAPIC_BASE + 0x320, VEC_LAPIC_TIMER | LVT_TSC_DEADLINE);
	__asm__ volatile("sti");
	armed = rdtsc();
	deadline = armed + ns_ticks(2000000000ull);
	wrmsr(MSR_TSC_DEADLINE, deadline);
	printf("tsc-deadline: armed 2000 ms ahead, asking for a save\n");
	outl(SR_HC_PORT + SR_HC_SAVE, 0);
	back = rdtsc();
	while (lapic_ticks(0) == seen) {
		GUEST_ASSERT(ticks_ms(rdtsc() - back) < MODE_WAIT_NS / 1000000,
			     "no TSC-deadline interrupt %lu ms after the save point",
			     ticks_ms(rdtsc() - back));
		__asm__ volatile("sti; pause" ::: "memory");
	}
	irq = rdtsc();
	from = back > deadline ? back : deadline;	/* when it was due, as this vCPU saw it */
	printf("tsc-deadline: restores %u -> %u, TSC moved %lu ms across the save point, "
	       "interrupt %lu ms after it was due\n", restores, bootinfo->restores,
	       ticks_ms(back - armed), irq > from ? ticks_ms(irq - from) : 0);
	printf("PASS: tsc-deadline measured\n");
	done(0);
}

/* PIT ticks across a pause: the ticks missed while paused must not come in a burst. */
static void pit_pause_test(void)
{
	uint64_t prev, now, t1, p0, p1, p2, start;

	pit_periodic(PIT_HZ);
	__asm__ volatile("sti");
	printf("pit-pause: counting PIT ticks, waiting for a pause\n");
	start = prev = kvmclock_ns(0);
	p0 = pit_ticks();
	for (;;) {
		now = kvmclock_ns(0);
		if (now - prev >= 3000000000ull)	/* a host that starves the box stalls it ~1 s */
			break;
		GUEST_ASSERT(now - start < 6 * MODE_WAIT_NS, "no pause within %lu s",
			     (uint64_t)(6 * MODE_WAIT_NS / 1000000000ull));
		prev = now;
		p0 = pit_ticks();
		__asm__ volatile("pause" ::: "memory");
	}
	t1 = now;
	p1 = pit_ticks();
	while (kvmclock_ns(0) - t1 < 1000000000ull)
		__asm__ volatile("sti; pause" ::: "memory");
	p2 = pit_ticks();
	printf("pit-pause: a gap of %lu ms: %lu PIT ticks in it, %lu in the 1000 ms after it "
	       "(100 Hz)\n", (t1 - prev) / 1000000, p1 - p0, p2 - p1);
	printf("PASS: pit-pause measured\n");
	done(0);
}

/* The gap (ms) at num tenths of the n counted in gap_ms[] (1 ms buckets from PORT_GAP_MS). */
#define PORT_GAP_MS	20
#define PORT_GAP_BUCKETS 200
static uint64_t gap_tenth(const uint32_t *gap_ms, uint64_t n, unsigned num)
{
	uint64_t seen = 0;
	unsigned b;

	for (b = 0; b < PORT_GAP_BUCKETS - 1; b++)
		if ((seen += gap_ms[b]) * 10 >= n * num)
			break;
	return PORT_GAP_MS + b;
}

/*
 * An exit-heavy vCPU: port 0x80 in a loop, a page dirtied each time.  Time
 * between two iterations of 20 ms or more is time kept out of the guest (an
 * exit takes well under 1 ms in the nested box; a throttle keeps a vCPU out
 * for 40 of every 50 ms at 80%).  Each line also gives the shortest tenth,
 * the median and the longest tenth of those gaps, the guest's own measure of
 * how long one keeping-out lasts: a host that starves the box lengthens many
 * of them, which moves a mean, and the shortest tenth hardly.
 */
static void port_loop_test(void)
{
	uint64_t npages = (bootinfo->mem_bytes - SR_GUEST_WORK) / PAGE_SIZE, i = 0, writes = 0;
	uint64_t prev = kvmclock_ns(0), start = prev, ran = 0, now, gaps = 0, gap;
	uint32_t gap_ms[PORT_GAP_BUCKETS];

	memset(gap_ms, 0, sizeof(gap_ms));
	printf("port-loop: writing port 0x80 and dirtying %lu pages\n", npages);
	while (!bootinfo->finish) {
		outb(0x80, (uint8_t)i);
		page_at(i % npages)[i / npages % 512] = i;
		i++;
		writes++;
		now = kvmclock_ns(0);
		gap = (now - prev) / 1000000;
		if (gap < PORT_GAP_MS) {
			ran += now - prev;
		} else {
			gap_ms[gap - PORT_GAP_MS < PORT_GAP_BUCKETS ? gap - PORT_GAP_MS : PORT_GAP_BUCKETS - 1]++;
			gaps++;
		}
		prev = now;
		if (now - start >= 1000000000ull) {
			printf("port-loop: ran %lu of %lu ms, %lu port writes, %lu gaps of %u ms or more "
			       "(10th/50th/90th percentile %lu/%lu/%lu ms)\n", ran / 1000000,
			       (now - start) / 1000000, writes, gaps, PORT_GAP_MS,
			       gap_tenth(gap_ms, gaps, 1), gap_tenth(gap_ms, gaps, 5),
			       gap_tenth(gap_ms, gaps, 9));
			start = prev = kvmclock_ns(0);
			ran = writes = gaps = 0;
			memset(gap_ms, 0, sizeof(gap_ms));
		}
	}
	printf("PASS: port-loop finished\n");
	done(0);
}

static void run_mode(uint32_t mode)
{
	GUEST_ASSERT(bootinfo->vcpus == 1, "guest mode %u runs on one vCPU, not %u", mode,
		     bootinfo->vcpus);
	lapic_enable();
	GUEST_ASSERT(kvmclock_enable(0), "kvmclock (KVM_FEATURE_CLOCKSOURCE2) not offered");
	switch (mode) {
	case SR_MODE_TSC_DEADLINE: tsc_deadline_test(); break;
	case SR_MODE_PIT_PAUSE: pit_pause_test(); break;
	case SR_MODE_PORT_LOOP: port_loop_test(); break;
	}
	GUEST_ASSERT(0, "unknown guest mode %u", mode);
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
	high_setup();
	detect_features();
	if (bootinfo->mode)
		run_mode(bootinfo->mode);
	timers_on(0);
	pit_periodic(PIT_HZ);
	printf("sr test guest: %u vCPU%s, %lu MiB (%lu above 4 GiB), %lu pages per vCPU, %u rounds, "
	       "save after round %u, AVX %s\n", n, n > 1 ? "s" : "",
	       (bootinfo->mem_bytes + bootinfo->high_bytes) >> 20, bootinfo->high_bytes >> 20,
	       slice_pages,
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
		       "timers, kvmclock all verified%s\n", n, n > 1 ? "s" : "", bootinfo->rounds,
		       bootinfo->finish ? " (finished on request)" : "", slice_pages, high_note());
	else
		printf("PASS: %u vCPU%s, %u rounds%s, registers, %lu pages per vCPU, LAPIC (%lu ticks) "
		       "and PIT (%lu ticks) timers, kvmclock all verified%s\n", n, n > 1 ? "s" : "",
		       bootinfo->rounds, bootinfo->finish ? " (finished on request)" : "",
		       slice_pages, lapic_ticks(0), pit_ticks(), high_note());
	done(0);
}
