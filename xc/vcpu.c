/* SPDX-License-Identifier: MIT */
/*
 * vCPUs: one thread each, a flat KVM_RUN loop, and the pause protocol.
 *
 * Pausing sets immediate_exit on every vCPU and kicks its thread with a
 * signal, so a thread that is about to enter KVM_RUN returns at once and one
 * inside it is knocked out.  A vCPU that exited for port or MMIO I/O re-enters
 * KVM_RUN once with immediate_exit set before it parks: KVM completes the
 * I/O instruction only on that entry, and state saved before it would be
 * half an instruction.
 *
 * Every kick sets the thread's own immediate_exit too, so one that lands
 * while the thread handles an exit is not lost: its next KVM_RUN returns at
 * once.  A kick from the throttle timer also marks a sleep as owed, so each
 * period gets its sleep however late the thread comes to it.
 *
 * A pause tells the guest: KVM_KVMCLOCK_CTRL on every vCPU (its watchdogs
 * then forgive the gap), and the PIT is read at the pause and put back at the
 * resume, which restarts its counting then and drops the ticks KVM would
 * otherwise inject in a burst (QEMU does both on every stop and run).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "xc.h"
#include "xc_priv.h"

struct xc_vcpu {
	struct xc_domain *d;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;		/* created; joined by xc_domain_stop */
	bool thread_live;		/* still in its loop: kicks go only to it (under d->lock) */
	bool parked;			/* parked right now (under d->lock) */
	bool self_park;			/* parked by its own exit handler */
	bool io_pending;		/* last exit needs a re-entry to complete */
	struct kvm_dirty_gfn *ring;	/* dirty ring, when the domain has one */
	uint32_t ring_fetch;
	uint32_t native_tsc_khz;	/* KVM_GET_TSC_KHZ before anyone set it */

	/* Throttle (under d->lock): out of KVM_RUN for pct% of each period. */
	timer_t timer;			/* kicks the thread once a period */
	bool timer_ok;
	unsigned throttle_pct;
	uint64_t throttle_period_ns;
	uint64_t throttled_ns;		/* total time kept out */
	uint64_t throttle_late_ns;	/* of which past the sleeps' ends (late wake-ups) */
	bool throttle_owed;		/* the timer fired: a sleep is owed (set by the handler) */
};

#define THROTTLE_RUN_NS	10000000ull	/* the running part of a period at 0%, as QEMU's timeslice */

static __thread struct xc_vcpu *this_vcpu;	/* the vCPU this thread runs */

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     c->entries[i].index == idx))
			return &c->entries[i];
	return NULL;
}

/* The supported CPUID with this vCPU's APIC id in the leaves that carry it. */
static int set_vcpu_cpuid(struct xc_vcpu *v, struct xc_error *err)
{
	const struct kvm_cpuid2 *src = v->d->cpuid;
	size_t sz = sizeof(*src) + src->nent * sizeof(src->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	struct kvm_cpuid_entry2 *e;
	int rc = 0;

	if (!c)
		return xc_set_error(err, ENOMEM, "CPUID");
	memcpy(c, src, sz);
	if ((e = cpuid_find(c, 1, 0))) {
		e->ebx = (e->ebx & 0x00ffffff) | (v->id << 24);
		e->ecx |= 1u << 31;		/* hypervisor present */
		e->ecx &= ~(1u << 5);		/* no VMX: nested state is not saved */
	}
	if ((e = cpuid_find(c, 0x80000001, 0)))
		e->ecx &= ~(1u << 2);		/* no SVM, for the same reason */
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == 0xb || c->entries[i].function == 0x1f)
			c->entries[i].edx = v->id;
	if (ioctl(v->fd, KVM_SET_CPUID2, c))
		rc = xc_set_error(err, errno, "KVM_SET_CPUID2 on vCPU %u", v->id);
	free(c);
	return rc;
}

struct xc_vcpu *xc_vcpu_create(struct xc_domain *d, unsigned id, struct xc_error *err)
{
	struct xc_vcpu *v;
	int r;

	if (id != d->nvcpus || id >= d->nvcpus_max) {
		xc_set_error(err, 0, "vCPU %u out of order or beyond %u", id, d->nvcpus_max);
		return NULL;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		xc_set_error(err, ENOMEM, "allocating vCPU %u", id);
		return NULL;
	}
	v->d = d;
	v->id = id;
	v->fd = ioctl(d->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		xc_set_error(err, errno, "KVM_CREATE_VCPU %u", id);
		free(v);
		return NULL;
	}
	v->run = mmap(NULL, d->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		xc_set_error(err, errno, "mapping kvm_run of vCPU %u", id);
		close(v->fd);
		free(v);
		return NULL;
	}
	r = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	v->native_tsc_khz = r > 0 ? (uint32_t)r : 0;
	if (d->ring_entries) {
		v->ring = mmap(NULL, d->ring_entries * sizeof(*v->ring), PROT_READ | PROT_WRITE,
			       MAP_SHARED, v->fd, KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
		if (v->ring == MAP_FAILED) {
			xc_set_error(err, errno, "mapping the dirty ring of vCPU %u", id);
			munmap(v->run, d->run_size);
			close(v->fd);
			free(v);
			return NULL;
		}
	}
	if (set_vcpu_cpuid(v, err)) {
		if (v->ring)
			munmap(v->ring, d->ring_entries * sizeof(*v->ring));
		munmap(v->run, d->run_size);
		close(v->fd);
		free(v);
		return NULL;
	}
	d->vcpu[d->nvcpus++] = v;
	return v;
}

void xc_vcpu_free(struct xc_vcpu *v)
{
	if (!v)
		return;
	if (v->ring)
		munmap(v->ring, v->d->ring_entries * sizeof(*v->ring));
	munmap(v->run, v->d->run_size);
	close(v->fd);
	free(v);
}

void *xc_vcpu_ring(const struct xc_vcpu *v, uint32_t *fetch_index)
{
	*fetch_index = v->ring_fetch;
	return v->ring;
}

void xc_vcpu_ring_advance(struct xc_vcpu *v, uint32_t n)
{
	v->ring_fetch += n;
}

struct xc_vcpu *xc_vcpu_get(const struct xc_domain *d, unsigned id)
{
	return id < d->nvcpus ? d->vcpu[id] : NULL;
}

int xc_vcpu_fd(const struct xc_vcpu *v)
{
	return v->fd;
}

unsigned xc_vcpu_id(const struct xc_vcpu *v)
{
	return v->id;
}

uint32_t xc_vcpu_native_tsc_khz(const struct xc_vcpu *v)
{
	return v->native_tsc_khz;
}

struct kvm_run *xc_vcpu_run_area(const struct xc_vcpu *v)
{
	return v->run;
}

struct xc_domain *xc_vcpu_domain(const struct xc_vcpu *v)
{
	return v->d;
}

bool xc_vcpu_self_parked(const struct xc_vcpu *v)
{
	return v->self_park;
}

/* Under d->lock: knock every vCPU out of (or away from) KVM_RUN. */
static void kick_all(struct xc_domain *d)
{
	for (unsigned i = 0; i < d->nvcpus; i++) {
		struct xc_vcpu *v = d->vcpu[i];

		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (v->thread_live)
			pthread_kill(v->thread, XC_KICK_SIGNAL);
	}
}

/* Under d->lock: the domain ends; the first reason given sticks. */
static void stop_locked(struct xc_domain *d, enum xc_stop_reason why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void stop_locked(struct xc_domain *d, enum xc_stop_reason why, const char *fmt, ...)
{
	va_list ap;

	if (d->stopped == XC_RUNNING) {
		d->stopped = why;
		va_start(ap, fmt);
		vsnprintf(d->stop_msg, sizeof(d->stop_msg), fmt, ap);
		va_end(ap);
	}
	d->stop_req = true;
	kick_all(d);
	pthread_cond_broadcast(&d->cond);
}

static const char *exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_DEBUG: return "DEBUG";
	case KVM_EXIT_IRQ_WINDOW_OPEN: return "IRQ_WINDOW_OPEN";
	case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
	default: return "unknown";
	}
}

/* Handles one exit; returns what the thread does next. */
static enum xc_action handle_exit(struct xc_vcpu *v)
{
	struct xc_domain *d = v->d;
	struct kvm_run *run = v->run;
	enum xc_action a;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		v->io_pending = true;
		if (!d->ops || !d->ops->pio)
			goto unhandled;
		return d->ops->pio(d->opaque, v, run->io.port, run->io.direction == KVM_EXIT_IO_OUT,
				   (uint8_t *)run + run->io.data_offset, run->io.size,
				   run->io.count);
	case KVM_EXIT_MMIO:
		v->io_pending = true;
		if (!d->ops || !d->ops->mmio)
			goto unhandled;
		return d->ops->mmio(d->opaque, v, run->mmio.phys_addr, run->mmio.is_write,
				    run->mmio.data, run->mmio.len);
	case KVM_EXIT_INTR:
		return XC_CONTINUE;
	case KVM_EXIT_DIRTY_RING_FULL:
		/* Harvesting resets the rings; the vCPU can then go on. */
		if (xc_ring_harvest(d) == 0)
			return XC_CONTINUE;
		pthread_mutex_lock(&d->lock);
		stop_locked(d, XC_STOP_ERROR, "vCPU %u: dirty ring full and could not be reset",
			    v->id);
		pthread_mutex_unlock(&d->lock);
		return XC_STOP;
	case KVM_EXIT_SHUTDOWN:
		pthread_mutex_lock(&d->lock);
		stop_locked(d, XC_STOP_SHUTDOWN, "vCPU %u: shutdown (triple fault)", v->id);
		pthread_mutex_unlock(&d->lock);
		return XC_STOP;
	case KVM_EXIT_SYSTEM_EVENT:
		pthread_mutex_lock(&d->lock);
		stop_locked(d, XC_STOP_SHUTDOWN, "vCPU %u: system event %u", v->id,
			    run->system_event.type);
		pthread_mutex_unlock(&d->lock);
		return XC_STOP;
	case KVM_EXIT_INTERNAL_ERROR:
		pthread_mutex_lock(&d->lock);
		stop_locked(d, XC_STOP_ERROR, "vCPU %u: KVM internal error, suberror %u%s", v->id,
			    run->internal.suberror,
			    run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
			    " (instruction emulation failed)" : "");
		pthread_mutex_unlock(&d->lock);
		return XC_STOP;
	case KVM_EXIT_FAIL_ENTRY:
		pthread_mutex_lock(&d->lock);
		stop_locked(d, XC_STOP_ERROR, "vCPU %u: VM entry failed, hardware reason 0x%llx",
			    v->id, (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		pthread_mutex_unlock(&d->lock);
		return XC_STOP;
	}
unhandled:
	pthread_mutex_lock(&d->lock);
	stop_locked(d, XC_STOP_ERROR, "vCPU %u: unhandled exit %u (%s)%s", v->id, run->exit_reason,
		    exit_name(run->exit_reason),
		    run->exit_reason == KVM_EXIT_IO ? " port I/O" :
		    run->exit_reason == KVM_EXIT_MMIO ? " MMIO" : "");
	pthread_mutex_unlock(&d->lock);
	a = XC_STOP;
	return a;
}

/* ------------------------------------------------------------ throttle */

void xc_vcpu_kicked(bool from_timer)
{
	struct xc_vcpu *v = this_vcpu;

	if (!v)
		return;
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELAXED);
	if (from_timer)
		__atomic_store_n(&v->throttle_owed, true, __ATOMIC_RELAXED);
}

/* Under d->lock: arms the vCPU's timer for its throttle, or disarms it. */
static void throttle_arm(struct xc_vcpu *v)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };

	v->throttle_period_ns = v->throttle_pct ?
				THROTTLE_RUN_NS * 100 / (100 - v->throttle_pct) : 0;
	if (!v->timer_ok)
		return;
	its.it_interval.tv_sec = v->throttle_period_ns / 1000000000ull;
	its.it_interval.tv_nsec = v->throttle_period_ns % 1000000000ull;
	its.it_value = its.it_interval;
	timer_settime(v->timer, 0, &its, NULL);
}

/* On the vCPU's thread: a timer that sends the kick signal to this thread only. */
static void throttle_timer_init(struct xc_vcpu *v)
{
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = XC_KICK_SIGNAL };

	sev._sigev_un._tid = gettid();
	pthread_mutex_lock(&v->d->lock);
	v->timer_ok = timer_create(CLOCK_MONOTONIC, &sev, &v->timer) == 0;
	throttle_arm(v);
	pthread_mutex_unlock(&v->d->lock);
}

/*
 * After KVM_RUN was interrupted: a throttled vCPU whose timer fired stays
 * out for the period's share, as QEMU's cpu-throttle does: one sleep per
 * timer signal, owed until taken (a kick that found the thread busy handling
 * an exit still counts).  Signals the kernel merged while the thread waited
 * for a CPU are not made up for: that wait kept the vCPU out as well.  The
 * sleep waits on the domain's condition, so a pause or stop ends it.
 */
static void throttle_sleep(struct xc_vcpu *v)
{
	struct xc_domain *d = v->d;
	uint64_t now = xc_now_ns(), run_ns, sleep_ns, until;
	bool owed = __atomic_exchange_n(&v->throttle_owed, false, __ATOMIC_RELAXED);
	struct timespec ts;

	pthread_mutex_lock(&d->lock);
	if (!owed || !v->throttle_pct || d->pause_req || d->stop_req) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	run_ns = v->throttle_period_ns - v->throttle_period_ns * v->throttle_pct / 100;
	sleep_ns = v->throttle_period_ns - run_ns;
	until = now + sleep_ns;			/* d->cond waits on CLOCK_MONOTONIC */
	ts.tv_sec = until / 1000000000ull;
	ts.tv_nsec = until % 1000000000ull;
	while (v->throttle_pct && !d->pause_req && !d->stop_req)
		if (pthread_cond_timedwait(&d->cond, &d->lock, &ts) == ETIMEDOUT)
			break;
	now = xc_now_ns() - now;
	v->throttled_ns += now;
	if (now > sleep_ns)
		v->throttle_late_ns += now - sleep_ns;
	pthread_mutex_unlock(&d->lock);
}

int xc_vcpu_set_throttle(struct xc_vcpu *v, unsigned pct)
{
	if (pct > XC_THROTTLE_MAX)
		pct = XC_THROTTLE_MAX;
	pthread_mutex_lock(&v->d->lock);
	if (v->throttle_pct != pct) {
		v->throttle_pct = pct;
		__atomic_store_n(&v->throttle_owed, false, __ATOMIC_RELAXED);
		throttle_arm(v);
		pthread_cond_broadcast(&v->d->cond);	/* a sleeper re-reads its share */
	}
	pthread_mutex_unlock(&v->d->lock);
	return 0;
}

void xc_domain_set_throttle(struct xc_domain *d, unsigned pct)
{
	for (unsigned i = 0; i < d->nvcpus; i++)
		xc_vcpu_set_throttle(d->vcpu[i], pct);
}

unsigned xc_vcpu_throttle(const struct xc_vcpu *v)
{
	return __atomic_load_n(&v->throttle_pct, __ATOMIC_RELAXED);
}

/* A throttle total, which the vCPU's thread adds to under the domain's lock. */
static uint64_t throttle_total(struct xc_vcpu *v, const uint64_t *total)
{
	uint64_t ns;

	pthread_mutex_lock(&v->d->lock);
	ns = *total;
	pthread_mutex_unlock(&v->d->lock);
	return ns;
}

uint64_t xc_vcpu_throttled_ns(struct xc_vcpu *v)
{
	return throttle_total(v, &v->throttled_ns);
}

uint64_t xc_vcpu_throttle_late_ns(struct xc_vcpu *v)
{
	return throttle_total(v, &v->throttle_late_ns);
}

uint32_t xc_vcpu_dirty_harvested(const struct xc_vcpu *v)
{
	return __atomic_load_n(&v->ring_fetch, __ATOMIC_RELAXED);
}

/*
 * After KVM_RUN returned EINTR: a kick from the throttle timer set
 * immediate_exit; it is cleared again unless a pause, a stop or a park of
 * this vCPU still wants the thread out.
 */
static void clear_kick(struct xc_vcpu *v)
{
	struct xc_domain *d = v->d;

	pthread_mutex_lock(&d->lock);
	if (!d->pause_req && !d->stop_req && !v->self_park)
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&d->lock);
}

static void *vcpu_thread(void *arg)
{
	struct xc_vcpu *v = arg;
	struct xc_domain *d = v->d;
	sigset_t set;

	/* Only the kick reaches vCPU threads; the tool's main thread takes the rest. */
	sigfillset(&set);
	sigdelset(&set, XC_KICK_SIGNAL);
	this_vcpu = v;
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	throttle_timer_init(v);
	if (d->thread_start)
		d->thread_start(d->opaque, v);

	for (;;) {
		enum xc_action a;
		int rc;

		pthread_mutex_lock(&d->lock);
		if ((d->pause_req || v->self_park) && !d->stop_req && !v->io_pending) {
			v->parked = true;
			d->parked++;
			pthread_cond_broadcast(&d->cond);
			while ((d->pause_req || v->self_park) && !d->stop_req)
				pthread_cond_wait(&d->cond, &d->lock);
			v->parked = false;
			d->parked--;
		}
		if (d->stop_req) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		pthread_mutex_unlock(&d->lock);

		rc = ioctl(v->fd, KVM_RUN, 0);
		if (rc < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				/* An I/O exit is complete once KVM_RUN has been entered again. */
				v->io_pending = false;
				clear_kick(v);
				throttle_sleep(v);
				continue;
			}
			pthread_mutex_lock(&d->lock);
			stop_locked(d, XC_STOP_ERROR, "vCPU %u: KVM_RUN: %s", v->id, strerror(errno));
			pthread_mutex_unlock(&d->lock);
			break;
		}
		v->io_pending = false;
		a = handle_exit(v);
		if (a == XC_CONTINUE)
			continue;
		pthread_mutex_lock(&d->lock);
		if (a == XC_PARK) {
			v->self_park = true;
			/* Complete the I/O with an immediate exit, then park. */
			__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		} else {
			stop_locked(d, XC_STOP_GUEST, "vCPU %u: the guest finished", v->id);
		}
		pthread_mutex_unlock(&d->lock);
		xc_post_event(d);
		if (a == XC_STOP)
			break;
	}
	pthread_mutex_lock(&d->lock);
	d->running_threads--;
	v->thread_live = false;
	if (v->timer_ok) {
		timer_delete(v->timer);
		v->timer_ok = false;
	}
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	xc_post_event(d);
	return NULL;
}

/*
 * Under d->lock, every vCPU parked: the pause is told to the guest's clock
 * (EINVAL: this vCPU has no kvmclock, as QEMU ignores) and the PIT's state
 * is kept for the resume.  Once per pause.
 */
static int tell_paused(struct xc_domain *d, struct xc_error *err)
{
	if (d->pit_held)
		return 0;
	for (unsigned i = 0; i < d->nvcpus; i++)
		if (ioctl(d->vcpu[i]->fd, KVM_KVMCLOCK_CTRL, 0) && errno != EINVAL)
			return xc_set_error(err, errno, "KVM_KVMCLOCK_CTRL on vCPU %u", i);
	if (ioctl(d->vm_fd, KVM_GET_PIT2, &d->pit))
		return xc_set_error(err, errno, "KVM_GET_PIT2 at the pause");
	d->pit_held = true;
	if (d->paused_hook)
		d->paused_hook(d->opaque);
	return 0;
}

/*
 * Under d->lock, before the vCPUs run again: the PIT state of the pause goes
 * back.  KVM restarts channel 0's timer from now and forgets the ticks it
 * counted as missed meanwhile, which it would otherwise inject back to back.
 */
static int put_pit(struct xc_domain *d, struct xc_error *err)
{
	if (!d->pit_held)
		return 0;
	if (ioctl(d->vm_fd, KVM_SET_PIT2, &d->pit))
		return xc_set_error(err, errno, "KVM_SET_PIT2 at the resume");
	d->pit_held = false;
	if (d->resuming_hook)
		d->resuming_hook(d->opaque);
	return 0;
}

int xc_domain_start(struct xc_domain *d, bool start_paused, struct xc_error *err)
{
	if (d->started)
		return xc_set_error(err, 0, "domain already started");
	if (d->nvcpus != d->nvcpus_max)
		return xc_set_error(err, 0, "%u of %u vCPUs created", d->nvcpus, d->nvcpus_max);
	pthread_mutex_lock(&d->lock);
	d->pause_req = start_paused;
	d->started = true;
	for (unsigned i = 0; i < d->nvcpus; i++) {
		struct xc_vcpu *v = d->vcpu[i];
		int e;

		v->run->immediate_exit = 0;
		e = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (e) {
			stop_locked(d, XC_STOP_ERROR, "starting vCPU %u thread failed", i);
			pthread_mutex_unlock(&d->lock);
			return xc_set_error(err, e, "pthread_create for vCPU %u", i);
		}
		v->thread_started = true;
		v->thread_live = true;
		d->running_threads++;
	}
	if (start_paused) {
		while (d->parked < d->running_threads)
			pthread_cond_wait(&d->cond, &d->lock);
		if (tell_paused(d, err)) {
			pthread_mutex_unlock(&d->lock);
			return -1;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

int xc_domain_pause(struct xc_domain *d, struct xc_error *err)
{
	int rc;

	pthread_mutex_lock(&d->lock);
	if (d->stopped != XC_RUNNING) {
		pthread_mutex_unlock(&d->lock);
		return xc_set_error(err, 0, "domain has stopped: %s", d->stop_msg);
	}
	d->pause_req = true;
	kick_all(d);
	if (d->pausing_hook && !d->pit_held)	/* a running domain's pause: its devices too */
		d->pausing_hook(d->opaque);
	pthread_cond_broadcast(&d->cond);	/* wakes a throttled vCPU */
	while (d->parked < d->running_threads && !d->stop_req)
		pthread_cond_wait(&d->cond, &d->lock);
	if (d->stopped != XC_RUNNING) {
		pthread_mutex_unlock(&d->lock);
		return xc_set_error(err, 0, "domain stopped while pausing: %s", d->stop_msg);
	}
	rc = tell_paused(d, err);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int xc_domain_resume(struct xc_domain *d, struct xc_error *err)
{
	pthread_mutex_lock(&d->lock);
	if (d->stopped != XC_RUNNING) {
		pthread_mutex_unlock(&d->lock);
		return xc_set_error(err, 0, "domain has stopped: %s", d->stop_msg);
	}
	if (put_pit(d, err)) {
		pthread_mutex_unlock(&d->lock);
		return -1;
	}
	for (unsigned i = 0; i < d->nvcpus; i++) {
		d->vcpu[i]->self_park = false;
		__atomic_store_n(&d->vcpu[i]->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&d->vcpu[i]->throttle_owed, false, __ATOMIC_RELAXED);	/* a pause is no debt */
	}
	d->pause_req = false;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

bool xc_domain_paused(const struct xc_domain *d)
{
	return d->pause_req;
}

void xc_domain_stop(struct xc_domain *d)
{
	pthread_mutex_lock(&d->lock);
	if (!d->started) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	stop_locked(d, XC_STOP_DESTROYED, "domain destroyed");
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < d->nvcpus; i++)
		if (d->vcpu[i]->thread_started) {
			pthread_join(d->vcpu[i]->thread, NULL);
			d->vcpu[i]->thread_started = false;
		}
	d->started = false;
}
