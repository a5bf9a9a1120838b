/* SPDX-License-Identifier: MIT */
/*
 * Linux x86-64 boot protocol: bzImage, initrd, command line, boot_params
 * with an e820 map, an MP table for the IOAPIC and the CPUs, identity page
 * tables and a GDT, and the BSP in long mode at the 64-bit entry point.
 *
 * RAM and the hole as x86_layout.h lays them out; below 1 MiB:
 *   0x0500 GDT   0x7000 boot_params   0x9000 page tables (PML4, PDPT, 4 PDs)
 *   0x20000 command line   0x9fc00 MP floating pointer + table (EBDA)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xc.h"
#include "xc_priv.h"

#define GDT_ADDR	0x500ull
#define ZERO_PAGE	0x7000ull
#define PML4_ADDR	0x9000ull
#define CMDLINE_ADDR	0x20000ull
#define CMDLINE_MAX	0x10000u
#define EBDA_ADDR	0x9fc00ull
#define KERNEL_ADDR	0x1000000ull	/* the kernel's preferred 16 MiB */

#define E820_RAM	1
#define E820_RESERVED	2

static void *gpa(struct xc_domain *d, uint64_t a, uint64_t len)
{
	return xc_gpa_to_hva(d, a, len);
}

static long read_file(const char *path, uint8_t **out, struct xc_error *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	long done = 0;

	if (fd < 0)
		return xc_set_error(err, errno, "opening %s", path);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0) {
		close(fd);
		return xc_set_error(err, 0, "%s is not a non-empty regular file", path);
	}
	*out = malloc(st.st_size);
	if (!*out) {
		close(fd);
		return xc_set_error(err, ENOMEM, "reading %s", path);
	}
	while (done < st.st_size) {
		ssize_t n = read(fd, *out + done, st.st_size - done);

		if (n <= 0) {
			free(*out);
			close(fd);
			return xc_set_error(err, n ? errno : EIO, "reading %s", path);
		}
		done += n;
	}
	close(fd);
	return done;
}

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return (uint8_t)-sum;
}

/*
 * MP spec 1.4 table: CPUs, PCI bus 0 and ISA bus 1, the IOAPIC, ISA IRQs,
 * the PCI functions' INTx lines, LINT0/1.  Linux looks a PCI device's line
 * up by MP bus id = PCI bus number, so PCI is bus 0; an INTx source is
 * (slot << 2) | (pin - 1), level-triggered and active low (the PCI bus's
 * default; KVM's IOAPIC takes the level as given).
 */
static int write_mptable(struct xc_domain *d, unsigned vcpus, const struct xc_linux_boot *b,
			 struct xc_error *err)
{
	uint8_t *base = gpa(d, EBDA_ADDR, 1024), *p;
	uint16_t entries = 0;
	unsigned ioapic_id = vcpus;

	if (!base)
		return xc_set_error(err, 0, "no RAM for the MP table");
	memset(base, 0, 1024);
	/* Floating pointer structure (16 bytes), then the configuration table. */
	memcpy(base, "_MP_", 4);
	*(uint32_t *)(base + 4) = EBDA_ADDR + 16;
	base[8] = 1;			/* length in 16-byte units */
	base[9] = 4;			/* spec revision 1.4 */
	base[10] = mp_checksum(base, 16);
	p = base + 16 + 44;		/* entries follow the 44-byte header */
	for (unsigned i = 0; i < vcpus; i++, entries++, p += 20) {
		p[0] = 0;		/* processor */
		p[1] = i;		/* local APIC id */
		p[2] = 0x14;		/* local APIC version */
		p[3] = 1 | (i == 0 ? 2 : 0);	/* enabled, BSP */
		*(uint32_t *)(p + 4) = 0x600;	/* signature */
		*(uint32_t *)(p + 8) = 0x201;	/* features: FPU, APIC */
	}
	if (b->n_pci_intx > 24)
		return xc_set_error(err, 0, "%u PCI interrupt lines: the MP table holds 24",
				    b->n_pci_intx);
	p[0] = 1;			/* bus 0: PCI */
	memcpy(p + 2, "PCI   ", 6);
	p += 8, entries++;
	p[0] = 1;			/* bus 1: ISA */
	p[1] = 1;
	memcpy(p + 2, "ISA   ", 6);
	p += 8, entries++;
	p[0] = 2;			/* IOAPIC */
	p[1] = ioapic_id;
	p[2] = 0x11;
	p[3] = 1;
	*(uint32_t *)(p + 4) = X86_IOAPIC_ADDR;
	p += 8, entries++;
	for (unsigned irq = 0; irq < 16; irq++, p += 8, entries++) {
		p[0] = 3;		/* I/O interrupt assignment */
		p[1] = 0;		/* INT */
		p[4] = 1;		/* source bus: ISA */
		p[5] = irq;
		p[6] = ioapic_id;
		p[7] = irq;		/* KVM's routing: GSI n is IOAPIC pin n */
	}
	for (unsigned i = 0; i < b->n_pci_intx; i++, p += 8, entries++) {
		const struct xc_pci_intx *x = &b->pci_intx[i];

		p[0] = 3;
		p[1] = 0;		/* INT; flags 0: the bus's default, level and active low */
		p[4] = 0;		/* source bus: PCI */
		p[5] = (x->slot << 2) | ((x->pin - 1) & 3);
		p[6] = ioapic_id;
		p[7] = x->ioapic_pin;
	}
	p[0] = 4;			/* local: ExtINT on LINT0 of every CPU */
	p[1] = 3;
	p[6] = 0xff;
	p[7] = 0;
	p += 8, entries++;
	p[0] = 4;			/* local: NMI on LINT1 */
	p[1] = 1;
	p[6] = 0xff;
	p[7] = 1;
	p += 8, entries++;

	uint8_t *t = base + 16;
	memcpy(t, "PCMP", 4);
	*(uint16_t *)(t + 4) = p - t;	/* base table length */
	t[6] = 4;
	memcpy(t + 8, "SR      ", 8);
	memcpy(t + 16, "sr-run      ", 12);
	*(uint16_t *)(t + 34) = entries;
	*(uint32_t *)(t + 36) = X86_LAPIC_ADDR;
	t[7] = mp_checksum(t, p - t);
	return 0;
}

static void e820_add(uint8_t *bp, uint64_t addr, uint64_t size, uint32_t type)
{
	uint8_t n = bp[0x1e8];
	uint8_t *e = bp + 0x2d0 + 20 * n;

	memcpy(e, &addr, 8);
	memcpy(e + 8, &size, 8);
	memcpy(e + 16, &type, 4);
	bp[0x1e8] = n + 1;
}

static void write_page_tables(struct xc_domain *d)
{
	uint64_t *pml4 = gpa(d, PML4_ADDR, 4096), *pdpt = gpa(d, PML4_ADDR + 0x1000, 4096);

	memset(pml4, 0, 4096 * 6);
	pml4[0] = (PML4_ADDR + 0x1000) | 3;
	for (int i = 0; i < 4; i++) {
		uint64_t *pd = gpa(d, PML4_ADDR + 0x2000 + i * 0x1000ull, 4096);

		pdpt[i] = (PML4_ADDR + 0x2000 + i * 0x1000ull) | 3;
		for (int j = 0; j < 512; j++)
			pd[j] = ((uint64_t)(i * 512 + j) << 21) | 0x83;
	}
}

static void seg64(struct kvm_segment *s, uint16_t sel, bool code)
{
	memset(s, 0, sizeof(*s));
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = code ? 0xb : 0x3;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

static int boot_cpu_long_mode(struct xc_vcpu *v, uint64_t entry, struct xc_error *err)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(xc_vcpu_fd(v), KVM_GET_SREGS, &sregs))
		return xc_set_error(err, errno, "KVM_GET_SREGS");
	seg64(&sregs.cs, 0x10, true);
	seg64(&sregs.ds, 0x18, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = GDT_ADDR;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.cr3 = PML4_ADDR;
	sregs.cr4 = 1u << 5;				/* PAE */
	sregs.cr0 = 0x80000011 | (1u << 5);		/* PG, ET, PE, NE */
	sregs.efer = (1u << 8) | (1u << 10);		/* LME, LMA */
	if (ioctl(xc_vcpu_fd(v), KVM_SET_SREGS, &sregs))
		return xc_set_error(err, errno, "KVM_SET_SREGS (long mode)");
	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rsi = ZERO_PAGE;
	regs.rflags = 2;
	if (ioctl(xc_vcpu_fd(v), KVM_SET_REGS, &regs))
		return xc_set_error(err, errno, "KVM_SET_REGS");
	return 0;
}

int xc_linux_boot(struct xc_domain *d, const struct xc_linux_boot *b, uint64_t *entry_out,
		  struct xc_error *err)
{
	uint8_t *k = NULL, *rd = NULL, *bp;
	uint64_t mem = 0, high = 0, setup, entry, initrd_addr = 0;
	long klen, rdlen = 0;
	size_t cl;
	const struct xc_region *regs;
	unsigned nregs = xc_mem_regions(d, &regs);
	uint64_t *gdt;
	int rc = -1;

	for (unsigned i = 0; i < nregs; i++) {
		if (regs[i].gpa == 0)
			mem = regs[i].size;
		else if (regs[i].gpa == X86_HIGH_RAM_START)
			high = regs[i].size;
		else
			return xc_set_error(err, 0, "RAM at 0x%llx: a Linux guest has RAM at 0 and at "
					    "4 GiB only", (unsigned long long)regs[i].gpa);
	}
	if (mem < (128ull << 20))
		return xc_set_error(err, 0, "a Linux guest needs at least 128 MiB of RAM at address 0");
	klen = read_file(b->kernel, &k, err);
	if (klen < 0)
		return -1;
	if (klen < 0x300 || memcmp(k + 0x202, "HdrS", 4) || *(uint16_t *)(k + 0x206) < 0x20c ||
	    !(*(uint16_t *)(k + 0x236) & 1)) {
		xc_set_error(err, 0, "%s is not a bzImage with a 64-bit entry (boot protocol 2.12+)",
			     b->kernel);
		goto out;
	}
	setup = (k[0x1f1] ? k[0x1f1] : 4) + 1;
	setup *= 512;
	if (KERNEL_ADDR + (klen - setup) + *(uint32_t *)(k + 0x260) > mem) {
		xc_set_error(err, 0, "the kernel needs %u MiB to unpack: give the guest more memory",
			     (unsigned)((KERNEL_ADDR + *(uint32_t *)(k + 0x260)) >> 20) + 1);
		goto out;
	}
	memcpy(gpa(d, KERNEL_ADDR, klen - setup), k + setup, klen - setup);
	entry = KERNEL_ADDR + 0x200;

	bp = gpa(d, ZERO_PAGE, 4096);
	memset(bp, 0, 4096);
	memcpy(bp + 0x1f1, k + 0x1f1, (0x202 + k[0x201]) - 0x1f1);
	bp[0x210] = 0xff;				/* type_of_loader: undefined */
	bp[0x211] |= 0x01 | 0x80;			/* LOADED_HIGH, CAN_USE_HEAP */
	*(uint16_t *)(bp + 0x224) = 0xde00;		/* heap_end_ptr */
	cl = strlen(b->cmdline);
	if (cl >= CMDLINE_MAX || cl >= *(uint32_t *)(k + 0x238)) {
		xc_set_error(err, 0, "command line of %zu bytes is too long", cl);
		goto out;
	}
	memcpy(gpa(d, CMDLINE_ADDR, cl + 1), b->cmdline, cl + 1);
	*(uint32_t *)(bp + 0x228) = CMDLINE_ADDR;
	if (b->initrd) {
		uint64_t max = *(uint32_t *)(k + 0x22c);

		rdlen = read_file(b->initrd, &rd, err);
		if (rdlen < 0)
			goto out;
		initrd_addr = ((mem < max ? mem : max + 1) - rdlen - (1 << 20)) & ~0xfffull;
		if (initrd_addr < KERNEL_ADDR + *(uint32_t *)(k + 0x260)) {
			xc_set_error(err, 0, "the initrd (%ld bytes) does not fit: give the guest more "
				     "memory", rdlen);
			goto out;
		}
		memcpy(gpa(d, initrd_addr, rdlen), rd, rdlen);
		*(uint32_t *)(bp + 0x218) = initrd_addr;
		*(uint32_t *)(bp + 0x21c) = rdlen;
	}
	e820_add(bp, 0, EBDA_ADDR, E820_RAM);
	e820_add(bp, EBDA_ADDR, 0xa0000 - EBDA_ADDR, E820_RESERVED);
	e820_add(bp, 0xf0000, 0x10000, E820_RESERVED);
	e820_add(bp, 0x100000, mem - 0x100000, E820_RAM);
	/* The MMIO window stays a gap (Linux puts PCI there); the APICs are in the MP table. */
	e820_add(bp, X86_IDENTITY_MAP_ADDR, X86_KVM_PAGES_END - X86_IDENTITY_MAP_ADDR,
		 E820_RESERVED);
	if (high)
		e820_add(bp, X86_HIGH_RAM_START, high, E820_RAM);

	gdt = gpa(d, GDT_ADDR, 32);
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00af9a000000ffffull;		/* 0x10: __BOOT_CS */
	gdt[3] = 0x00cf92000000ffffull;		/* 0x18: __BOOT_DS */
	write_page_tables(d);
	if (write_mptable(d, xc_domain_vcpus(d), b, err))
		goto out;
	if (boot_cpu_long_mode(xc_vcpu_get(d, 0), entry, err))
		goto out;
	*entry_out = entry;
	rc = 0;
out:
	free(k);
	free(rd);
	return rc;
}
