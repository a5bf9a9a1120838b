/* SPDX-License-Identifier: MIT */
/*
 * sr-restore's sandbox: one seccomp allow-list per thread kind (sandbox.h).
 *
 * Each kind is a table of system calls, each with the reason sr needs it;
 * ioctl is allowed only for the requests a kind makes, mmap and mprotect
 * never with PROT_EXEC, clone only for threads, sockets only AF_UNIX
 * stream ones (bound or paired, never connected).  A
 * kind's filter is its own tables plus those of the kinds it starts
 * (kinds[].starts): a thread's filter stays on the threads it creates, so
 * it must let their calls through; each of them then narrows it to its own
 * tables.  The filters are compiled once by libseccomp, on the main thread
 * before any other exists, and each thread loads its own BPF program with a
 * plain seccomp() call (no allocation, no library state shared between
 * threads).
 *
 * The default action is SECCOMP_RET_TRAP, not KILL_PROCESS: a killed
 * process prints nothing, and an operator (or sr-migrate, reading a
 * receiver's stderr) is left with a bare SIGSYS.  The SIGSYS handler writes
 * one line naming the call, the ioctl request and the thread kind with
 * write(2) only, then _exits.  No filter lets a thread change the SIGSYS
 * handler; a thread that blocks SIGSYS is killed by the kernel all the same
 * (a forced signal that is blocked falls back to the default action).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <ucontext.h>
#include <unistd.h>

#include "sandbox.h"
#include "util.h"

/* How a rule looks at a call's arguments. */
enum arg_rule {
	ANY,			/* every call */
	NO_EXEC,		/* mmap, mprotect: prot (arg 2) without PROT_EXEC */
	THREAD_ONLY,		/* clone: flags (arg 0) with CLONE_THREAD: no new process */
	UNIX_ONLY,		/* socket, socketpair: AF_UNIX SOCK_STREAM only (no datagram
				   sent to a socket by its name: syslog, a service's) */
	NOT_SIGSYS,		/* rt_sigaction: any signal but SIGSYS (the trap's handler) */
	STDERR_ONLY,		/* write: fd 2 */
	FILTER_ONLY,		/* seccomp: SET_MODE_FILTER, no flags (a thread narrows itself) */
	SET_NAME,		/* prctl: PR_SET_NAME only */
	TCP_LEVEL,		/* getsockopt: level (arg 1) IPPROTO_TCP (TCP_INFO) */
	FAIL_ENOSYS,		/* clone3: its flags are out of reach of a filter; glibc falls
				   back to clone on ENOSYS */
	FAIL_EACCES,		/* openat: refused (glibc falls back, e.g. sysconf) */
	READ_FAILS,		/* openat read-only (neither O_WRONLY, O_RDWR, O_CREAT nor
				   O_TRUNC): refused with EACCES (others trap) */
};

struct rule {
	int nr;
	enum arg_rule arg;
	const char *why;
};

struct kvm_req {
	unsigned long req;
	const char *why;
};

#define R(name, arg, why)	{ SCMP_SYS(name), arg, why }
#define END			{ -1, ANY, NULL }

/* Every thread. */
static const struct rule common[] = {
	R(futex, ANY, "pthread mutexes and condition variables"),
	R(exit, ANY, "a thread's end"),
	R(exit_group, ANY, "the process's end; the SIGSYS handler's _exit"),
	R(rt_sigreturn, ANY, "return from a signal handler (the vCPU kick, a save's cancel)"),
	R(rt_sigprocmask, ANY, "pthread_sigmask; glibc masks signals around a thread's end"),
	R(restart_syscall, ANY, "a wait restarted after a signal"),
	R(mmap, NO_EXEC, "malloc: a thread's arena, large blocks"),
	R(mprotect, NO_EXEC, "malloc grows an arena"),
	R(munmap, ANY, "free; a finished thread's stack"),
	R(mremap, ANY, "realloc of a large block"),
	R(madvise, ANY, "glibc hands back a finished thread's stack and freed memory"),
	R(brk, ANY, "malloc on the main arena"),
	R(write, STDERR_ONLY, "messages on stderr; the SIGSYS handler's line"),
	R(clock_gettime, ANY, "clocks, where the vDSO does not answer"),
	R(gettimeofday, ANY, "the same"),
	R(getpid, ANY, "pthread_kill (tgkill needs the pid)"),
	R(gettid, ANY, "the same"),
	R(sched_yield, ANY, "glibc's lock back-off"),
	R(seccomp, FILTER_ONLY, "a thread narrows its own filter (never widens it)"),
	END
};

/* Threads that start threads: the new one runs glibc's start code under its creator's filter. */
static const struct rule spawn[] = {
	R(clone, THREAD_ONLY, "pthread_create"),
	R(clone3, FAIL_ENOSYS, "pthread_create tries it first; made to fall back to clone"),
	R(set_robust_list, ANY, "a new thread registers its robust futex list"),
	R(rseq, ANY, "a new thread registers its restartable sequence area"),
	R(prctl, SET_NAME, "names a new thread after its kind"),
	END
};

/* Page-batch workers: pure computation on memory; nothing beyond the common list. */
static const struct rule worker[] = { END };

/*
 * The image's reader: the stream in, guest memory, the VM's state into KVM
 * once the whole image has verified.  No file is opened, no socket made,
 * nothing written but stderr: the descriptors it needs are open already.
 * An image's disks are the one file it names: opened, checked and made
 * into their devices by the main thread, which the reader asks
 * (sandbox_ask) and waits for.
 */
static const struct rule reader[] = {
	R(read, ANY, "the stream"),
	R(readv, ANY, "the stream, placed straight into guest memory"),
	R(memfd_create, ANY, "guest memory, a region at a time"),
	R(ftruncate, ANY, "the same"),
	R(fallocate, ANY, "punches pages an image sends as zero (then sealed: "
	  "sandbox_reader_seal, before any disk is opened)"),
	R(close, ANY, "a region's or vCPU's fd when building fails"),
	R(eventfd2, ANY, "a virtio-rng device's eventfds (made from its DEVICE record)"),
	R(openat, FAIL_EACCES, "refused, not trapped: glibc looks for message catalogs "
	  "when an error is formatted (a cut stream), and goes on without them"),
	R(ioctl, ANY, "KVM requests below"),
	END
};
static const struct kvm_req reader_kvm[] = {
	{ KVM_CHECK_EXTENSION, "what this KVM can restore" },
	{ KVM_GET_SUPPORTED_CPUID, "the image's CPUID against this host's" },
	{ KVM_GET_MSR_INDEX_LIST, "the image's MSRs against this host's" },
	{ KVM_SET_USER_MEMORY_REGION, "guest memory" }, { KVM_CREATE_VCPU, "the vCPUs" },
	{ KVM_SET_CPUID2, "a vCPU's CPUID" }, { KVM_GET_CPUID2, "the same, checked" },
	{ KVM_SET_REGS, "restores a vCPU" }, { KVM_SET_SREGS, "the same" },
	{ KVM_SET_SREGS2, "the same" }, { KVM_SET_XSAVE, "the same" },
	{ KVM_SET_XCRS, "the same" }, { KVM_SET_MSRS, "the same" },
	{ KVM_GET_MSRS, "the same, checked" },
	{ KVM_SET_LAPIC, "the same" }, { KVM_SET_VCPU_EVENTS, "the same" },
	{ KVM_SET_DEBUGREGS, "the same" }, { KVM_SET_MP_STATE, "the same" },
	{ KVM_GET_TSC_KHZ, "the TSC rate" }, { KVM_SET_TSC_KHZ, "the same" },
	{ KVM_HAS_DEVICE_ATTR, "the TSC offset attribute" },
	{ KVM_GET_DEVICE_ATTR, "the TSC offset" }, { KVM_SET_DEVICE_ATTR, "the same" },
	{ KVM_GET_CLOCK, "kvmclock" }, { KVM_SET_CLOCK, "the same" },
	{ KVM_KVMCLOCK_CTRL, "tells the guest it was paused" },
	{ KVM_SET_IRQCHIP, "PIC and IOAPIC" }, { KVM_SET_PIT2, "the PIT" },
	{ KVM_IRQ_LINE, "a restored UART's interrupt line, as the image left it" },
	{ KVM_IRQFD, "a virtio device's interrupt line (made from its DEVICE record)" },
	{ KVM_IOEVENTFD, "its notify addresses, where its restored BAR puts them" },
	{ KVM_SET_GSI_ROUTING, "its MSI-X vectors, routed to the messages its image gives" },
	/* State read back where an image's record leaves fields to this host's defaults. */
	{ KVM_GET_REGS, "a vCPU's state" }, { KVM_GET_SREGS, "the same" },
	{ KVM_GET_SREGS2, "the same" }, { KVM_GET_XSAVE, "the same" },
	{ KVM_GET_XSAVE2, "the same" }, { KVM_GET_XCRS, "the same" },
	{ KVM_GET_LAPIC, "the same" }, { KVM_GET_VCPU_EVENTS, "the same" },
	{ KVM_GET_DEBUGREGS, "the same" }, { KVM_GET_MP_STATE, "the same" },
	{ KVM_GET_IRQCHIP, "PIC and IOAPIC" }, { KVM_GET_PIT2, "the PIT" },
	{ 0, NULL }
};

static const struct rule vcpu[] = {
	R(ioctl, ANY, "KVM requests below"),
	R(write, ANY, "the domain's event fd (a vCPU parked or stopped)"),
	R(tgkill, ANY, "kicks the other vCPUs out of KVM_RUN when the domain stops"),
	R(timer_delete, ANY, "the throttle timer, when the vCPU ends"),
	R(timer_settime, ANY, "the throttle timer"),
	END
};
static const struct kvm_req vcpu_kvm[] = {
	{ KVM_RUN, "runs the guest" },
	{ KVM_IOEVENTFD, "a virtio device's notify addresses follow its BAR (the guest moves it)" },
	{ KVM_SET_GSI_ROUTING, "a virtio device's MSI-X vector routed as the guest programs it" },
	{ KVM_IRQ_LINE, "the UART's interrupt, raised from its port I/O" },
	{ KVM_RESET_DIRTY_RINGS, "a full dirty ring is harvested on the vCPU's thread" },
	{ 0, NULL }
};

/*
 * A virtio device's thread (hw/virtio_pci.c): waits on its queues'
 * ioeventfds, moves data between guest memory and its disk file, raises
 * its interrupt by writing an irqfd (INTx's, or an MSI-X vector's).  Nothing else, no ioctl: its files and
 * eventfds are made, and registered with KVM, before it starts (sr-run's
 * main thread; sr-restore's, for the reader).
 */
static const struct rule device[] = {
	R(poll, ANY, "its ioeventfds, resample fd and control eventfd"),
	R(ppoll, ANY, "the same"),
	R(read, ANY, "drains those eventfds"),
	R(write, ANY, "the irqfd, its control eventfd"),
	R(preadv, ANY, "virtio-blk reads into guest memory"),
	R(pwritev, ANY, "virtio-blk writes from guest memory"),
	R(pread64, ANY, "the same, through a bounce buffer (O_DIRECT)"),
	R(pwrite64, ANY, "the same; write-zeroes without fallocate"),
	R(fdatasync, ANY, "virtio-blk FLUSH"),
	R(fallocate, ANY, "virtio-blk DISCARD and WRITE_ZEROES"),
	R(getrandom, ANY, "virtio-rng"),
	END
};

static const struct rule console[] = {
	R(write, ANY, "the console fd (stdout, or the --migrate-receive log)"),
	R(sendto, ANY, "an attached sr-ctl console, never waited on (MSG_DONTWAIT)"),
	END
};

static const struct rule input[] = {
	R(read, ANY, "stdin; an attached sr-ctl console; the wake eventfd"),
	R(poll, ANY, "waits for stdin, a console client, the wake eventfd"),
	R(ppoll, ANY, "the same"),
	R(sendto, ANY, "the console's last lines to a client that attaches"),
	R(close, ANY, "a console client that went or was replaced"),
	R(ioctl, ANY, "KVM requests below"),
	R(clock_nanosleep, ANY, "waits while the UART's receive FIFO is full"),
	R(nanosleep, ANY, "the same"),
	END
};
static const struct kvm_req input_kvm[] = {
	{ KVM_IRQ_LINE, "the UART's interrupt, raised when input arrives" },
	{ 0, NULL }
};

/* A save (on the save thread, or on the main thread when the guest asks for one). */
static const struct rule save[] = {
	R(ioctl, ANY, "KVM requests below"),
	R(write, ANY, "the image; progress to the client; the done eventfd"),
	R(writev, ANY, "the image (libsr's writer)"),
	R(read, ANY, "the client's commit or cancel"),
	R(sendto, ANY, "answers to the client (send)"),
	R(poll, ANY, "waits for the client's commit"),
	R(ppoll, ANY, "the same"),
	R(lseek, ANY, "finds a memfd's holes (SEEK_DATA, SEEK_HOLE)"),
	R(pread64, ANY, "a disk's sampled hash, for its DISK record"),
	R(close, ANY, "the image and the client, once sent"),
	R(fsync, ANY, "the image is durable before anyone is told it worked"),
	R(tgkill, ANY, "pauses the vCPUs (kick)"),
	R(timer_settime, ANY, "throttles the vCPUs of a live save"),
	R(clock_nanosleep, ANY, "--bandwidth"),
	R(nanosleep, ANY, "the same"),
	R(openat, ANY, "sysconf(_SC_NPROCESSORS_ONLN) reads /sys (--threads default); "
		       "--disk-snapshot: the snapshots, O_TMPFILE beside the image"),
	R(sched_getaffinity, ANY, "sysconf's fallback"),
	R(fstat, ANY, "the same; a disk's size (its identity, its snapshot)"),
	R(newfstatat, ANY, "the same"),
	R(copy_file_range, ANY, "--disk-snapshot: a disk's data ranges into its snapshot"),
	R(ftruncate, ANY, "the same: the snapshot's size, holes left holes"),
	R(pwrite64, ANY, "the same, where copy_file_range cannot"),
	R(linkat, ANY, "the same: the snapshot named once the image is committed"),
	R(rename, ANY, "the same, replacing an older snapshot"),
	R(renameat, ANY, "the same"),
	R(renameat2, ANY, "the same"),
	R(unlink, ANY, "the same: a named temporary snapshot that is not kept"),
	R(unlinkat, ANY, "the same"),
	R(getpid, ANY, "the same: the side name of a replacing link"),
	END
};
static const struct kvm_req save_kvm[] = {
	{ KVM_GET_REGS, "vCPU state" }, { KVM_GET_SREGS, "vCPU state" },
	{ KVM_GET_SREGS2, "vCPU state" }, { KVM_GET_XSAVE, "vCPU state" },
	{ KVM_GET_XSAVE2, "vCPU state" }, { KVM_GET_XCRS, "vCPU state" },
	{ KVM_GET_MSRS, "vCPU state" }, { KVM_GET_LAPIC, "vCPU state" },
	{ KVM_GET_VCPU_EVENTS, "vCPU state" }, { KVM_GET_DEBUGREGS, "vCPU state" },
	{ KVM_GET_MP_STATE, "vCPU state" }, { KVM_GET_CPUID2, "the CPUID the image carries" },
	{ KVM_GET_TSC_KHZ, "the TSC rate" },
	{ KVM_HAS_DEVICE_ATTR, "the TSC offset attribute" },
	{ KVM_GET_DEVICE_ATTR, "the TSC offset" },
	{ KVM_GET_CLOCK, "kvmclock" }, { KVM_GET_IRQCHIP, "PIC and IOAPIC" },
	{ KVM_KVMCLOCK_CTRL, "tells the guest it was paused (restore does too)" },
	{ KVM_GET_PIT2, "the PIT" },
	{ KVM_SET_PIT2, "the PIT put back on resume (no burst of ticks missed in a pause)" },
	{ FICLONE, "--disk-snapshot: a disk's snapshot by reflink" },
	{ KVM_CHECK_EXTENSION, "capabilities a save asks about" },
	{ KVM_SET_USER_MEMORY_REGION, "turns dirty logging on and off (live)" },
	{ KVM_GET_DIRTY_LOG, "dirty pages (live)" }, { KVM_CLEAR_DIRTY_LOG, "the same" },
	{ KVM_RESET_DIRTY_RINGS, "the same, with dirty rings" },
	{ KVM_ENABLE_CAP, "manual dirty-log protection (live)" },
	{ 0, NULL }
};

/* The main thread once the domain runs; it also runs guest-requested saves. */
static const struct rule control[] = {
	R(poll, ANY, "the main loop"),
	R(ppoll, ANY, "the same"),
	R(accept4, ANY, "control socket clients"),
	R(recvmsg, ANY, "a request and a passed fd"),
	R(sendmsg, ANY, "answers"),
	R(getsockopt, ANY, "SO_PEERCRED: who asks"),
	R(geteuid, ANY, "the same"),
	R(read, ANY, "signalfd, the domain's event fd, the save's eventfd"),
	R(eventfd2, ANY, "the save thread's done fd"),
	R(openat, ANY, "--save-to: the guest-requested image and its directory"),
	R(fsync, ANY, "the same"),
	R(fdatasync, ANY, "the same"),
	R(rename, ANY, "the same"),
	R(renameat, ANY, "the same"),
	R(renameat2, ANY, "the same"),
	R(linkat, ANY, "the same (O_TMPFILE)"),
	R(unlink, ANY, "the same; the control socket at the end"),
	R(unlinkat, ANY, "the same"),
	R(rt_sigaction, NOT_SIGSYS, "glibc's cancel handler (the input thread is cancelled)"),
	R(ioctl, ANY, "KVM requests below"),
	END
};
static const struct kvm_req control_kvm[] = {
	{ TCGETS, "isatty() of stdio" },
	{ 0, NULL }
};

/* --listen: the stream's guard wakes each second and reads the socket's counters. */
static const struct rule guard[] = {
	R(getsockopt, TCP_LEVEL, "TCP_INFO: the bytes received (plaintext, kTLS)"),
	R(ioctl, ANY, "FIONREAD below"),
	R(poll, ANY, "whether payload waits for the reader (then the reader is the slow side)"),
	R(ppoll, ANY, "the same"),
	R(shutdown, ANY, "cuts a peer that broke a bound"),
	END
};
static const struct kvm_req guard_ioctl[] = {
	{ FIONREAD, "bytes still queued: received, not yet delivered to the reader" },
	{ 0, NULL }
};

/*
 * GnuTLS's record layer on the TCP socket (send through sendmsg, receive
 * through recv, a timed wait through poll), the plain stream's socket pair.
 */
static const struct rule tls_pump[] = {
	R(read, ANY, "the stream's users to the peer (the socket pair)"),
	R(recvfrom, ANY, "TLS records in (GnuTLS: recv)"),
	R(sendmsg, ANY, "TLS records out (GnuTLS: sendmsg)"),
	R(sendto, ANY, "the same (send); the peer to the stream's users (send, not write)"),
	R(poll, ANY, "GnuTLS's timed waits"),
	R(ppoll, ANY, "the same"),
	R(shutdown, ANY, "the connection's end, one direction or both"),
	R(getrandom, ANY, "a TLS 1.3 key update"),
	END
};

/*
 * --listen's connections, on a thread of their own (listener.c): accepts
 * peers and runs their TLS handshakes, GnuTLS on non-blocking sockets, up
 * to 1024 at once, the bytes of anyone who can reach the port.  The --tls-psk
 * file is read again at each handshake, by pread on the descriptor opened
 * before the sandbox: no file can be opened here (audit7; a read-only
 * openat fails with EACCES, as in every list: glibc's); the authenticated
 * source's pumps start here (tls_pump's list is added: starts).
 */
static const struct rule listen_[] = {
	R(poll, ANY, "the listening socket and every pending peer"),
	R(ppoll, ANY, "the same"),
	R(accept4, ANY, "the peers' connections"),
	R(getpeername, ANY, "a peer's address, for its per-address count"),
	R(getsockname, ANY, "the same"),
	R(setsockopt, ANY, "keepalive, the idle timeout; kTLS: the ULP and the keys"),
	R(getsockopt, ANY, "the same"),
	R(fcntl, ANY, "a peer's socket non-blocking while it handshakes; the listening socket"),
	R(recvfrom, ANY, "a plaintext peer's first bytes (MSG_PEEK); the handshakes' records in"),
	R(sendmsg, ANY, "the handshakes' records out (GnuTLS: sendmsg)"),
	R(sendto, ANY, "the same (send)"),
	R(close, ANY, "a dropped peer"),
	R(getrandom, ANY, "the handshakes' randoms and key shares"),
	R(pread64, ANY, "the --tls-psk file, read at each handshake on the fd opened before"),
	R(newfstatat, ANY, "the same, still the file under its name (a key file deleted or "
	  "replaced revokes its keys); fstat"),
	R(fstat, ANY, "the same"),
	R(socketpair, UNIX_ONLY, "user-space TLS: the plain stream's socket pair"),
	END
};

/* --migrate-receive's parent: waits for the runner's "running" byte, or for its end. */
static const struct rule detach[] = {
	R(read, ANY, "the runner's byte"),
	R(wait4, ANY, "the runner's end: its status is ours"),
	END
};

/*
 * The main thread until the domain runs: the host probe's leftovers, the
 * stream's descriptor, the VM and its vCPUs' shells, the control socket and
 * its lock, a listener's connections and their TLS handshakes (GnuTLS on
 * non-blocking sockets, several at once: listener.c), the migration's
 * answers.  It also takes, below (starts), every list of the threads it
 * starts.
 */
static const struct rule main_[] = {
	R(read, ANY, "the source's \"go\""),
	R(recvfrom, ANY, "the same; a plaintext peer's first bytes (MSG_PEEK); the TLS "
			  "handshakes' records (GnuTLS: recv)"),
	R(sendto, ANY, "the receiver's answers"),
	R(sendmsg, ANY, "the TLS handshakes' records out (GnuTLS: sendmsg)"),
	R(write, ANY, "the same (ssh: a pipe); the detached parent's byte"),
	R(poll, ANY, "the listener: its socket and every pending peer; then \"go\""),
	R(ppoll, ANY, "the same"),
	R(clock_nanosleep, ANY, "SR_TEST_PAUSE_AT=go (test builds; the listener waits in poll)"),
	R(nanosleep, ANY, "the same"),
	R(accept4, ANY, "--listen: the sources' connections (non-blocking)"),
	R(setsockopt, ANY, "the same: keepalive, the idle timeout; kTLS: the ULP and keys"),
	R(getsockopt, ANY, "the same"),
	R(getsockname, ANY, "the same"),
	R(getpeername, ANY, "the same"),
	R(shutdown, ANY, "user-space TLS ends its pumps' socket pair and the connection (tls_end)"),
	R(openat, ANY, "/dev/kvm, /proc/meminfo, NAME.lock, the --migrate-receive log; the "
		       "--tls-psk file, read at each handshake"),
	R(close, ANY, "fds"),
	R(fstat, ANY, "stdio"),
	R(newfstatat, ANY, "stat of the run directory"),
	R(statx, ANY, "the same"),
	R(lseek, ANY, "the same"),
	R(fcntl, ANY, "dups, close-on-exec; a peer's socket non-blocking while it handshakes"),
	R(getrandom, ANY, "the TLS handshakes' randoms and key shares"),
	R(socketpair, UNIX_ONLY, "user-space TLS: the plain stream's socket pair"),
	R(dup2, ANY, "--migrate-receive: stdio once detached"),
	R(dup3, ANY, "the same"),
	R(mkdir, ANY, "the run directory"),
	R(umask, ANY, "the control socket is born 0600"),
	R(flock, ANY, "NAME.lock: this runner owns the domain's name"),
	R(socket, UNIX_ONLY, "the control socket (bound, never connected: NAME.lock, taken "
			     "before the sandbox, says whether the name is in use)"),
	R(bind, ANY, "the control socket"),
	R(listen, ANY, "the same"),
	R(signalfd4, ANY, "SIGINT, SIGTERM, SIGHUP in the main loop"),
	R(timer_create, ANY, "a vCPU's throttle timer (on its thread, before it narrows)"),
	R(getuid, ANY, "the run directory's owner"),
	R(eventfd2, ANY, "the console's wake (runner_start); a virtio-blk device's (made here "
			 "for the reader, sandbox_ask)"),
	R(pread64, ANY, "an image's disk, its identity checked for the reader (sandbox_ask)"),
	R(ioctl, ANY, "KVM requests below"),
	END
};
static const struct kvm_req main_kvm[] = {
	{ KVM_GET_API_VERSION, "VM creation" }, { KVM_CHECK_EXTENSION, "the same" },
	{ KVM_GET_VCPU_MMAP_SIZE, "the same" }, { KVM_CREATE_VM, "the same" },
	{ KVM_GET_SUPPORTED_CPUID, "the same" }, { KVM_GET_MSR_INDEX_LIST, "the MSR list" },
	{ KVM_SET_IDENTITY_MAP_ADDR, "the same" }, { KVM_SET_TSS_ADDR, "the same" },
	{ KVM_CREATE_IRQCHIP, "the same" }, { KVM_CREATE_PIT2, "the same" },
	{ KVM_ENABLE_CAP, "the same (dirty rings)" }, { KVM_GET_MSRS, "the MSRs a save takes" },
	{ KVM_IRQFD, "a virtio-blk device's interrupt line (made for the reader, sandbox_ask)" },
	{ KVM_IOEVENTFD, "the same: its notify addresses" },
	{ 0, NULL }
};

#ifdef __SANITIZE_ADDRESS__
/*
 * Built with SAN=1: what the sanitizers' runtime does on any thread
 * (alternate signal stacks, reports that read /proc/self/maps and end in
 * abort, LeakSanitizer's exit-time scan, which stops the threads with
 * ptrace from a cloned tracer).  Never in an ordinary build.
 */
static const struct rule sanitizer[] = {
	R(sigaltstack, ANY, "ASan's signal stack, per thread"),
	/* The runtime makes x86-64's older calls (open, stat), not the *at ones. */
	R(open, ANY, "reports read /proc/self/maps; LSan lists /proc/PID/task"),
	R(openat, ANY, "the same"),
	R(read, ANY, "the same"), R(close, ANY, "the same"),
	R(stat, ANY, "the same"), R(lstat, ANY, "the same"),
	R(readlink, ANY, "reports name the binary"),
	R(getdents, ANY, "LSan lists threads"), R(getdents64, ANY, "the same"),
	R(clone, ANY, "LSan's tracer"),
	R(ptrace, ANY, "LSan stops the threads"),
	R(wait4, ANY, "LSan waits for its tracer"),
	R(prctl, ANY, "LSan lets its tracer attach"),
	R(mmap, ANY, "the runtime's own mappings"),
	R(mprotect, ANY, "the same"),
	R(write, ANY, "reports"),
	R(rt_sigaction, NOT_SIGSYS, "abort() after a report (never SIGSYS: the trap stays ours)"),
	R(tgkill, ANY, "the same"),
	R(kill, ANY, "the same"),
	R(getppid, ANY, "LSan's tracer"),
	R(sched_getaffinity, ANY, "the runtime"),
	R(fstat, ANY, "the same"), R(newfstatat, ANY, "the same"),
	R(nanosleep, ANY, "LSan waits for threads to stop"),
	R(clock_nanosleep, ANY, "the same"),
	END
};
#endif

#define BIT(k)	(1u << (k))

struct kind {
	const char *name;		/* in the SIGSYS line */
	const char *thread;		/* the thread's name (comm); NULL: keeps its own */
	const struct rule *rules[2];
	const struct kvm_req *kvm;
	unsigned starts;		/* kinds of the threads it starts: their lists are in its own */
};

static const struct kind kinds[SANDBOX_KINDS] = {
	/* Every thread but the detached parent's (a process of its own) starts under it. */
	[SANDBOX_MAIN] = { "main", NULL, { main_, spawn }, main_kvm,
			   (BIT(SANDBOX_KINDS) - 1) & ~BIT(SANDBOX_MAIN) & ~BIT(SANDBOX_DETACH) },
	[SANDBOX_READER] = { "reader", "sr-reader", { reader, spawn }, reader_kvm,
			     BIT(SANDBOX_WORKER) },
	[SANDBOX_WORKER] = { "worker", "sr-worker", { worker } },
	[SANDBOX_VCPU] = { "vCPU", "sr-vcpu", { vcpu }, vcpu_kvm },
	[SANDBOX_CONSOLE] = { "console", "sr-console", { console } },
	[SANDBOX_INPUT] = { "input", "sr-input", { input }, input_kvm },
	[SANDBOX_CONTROL] = { "control", NULL, { control, spawn }, control_kvm,
			      BIT(SANDBOX_SAVE) | BIT(SANDBOX_WORKER) },
	[SANDBOX_SAVE] = { "save", "sr-save", { save, spawn }, save_kvm, BIT(SANDBOX_WORKER) },
	[SANDBOX_DEVICE] = { "device", "sr-device", { device } },
	[SANDBOX_GUARD] = { "guard", "sr-guard", { guard }, guard_ioctl },
	[SANDBOX_TLS_PUMP] = { "tls-pump", "sr-tls-pump", { tls_pump } },
	[SANDBOX_DETACH] = { "detach", NULL, { detach } },
	[SANDBOX_LISTEN] = { "listen", "sr-listen", { listen_, spawn }, NULL, BIT(SANDBOX_TLS_PUMP) },
};

#define EXTRA_MAX 32
static int extra[SANDBOX_KINDS][EXTRA_MAX];
static unsigned nextra[SANDBOX_KINDS];

static struct sock_fprog progs[SANDBOX_KINDS];
static bool prepared;
static const char *names[512];		/* syscall names, for the handler */
static __thread int thread_kind = -1;

const char *sandbox_kind_name(enum sandbox_kind kind)
{
	return kind < SANDBOX_KINDS ? kinds[kind].name : "?";
}

int sandbox_allow(enum sandbox_kind kind, const int *syscalls, unsigned n)
{
	if (kind >= SANDBOX_KINDS || nextra[kind] + n > EXTRA_MAX || prepared)
		return -1;
	memcpy(&extra[kind][nextra[kind]], syscalls, n * sizeof(*syscalls));
	nextra[kind] += n;
	return 0;
}

/* ------------------------------------------------------------- the trap */

static size_t put_str(char *buf, size_t at, const char *s)
{
	while (*s && at < 255)
		buf[at++] = *s++;
	return at;
}

static size_t put_num(char *buf, size_t at, unsigned long v, unsigned base)
{
	char d[24];
	int n = 0;

	do {
		d[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (base == 16)
		at = put_str(buf, at, "0x");
	while (n && at < 255)
		buf[at++] = d[--n];
	return at;
}

/* Async-signal-safe: write(2) and _exit(2) only. */
static void on_sigsys(int sig, siginfo_t *si, void *uc_)
{
	ucontext_t *uc = uc_;
	int nr = si->si_syscall;
	int k = thread_kind;
	char buf[256];
	size_t n = 0;

	(void)sig;
	n = put_str(buf, n, sr_prog ? sr_prog : "sr");
	n = put_str(buf, n, ": sandbox: the ");
	n = put_str(buf, n, k >= 0 && k < SANDBOX_KINDS ? kinds[k].name : "unsandboxed");
	n = put_str(buf, n, " thread made system call ");
	n = put_num(buf, n, (unsigned)nr, 10);
	if (nr >= 0 && (unsigned)nr < sizeof(names) / sizeof(names[0]) && names[nr]) {
		n = put_str(buf, n, " (");
		n = put_str(buf, n, names[nr]);
		n = put_str(buf, n, ")");
	}
	if (nr == SCMP_SYS(ioctl)) {
		n = put_str(buf, n, " request ");
		n = put_num(buf, n, (unsigned long)uc->uc_mcontext.gregs[REG_RSI] & 0xffffffffu, 16);
	}
	n = put_str(buf, n, ", outside its seccomp allow-list: killed (--no-sandbox runs without "
		    "it)\n");
	if (write(STDERR_FILENO, buf, n) < 0)
		n = 0;
	_exit(SANDBOX_EXIT);
}

/* ------------------------------------------------------------ building */

/*
 * rt_sigaction for any signal but SIGSYS.  The kernel reads the signal as an
 * int, and a 64-bit "!= SIGSYS" lets 0x1000000000000001f through: signals
 * below SIGSYS by one unsigned comparison (no upper bits can pass it), the
 * ones above it each by name.
 */
static int add_not_sigsys(scmp_filter_ctx ctx)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(rt_sigaction), 1,
				  SCMP_A0(SCMP_CMP_LT, SIGSYS));

	for (int sig = SIGSYS + 1; sig <= 64 && (!rc || rc == -EEXIST); sig++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(rt_sigaction), 1,
				      SCMP_A0(SCMP_CMP_EQ, sig));
	return rc == -EEXIST ? 0 : rc;
}

static int add_rule(scmp_filter_ctx ctx, const struct rule *r)
{
	uint32_t act = SCMP_ACT_ALLOW;
	struct scmp_arg_cmp a[2];
	unsigned n = 0;

	switch (r->arg) {
	case ANY: break;
	case NO_EXEC: a[n++] = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0); break;
	case THREAD_ONLY: a[n++] = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD); break;
	case UNIX_ONLY:
		a[n++] = SCMP_A0(SCMP_CMP_EQ, AF_UNIX);
		a[n++] = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_STREAM);
		break;
	case TCP_LEVEL: a[n++] = SCMP_A1(SCMP_CMP_EQ, IPPROTO_TCP); break;
	case NOT_SIGSYS: return add_not_sigsys(ctx);
	case STDERR_ONLY: a[n++] = SCMP_A0(SCMP_CMP_EQ, STDERR_FILENO); break;
	case FILTER_ONLY:
		a[n++] = SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER);
		a[n++] = SCMP_A1(SCMP_CMP_EQ, 0);
		break;
	case SET_NAME: a[n++] = SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME); break;
	case FAIL_ENOSYS: act = SCMP_ACT_ERRNO(ENOSYS); break;
	case FAIL_EACCES: act = SCMP_ACT_ERRNO(EACCES); break;
	case READ_FAILS:
		act = SCMP_ACT_ERRNO(EACCES);
		a[n++] = SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY);
		break;
	}
	if (r->nr == SCMP_SYS(ioctl))
		return 0;		/* by request only: add_kvm() */
	int rc = seccomp_rule_add_array(ctx, act, r->nr, n, a);

	return rc == -EEXIST ? 0 : rc;
}

static int add_rules(scmp_filter_ctx ctx, const struct rule *rules)
{
	for (; rules && rules->why; rules++)
		if (add_rule(ctx, rules))
			return -1;
	return 0;
}

static int add_kvm(scmp_filter_ctx ctx, const struct kvm_req *reqs)
{
	for (; reqs && reqs->why; reqs++) {
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, reqs->req));

		if (rc && rc != -EEXIST)
			return -1;
	}
	return 0;
}

/* Kind k's lists, and those of every kind it starts (theirs, recursively). */
static int add_kind(scmp_filter_ctx ctx, enum sandbox_kind k, unsigned depth)
{
	if (depth > SANDBOX_KINDS)
		return -1;		/* a cycle in starts */
	for (unsigned i = 0; i < 2; i++)
		if (add_rules(ctx, kinds[k].rules[i]))
			return -1;
	if (add_kvm(ctx, kinds[k].kvm))
		return -1;
	for (unsigned i = 0; i < nextra[k]; i++) {
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, extra[k][i], 0);

		if (rc && rc != -EEXIST)
			return -1;
	}
	for (unsigned c = 0; c < SANDBOX_KINDS; c++)
		if ((kinds[k].starts & BIT(c)) && add_kind(ctx, c, depth + 1))
			return -1;
	return 0;
}

/* libseccomp 2.5 exports BPF only to an fd: a memfd, read back. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *prog)
{
	int fd = memfd_create("sr-seccomp", MFD_CLOEXEC);
	off_t len;

	if (fd < 0)
		return -1;
	if (seccomp_export_bpf(ctx, fd) || (len = lseek(fd, 0, SEEK_END)) <= 0 ||
	    len % sizeof(struct sock_filter) || !(prog->filter = malloc(len)) ||
	    pread(fd, prog->filter, len, 0) != len) {
		close(fd);
		return -1;
	}
	close(fd);
	prog->len = len / sizeof(struct sock_filter);
	return 0;
}

/*
 * Built with -DSANDBOX_LOG_ONLY (never by default): calls outside a list
 * are allowed and logged by the kernel (dmesg: "type=1326 ... comm=sr-vcpu
 * syscall=N"), to learn what a new kernel or C library needs.
 */
#ifdef SANDBOX_LOG_ONLY
#define DEFAULT_ACTION	SCMP_ACT_LOG
#else
#define DEFAULT_ACTION	SCMP_ACT_TRAP
#endif

/*
 * Last in every list, so only where the list allows no openat: a read-only
 * one fails with EACCES instead of killing the process.  glibc opens files
 * on its own on any thread: /proc/sys/vm/overcommit_memory the first time a
 * thread's malloc arena shrinks (a --listen flood's sessions did, on the
 * listen thread), message catalogs when an error is formatted; it goes on
 * without them.  An openat that would write or create still traps.
 */
static const struct rule glibc_opens = {
	SCMP_SYS(openat), READ_FAILS, "glibc's own: fails, not trapped",
};

static int build(enum sandbox_kind k, char *why, size_t len)
{
	scmp_filter_ctx ctx = seccomp_init(DEFAULT_ACTION);
	int rc = -1;

	if (!ctx) {
		snprintf(why, len, "seccomp_init failed");
		return -1;
	}
	if (add_rules(ctx, common) || add_kind(ctx, k, 0))
		goto out;
#ifdef __SANITIZE_ADDRESS__
	if (add_rules(ctx, sanitizer))
		goto out;
#endif
	if (add_rule(ctx, &glibc_opens))	/* last: only where nothing above allows openat */
		goto out;
	rc = export_bpf(ctx, &progs[k]);
out:
	if (rc)
		snprintf(why, len, "building the %s thread's seccomp filter failed",
			 kinds[k].name);
	seccomp_release(ctx);
	return rc;
}

/*
 * The reader's seal (sandbox_reader_seal): everything its list allows but
 * sizing, punching or making a memory file, stacked on that list.
 */
static struct sock_fprog sealed;

static int build_seal(char *why, size_t len)
{
	static const int calls[] = { SCMP_SYS(ftruncate), SCMP_SYS(fallocate),
				     SCMP_SYS(memfd_create) };
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc = ctx ? 0 : -1;

	for (unsigned i = 0; !rc && i < sizeof(calls) / sizeof(calls[0]); i++)
		rc = seccomp_rule_add(ctx, DEFAULT_ACTION, calls[i], 0);
	if (!rc)
		rc = export_bpf(ctx, &sealed);
	if (rc)
		snprintf(why, len, "building the reader's seal failed");
	if (ctx)
		seccomp_release(ctx);
	return rc ? -1 : 0;
}

int sandbox_prepare(char *why, size_t len)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };

	for (unsigned i = 0; i < SANDBOX_KINDS; i++)
		if (build(i, why, len))
			return -1;
	if (build_seal(why, len))
		return -1;
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		names[i] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, i);
	/*
	 * pthread_cancel() loads libgcc_s for the unwinder the first time it
	 * runs (at teardown, under the control filter, which maps nothing
	 * executable): loaded now, that finds it in place.
	 */
	dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NODELETE);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL)) {
		snprintf(why, len, "SIGSYS handler: %s", strerror(errno));
		return -1;
	}
	/* Inherited by every thread started from here on; a filter needs it without CAP_SYS_ADMIN. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		snprintf(why, len, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		return -1;
	}
	prepared = true;
	return 0;
}

static void enter_failed(enum sandbox_kind kind, int e)
{
	char buf[256];
	size_t n = 0;

	n = put_str(buf, n, sr_prog ? sr_prog : "sr");
	n = put_str(buf, n, ": sandbox: installing the ");
	n = put_str(buf, n, kinds[kind].name);
	n = put_str(buf, n, " thread's seccomp filter failed: errno ");
	n = put_num(buf, n, (unsigned)e, 10);
	n = put_str(buf, n, "\n");
	if (write(STDERR_FILENO, buf, n) < 0)
		n = 0;
	_exit(SANDBOX_EXIT);
}

void sandbox_enter(enum sandbox_kind kind)
{
	sigset_t sys;

	if (!prepared || kind >= SANDBOX_KINDS)
		return;
	/* The main thread keeps the process's name (pgrep, ps). */
	if (kinds[kind].thread)
		prctl(PR_SET_NAME, kinds[kind].thread, 0, 0, 0);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &progs[kind]))
		enter_failed(kind, errno);
	thread_kind = kind;
	/* A blocked SIGSYS would kill silently: threads that block all signals let this one in. */
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
}

void sandbox_reader_seal(void)
{
	static __thread bool done;

	if (!prepared || thread_kind != SANDBOX_READER || done)
		return;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &sealed))
		enter_failed(SANDBOX_READER, errno);
	done = true;
}

/*
 * A sandbox_run() call: its thread, and the caller that waits for it and
 * meanwhile runs what the thread asks of it (sandbox_ask), one at a time.
 */
struct run_call {
	enum sandbox_kind kind;
	void (*fn)(void *arg);
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	void (*ask)(void *arg);		/* asked of the caller; NULL once it ran */
	void *ask_arg;
	bool done;
};

static __thread struct run_call *run_self;	/* on a sandbox_run() thread: its call */

static void *run_thread(void *p)
{
	struct run_call *c = p;

	sandbox_enter(c->kind);
	run_self = c;
	c->fn(c->arg);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int sandbox_run(enum sandbox_kind kind, void (*fn)(void *arg), void *arg)
{
	struct run_call c = { .kind = kind, .fn = fn, .arg = arg,
			      .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	pthread_t t;
	int e;

	if (!prepared) {
		fn(arg);
		return 0;
	}
	e = pthread_create(&t, NULL, run_thread, &c);
	if (e)
		return e;
	pthread_mutex_lock(&c.lock);
	while (!c.done) {
		if (c.ask) {
			pthread_mutex_unlock(&c.lock);
			c.ask(c.ask_arg);	/* under this thread's list */
			pthread_mutex_lock(&c.lock);
			c.ask = NULL;
			pthread_cond_broadcast(&c.cond);
		} else {
			pthread_cond_wait(&c.cond, &c.lock);
		}
	}
	pthread_mutex_unlock(&c.lock);
	return pthread_join(t, NULL);
}

void sandbox_ask(void (*fn)(void *arg), void *arg)
{
	struct run_call *c = run_self;

	if (!c) {
		fn(arg);
		return;
	}
	pthread_mutex_lock(&c->lock);
	c->ask_arg = arg;
	c->ask = fn;
	pthread_cond_broadcast(&c->cond);
	while (c->ask)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
}
