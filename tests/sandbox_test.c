/* SPDX-License-Identifier: MIT */
/*
 * sandbox-test KIND CALL: sr-restore's sandbox (tools/sandbox.c) as
 * sr-restore installs it -- the reader's filter on the main thread, then
 * KIND's on a thread of its own (reader and control: on the main thread) --
 * and then one call from that thread:
 *   execve   a process's image replaced: never allowed
 *   ioctl    a KVM request the kind never makes (KVM_CREATE_VM; the
 *            reader, which makes it: TIOCSTI)
 *   socket   an AF_INET socket: never allowed
 *   sigsys   rt_sigaction of SIGSYS with upper bits set (the kernel reads an
 *            int): the trap's handler is never replaced
 *   allowed  a call the kind makes (write to stderr, a futex wake)
 * A refused call ends the process with the sandbox's line and status 159;
 * an allowed one with "allowed" and 0.  Test-only: not installed.
 */
#include <linux/futex.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox.h"
#include "util.h"

static enum sandbox_kind kind;
static const char *call;

static void *run(void *arg)
{
	static const char *const argv[] = { "true", NULL };
	static int word;

	if (arg)
		sandbox_enter(kind);
	if (!strcmp(call, "execve"))
		syscall(SYS_execve, "/bin/true", argv, NULL);
	else if (!strcmp(call, "ioctl"))
		ioctl(-1, kind == SANDBOX_READER ? (unsigned long)TIOCSTI : KVM_CREATE_VM, 0);
	else if (!strcmp(call, "socket"))
		socket(AF_INET, SOCK_STREAM, 0);
	else if (!strcmp(call, "sigsys"))
		syscall(SYS_rt_sigaction, 0x100000000ull | SIGSYS, NULL, NULL, 8);
	else if (syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) < 0 ||
		 write(STDERR_FILENO, "allowed\n", 8) != 8)
		return (void *)"failed";
	return NULL;
}

int main(int argc, char **argv)
{
	char why[160];
	void *res = NULL;
	unsigned k;

	sr_set_prog(argv[0]);
	if (argc != 3)
		die(EXIT_USAGE, "usage: sandbox-test KIND execve|ioctl|socket|sigsys|allowed");
	for (k = 0; k < SANDBOX_KINDS && strcmp(argv[1], sandbox_kind_name(k)); k++)
		;
	if (k == SANDBOX_KINDS)
		die(EXIT_USAGE, "no thread kind \"%s\"", argv[1]);
	kind = k;
	call = argv[2];
	if (sandbox_prepare(why, sizeof(why)))
		die(EXIT_USAGE, "%s", why);
	sandbox_enter(SANDBOX_READER);
	if (kind == SANDBOX_READER || kind == SANDBOX_CONTROL) {
		sandbox_enter(kind);
		res = run(NULL);
	} else {
		pthread_t t;

		if (pthread_create(&t, NULL, run, &kind) || pthread_join(t, &res))
			die(EXIT_USAGE, "thread");
	}
	if (res)
		die(1, "%s thread: the allowed call %s", argv[1], (char *)res);
	return 0;
}
