/* SPDX-License-Identifier: MIT */
/*
 * sr-restore's sandbox: a seccomp allow-list per thread kind, as Firecracker
 * has (tools/sandbox.c lists every system call and why).
 *
 * Filters are per thread, stack, and a new thread inherits its creator's.
 * So every thread is filtered from its first instruction: the main thread
 * takes SANDBOX_MAIN before it starts any thread or reads a byte a peer
 * sent, and each thread then narrows that to its own kind first thing.
 * A creator's list must hold what the threads it starts need (they cannot
 * widen it): SANDBOX_MAIN, which starts them all, is their union, and so
 * the image is not parsed on the main thread under it but on a reader
 * thread (sandbox_run).  Nor are the listener's peers handled under it:
 * their connections and TLS handshakes (up to 1024 at once, listener.c)
 * run on a thread of SANDBOX_LISTEN (sandbox_run), which opens no file for
 * writing, links, renames or unlinks nothing, makes no unix socket and
 * connects nowhere, and writes to no file but stderr and the TLS pumps'
 * socket pair (it starts the pumps).
 * Once the domain runs the main thread narrows to SANDBOX_CONTROL.
 *
 * A call outside a thread's list traps: one line on stderr names the call
 * and the thread kind, and the process ends with status SANDBOX_EXIT.
 *
 * A new thread kind (a new device's own thread, say): a value below, a rule
 * table and an entry in sandbox.c's kinds[] (its name, its thread name,
 * its lists), its bit in the starts mask of the kind that creates it, and a
 * sandbox_enter() first thing on the thread (or sandbox_run()).  Then a line
 * for it in tests/tools.sh's sandbox matrix.
 */
#ifndef SR_TOOLS_SANDBOX_H
#define SR_TOOLS_SANDBOX_H

#include <stddef.h>

/* 128 + SIGSYS, what a shell shows for a process that SIGSYS killed. */
#define SANDBOX_EXIT	159

enum sandbox_kind {
	SANDBOX_MAIN,		/* main thread until the domain runs: builds the VM, the control
				   socket, answers the source; starts every thread (the union) */
	SANDBOX_READER,		/* parses the image and puts its state into KVM (sandbox_run) */
	SANDBOX_WORKER,		/* libsr pool: verifies and decodes (or encodes) page batches */
	SANDBOX_VCPU,		/* KVM_RUN and the exit handlers (UART, hypercalls) */
	SANDBOX_CONSOLE,	/* writes the guest's console out */
	SANDBOX_INPUT,		/* stdin into the UART */
	SANDBOX_CONTROL,	/* main thread once the domain runs: control socket, signals,
				   guest-requested saves, teardown */
	SANDBOX_SAVE,		/* a control-socket save (sr-save, sr-migrate) */
	SANDBOX_DEVICE,		/* a device model's I/O thread: its queues, its disk file */
	SANDBOX_GUARD,		/* --listen: the stream's deadline and least rate */
	SANDBOX_TLS_PUMP,	/* user-space TLS: records to and from the stream's socket pair */
	SANDBOX_DETACH,		/* --migrate-receive, --detach: the parent that waits for the runner */
	SANDBOX_LISTEN,		/* --listen: accepts peers, runs their TLS handshakes (listener.c) */
	SANDBOX_KINDS
};

/*
 * Extra calls one kind needs (a transport's, e.g. TLS after its handshake);
 * before sandbox_prepare().  The kinds that start it take them too.
 */
int sandbox_allow(enum sandbox_kind kind, const int *syscalls, unsigned n);

/*
 * Builds every kind's filter and the SIGSYS handler, while the process has
 * one thread; 0, or -1 with why.  Nothing is enforced yet.
 */
int sandbox_prepare(char *why, size_t len);

/*
 * Installs kind's filter on the calling thread (after sandbox_prepare(), or
 * nothing happens).  A failure is fatal: one line, then _exit(SANDBOX_EXIT),
 * since a thread that runs without its filter is what the sandbox is against.
 */
void sandbox_enter(enum sandbox_kind kind);

/*
 * Runs fn(arg) on a new thread that enters kind first, and waits for it
 * (the image's reader: hostile bytes parsed under its own list, not the
 * caller's).  Without sandbox_prepare() fn runs on the calling thread.
 * 0, or an errno when the thread could not start.
 */
int sandbox_run(enum sandbox_kind kind, void (*fn)(void *arg), void *arg);

/*
 * On a sandbox_run() thread: runs fn(arg) on the thread that waits in
 * sandbox_run(), under that thread's list, and returns once it has.  For
 * the one thing a kind's list leaves out on purpose that its work still
 * needs: the reader opens no file, yet an image names its disks, which the
 * main thread opens for it.  On any other thread fn runs here.
 */
void sandbox_ask(void (*fn)(void *arg), void *arg);

/*
 * On the reader's thread once the stream is in, before the main thread
 * opens an image's disks for it: from here on the thread can no longer
 * ftruncate, fallocate or memfd_create (guest memory is sized and its zero
 * pages punched by then), calls its list allows for memory files that a
 * disk's descriptor would take as well.  Stacked on its list, for good.
 * Nothing happens on another thread or without sandbox_prepare().
 */
void sandbox_reader_seal(void);

const char *sandbox_kind_name(enum sandbox_kind kind);

#endif
