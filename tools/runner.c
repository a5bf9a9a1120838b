/* SPDX-License-Identifier: MIT */
/*
 * Domain runner: console and hypercalls on the vCPU threads, everything
 * else (control socket, signals, guest events) in one poll loop on the main
 * thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "bus.h"
#include "console.h"
#include "ctl.h"
#include "hvmctx.h"
#include "serial8250.h"
#include "runner.h"
#include "util.h"
#include "virtio.h"

#define CLIENTS_MAX		8
#define CLIENT_REQUEST_MS	1000	/* a client's request must come within this */

struct runner {
	struct runner_config cfg;	/* name points into name_buf */
	char name_buf[64];
	struct xc_domain *d;
	struct hvmctx_msr_list *msrs;	/* made before the domain first runs */
	int listen_fd, sig_fd;
	int lock_fd;			/* NAME.lock, flocked: this runner owns NAME.sock */
	char sock_path[108];
	char pid_path[108];		/* NAME.pid, written once the name is ours */

	/* Clients that connected but have not yet sent their request (never waited on). */
	struct waiting_client {
		int fd;
		uint64_t deadline_ns;
	} waiting[CLIENTS_MAX];
	volatile uint32_t stage;
	volatile bool save_requested;
	volatile bool guest_failed;
	char fail_msg[SR_HC_STR_MAX];
	uint64_t pauses, resumes;
	uint64_t drain_ns;		/* the last pause's hw_bus_pause */
	uint64_t pio_exits, mmio_exits;	/* handled here, for SR_DEVICE_STATS */
	struct serial *serial;
	struct hw_bus *bus;		/* device models (cfg.pci) */
	struct pci_host *pci;
	struct virtio_blk_opts *image_disk[SR_MAX_DISKS];	/* a restore's DISK records */
	struct console *console;	/* guest output: vCPUs never wait on stdout */
	pthread_t input_thread;
	bool input_started;
	int con_wake;			/* eventfd: con_new holds a console client for the input thread */
	volatile int con_new;		/* handed over by the control loop; -1: none */
	bool kept;			/* handle_client gave the client's fd away (console) */

	/* A save runs on its own thread; the control loop answers meanwhile. */
	struct save_job {
		bool active;
		pthread_t thread;
		int done_fd;		/* eventfd: the thread finished */
		int cfd, out_fd;	/* the client and the image, owned by the thread */
		struct save_req q;
		struct save_job_state st;
		int rc;
		uint64_t stall_ns;
		uint64_t last_kick_ns;
	} job;
};

/* Copies a NUL-terminated guest string; returns false when it is not one. */
static bool guest_string(struct runner *r, uint32_t gpa, char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		const char *c = xc_gpa_to_hva(r->d, (uint64_t)gpa + i, 1);

		if (!c)
			return false;
		buf[i] = *c;
		if (!*c)
			return true;
	}
	return false;
}

static enum xc_action hypercall(struct runner *r, struct xc_vcpu *v, uint16_t op, uint32_t arg)
{
	char buf[SR_HC_STR_MAX];

	switch (op) {
	case SR_HC_PRINT:
		if (!guest_string(r, arg, buf, sizeof(buf)))
			snprintf(buf, sizeof(buf), "[sr-run: bad PRINT string at 0x%x]\n", arg);
		console_write(r->console, buf, strlen(buf));
		return XC_CONTINUE;
	case SR_HC_SYNC:
		r->stage = arg;
		if (r->cfg.verbose)
			pr_info("%s: guest reached stage %u", sr_prog, arg);
		return XC_CONTINUE;
	case SR_HC_SAVE:
		if (!r->cfg.save_to) {
			pr_warn("guest asked for a save but no --save-to was given; it continues");
			return XC_CONTINUE;
		}
		r->save_requested = true;
		return XC_PARK;
	case SR_HC_ASSERT:
		if (!guest_string(r, arg, r->fail_msg, sizeof(r->fail_msg)))
			snprintf(r->fail_msg, sizeof(r->fail_msg), "(unreadable message at 0x%x)", arg);
		r->guest_failed = true;
		xc_domain_set_status(r->d, EXIT_GUEST_FAIL);
		return XC_STOP;
	case SR_HC_DONE:
		xc_domain_set_status(r->d, arg);
		return XC_STOP;
	}
	snprintf(r->fail_msg, sizeof(r->fail_msg), "vCPU %u: unknown hypercall port 0x%x",
		 xc_vcpu_id(v), SR_HC_PORT + op);
	r->guest_failed = true;
	xc_domain_set_status(r->d, EXIT_GUEST_FAIL);
	return XC_STOP;
}

static void serial_irq(void *arg, int level)
{
	struct runner *r = arg;
	struct kvm_irq_level l = { .irq = SERIAL_IRQ, .level = level };

	ioctl(xc_domain_vm_fd(r->d), KVM_IRQ_LINE, &l);
}

/* Into the UART as its receive FIFO takes it; a guest without one has no input. */
static void feed_input(struct runner *r, const uint8_t *buf, size_t n)
{
	if (!r->serial)
		return;
	for (size_t done = 0; done < n;) {
		done += serial_input(r->serial, buf + done, n - done);
		if (done < n)
			usleep(10000);
	}
}

/*
 * Console input: stdin (a UART guest's, for as long as it has something)
 * and the attached console client (sr-ctl console), whose socket this
 * thread owns: it closes it when the client goes or another takes over.
 */
static void *input_loop(void *arg)
{
	struct runner *r = arg;
	bool in_open = r->serial;
	int con = -1;
	uint8_t buf[64];
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	if (r->cfg.thread_start)
		r->cfg.thread_start(RUNNER_THREAD_INPUT);
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN },
			{ .fd = r->con_wake, .events = POLLIN },
			{ .fd = con, .events = POLLIN },
		};
		ssize_t n;

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (p[1].revents) {
			uint64_t v;
			int fresh = __atomic_exchange_n(&r->con_new, -1, __ATOMIC_SEQ_CST), old;

			n = read(r->con_wake, &v, sizeof(v));
			/* Not cancelled while it holds the console's lock (send is a cancellation point). */
			pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
			if (fresh >= 0) {
				if (con >= 0) {
					console_detach(r->console, con);
					close(con);
				}
				con = fresh;
				console_attach(r->console, con);
			}
			pthread_setcancelstate(old, NULL);
		}
		if (p[0].revents) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0)
				in_open = false;
			else
				feed_input(r, buf, n);
		}
		if (con >= 0 && p[2].revents) {
			n = read(con, buf, sizeof(buf));
			if (n <= 0) {
				console_detach(r->console, con);
				close(con);
				con = -1;
			} else {
				feed_input(r, buf, n);
			}
		}
	}
}

/* Legacy PC ports a Linux guest touches besides the UART. */
static enum xc_action legacy_pio(struct runner *r, struct xc_vcpu *v, uint16_t port, bool out,
				 uint8_t *data, unsigned size)
{
	if (port >= SERIAL_BASE && port < SERIAL_BASE + 8 && size == 1) {
		serial_io(r->serial, port - SERIAL_BASE, out, data);
		return XC_CONTINUE;
	}
	if (port == 0x64 && out && *data == 0xfe) {
		/* i8042 pulse of the reset line: the guest asked to reboot. */
		snprintf(r->fail_msg, sizeof(r->fail_msg), "vCPU %u: the guest reset the machine",
			 xc_vcpu_id(v));
		xc_domain_set_status(r->d, 0);
		return XC_STOP;
	}
	if (!out)
		/* No keyboard; CMOS reads 0 (never "update in progress"); the rest floats high. */
		memset(data, port == 0x64 || port == 0x60 || port == 0x71 ? 0 : 0xff, size);
	return XC_CONTINUE;
}

static enum xc_action on_pio(void *opaque, struct xc_vcpu *v, uint16_t port, bool out,
			     void *data, unsigned size, unsigned count)
{
	struct runner *r = opaque;

	if (port >= SR_HC_PORT && port < SR_HC_PORT + 0x20 && out && size == 4 && count == 1)
		return hypercall(r, v, port - SR_HC_PORT, *(uint32_t *)data);
	if (port == 0x80)			/* POST code port: ignore */
		return XC_CONTINUE;
	__atomic_fetch_add(&r->pio_exits, 1, __ATOMIC_RELAXED);
	if (r->bus && count == 1 && hw_bus_pio(r->bus, port, out, data, size))
		return XC_CONTINUE;
	if (r->cfg.test_guest) {
		snprintf(r->fail_msg, sizeof(r->fail_msg),
			 "vCPU %u: unexpected port I/O: %s port 0x%x size %u count %u",
			 xc_vcpu_id(v), out ? "out" : "in", port, size, count);
		r->guest_failed = true;
		xc_domain_set_status(r->d, EXIT_VM_ERROR);
		return XC_STOP;
	}
	for (unsigned i = 0; i < count; i++) {
		enum xc_action a = legacy_pio(r, v, port, out, (uint8_t *)data + i * size, size);

		if (a != XC_CONTINUE)
			return a;
	}
	return XC_CONTINUE;
}

static enum xc_action on_mmio(void *opaque, struct xc_vcpu *v, uint64_t gpa, bool write,
			      void *data, unsigned len)
{
	struct runner *r = opaque;

	__atomic_fetch_add(&r->mmio_exits, 1, __ATOMIC_RELAXED);
	if (r->bus && hw_bus_mmio(r->bus, gpa, write, data, len))
		return XC_CONTINUE;
	if (r->cfg.test_guest) {
		snprintf(r->fail_msg, sizeof(r->fail_msg),
			 "vCPU %u: MMIO %s at 0x%llx (%u bytes) outside RAM", xc_vcpu_id(v),
			 write ? "write" : "read", (unsigned long long)gpa, len);
		r->guest_failed = true;
		xc_domain_set_status(r->d, EXIT_VM_ERROR);
		return XC_STOP;
	}
	if (!write)
		memset(data, 0xff, len);
	return XC_CONTINUE;
}

static const struct xc_exit_ops runner_ops = { .pio = on_pio, .mmio = on_mmio };

static void vcpu_started(void *opaque, struct xc_vcpu *v)
{
	struct runner *r = opaque;

	(void)v;
	r->cfg.thread_start(RUNNER_THREAD_VCPU);
}

static void console_started(void *arg)
{
	struct runner *r = arg;

	r->cfg.thread_start(RUNNER_THREAD_CONSOLE);
}

static void device_thread_started(void *arg)
{
	struct runner *r = arg;

	r->cfg.thread_start(RUNNER_THREAD_DEVICE);
}

/* A pause begins, the vCPUs kicked: the devices stop taking requests and finish the one in hand. */
static void devices_pausing(void *opaque)
{
	struct runner *r = opaque;

	if (r->bus)
		hw_bus_hold(r->bus);
}

/* Every vCPU parked: the devices finish what they took (a save then sees all they wrote). */
static void devices_paused(void *opaque)
{
	struct runner *r = opaque;
	uint64_t t0 = mono_ns();

	if (r->bus)
		hw_bus_pause(r->bus);
	r->drain_ns = mono_ns() - t0;
}

/* Before the vCPUs run again: every queue looked at again, a pending interrupt raised again. */
static void devices_resuming(void *opaque)
{
	struct runner *r = opaque;

	if (r->bus)
		hw_bus_resume(r->bus);
}

/* The bus, the PCI host bridge, then the disks and the rng in PCI slot order. */
static int add_devices(struct runner *r, struct xc_error *err)
{
	if (!r->cfg.pci)
		return 0;
	if (!(r->bus = hw_bus_new(r->d)))
		return xc_set_error(err, ENOMEM, "the device bus");
	if (r->cfg.thread_start)
		hw_bus_set_thread_start(r->bus, device_thread_started, r);
	if (!(r->pci = pci_host_new(r->bus, err)))
		return -1;
	for (unsigned i = 0; i < r->cfg.ndisks; i++) {
		struct virtio_blk_opts o = r->cfg.disks[i];

		o.disk = i;		/* its DISK record in images */
		if (!virtio_blk_new(r->bus, r->pci, &o, err))
			return -1;
	}
	if (r->cfg.rng && !virtio_rng_new(r->bus, r->pci, err))
		return -1;
	r->cfg.disks = NULL;		/* the caller's; the devices keep their own copy */
	return 0;
}

struct hw_bus *runner_bus(struct runner *r)
{
	return r->bus;
}

uint64_t runner_drain_ns(const struct runner *r)
{
	return r->drain_ns;
}

unsigned runner_pci_intx(struct runner *r, struct xc_pci_intx *out, unsigned max)
{
	return r->pci ? pci_host_intx(r->pci, out, max) : 0;
}

int runner_add_image_disk(struct runner *r, const struct virtio_blk_opts *o, struct xc_error *err)
{
	if (o->disk >= SR_MAX_DISKS || r->image_disk[o->disk])
		return xc_set_error(err, 0, "disk %u given twice", o->disk);
	if (!(r->image_disk[o->disk] = malloc(sizeof(*o))))
		return xc_set_error(err, ENOMEM, "disk %u", o->disk);
	*r->image_disk[o->disk] = *o;
	return 0;
}

/* A virtio device of the image that this runner lacks: made from its state (a disk from its DISK). */
static int runner_make_device(struct runner *r, const char *name, uint32_t version,
			      uint32_t instance, const void *data, size_t len, struct xc_error *err)
{
	struct sr_virtio_state *s;
	struct virtio_dev *vd;
	int rc = -1;

	if (!strcmp(name, "virtio-rng"))
		return virtio_rng_new(r->bus, r->pci, err) ? 0 : -1;
	if (!(s = malloc(sizeof(*s))))
		return xc_set_error(err, ENOMEM, "DEVICE %s", name);
	if (!virtio_state_decode(name, version, instance, data, len, s, err)) {
		if (s->blk.disk >= SR_MAX_DISKS || !r->image_disk[s->blk.disk])
			xc_set_error(err, 0, "DEVICE virtio-blk %u: disk %u has no DISK record", instance,
				     s->blk.disk);
		else if ((vd = virtio_blk_new(r->bus, r->pci, r->image_disk[s->blk.disk], err)))
			rc = 0;
		if (s->blk.disk < SR_MAX_DISKS && r->image_disk[s->blk.disk])
			r->image_disk[s->blk.disk]->checked_fd = -1;	/* the device's (or closed) */
	}
	free(s);
	return rc;
}

int runner_device_load(struct runner *r, const char *name, uint32_t version, uint32_t instance,
		       const void *data, size_t len, struct xc_error *err)
{
	struct hw_device *dev;

	if (!strcmp(name, "serial8250"))
		return serial_restore_device(r->serial, name, version, instance, data, len, err);
	if (!r->bus)
		return xc_set_error(err, 0, "DEVICE \"%s\" has no model here (the domain has no "
				    "device bus)", name);
	dev = hw_bus_find(r->bus, name, instance);
	if (!dev && (!instance || hw_bus_find(r->bus, name, instance - 1)) &&
	    (!strcmp(name, "virtio-blk") || !strcmp(name, "virtio-rng"))) {
		/* The next of its kind, made as the source made it: it lands in its slot. */
		if (runner_make_device(r, name, version, instance, data, len, err))
			return -1;
		dev = hw_bus_find(r->bus, name, instance);
	}
	if (!dev || !dev->ops->load)
		return xc_set_error(err, 0, "DEVICE \"%s\" instance %u has no model here", name,
				    instance);
	return dev->ops->load(dev, version, data, len, err);
}

void runner_save_worker_started(void *arg)
{
	struct runner *r = arg;

	r->cfg.thread_start(RUNNER_THREAD_SAVE_WORKER);
}

struct runner *runner_new(const struct runner_config *cfg, struct xc_error *err)
{
	struct xc_domain_config dc = { .vcpus = cfg->vcpus, .ops = &runner_ops,
				       .dirty_ring = cfg->dirty_ring, .pausing = devices_pausing,
				       .paused = devices_paused, .resuming = devices_resuming };
	struct runner *r = calloc(1, sizeof(*r));

	if (!r) {
		xc_set_error(err, ENOMEM, "allocating the runner");
		return NULL;
	}
	r->cfg = *cfg;
	snprintf(r->name_buf, sizeof(r->name_buf), "%s", cfg->name);
	r->cfg.name = r->name_buf;
	r->listen_fd = r->sig_fd = r->con_wake = r->con_new = -1;
	r->lock_fd = cfg->claimed ? cfg->lock_fd : -1;
	for (unsigned i = 0; i < CLIENTS_MAX; i++)
		r->waiting[i].fd = -1;
	r->job.done_fd = -1;
	dc.opaque = r;
	if (cfg->thread_start)
		dc.thread_start = vcpu_started;
	r->d = xc_domain_create(&dc, err);
	if (!r->d) {
		free(r);
		return NULL;
	}
	/* SR_CONSOLE_BYTES: a smaller console buffer, for tests that fill it. */
	if (!(r->console = console_new(STDOUT_FILENO, getenv("SR_CONSOLE_BYTES") ?
				       strtoul(getenv("SR_CONSOLE_BYTES"), NULL, 10) | 1 : 1u << 20,
				       cfg->thread_start ? console_started : NULL, r))) {
		xc_set_error(err, ENOMEM, "console buffer");
		runner_free(r);
		return NULL;
	}
	if (cfg->serial && !(r->serial = serial_new(r->console, serial_irq, r))) {
		xc_set_error(err, ENOMEM, "the UART");
		runner_free(r);
		return NULL;
	}
	if (add_devices(r, err)) {
		runner_free(r);
		return NULL;
	}
	return r;
}

struct xc_domain *runner_domain(struct runner *r)
{
	return r->d;
}

const struct hvmctx_msr_list *runner_msrs(const struct runner *r)
{
	return r->msrs;
}

const struct runner_config *runner_config(const struct runner *r)
{
	return &r->cfg;
}

struct serial *runner_serial(struct runner *r)
{
	return r->serial;
}

void runner_free(struct runner *r)
{
	if (!r)
		return;
	xc_domain_stop(r->d);		/* no vCPU reaches a device from here on */
	hw_bus_free(r->bus);
	for (unsigned i = 0; i < SR_MAX_DISKS; i++)
		free(r->image_disk[i]);
	xc_domain_destroy(r->d);
	hvmctx_msr_list_free(r->msrs);
	if (r->listen_fd >= 0) {
		close(r->listen_fd);
		unlink(r->sock_path);	/* ours: nobody else binds it while we hold the lock */
	}
	if (r->pid_path[0])
		unlink(r->pid_path);	/* before the lock goes: never another runner's */
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	for (unsigned i = 0; i < CLIENTS_MAX; i++)
		if (r->waiting[i].fd >= 0)
			close(r->waiting[i].fd);
	if (r->sig_fd >= 0)
		close(r->sig_fd);
	if (r->input_started) {
		pthread_cancel(r->input_thread);
		pthread_join(r->input_thread, NULL);
	}
	if (r->con_new >= 0)
		close(r->con_new);
	if (r->con_wake >= 0)
		close(r->con_wake);
	serial_free(r->serial);
	console_free(r->console, 2000);	/* the guest's last words, if the reader takes them */
	free(r);
}

/* ------------------------------------------------------- control socket */

/*
 * NAME.pid beside NAME.sock, for init systems and scripts; written while
 * the name's lock is held, removed as the runner ends.  Not having one is
 * no reason to stop the domain.
 */
static void write_pid_file(struct runner *r, const char *dir)
{
	char tmp[sizeof(r->pid_path) + 8], line[24];
	int fd, n;

	if ((size_t)snprintf(r->pid_path, sizeof(r->pid_path), "%s/%s.pid", dir, r->cfg.name) >=
	    sizeof(r->pid_path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", r->pid_path) >= sizeof(tmp)) {
		r->pid_path[0] = 0;
		return;
	}
	n = snprintf(line, sizeof(line), "%d\n", getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, n) != n || close(fd) || rename(tmp, r->pid_path)) {
		pr_warn("%s: %s; running without a pid file", r->pid_path, strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		r->pid_path[0] = 0;
	}
}

int runner_claim_name(const char *name, int *lock_fd, struct xc_error *err)
{
	const char *dir = ctl_dir();
	char lock_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	struct stat st;
	int fd;

	if (mkdir(dir, 0700) && errno != EEXIST)
		return xc_set_error(err, errno, "creating %s", dir);
	if (stat(dir, &st) || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return xc_set_error(err, 0, "%s must be a directory owned by uid %u with mode 0700",
				    dir, geteuid());
	/* NAME.sock must fit a socket address: NAME.lock is as long. */
	if ((size_t)snprintf(lock_path, sizeof(lock_path), "%s/%s.lock", dir, name) >=
	    sizeof(lock_path) - 8)
		return xc_set_error(err, 0, "control socket path too long");
	/*
	 * NAME.lock, flocked for the runner's life, owns the name: a runner that
	 * holds it may remove a NAME.sock left by one that died, and no other can
	 * take it however busy this one is (the lock file itself stays).
	 */
	fd = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return xc_set_error(err, errno, "%s", lock_path);
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int e = errno;

		close(fd);
		if (e == EWOULDBLOCK)
			return xc_set_error(err, 0, "a domain named \"%s\" is already running (%s "
					    "is locked)", name, lock_path);
		return xc_set_error(err, e, "locking %s", lock_path);
	}
	*lock_fd = fd;
	return 0;
}

int runner_listen(struct runner *r, struct xc_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (r->lock_fd < 0 && runner_claim_name(r->cfg.name, &r->lock_fd, err))
		return -1;
	if ((size_t)snprintf(r->sock_path, sizeof(r->sock_path), "%s/%s.sock", ctl_dir(),
			     r->cfg.name) >= sizeof(r->sock_path))
		return xc_set_error(err, 0, "control socket path too long");
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return xc_set_error(err, errno, "socket");
	strcpy(sa.sun_path, r->sock_path);
	unlink(r->sock_path);		/* whoever bound it is gone: they held the lock */
	/* The socket is born 0600 (no chmod by path afterwards, which a swap could redirect). */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));

	umask(old);
	if (rc || listen(fd, 8)) {
		xc_set_error(err, errno, "control socket %s", r->sock_path);
		close(fd);
		return -1;
	}
	r->listen_fd = fd;
	write_pid_file(r, ctl_dir());
	return 0;
}

static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int fd, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (send(fd, buf, n, MSG_NOSIGNAL) < 0)
		return;
}

/* Reads one request line and an optional passed fd, without waiting. */
static int read_request(int fd, char *line, size_t len, int *passed_fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { line, len - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	ssize_t n;

	*passed_fd = -1;
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);	/* the loop saw it readable */
	if (n <= 0)
		return -1;
	line[n] = 0;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(passed_fd, CMSG_DATA(c), sizeof(int));
	line[strcspn(line, "\r\n")] = 0;
	return 0;
}


static void status_line(struct runner *r, int fd)
{
	const struct xc_region *regs;
	bool dirty = xc_mem_regions(r->d, &regs) && regs[0].dirty_log;
	unsigned throttle = 0;

	for (unsigned i = 0; i < r->cfg.vcpus; i++)
		if (xc_vcpu_get(r->d, i) && xc_vcpu_throttle(xc_vcpu_get(r->d, i)) > throttle)
			throttle = xc_vcpu_throttle(xc_vcpu_get(r->d, i));
	char save[160] = "";

	if (r->job.active)
		snprintf(save, sizeof(save), " save=%s pages=%llu/%llu bytes=%llu",
			 r->job.st.cancel == SAVE_HELD ? "committing" :
			 r->job.st.cancel ? "cancelling" : r->job.st.prepared ? "prepared" : "running",
			 (unsigned long long)r->job.st.pages, (unsigned long long)r->job.st.total,
			 (unsigned long long)r->job.st.bytes);
	reply(fd, "ok name=%s state=%s vcpus=%u memory_mib=%llu stage=%u pid=%d pauses=%llu "
	      "dirty_log=%s throttle=%u protocol=%d%s", r->cfg.name,
	      xc_domain_paused(r->d) ? "paused" : "running", r->cfg.vcpus,
	      (unsigned long long)(r->cfg.mem_bytes >> 20), r->stage, getpid(),
	      (unsigned long long)r->pauses, dirty ? "on" : "off", throttle, CTL_PROTOCOL, save);
}

static void *save_thread(void *arg)
{
	struct runner *r = arg;
	struct save_job *j = &r->job;
	char msg[1024];
	uint64_t one = 1;
	ssize_t n;

	if (r->cfg.thread_start)
		r->cfg.thread_start(RUNNER_THREAD_SAVE);
	j->rc = runner_save(r, j->out_fd, &j->q, j->cfd, &j->st, msg, sizeof(msg));
	if (j->rc < 0)
		reply(j->cfd, "error %s", msg);
	else
		reply(j->cfd, "ok %s", msg);
	close(j->out_fd);
	close(j->cfd);
	n = write(j->done_fd, &one, sizeof(one));
	(void)n;
	return NULL;
}

/* Starts a save on its own thread; it owns cfd and out_fd from here on. */
static int start_save(struct runner *r, int cfd, int out_fd, const char *text, char *why,
		      size_t len)
{
	struct save_job *j = &r->job;
	sigset_t all, old;
	int e;

	if (save_req_parse(text, &j->q, why, len))
		return -1;
	if (j->done_fd < 0 && (j->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		snprintf(why, len, "eventfd: %s", strerror(errno));
		return -1;
	}
	memset(&j->st, 0, sizeof(j->st));
	j->st.progress_ns = mono_ns();
	j->stall_ns = (uint64_t)(j->q.stall_timeout_s ? j->q.stall_timeout_s :
				 SAVE_STALL_DEFAULT_S) * 1000000000ull;
	j->cfd = cfd;
	j->out_fd = out_fd;
	/* The thread takes only the kick signal (cancel), as vCPU threads do. */
	sigfillset(&all);
	sigdelset(&all, SIGUSR1);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&j->thread, NULL, save_thread, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		snprintf(why, len, "starting the save thread: %s", strerror(e));
		return -1;
	}
	j->active = true;
	return 0;
}

/*
 * Asks a running save to give up; a write stuck on a stalled reader is
 * knocked out.  Returns false when the save is held (a migration's receiver
 * may run the domain): then it is not the runner's to end.
 */
static bool cancel_save(struct runner *r)
{
	struct save_job *j = &r->job;
	int none = 0;

	if (!j->active)
		return true;
	if (!__atomic_compare_exchange_n(&j->st.cancel, &none, SAVE_CANCEL, false,
					 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST) && none != SAVE_CANCEL)
		return false;
	pthread_kill(j->thread, SIGUSR1);
	j->last_kick_ns = mono_ns();
	return true;
}

/* The save thread finished: returns true when the domain must now end. */
static bool reap_save(struct runner *r)
{
	struct save_job *j = &r->job;
	uint64_t v;
	ssize_t n = read(j->done_fd, &v, sizeof(v));

	(void)n;
	pthread_join(j->thread, NULL);
	j->active = false;
	return j->rc == 1;
}

/* Once a second while a save runs: the stall timeout, and re-kicks of a cancel. */
static void watch_save(struct runner *r)
{
	struct save_job *j = &r->job;
	uint64_t now = mono_ns();

	if (!j->active)
		return;
	/* A prepared save waits for its client under await_commit's own deadline. */
	if (!j->st.cancel && !j->st.prepared && now - j->st.progress_ns > j->stall_ns) {
		pr_err("save of %s made no progress for %llu s: cancelled, the domain resumes",
		       r->cfg.name, (unsigned long long)(j->stall_ns / 1000000000ull));
		cancel_save(r);
	} else if (j->st.cancel == SAVE_CANCEL && now - j->last_kick_ns > 200000000ull) {
		cancel_save(r);		/* the signal may have come before the write blocked */
	}
}

/*
 * "console": from the "ok" on, the connection carries the guest's console
 * out and the client's keys in (docs/control.md); the input thread owns it.
 */
static void attach_console(struct runner *r, int cfd)
{
	uint64_t one = 1;
	int old;

	if (!r->input_started || r->con_wake < 0) {
		reply(cfd, "error the console cannot be attached (no input thread)");
		return;
	}
	reply(cfd, "ok console: detach with Ctrl-]");
	old = __atomic_exchange_n(&r->con_new, cfd, __ATOMIC_SEQ_CST);
	if (old >= 0)
		close(old);		/* handed over but never taken: this one replaces it */
	r->kept = true;
	if (write(r->con_wake, &one, sizeof(one)) != sizeof(one))
		pr_warn("console: waking the input thread: %s", strerror(errno));
}

/* Returns true when the runner must end (destroy, or save then exit). */
static bool handle_client(struct runner *r, int cfd, int *exit_status)
{
	struct xc_error err;
	char line[SAVE_REQ_MAX], msg[1024];	/* a save request may carry a path */
	int pfd = -1;
	bool end = false;

	if (read_request(cfd, line, sizeof(line), &pfd)) {
		reply(cfd, "error no request");
		return false;
	}
	if (!strcmp(line, "status")) {
		status_line(r, cfd);
	} else if (!strcmp(line, "version")) {
		reply(cfd, "ok protocol=%d", CTL_PROTOCOL);
	} else if (!strcmp(line, "console")) {
		attach_console(r, cfd);
	} else if (!strcmp(line, "cancel")) {
		if (!r->job.active)
			reply(cfd, "error no save is running");
		else if (!cancel_save(r))
			reply(cfd, "error the save is committing: a migration's receiver may run the "
			      "domain, so it stays paused here until sr-migrate decides");
		else
			reply(cfd, "ok cancelling the save: the domain resumes as it was");
	} else if (r->job.active) {
		reply(cfd, "error busy: a save is running (sr-ctl status %s shows it, "
		      "sr-ctl cancel %s stops it)", r->cfg.name, r->cfg.name);
	} else if (!strcmp(line, "pause")) {
		if (xc_domain_pause(r->d, &err))
			reply(cfd, "error %s", err.msg);
		else {
			r->pauses++;
			reply(cfd, "ok paused");
		}
	} else if (!strcmp(line, "resume")) {
		if (xc_domain_resume(r->d, &err))
			reply(cfd, "error %s", err.msg);
		else {
			r->resumes++;
			reply(cfd, "ok running");
		}
	} else if (!strncmp(line, "poke ", 5) && test_hooks_built()) {
		/* Testing aid: flip the low bit of one guest byte, as a corrupting host would. */
		uint64_t gpa = strtoull(line + 5, NULL, 0);
		uint8_t *p = xc_gpa_to_hva(r->d, gpa, 1);

		if (!p) {
			reply(cfd, "error 0x%llx is not guest RAM", (unsigned long long)gpa);
		} else {
			__atomic_fetch_xor(p, 1, __ATOMIC_SEQ_CST);
			reply(cfd, "ok poked 0x%llx", (unsigned long long)gpa);
		}
	} else if (!strncmp(line, "throttle ", 9)) {
		/*
		 * Testing aid: hold every vCPU at a fixed throttle, as a live save
		 * would; the reply says how long they have been kept out so far.
		 */
		unsigned long pct = strtoul(line + 9, NULL, 10);
		uint64_t out_ns = 0, late_ns = 0;

		if (pct <= XC_THROTTLE_MAX)
			xc_domain_set_throttle(r->d, pct);
		for (unsigned i = 0; i < r->cfg.vcpus; i++) {
			out_ns += xc_vcpu_throttled_ns(xc_vcpu_get(r->d, i));
			late_ns += xc_vcpu_throttle_late_ns(xc_vcpu_get(r->d, i));
		}
		reply(cfd, "ok throttle %u kept_out_ms %llu late_ms %llu at_ms %llu",
		      xc_vcpu_throttle(xc_vcpu_get(r->d, 0)), (unsigned long long)(out_ns / 1000000),
		      (unsigned long long)(late_ns / 1000000), (unsigned long long)(mono_ns() / 1000000));
	} else if (!strcmp(line, "finish")) {
		struct sr_bootinfo *bi = xc_gpa_to_hva(r->d, SR_GUEST_BOOTINFO, sizeof(*bi));

		if (!r->cfg.test_guest || !bi || bi->magic != SR_BOOTINFO_MAGIC) {
			reply(cfd, "error finish needs the sr test guest");
		} else {
			__atomic_store_n(&bi->finish, 1, __ATOMIC_SEQ_CST);
			reply(cfd, "ok the guest will finish its round and report");
		}
	} else if (!strcmp(line, "destroy")) {
		reply(cfd, "ok destroyed");
		*exit_status = EXIT_SIGNAL;
		end = true;
	} else if (!strncmp(line, "save", 4) && (line[4] == 0 || line[4] == ' ')) {
		if (pfd < 0) {
			reply(cfd, "error save needs an output fd");
		} else if (start_save(r, cfd, pfd, line + 4, msg, sizeof(msg))) {
			reply(cfd, "error %s", msg);
		} else {
			return false;		/* the save thread owns cfd and pfd now */
		}
	} else {
		reply(cfd, "error unknown request \"%.64s\" (status, version, console, pause, resume, "
		      "finish, destroy, save, cancel)", line);
	}
	if (pfd >= 0)
		close(pfd);
	return end;
}

/*
 * SR_DEVICE_STATS: what the devices did and what it cost in exits to user
 * space (notifies go to ioeventfds in the kernel; the guest's ISR read after
 * each interrupt is the one exit a request costs, shared by the requests
 * that interrupt completes).
 */
static void device_stats(struct runner *r)
{
	for (struct hw_device *h = hw_bus_devices(r->bus); h; h = h->next) {
		struct virtio_counters c;

		if (strncmp(h->ops->name, "virtio-", 7))
			continue;
		virtio_counters((struct virtio_dev *)h, &c);
		pr_info("%s %u: %llu requests, %llu interrupts, %llu ISR reads, %llu notifies by "
			"exit (the rest by ioeventfd)", h->ops->name, h->instance,
			(unsigned long long)c.requests, (unsigned long long)c.interrupts,
			(unsigned long long)c.isr_reads, (unsigned long long)c.mmio_notifies);
	}
	pr_info("exits to user space: %llu port I/O, %llu MMIO",
		(unsigned long long)r->pio_exits, (unsigned long long)r->mmio_exits);
}

/* ------------------------------------------------------------- main loop */

/*
 * A new client waits in r->waiting until its request is there: the loop
 * never blocks on one (a client that connects and says nothing is told so
 * after CLIENT_REQUEST_MS, and the others are served meanwhile).
 */
static void accept_client(struct runner *r)
{
	int cfd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct ucred cred;
	socklen_t cl = sizeof(cred);

	if (cfd < 0)
		return;
	if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) ||
	    (cred.uid != geteuid() && cred.uid != 0)) {
		reply(cfd, "error permission denied");
		close(cfd);
		return;
	}
	for (unsigned i = 0; i < CLIENTS_MAX; i++) {
		if (r->waiting[i].fd < 0) {
			r->waiting[i].fd = cfd;
			r->waiting[i].deadline_ns = mono_ns() + CLIENT_REQUEST_MS * 1000000ull;
			return;
		}
	}
	reply(cfd, "error busy: %d clients have connected and not yet sent their request",
	      CLIENTS_MAX);
	close(cfd);
}

/* Serves the waiting clients whose request is there; drops those past their deadline. */
static void serve_clients(struct runner *r, const struct pollfd *p, int *status)
{
	uint64_t now = mono_ns();

	for (unsigned i = 0; i < CLIENTS_MAX; i++) {
		int cfd = r->waiting[i].fd;

		if (cfd < 0)
			continue;
		if (p[i].revents) {
			bool was_active = r->job.active;

			r->waiting[i].fd = -1;
			r->kept = false;
			if (handle_client(r, cfd, status) && *status < 0)
				*status = 0;
			if (!(r->job.active && !was_active) && !r->kept)
				close(cfd);	/* unless a save thread or the console took it */
		} else if (now >= r->waiting[i].deadline_ns) {
			r->waiting[i].fd = -1;
			reply(cfd, "error no request within %d ms", CLIENT_REQUEST_MS);
			close(cfd);
		}
	}
}

/* The poll timeout: a running save's watchdog tick, or the next client deadline. */
static int loop_timeout(const struct runner *r)
{
	uint64_t now = mono_ns();
	int ms = r->job.active ? 1000 : -1;

	for (unsigned i = 0; i < CLIENTS_MAX; i++) {
		if (r->waiting[i].fd < 0)
			continue;
		uint64_t left = r->waiting[i].deadline_ns > now ?
				(r->waiting[i].deadline_ns - now + 999999) / 1000000 : 0;

		if (ms < 0 || left < (uint64_t)ms)
			ms = (int)left;
	}
	return ms;
}

static int block_signals(struct runner *r)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		return -1;
	r->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	signal(SIGPIPE, SIG_IGN);
	return r->sig_fd < 0 ? -1 : 0;
}


static int stop_status(struct runner *r, const struct xc_event *ev)
{
	switch (ev->stopped) {
	case XC_STOP_GUEST:
		if (!r->guest_failed && r->fail_msg[0])
			pr_info("%s: %s", sr_prog, r->fail_msg);	/* e.g. a guest reset */
		if (r->guest_failed) {
			pr_err("guest failed: %s", r->fail_msg);
			return ev->status ? ev->status : EXIT_GUEST_FAIL;
		}
		if (ev->status)
			pr_err("guest finished with status %d", ev->status);
		return ev->status == 0 ? 0 : EXIT_GUEST_FAIL;
	case XC_STOP_SHUTDOWN:
		/* A guest that wants to reboot uses the i8042 (reboot=k); this is a crash. */
		pr_err("%s", ev->msg);
		return EXIT_VM_ERROR;
	case XC_STOP_ERROR:
		pr_err("%s", ev->msg);
		return EXIT_VM_ERROR;
	default:
		return EXIT_SIGNAL;
	}
}

int runner_start(struct runner *r, bool start_paused, struct xc_error *err)
{
	if (block_signals(r)) {
		xc_set_error(err, errno, "setting up signal handling");
		return EXIT_USAGE;
	}
	/* Now, while no vCPU runs: a save then does not probe MSRs while the guest is paused. */
	r->msrs = hvmctx_msr_list_make(xc_vcpu_get(r->d, 0), err);
	if (!r->msrs)
		return EXIT_VM_ERROR;
	if (test_env("SR_TEST_START_FAIL"))	/* testing aid: a start that fails */
		return xc_set_error(err, EIO, "testing: the domain did not start"), EXIT_VM_ERROR;
	if (r->bus && hw_bus_start(r->bus, err))
		return EXIT_VM_ERROR;
	if (xc_domain_start(r->d, start_paused, err))
		return EXIT_VM_ERROR;
	/* Every domain has one: sr-ctl console may attach to any. */
	r->con_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->con_wake >= 0 && !pthread_create(&r->input_thread, NULL, input_loop, r))
		r->input_started = true;
	return 0;
}

int runner_run(struct runner *r, bool start_paused)
{
	struct xc_error err;
	int rc = runner_start(r, start_paused, &err);

	if (rc) {
		pr_err("%s", err.msg);
		return rc;
	}
	return runner_loop(r);
}

int runner_loop(struct runner *r)
{
	struct xc_error err;
	struct xc_event ev;
	int status = -1;

	if (r->cfg.thread_start)		/* the sandbox: from here on, the control thread's list */
		r->cfg.thread_start(RUNNER_THREAD_CONTROL);
	while (status < 0) {
		struct pollfd p[4 + CLIENTS_MAX] = {
			{ .fd = xc_domain_event_fd(r->d), .events = POLLIN },
			{ .fd = r->sig_fd, .events = POLLIN },
			{ .fd = r->listen_fd, .events = POLLIN },
			{ .fd = r->job.active ? r->job.done_fd : -1, .events = POLLIN },
		};

		for (unsigned i = 0; i < CLIENTS_MAX; i++)
			p[4 + i] = (struct pollfd){ .fd = r->waiting[i].fd, .events = POLLIN };
		if (poll(p, 4 + CLIENTS_MAX, loop_timeout(r)) < 0) {
			if (errno == EINTR)
				continue;
			pr_err("poll: %s", strerror(errno));
			status = EXIT_USAGE;
			break;
		}
		if (p[0].revents) {
			xc_domain_event(r->d, &ev);
			if (ev.stopped != XC_RUNNING) {
				status = stop_status(r, &ev);
				break;
			}
			if (r->save_requested && !r->job.active) {
				char msg[1024];

				r->save_requested = false;
				if (runner_guest_save(r, r->cfg.save_to, msg, sizeof(msg))) {
					pr_err("guest-requested save to %s failed: %s; the guest continues",
					       r->cfg.save_to, msg);
					xc_domain_resume(r->d, &err);
				} else {
					pr_info("%s: %s", sr_prog, msg);
					status = 0;
				}
			}
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;

			if (read(r->sig_fd, &si, sizeof(si)) == sizeof(si)) {
				pr_err("signal %u: destroying domain %s", si.ssi_signo, r->cfg.name);
				status = EXIT_SIGNAL;
			}
		}
		serve_clients(r, p + 4, &status);
		if (p[2].revents)
			accept_client(r);
		if (r->job.active && p[3].revents && reap_save(r) && status < 0)
			status = 0;		/* saved, and the domain ends */
		watch_save(r);
	}
	/* Never tear the domain down under a running save. */
	if (r->job.active) {
		cancel_save(r);
		while (r->job.active) {
			struct pollfd w = { .fd = r->job.done_fd, .events = POLLIN };

			if (poll(&w, 1, 200) > 0)
				reap_save(r);
			else
				cancel_save(r);
		}
	}
	xc_domain_stop(r->d);
	if (r->bus && test_env("SR_DEVICE_STATS"))
		device_stats(r);
	return status;
}
