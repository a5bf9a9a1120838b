/* SPDX-License-Identifier: MIT */
/*
 * sr-restore's sandbox: a seccomp allow-list per thread kind, as Firecracker
 * has (tools/sandbox.c lists every system call and why).  Filters stack and
 * a thread inherits its creator's, so the reader's filter, installed on the
 * main thread before the first byte of an image is parsed, is the union of
 * all the others; each thread then narrows it to its own kind as it starts,
 * and the main thread to the control loop's once the domain runs.
 *
 * A call outside a thread's list traps: one line on stderr names the call
 * and the thread kind, and the process ends with status SANDBOX_EXIT.
 */
#ifndef SR_TOOLS_SANDBOX_H
#define SR_TOOLS_SANDBOX_H

#include <stddef.h>

/* 128 + SIGSYS, what a shell shows for a process that SIGSYS killed. */
#define SANDBOX_EXIT	159

enum sandbox_kind {
	SANDBOX_READER,		/* main thread: parses the stream, builds the VM (the union) */
	SANDBOX_WORKER,		/* libsr pool: verifies and decodes (or encodes) page batches */
	SANDBOX_VCPU,		/* KVM_RUN and the exit handlers (UART, hypercalls) */
	SANDBOX_CONSOLE,	/* writes the guest's console out */
	SANDBOX_INPUT,		/* stdin into the UART */
	SANDBOX_CONTROL,	/* main thread once the domain runs: control socket, signals,
				   guest-requested saves, teardown */
	SANDBOX_SAVE,		/* a control-socket save (sr-save, sr-migrate) */
	SANDBOX_DEVICE,		/* a device model's I/O thread: its queues, its disk file */
	SANDBOX_KINDS
};

/*
 * Extra calls one kind needs (a transport's, e.g. TLS after its handshake);
 * before sandbox_prepare().  The reader's filter takes them too.
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

const char *sandbox_kind_name(enum sandbox_kind kind);

#endif
