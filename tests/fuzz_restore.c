/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: restore's record handling, from the stream up to the
 * xc boundary.  An image goes through hvmctx_restore_begin() and
 * hvmctx_restore_finish() exactly as sr-restore drives them, with the
 * serial8250 DEVICE model behind the device hook; below hvmctx, xc is a
 * fake (this file) and so is KVM: every ioctl hvmctx makes lands in
 * fake_ioctl(), which reads and writes the caller's buffers the way the
 * kernel's copy_from_user/copy_to_user would, sized as KVM sizes them (an
 * MSR or CPUID count taken from the buffer itself, XSAVE's 4 KiB), so
 * AddressSanitizer sees any block that is shorter than what hvmctx hands
 * to KVM.  Guest memory is anonymous, so page writes past a region fault.
 *
 * The fake host offers every CPUID feature and knows every MSR the image
 * carries, so most inputs get past the CPU checks to the vCPU loading, the
 * clock and the TSC; for some, drawn from the input's hash (fuzz_input.h),
 * it lacks a few CPUID bits or one MSR, or one of its ioctls fails.  The
 * same hash draws how the stream is read: 0-3 workers placing pages while
 * the next record is read, a pipe for input, stop-at-END (a migration
 * stream, as sr-restore reads one).  The domain belongs to a fake runner,
 * and a failed restore is torn down by sr-restore's own restore_abandon()
 * (restore_teardown.h), so a worker still placing pages when the domain's
 * memory goes is caught here.  The structure-aware mutator
 * (fuzz_mutator.c) makes mutations reach the checks behind the checksums.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "hvmctx.h"
#include "restore_teardown.h"
#include "runner.h"
#include "serial8250.h"
#include "sr.h"

#define FAKE_KVM_FD	1000
#define FAKE_VM_FD	1001
#define FAKE_VCPU_FD	2000
#define FAKE_MAX_RAM	(1ull << 30)	/* what sr-restore --max-memory would allow here */
#define FAKE_TSC_KHZ	2400000

struct xc_vcpu {
	struct xc_domain *d;
	unsigned id;
	struct kvm_regs regs;		/* read back by hvmctx's confirm() */
	struct kvm_sregs sregs;
};

struct xc_domain {
	unsigned nvcpus, max_vcpus;
	struct xc_vcpu vcpu[XC_MAX_VCPUS];
	struct xc_region regions[XC_MAX_REGIONS];
	unsigned nregions;
	uint64_t ram;
	struct kvm_cpuid2 *cpuid;
	uint32_t msrs[1024];
	unsigned nmsrs;
	/*
	 * Offered for half the inputs: generated images have unrelated SREGS
	 * and SREGS2 blocks, so with SREGS2 loaded the read-back check stops
	 * the restore before the later blocks are loaded.
	 */
	bool sregs2;
	/* A host that refuses: the ioctl_fail-th ioctl fails (0: none). */
	unsigned ioctls, ioctl_fail;
};

/* What sr-restore's runner is to the restore: the domain and its UART. */
struct runner {
	struct xc_domain d;
	struct serial *uart;
};

/* ------------------------------------------------------------- fake xc */

int xc_check_cap(const struct xc_domain *d, long cap)
{
	if (cap == KVM_CAP_SREGS2)
		return d->sregs2;
	return cap == KVM_CAP_ADJUST_CLOCK ? KVM_CLOCK_REALTIME : cap == KVM_CAP_XSAVE2 ? 4096 : 1;
}

const struct kvm_cpuid2 *xc_domain_cpuid(const struct xc_domain *d) { return d->cpuid; }
int xc_domain_kvm_fd(const struct xc_domain *d) { (void)d; return FAKE_KVM_FD; }
int xc_domain_vm_fd(const struct xc_domain *d) { (void)d; return FAKE_VM_FD; }
unsigned xc_domain_vcpus(const struct xc_domain *d) { return d->nvcpus; }
struct xc_vcpu *xc_vcpu_get(const struct xc_domain *d, unsigned id)
{
	return id < d->nvcpus ? (struct xc_vcpu *)&d->vcpu[id] : NULL;
}
struct xc_domain *xc_vcpu_domain(const struct xc_vcpu *v) { return v->d; }
int xc_vcpu_fd(const struct xc_vcpu *v) { return FAKE_VCPU_FD + (int)v->id; }
unsigned xc_vcpu_id(const struct xc_vcpu *v) { return v->id; }
uint32_t xc_vcpu_native_tsc_khz(const struct xc_vcpu *v) { (void)v; return FAKE_TSC_KHZ; }

unsigned xc_mem_regions(const struct xc_domain *d, const struct xc_region **regions)
{
	*regions = d->regions;
	return d->nregions;
}

int xc_mem_add(struct xc_domain *d, uint64_t gpa, uint64_t size, struct xc_error *err)
{
	struct xc_region *r;

	if (d->nregions == XC_MAX_REGIONS)
		return xc_set_error(err, 0, "at most %d memory regions", XC_MAX_REGIONS);
	if (!size || (gpa | size) & 4095)
		return xc_set_error(err, 0, "region not page aligned");
	for (unsigned i = 0; i < d->nregions; i++)
		if (gpa < d->regions[i].gpa + d->regions[i].size && d->regions[i].gpa < gpa + size)
			return xc_set_error(err, 0, "regions overlap");
	if (size > FAKE_MAX_RAM - d->ram)
		return xc_set_error(err, ENOMEM, "more guest RAM than --max-memory");
	r = &d->regions[d->nregions];
	memset(r, 0, sizeof(*r));
	r->slot = d->nregions;
	r->gpa = gpa;
	r->size = size;
	r->memfd = -1;
	r->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		      -1, 0);
	if (r->hva == MAP_FAILED)
		return xc_set_error(err, errno, "mapping guest memory");
	d->ram += size;
	d->nregions++;
	return 0;
}

int xc_mem_discard(struct xc_domain *d, unsigned slot, uint64_t off, uint64_t len,
		   struct xc_error *err)
{
	(void)err;
	if (slot >= d->nregions || off > d->regions[slot].size || len > d->regions[slot].size - off)
		abort();		/* hvmctx must never ask for memory outside a region */
	madvise(d->regions[slot].hva + off, len, MADV_DONTNEED);
	return 0;
}

int xc_mem_prefault(struct xc_domain *d, unsigned slot, uint64_t off, uint64_t len)
{
	if (slot >= d->nregions || off > d->regions[slot].size || len > d->regions[slot].size - off)
		abort();		/* hvmctx must never ask for memory outside a region */
	return 0;
}

struct xc_vcpu *xc_vcpu_create(struct xc_domain *d, unsigned id, struct xc_error *err)
{
	if (id != d->nvcpus || id >= d->max_vcpus) {
		xc_set_error(err, 0, "vCPU %u out of order or beyond %u", id, d->max_vcpus);
		return NULL;
	}
	memset(&d->vcpu[id], 0, sizeof(d->vcpu[id]));
	d->vcpu[id].d = d;
	d->vcpu[id].id = id;
	d->nvcpus++;
	return &d->vcpu[id];
}

/* ------------------------------------------------------------ fake KVM */

static struct xc_domain *cur;

static volatile uint8_t kernel_sum;

/* What the kernel copies in from userspace: every byte of it is read. */
static void copy_in(void *dst, const void *src, size_t len)
{
	if (dst) {
		memcpy(dst, src, len);
		return;
	}
	for (size_t i = 0; i < len; i++)
		kernel_sum ^= ((const uint8_t *)src)[i];
}

static int fake_ioctl(int fd, unsigned long req, void *p)
{
	static uint8_t scratch[8192];
	struct xc_vcpu *v = fd >= FAKE_VCPU_FD && fd < FAKE_VCPU_FD + XC_MAX_VCPUS &&
			    cur && (unsigned)(fd - FAKE_VCPU_FD) < cur->nvcpus ?
			    &cur->vcpu[fd - FAKE_VCPU_FD] : NULL;

	if (fd != FAKE_KVM_FD && fd != FAKE_VM_FD && !v)
		abort();		/* an ioctl on a vCPU that was never created */
	if (cur && ++cur->ioctls == cur->ioctl_fail) {
		errno = EINVAL;
		return -1;
	}
	switch (req) {
	case KVM_GET_MSR_INDEX_LIST: {
		struct kvm_msr_list *l = p;

		if (l->nmsrs < cur->nmsrs) {
			l->nmsrs = cur->nmsrs;
			errno = E2BIG;
			return -1;
		}
		l->nmsrs = cur->nmsrs;
		memcpy(l->indices, cur->msrs, cur->nmsrs * 4);
		return 0;
	}
	case KVM_SET_MSRS:
	case KVM_GET_MSRS: {
		struct kvm_msrs *m = p;

		if (m->nmsrs >= 256) {		/* KVM's MAX_IO_MSRS */
			errno = E2BIG;
			return -1;
		}
		copy_in(NULL, m->entries, m->nmsrs * sizeof(m->entries[0]));
		if (req == KVM_GET_MSRS)
			for (uint32_t i = 0; i < m->nmsrs; i++)
				m->entries[i].data = 0;
		return (int)m->nmsrs;
	}
	case KVM_SET_CPUID2: {
		const struct kvm_cpuid2 *c = p;

		if (c->nent > 256) {		/* KVM_MAX_CPUID_ENTRIES */
			errno = E2BIG;
			return -1;
		}
		copy_in(NULL, c->entries, c->nent * sizeof(c->entries[0]));
		return 0;
	}
	case KVM_SET_REGS: copy_in(&v->regs, p, sizeof(v->regs)); return 0;
	case KVM_GET_REGS: memcpy(p, &v->regs, sizeof(v->regs)); return 0;
	case KVM_SET_SREGS: copy_in(&v->sregs, p, sizeof(v->sregs)); return 0;
	case KVM_GET_SREGS: memcpy(p, &v->sregs, sizeof(v->sregs)); return 0;
	case KVM_SET_SREGS2: {
		struct kvm_sregs2 s2;

		copy_in(&s2, p, sizeof(s2));
		memcpy(&v->sregs, &s2, offsetof(struct kvm_sregs2, flags));
		return 0;
	}
	case KVM_SET_XSAVE: copy_in(NULL, p, 4096); return 0;
	case KVM_SET_XCRS: copy_in(NULL, p, sizeof(struct kvm_xcrs)); return 0;
	case KVM_SET_DEBUGREGS: copy_in(NULL, p, sizeof(struct kvm_debugregs)); return 0;
	case KVM_SET_LAPIC: copy_in(NULL, p, sizeof(struct kvm_lapic_state)); return 0;
	case KVM_SET_MP_STATE: copy_in(NULL, p, sizeof(struct kvm_mp_state)); return 0;
	case KVM_SET_VCPU_EVENTS: copy_in(NULL, p, sizeof(struct kvm_vcpu_events)); return 0;
	case KVM_SET_PIT2: copy_in(NULL, p, sizeof(struct kvm_pit_state2)); return 0;
	case KVM_SET_IRQCHIP: copy_in(NULL, p, sizeof(struct kvm_irqchip)); return 0;
	case KVM_SET_CLOCK: copy_in(NULL, p, sizeof(struct kvm_clock_data)); return 0;
	case KVM_GET_CLOCK: {
		struct kvm_clock_data *c = p;

		memset(c, 0, sizeof(*c));
		c->clock = 1000000000;
		c->flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
		c->host_tsc = 123456789;
		return 0;
	}
	case KVM_GET_TSC_KHZ: return FAKE_TSC_KHZ;
	case KVM_SET_TSC_KHZ: return (unsigned long)p > 0 && (unsigned long)p < 10000000 ? 0 : -1;
	case KVM_HAS_DEVICE_ATTR: return 0;
	case KVM_GET_DEVICE_ATTR: {
		const struct kvm_device_attr *a = p;

		memset((void *)(uintptr_t)a->addr, 0, 8);
		return 0;
	}
	case KVM_SET_DEVICE_ATTR: {
		const struct kvm_device_attr *a = p;

		copy_in(NULL, (const void *)(uintptr_t)a->addr, 8);
		return 0;
	}
	case KVM_KVMCLOCK_CTRL: return 0;
	default:
		/* Anything else hvmctx reads gets a zeroed answer of the ioctl's size. */
		if (_IOC_DIR(req) & _IOC_READ && _IOC_SIZE(req) <= sizeof(scratch))
			memset(p, 0, _IOC_SIZE(req));
		return 0;
	}
}

int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *p;

	va_start(ap, req);
	p = va_arg(ap, void *);
	va_end(ap);
	return fake_ioctl(fd, req, p);
}

/* serial8250.c writes guest output to a console; nothing does here. */
void console_write(struct console *c, const void *buf, size_t len)
{
	(void)c; (void)buf; (void)len;
}

/* --------------------------------------------------------------- target */

/* The fake host knows every MSR vCPU 0 of the image carries. */
static void learn_msrs(struct xc_domain *d, const uint8_t *data, size_t size)
{
	struct sr_error se;
	struct sr_record rec;
	struct sr_block b;
	struct sr_reader *r;
	int fd = memfd_create("scan", MFD_CLOEXEC);

	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	lseek(fd, 0, SEEK_SET);
	r = sr_reader_open(fd, &se);
	while (r && sr_reader_next(r, &rec, &se) == 1) {
		const struct sr_rec_context *c = rec.body;
		struct sr_blk_count cnt;

		if (rec.type != SR_REC_VCPU_CONTEXT || c->id != 0 ||
		    !sr_context_find(&rec, SR_BLK_MSRS, &b) || b.length < sizeof(cnt))
			continue;
		memcpy(&cnt, b.data, sizeof(cnt));
		for (uint32_t i = 0; i < cnt.count && d->nmsrs < 1024 &&
		     sizeof(cnt) + (i + 1) * sizeof(struct kvm_msr_entry) <= b.length; i++)
			memcpy(&d->msrs[d->nmsrs++],
			       (const uint8_t *)b.data + sizeof(cnt) + i * sizeof(struct kvm_msr_entry), 4);
	}
	sr_reader_free(r);
	close(fd);
}

static int restore_device(void *arg, const char *name, uint32_t version, uint32_t instance,
			  const void *data, size_t len, struct xc_error *err)
{
	struct runner *r = arg;

	return serial_restore_device(r->uart, name, version, instance, data, len, err);
}

static void no_irq(void *arg, int level) { (void)arg; (void)level; }

/* The host's CPUID: every feature word the CPU check reads, all bits offered. */
static struct kvm_cpuid2 *host_cpuid(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 64 * sizeof(c->entries[0]));

	if (!c)
		abort();
	for (uint32_t leaf = 0; leaf < 0x20; leaf++) {
		c->entries[c->nent++] = (struct kvm_cpuid_entry2){
			.function = leaf, .eax = ~0u, .ebx = ~0u, .ecx = ~0u, .edx = ~0u };
		if (leaf == 0x7 || leaf == 0xd)
			c->entries[c->nent++] = (struct kvm_cpuid_entry2){
				.function = leaf, .index = 1, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
				.eax = ~0u, .ebx = ~0u, .ecx = ~0u, .edx = ~0u };
	}
	c->entries[c->nent++] = (struct kvm_cpuid_entry2){
		.function = 0x80000001, .eax = ~0u, .ebx = ~0u, .ecx = ~0u, .edx = ~0u };
	return c;
}

/* A host that lacks a few CPUID bits, or one MSR, or fails an ioctl, for some inputs. */
static void host_refuse(struct xc_domain *d, struct fuzz_draw *dr)
{
	if (!fuzz_draw(dr, 4))
		for (unsigned k = 1 + fuzz_draw(dr, 4); k; k--) {
			struct kvm_cpuid_entry2 *e = &d->cpuid->entries[fuzz_draw(dr, d->cpuid->nent)];
			uint32_t *reg[] = { &e->eax, &e->ebx, &e->ecx, &e->edx };

			*reg[fuzz_draw(dr, 4)] &= ~(1u << fuzz_draw(dr, 32));
		}
	if (d->nmsrs && !fuzz_draw(dr, 4)) {
		unsigned gone = fuzz_draw(dr, d->nmsrs);

		d->msrs[gone] = d->msrs[--d->nmsrs];
	}
	if (!fuzz_draw(dr, 8))
		d->ioctl_fail = 1 + fuzz_draw(dr, 64);
}

/* runner_new() as far as a restore needs it: an empty domain for img. */
static struct runner *runner_fake(const uint8_t *data, size_t size, const struct hvmctx_image *img,
				  struct fuzz_draw *dr)
{
	struct runner *r = calloc(1, sizeof(*r));

	if (!r)
		abort();
	r->d.cpuid = host_cpuid();
	learn_msrs(&r->d, data, size);
	r->d.sregs2 = fuzz_draw(dr, 2);
	r->d.max_vcpus = img->vcpus;
	host_refuse(&r->d, dr);
	r->uart = serial_new(NULL, no_irq, NULL);
	cur = &r->d;
	return r;
}

/* sr-restore's runner_free(), for the fake: the domain's memory goes with it. */
void runner_free(struct runner *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->d.nregions; i++)
		munmap(r->d.regions[i].hva, r->d.regions[i].size);
	free(r->d.cpuid);
	serial_free(r->uart);
	free(r);
	cur = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hvmctx_restore_opts o = { .clock = HVMCTX_CLOCK_ADVANCE, .device = restore_device };
	struct hvmctx_restore_stats st;
	struct hvmctx_restore *rs;
	struct hvmctx_image img;
	struct xc_error err = { 0 };
	struct fuzz_input in;
	struct fuzz_draw dr;
	struct runner *r;
	unsigned pipe_bytes;
	bool stop_at_end;

	fuzz_draw_init(&dr, data, size);
	o.threads = fuzz_draw(&dr, 4);
	pipe_bytes = fuzz_draw(&dr, 4) ? 0 : fuzz_draw(&dr, 2) ? 4096 : 65536;
	stop_at_end = !fuzz_draw(&dr, 4);
	fuzz_input_open(&in, data, size, pipe_bytes);

	/* As sr-restore's main() goes. */
	rs = hvmctx_restore_begin(in.fd, &img, &err);
	if (rs && stop_at_end)
		hvmctx_restore_stop_at_end(rs);
	if (rs && img.vcpus > XC_MAX_VCPUS) {
		snprintf(err.msg, sizeof(err.msg), "%u vCPUs, more than sr-restore runs", img.vcpus);
		hvmctx_restore_free(rs);
		rs = NULL;
	}
	if (rs) {
		r = runner_fake(data, size, &img, &dr);
		o.device_arg = r;
		if (hvmctx_restore_finish(rs, &r->d, &o, &st, &err) == 0) {
			snprintf(err.msg, sizeof(err.msg), "restored: %u vCPUs, %llu pages, TSC %d",
				 r->d.nvcpus, (unsigned long long)st.pages, st.tsc);
			hvmctx_restore_free(rs);
			runner_free(r);
		} else {
			restore_abandon(r, rs);
		}
	}
	/* FUZZ_RESTORE_SAY=1: how each input was read and how it ended (to see how deep a corpus gets). */
	if (getenv("FUZZ_RESTORE_SAY"))
		fprintf(stderr, "fuzz-restore: threads %u pipe %u stop-at-end %d: %s\n", o.threads,
			pipe_bytes, stop_at_end, err.msg);
	fuzz_input_close(&in);
	return 0;
}
