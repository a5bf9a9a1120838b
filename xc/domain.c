/* SPDX-License-Identifier: MIT */
/* VM lifecycle: /dev/kvm, capabilities, the VM, its memory and its events. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "xc.h"
#include "xc_priv.h"

/*
 * A kick that lands while the vCPU thread is outside KVM_RUN (handling an
 * exit) must still knock out its next entry: immediate_exit makes that
 * KVM_RUN return EINTR at once (api.rst's recipe for signal-based kicks).
 */
static void kick_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	xc_vcpu_kicked(si->si_code == SI_TIMER);
}

int xc_install_kick_handler(struct xc_error *err)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = kick_handler;	/* no SA_RESTART: KVM_RUN must return EINTR */
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(XC_KICK_SIGNAL, &sa, NULL))
		return xc_set_error(err, errno, "installing the vCPU kick signal handler");
	return 0;
}

int xc_check_cap(const struct xc_domain *d, long cap)
{
	int r = ioctl(d->vm_fd >= 0 ? d->vm_fd : d->kvm_fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

/*
 * KVM emulates the LAPIC's TSC-deadline mode with its in-kernel irqchip but
 * leaves the bit out of KVM_GET_SUPPORTED_CPUID (it is in the emulated
 * list); like QEMU, offer it when KVM_CAP_TSC_DEADLINE_TIMER says so.
 */
static void offer_tsc_deadline(struct xc_domain *d)
{
	if (xc_check_cap(d, KVM_CAP_TSC_DEADLINE_TIMER) <= 0)
		return;
	for (uint32_t i = 0; i < d->cpuid->nent; i++)
		if (d->cpuid->entries[i].function == 1)
			d->cpuid->entries[i].ecx |= 1u << 24;
}

static int fetch_supported_cpuid(struct xc_domain *d, struct xc_error *err)
{
	for (unsigned n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		if (!c)
			return xc_set_error(err, ENOMEM, "allocating CPUID");
		c->nent = n;
		if (!ioctl(d->kvm_fd, KVM_GET_SUPPORTED_CPUID, c)) {
			d->cpuid = c;
			offer_tsc_deadline(d);
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return xc_set_error(err, errno, "KVM_GET_SUPPORTED_CPUID");
	}
	return xc_set_error(err, E2BIG, "KVM_GET_SUPPORTED_CPUID");
}

/* Ring entries per vCPU: 64 KiB of 16-byte entries, within what KVM allows. */
#define XC_RING_ENTRIES 4096u

static int enable_dirty_ring(struct xc_domain *d, struct xc_error *err)
{
	int max = ioctl(d->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
	uint32_t bytes = XC_RING_ENTRIES * sizeof(struct kvm_dirty_gfn);
	struct kvm_enable_cap cap = { .cap = KVM_CAP_DIRTY_LOG_RING, .args[0] = bytes };

	if (max <= 0)
		return xc_set_error(err, 0, "this KVM lacks KVM_CAP_DIRTY_LOG_RING");
	while (bytes > (uint32_t)max && bytes > 4096)
		bytes /= 2;
	cap.args[0] = bytes;
	if (ioctl(d->vm_fd, KVM_ENABLE_CAP, &cap))
		return xc_set_error(err, errno, "enabling a %u-byte dirty ring", bytes);
	d->ring_entries = bytes / sizeof(struct kvm_dirty_gfn);
	return 0;
}

/* Throttle sleeps wait on d->cond with a deadline: a step of the wall clock must not move it. */
static void cond_init_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
}

struct xc_domain *xc_domain_create(const struct xc_domain_config *cfg, struct xc_error *err)
{
	struct xc_domain *d;
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	char missing[256] = "";
	int api;

	if (!cfg || cfg->vcpus < 1 || cfg->vcpus > XC_MAX_VCPUS) {
		xc_set_error(err, 0, "bad domain configuration (vcpus must be 1..%d)", XC_MAX_VCPUS);
		return NULL;
	}
	if (xc_install_kick_handler(err))
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d) {
		xc_set_error(err, ENOMEM, "allocating the domain");
		return NULL;
	}
	d->kvm_fd = d->vm_fd = d->event_fd = -1;
	d->nvcpus_max = cfg->vcpus;
	d->ops = cfg->ops;
	d->opaque = cfg->opaque;
	d->thread_start = cfg->thread_start;
	d->pausing_hook = cfg->pausing;
	d->paused_hook = cfg->paused;
	d->resuming_hook = cfg->resuming;
	pthread_mutex_init(&d->lock, NULL);
	cond_init_monotonic(&d->cond);
	pthread_mutex_init(&d->ring_lock, NULL);

	d->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (d->kvm_fd < 0) {
		xc_set_error(err, errno, "opening /dev/kvm%s",
			     errno == ENOENT ? " (no KVM on this host: load kvm-intel or kvm-amd)" :
			     errno == EACCES ? " (join the kvm group, or run as root)" : "");
		goto fail;
	}
	api = ioctl(d->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		xc_set_error(err, 0, "KVM API version %d, need %d", api, KVM_API_VERSION);
		goto fail;
	}
	xc_missing_caps(d->kvm_fd, cfg->extra_caps, cfg->n_extra_caps, missing, sizeof(missing));
	if (missing[0]) {
		xc_set_error(err, 0, "this KVM lacks capabilities sr needs:%s", missing);
		goto fail;
	}
	d->run_size = ioctl(d->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (d->run_size < (int)sizeof(struct kvm_run)) {
		xc_set_error(err, errno, "KVM_GET_VCPU_MMAP_SIZE");
		goto fail;
	}
	if (fetch_supported_cpuid(d, err))
		goto fail;

	d->vm_fd = ioctl(d->kvm_fd, KVM_CREATE_VM, 0);
	if (d->vm_fd < 0) {
		xc_set_error(err, errno, "KVM_CREATE_VM");
		goto fail;
	}
	if (cfg->dirty_ring && enable_dirty_ring(d, err))
		goto fail;
	if (ioctl(d->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ XC_IDENTITY_MAP_ADDR })) {
		xc_set_error(err, errno, "KVM_SET_IDENTITY_MAP_ADDR");
		goto fail;
	}
	if (ioctl(d->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)XC_TSS_ADDR)) {
		xc_set_error(err, errno, "KVM_SET_TSS_ADDR");
		goto fail;
	}
	if (ioctl(d->vm_fd, KVM_CREATE_IRQCHIP, 0)) {
		xc_set_error(err, errno, "KVM_CREATE_IRQCHIP");
		goto fail;
	}
	if (ioctl(d->vm_fd, KVM_CREATE_PIT2, &pit)) {
		xc_set_error(err, errno, "KVM_CREATE_PIT2");
		goto fail;
	}
	d->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->event_fd < 0) {
		xc_set_error(err, errno, "eventfd");
		goto fail;
	}
	return d;
fail:
	xc_domain_destroy(d);
	return NULL;
}

void xc_domain_destroy(struct xc_domain *d)
{
	if (!d)
		return;
	xc_domain_stop(d);
	for (unsigned i = 0; i < d->nvcpus; i++)
		xc_vcpu_free(d->vcpu[i]);
	for (unsigned i = 0; i < d->nregions; i++) {
		munmap(d->regions[i].hva, d->regions[i].size);
		close(d->regions[i].memfd);
	}
	if (d->vm_fd >= 0)
		close(d->vm_fd);
	if (d->kvm_fd >= 0)
		close(d->kvm_fd);
	if (d->event_fd >= 0)
		close(d->event_fd);
	free(d->cpuid);
	for (unsigned i = 0; i < XC_MAX_REGIONS; i++) {
		free(d->ring_bits[i]);
		free(d->host_bits[i]);
	}
	pthread_mutex_destroy(&d->ring_lock);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d);
}

int xc_domain_vm_fd(const struct xc_domain *d)
{
	return d->vm_fd;
}

int xc_domain_kvm_fd(const struct xc_domain *d)
{
	return d->kvm_fd;
}

unsigned xc_domain_vcpus(const struct xc_domain *d)
{
	return d->nvcpus_max;
}

const struct kvm_cpuid2 *xc_domain_cpuid(const struct xc_domain *d)
{
	return d->cpuid;
}

/* ------------------------------------------------------------ memory */

int xc_set_region_flags(struct xc_domain *d, struct xc_region *r, bool dirty_log,
			struct xc_error *err)
{
	struct kvm_userspace_memory_region m = {
		.slot = r->slot,
		.flags = dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	if (ioctl(d->vm_fd, KVM_SET_USER_MEMORY_REGION, &m))
		return xc_set_error(err, errno, "KVM_SET_USER_MEMORY_REGION slot %u (gpa 0x%llx, %llu MiB)",
				    r->slot, (unsigned long long)r->gpa,
				    (unsigned long long)(r->size >> 20));
	r->dirty_log = dirty_log;
	return 0;
}

int xc_mem_add(struct xc_domain *d, uint64_t gpa, uint64_t size, struct xc_error *err)
{
	struct xc_region *r;

	if (d->nregions == XC_MAX_REGIONS)
		return xc_set_error(err, 0, "at most %d memory regions", XC_MAX_REGIONS);
	if (!size || (gpa | size) & 4095)
		return xc_set_error(err, 0, "region gpa 0x%llx size 0x%llx not page aligned",
				    (unsigned long long)gpa, (unsigned long long)size);
	for (unsigned i = 0; i < d->nregions; i++)
		if (gpa < d->regions[i].gpa + d->regions[i].size && d->regions[i].gpa < gpa + size)
			return xc_set_error(err, 0, "region at 0x%llx overlaps slot %u",
					    (unsigned long long)gpa, i);
	if (x86_covers_fixed(gpa, size))
		return xc_set_error(err, 0, "RAM at 0x%llx..0x%llx covers 0x%llx..0x%llx, the IOAPIC, "
				    "LAPIC and KVM's identity map and TSS", (unsigned long long)gpa,
				    (unsigned long long)(gpa + size - 1),
				    (unsigned long long)X86_FIXED_START,
				    (unsigned long long)(X86_HOLE_END - 1));
	if (gpa + size < gpa || (gpa + size - 1) >> xc_guest_phys_bits(d))
		return xc_set_error(err, 0, "RAM at 0x%llx..0x%llx lies past what the guest can "
				    "address: its CPUs have %u physical address bits",
				    (unsigned long long)gpa, (unsigned long long)(gpa + size - 1),
				    xc_guest_phys_bits(d));
	r = &d->regions[d->nregions];
	memset(r, 0, sizeof(*r));
	r->slot = d->nregions;
	r->gpa = gpa;
	r->size = size;
	r->memfd = memfd_create("sr-guest-ram", MFD_CLOEXEC);
	if (r->memfd < 0)
		return xc_set_error(err, errno, "memfd_create");
	if (ftruncate(r->memfd, size)) {
		xc_set_error(err, errno, "sizing guest memory to %llu MiB",
			     (unsigned long long)(size >> 20));
		close(r->memfd);
		return -1;
	}
	r->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, r->memfd, 0);
	if (r->hva == MAP_FAILED) {
		xc_set_error(err, errno, "mapping %llu MiB of guest memory",
			     (unsigned long long)(size >> 20));
		close(r->memfd);
		return -1;
	}
	if (xc_set_region_flags(d, r, false, err)) {
		munmap(r->hva, size);
		close(r->memfd);
		return -1;
	}
	d->nregions++;
	return 0;
}

int xc_mem_add_ram(struct xc_domain *d, uint64_t bytes, struct xc_error *err)
{
	if (xc_mem_add(d, 0, x86_low_ram(bytes), err))
		return -1;
	if (x86_high_ram(bytes) && xc_mem_add(d, X86_HIGH_RAM_START, x86_high_ram(bytes), err))
		return -1;
	return 0;
}

unsigned xc_guest_phys_bits(const struct xc_domain *d)
{
	for (unsigned i = 0; d->cpuid && i < d->cpuid->nent; i++)
		if (d->cpuid->entries[i].function == 0x80000008 &&
		    (d->cpuid->entries[i].eax & 0xff) >= 32)
			return d->cpuid->entries[i].eax & 0xff;
	return 36;	/* what the SDM says a CPU without the leaf has */
}

int xc_mem_discard(struct xc_domain *d, unsigned slot, uint64_t off, uint64_t len,
		   struct xc_error *err)
{
	if (slot >= d->nregions || off > d->regions[slot].size || len > d->regions[slot].size - off)
		return xc_set_error(err, 0, "discard of slot %u +0x%llx outside it", slot,
				    (unsigned long long)off);
	if (fallocate(d->regions[slot].memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len))
		return xc_set_error(err, errno, "punching a hole in guest memory");
	return 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23	/* Linux 5.14 */
#endif

int xc_mem_prefault(struct xc_domain *d, unsigned slot, uint64_t off, uint64_t len)
{
	if (slot >= d->nregions || off > d->regions[slot].size || len > d->regions[slot].size - off)
		return -1;
	/* Older kernels: EINVAL, and the writes fault the pages in one by one as before. */
	return madvise(d->regions[slot].hva + off, len, MADV_POPULATE_WRITE) ? -1 : 0;
}

unsigned xc_mem_regions(const struct xc_domain *d, const struct xc_region **regions)
{
	*regions = d->regions;
	return d->nregions;
}

void *xc_gpa_to_hva(const struct xc_domain *d, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < d->nregions; i++) {
		const struct xc_region *r = &d->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

/* ------------------------------------------------------------ events */

int xc_domain_event_fd(const struct xc_domain *d)
{
	return d->event_fd;
}

void xc_post_event(struct xc_domain *d)
{
	uint64_t one = 1;
	ssize_t n = write(d->event_fd, &one, sizeof(one));

	(void)n;	/* EAGAIN means an event is already pending */
}

void xc_domain_event(struct xc_domain *d, struct xc_event *ev)
{
	uint64_t v;
	ssize_t n = read(d->event_fd, &v, sizeof(v));

	(void)n;
	pthread_mutex_lock(&d->lock);
	ev->stopped = d->stopped;
	ev->status = d->status;
	ev->parked = 0;
	for (unsigned i = 0; i < d->nvcpus; i++)
		ev->parked += xc_vcpu_self_parked(d->vcpu[i]);
	snprintf(ev->msg, sizeof(ev->msg), "%s", d->stop_msg);
	pthread_mutex_unlock(&d->lock);
}

void xc_domain_set_status(struct xc_domain *d, int status)
{
	pthread_mutex_lock(&d->lock);
	d->status = status;
	pthread_mutex_unlock(&d->lock);
}
