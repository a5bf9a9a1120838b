/* SPDX-License-Identifier: MIT */
/*
 * What this host's /dev/kvm is and whether it can run sr's guests.
 *
 * A /dev/kvm does not mean hardware KVM: kvm_pvm (a paravirtual KVM) serves
 * the same ioctls but runs only kernels built for it, so sr's guests die in
 * instruction emulation or never print.  The probe names the module behind
 * /dev/kvm, lists the capabilities sr uses, and runs a probe guest of a few
 * instructions (CPUID, a control register read and write, a port write) in
 * the 32-bit protected mode sr's test guest starts in, with a deadline, so
 * a host that cannot run it is refused in well under a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "xc.h"
#include "xc_priv.h"

#define PROBE_PORT	0x5a5
#define PROBE_VALUE	0x53521e57u
#define PROBE_MEM	0x10000ull
#define PROBE_ENTRY	0x1000ull

#define PROBE_FCW_IN	0x2000		/* an x87 control word the guest loads */
#define PROBE_FCW_OUT	0x2004		/* where it stores it back */
#define PROBE_FCW	0x027f

/*
 * xor eax,eax; cpuid; mov eax,cr0; mov cr0,eax; fninit; fldcw [IN];
 * fnstcw [OUT]; mov eax,PROBE_VALUE; mov dx,PROBE_PORT; out dx,eax; jmp $
 * The x87 load is where kvm_pvm stopped sr's test guest.
 */
static const uint8_t probe_code[] = {
	0x31, 0xc0, 0x0f, 0xa2, 0x0f, 0x20, 0xc0, 0x0f, 0x22, 0xc0,
	0xdb, 0xe3, 0xd9, 0x2d, 0x00, 0x20, 0x00, 0x00, 0xd9, 0x3d, 0x04, 0x20, 0x00, 0x00,
	0xb8, PROBE_VALUE & 0xff, (PROBE_VALUE >> 8) & 0xff, (PROBE_VALUE >> 16) & 0xff,
	PROBE_VALUE >> 24,
	0x66, 0xba, PROBE_PORT & 0xff, PROBE_PORT >> 8, 0xef, 0xeb, 0xfe,
};
/* The out instruction; KVM reports the exit with rip at it or just past it. */
#define PROBE_OUT_END	(PROBE_ENTRY + sizeof(probe_code) - 2)
#define PROBE_OUT_AT	(PROBE_OUT_END - 1)

static const struct {
	long cap;
	const char *name;
	bool required;
} host_caps[] = {
	{ KVM_CAP_USER_MEMORY, "USER_MEMORY", true },
	{ KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR", true },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "SET_IDENTITY_MAP_ADDR", true },
	{ KVM_CAP_IRQCHIP, "IRQCHIP", true },
	{ KVM_CAP_PIT2, "PIT2", true },
	{ KVM_CAP_PIT_STATE2, "PIT_STATE2", true },
	{ KVM_CAP_EXT_CPUID, "EXT_CPUID", true },
	{ KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT", true },
	{ KVM_CAP_ADJUST_CLOCK, "ADJUST_CLOCK", true },
	{ KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS", true },
	{ KVM_CAP_DEBUGREGS, "DEBUGREGS", true },
	{ KVM_CAP_XSAVE, "XSAVE", true },
	{ KVM_CAP_XCRS, "XCRS", true },
	{ KVM_CAP_MP_STATE, "MP_STATE", true },
	{ KVM_CAP_GET_TSC_KHZ, "GET_TSC_KHZ", true },
	{ KVM_CAP_KVMCLOCK_CTRL, "KVMCLOCK_CTRL", true },
	{ KVM_CAP_SYNC_MMU, "SYNC_MMU", true },
	{ KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "MANUAL_DIRTY_LOG_PROTECT2", false },
	{ KVM_CAP_DIRTY_LOG_RING, "DIRTY_LOG_RING", false },
	{ KVM_CAP_TSC_CONTROL, "TSC_CONTROL", false },
	{ KVM_CAP_VCPU_ATTRIBUTES, "VCPU_ATTRIBUTES", false },
	{ KVM_CAP_SREGS2, "SREGS2", false },
	{ KVM_CAP_NESTED_STATE, "NESTED_STATE", false },
};
#define N_HOST_CAPS (sizeof(host_caps) / sizeof(host_caps[0]))

const char *xc_kvm_flavour_name(enum xc_kvm_flavour f)
{
	switch (f) {
	case XC_KVM_INTEL: return "kvm_intel";
	case XC_KVM_AMD: return "kvm_amd";
	case XC_KVM_PVM: return "kvm_pvm";
	case XC_KVM_OTHER: return "other";
	case XC_KVM_NONE: break;
	}
	return "none";
}

static bool module_loaded(const char *sysfs, const char *mod)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/module/%s", sysfs, mod);
	return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static void identify_module(struct xc_host *h, const char *sysfs)
{
	bool intel = module_loaded(sysfs, "kvm_intel"), amd = module_loaded(sysfs, "kvm_amd");

	h->pvm_loaded = module_loaded(sysfs, "kvm_pvm");
	if (intel)
		h->flavour = XC_KVM_INTEL;
	else if (amd)
		h->flavour = XC_KVM_AMD;
	else if (h->pvm_loaded)
		h->flavour = XC_KVM_PVM;
	else if (module_loaded(sysfs, "kvm"))
		h->flavour = XC_KVM_OTHER;
	else
		h->flavour = XC_KVM_NONE;
}

int xc_missing_caps(int kvm_fd, const long *extra, unsigned n_extra, char *buf, size_t len)
{
	int missing = 0;

	buf[0] = 0;
	for (size_t i = 0; i < N_HOST_CAPS; i++)
		if (host_caps[i].required && ioctl(kvm_fd, KVM_CHECK_EXTENSION, host_caps[i].cap) <= 0) {
			size_t n = strlen(buf);

			snprintf(buf + n, len - n, " KVM_CAP_%s", host_caps[i].name);
			missing++;
		}
	for (unsigned i = 0; i < n_extra; i++)
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, extra[i]) <= 0) {
			size_t n = strlen(buf);

			snprintf(buf + n, len - n, " KVM_CAP %ld", extra[i]);
			missing++;
		}
	return missing;
}

/* Sets up one pm32 vCPU at PROBE_ENTRY; 0 or -1 with h->guest_msg set. */
static int probe_vcpu_setup(struct xc_host *h, int vcpu_fd)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = PROBE_ENTRY, .rflags = 2 };

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs)) {
		snprintf(h->guest_msg, sizeof(h->guest_msg), "KVM_GET_SREGS: %s", strerror(errno));
		return -1;
	}
	xc_flat_seg(&sregs.cs, 0x08, 0xb);
	xc_flat_seg(&sregs.ds, 0x10, 0x3);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.cr0 = 0x11;
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) || ioctl(vcpu_fd, KVM_SET_REGS, &regs)) {
		snprintf(h->guest_msg, sizeof(h->guest_msg), "setting the probe vCPU's registers: %s",
			 strerror(errno));
		return -1;
	}
	return 0;
}

/* Runs the probe vCPU until its port write, an error, or the deadline. */
static int probe_vcpu_run(struct xc_host *h, int vcpu_fd, struct kvm_run *run,
			  const uint8_t *mem, unsigned budget_ms)
{
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = XC_KICK_SIGNAL };
	struct itimerspec its = { .it_interval = { 0, 20 * 1000000 }, .it_value = { 0, 20 * 1000000 } };
	uint64_t t0 = xc_now_ns(), deadline = t0 + (uint64_t)budget_ms * 1000000;
	struct kvm_regs regs;
	timer_t timer;
	int rc = -1;

	/* A periodic kick knocks KVM_RUN out so the deadline holds even if the guest spins. */
	sev._sigev_un._tid = gettid();
	if (timer_create(CLOCK_MONOTONIC, &sev, &timer)) {
		snprintf(h->guest_msg, sizeof(h->guest_msg), "timer_create: %s", strerror(errno));
		return -1;
	}
	timer_settime(timer, 0, &its, NULL);
	for (;;) {
		if (xc_now_ns() >= deadline) {
			snprintf(h->guest_msg, sizeof(h->guest_msg),
				 "the probe guest did not reach its port write within %u ms", budget_ms);
			rc = -2;
			break;
		}
		if (ioctl(vcpu_fd, KVM_RUN, 0)) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			snprintf(h->guest_msg, sizeof(h->guest_msg), "KVM_RUN: %s", strerror(errno));
			break;
		}
		if (run->exit_reason == KVM_EXIT_INTR)
			continue;
		if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
			snprintf(h->guest_msg, sizeof(h->guest_msg),
				 "KVM internal error, suberror %u%s", run->internal.suberror,
				 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
				 " (instruction emulation failed)" : "");
			break;
		}
		if (run->exit_reason != KVM_EXIT_IO) {
			snprintf(h->guest_msg, sizeof(h->guest_msg), "unexpected exit %u",
				 run->exit_reason);
			break;
		}
		uint32_t val;

		memcpy(&val, (uint8_t *)run + run->io.data_offset, sizeof(val));
		if (run->io.port != PROBE_PORT || run->io.direction != KVM_EXIT_IO_OUT ||
		    run->io.size != 4 || val != PROBE_VALUE) {
			snprintf(h->guest_msg, sizeof(h->guest_msg),
				 "wrong port write: port 0x%x size %u value 0x%x", run->io.port,
				 run->io.size, val);
			break;
		}
		if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) ||
		    (regs.rip != PROBE_OUT_AT && regs.rip != PROBE_OUT_END)) {
			snprintf(h->guest_msg, sizeof(h->guest_msg),
				 "port write seen but rip is 0x%llx, not 0x%llx",
				 (unsigned long long)regs.rip, (unsigned long long)PROBE_OUT_AT);
			break;
		}
		uint16_t fcw;

		memcpy(&fcw, mem + PROBE_FCW_OUT, sizeof(fcw));
		if (fcw != PROBE_FCW) {
			snprintf(h->guest_msg, sizeof(h->guest_msg),
				 "x87 control word stored as 0x%x, loaded as 0x%x", fcw, PROBE_FCW);
			break;
		}
		h->probe_us = (xc_now_ns() - t0) / 1000;
		snprintf(h->guest_msg, sizeof(h->guest_msg),
			 "CPUID, CR0 read/write, x87 load/store and a port write ran in %u us",
			 h->probe_us);
		rc = 0;
		break;
	}
	timer_delete(timer);
	return rc;
}

/* The probe guest in a VM built the way sr builds its own (TSS, irqchip, PIT2). */
static int probe_guest(struct xc_host *h, int kvm_fd, unsigned budget_ms)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int vm = -1, vcpu = -1, run_size, rc = -1;
	struct kvm_run *run = MAP_FAILED;
	uint8_t *mem;
	const char *step;

	mem = mmap(NULL, PROBE_MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		snprintf(h->guest_msg, sizeof(h->guest_msg), "mmap: %s", strerror(errno));
		return -1;
	}
	memcpy(mem + PROBE_ENTRY, probe_code, sizeof(probe_code));
	memcpy(mem + PROBE_FCW_IN, &(uint16_t){ PROBE_FCW }, 2);
	struct kvm_userspace_memory_region slot = { .slot = 0, .guest_phys_addr = 0,
						    .memory_size = PROBE_MEM,
						    .userspace_addr = (uintptr_t)mem };

	step = "KVM_CREATE_VM";
	vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm < 0)
		goto fail;
	step = "KVM_SET_TSS_ADDR";
	if (ioctl(vm, KVM_SET_TSS_ADDR, (unsigned long)XC_TSS_ADDR))
		goto fail;
	step = "KVM_CREATE_IRQCHIP";
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0))
		goto fail;
	step = "KVM_CREATE_PIT2";
	if (ioctl(vm, KVM_CREATE_PIT2, &pit))
		goto fail;
	step = "KVM_SET_USER_MEMORY_REGION";
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot))
		goto fail;
	step = "KVM_CREATE_VCPU";
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0UL);
	if (vcpu < 0)
		goto fail;
	step = "KVM_GET_VCPU_MMAP_SIZE";
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		goto fail;
	step = "mapping kvm_run";
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		goto fail;
	if (!probe_vcpu_setup(h, vcpu))
		rc = probe_vcpu_run(h, vcpu, run, mem, budget_ms);
	goto out;
fail:
	snprintf(h->guest_msg, sizeof(h->guest_msg), "%s: %s", step, strerror(errno));
out:
	if (run != MAP_FAILED)
		munmap(run, run_size);
	if (vcpu >= 0)
		close(vcpu);
	if (vm >= 0)
		close(vm);
	munmap(mem, PROBE_MEM);
	return rc;
}

/* why names what to do; other_host says when only another host (or a nested one) helps. */
static void verdict(struct xc_host *h, const char *missing)
{
	h->usable = false;
	h->other_host = true;
	if (h->flavour == XC_KVM_PVM) {
		snprintf(h->why, sizeof(h->why), "/dev/kvm is kvm_pvm, a paravirtual KVM that runs "
			 "only PVM-enabled kernels; sr needs kvm_intel or kvm_amd");
	} else if (!h->dev_present && h->dev_errno == EACCES) {
		h->other_host = false;
		snprintf(h->why, sizeof(h->why), "%s: the kvm group may open it: join it (usermod "
			 "-aG kvm USER, then log in again) or run as root", h->dev_msg);
	} else if (!h->dev_present) {
		snprintf(h->why, sizeof(h->why), "no usable /dev/kvm (%s); sr needs kvm_intel or "
			 "kvm_amd", h->dev_msg);
	} else if (h->api_version != KVM_API_VERSION) {
		h->other_host = false;
		snprintf(h->why, sizeof(h->why), "/dev/kvm speaks KVM API %d, sr needs %d",
			 h->api_version, KVM_API_VERSION);
	} else if (missing[0]) {
		snprintf(h->why, sizeof(h->why), "/dev/kvm (%s) lacks capabilities sr needs:%s",
			 xc_kvm_flavour_name(h->flavour), missing);
	} else if (!h->guest_ran) {
		snprintf(h->why, sizeof(h->why), "/dev/kvm (%s) cannot run a full-virtualization "
			 "guest: %s", xc_kvm_flavour_name(h->flavour), h->guest_msg);
	} else {
		h->usable = true;
		h->other_host = false;
	}
}

/*
 * Out of time (-2) is not a refusal: a loaded host (a nested box beside
 * other work) can miss the budget once; one more try, eight times as long,
 * before the host is called unusable.
 */
static int probe_guest_twice(struct xc_host *h, int kvm_fd, unsigned budget_ms)
{
	int rc = probe_guest(h, kvm_fd, budget_ms);

	return rc == -2 ? probe_guest(h, kvm_fd, 8 * budget_ms) : rc;
}

int xc_host_probe(struct xc_host *h, const struct xc_probe_opts *o)
{
	const char *sysfs = o && o->sysfs ? o->sysfs : "/sys";
	const char *dev = o && o->dev ? o->dev : "/dev/kvm";
	unsigned budget = o && o->budget_ms ? o->budget_ms : XC_PROBE_BUDGET_MS;
	char missing[512] = "";
	int fd;

	memset(h, 0, sizeof(*h));
	h->api_version = -1;
	identify_module(h, sysfs);
	for (size_t i = 0; i < N_HOST_CAPS; i++) {
		h->caps[i].name = host_caps[i].name;
		h->caps[i].required = host_caps[i].required;
		h->caps[i].value = -1;
	}
	h->ncaps = N_HOST_CAPS;
	snprintf(h->guest_msg, sizeof(h->guest_msg), "not run");

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		h->dev_errno = errno;
		snprintf(h->dev_msg, sizeof(h->dev_msg), "%s: %s", dev, strerror(errno));
		verdict(h, missing);
		return -1;
	}
	h->dev_present = true;
	h->api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
	for (size_t i = 0; i < N_HOST_CAPS; i++) {
		int v = ioctl(fd, KVM_CHECK_EXTENSION, host_caps[i].cap);

		h->caps[i].value = v < 0 ? 0 : v;
	}
	xc_missing_caps(fd, NULL, 0, missing, sizeof(missing));
	/*
	 * The guest runs on kvm_pvm too, for the report: a PVM host may get
	 * through these few instructions and still fail sr's guests later, so
	 * it is refused by name whatever the probe guest does.
	 */
	if (h->api_version == KVM_API_VERSION && !missing[0]) {
		if (xc_install_kick_handler(NULL) == 0)
			h->guest_ran = probe_guest_twice(h, fd, budget) == 0;
		else
			snprintf(h->guest_msg, sizeof(h->guest_msg), "no kick signal handler");
	}
	close(fd);
	verdict(h, missing);
	return h->usable ? 0 : -1;
}
