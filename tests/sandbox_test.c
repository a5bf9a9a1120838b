/* SPDX-License-Identifier: MIT */
/*
 * sandbox-test KIND CALL: sr-restore's sandbox (tools/sandbox.c) as
 * sr-restore installs it -- the main thread's filter first, then KIND's on
 * a thread started the way sr-restore starts it (a worker from a reader's
 * thread, the others from the main thread; main, control and detach on the
 * main thread) -- and then one call from that thread:
 *   execve   a process's image replaced: never allowed
 *   ioctl    a request the kind never makes (KVM_CREATE_VM; main, which
 *            makes it: TIOCSTI)
 *   socket   an AF_INET socket: never allowed
 *   unix     an AF_UNIX stream socket: the main thread's (the control socket) only
 *   dgram    an AF_UNIX datagram socket: never allowed (no datagram to a named socket)
 *   connect  never allowed (NAME.lock, not a connect, says a name is in use)
 *   open     openat of /dev/null read-only: fails with EACCES where the list
 *            allows no openat (glibc opens files on its own: "denied 13",
 *            status 0); main, control and save open it ("opened")
 *   create   openat with O_CREAT|O_WRONLY: main, control (--save-to) and save
 *            (--disk-snapshot: the snapshots beside the image) only
 *   unlink   the same
 *   rename   the same
 *   write    to a descriptor other than stderr (fd -1)
 *   exec     an executable mapping: never allowed
 *   sigsys   rt_sigaction of SIGSYS with upper bits set (the kernel reads an
 *            int): the trap's handler is never replaced
 *   allowed  a call every kind makes (write to stderr, a futex wake)
 *   seal     (reader) ftruncate and fallocate of fd -1, allowed (EBADF); then
 *            sandbox_reader_seal() and the fallocate again: refused
 *   ask      an openat of /dev/null, asked of the creator (sandbox_ask):
 *            opens (and the reader's own openat fails with EACCES)
 * A refused call ends the process with the sandbox's line and status 159;
 * an allowed one with "allowed" and 0.  "sandbox-test sanitized" says
 * whether this is a SAN=1 build, whose filters let the sanitizer runtime's
 * calls through (mmap, openat, write, rt_sigaction: exec, create, write and
 * sigsys are then allowed).  Test-only: not installed.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "sandbox.h"
#include "util.h"

static enum sandbox_kind kind;
static const char *call;
static const char *result;

static void open_null(void *arg)
{
	*(int *)arg = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* ask: the thread's own openat (the reader's fails), then the one its creator makes. */
static void ask_open(void)
{
	int own = open("/dev/null", O_RDONLY | O_CLOEXEC), e = errno, fd = -1;

#ifndef __SANITIZE_ADDRESS__		/* the runtime's list allows openat */
	if (kind == SANDBOX_READER && (own >= 0 || e != EACCES))
		result = "failed: the reader's own openat did not fail with EACCES";
#endif
	(void)e;
	if (own >= 0)
		close(own);
	sandbox_ask(open_null, &fd);
	if (fd < 0)
		result = "failed: the creator did not open the file asked of it";
	else
		close(fd);
	if (!result && write(STDERR_FILENO, "allowed\n", 8) != 8)
		result = "failed";
}

/* The call, made on the calling thread (its kind's filter in place). */
static void make_call(void)
{
	static const char *const argv[] = { "true", NULL };
	static int word;
	struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "/nonexistent/sr.sock" };

	if (!strcmp(call, "execve"))
		syscall(SYS_execve, "/bin/true", argv, NULL);
	else if (!strcmp(call, "ioctl"))
		ioctl(-1, kind == SANDBOX_MAIN ? (unsigned long)TIOCSTI : KVM_CREATE_VM, 0);
	else if (!strcmp(call, "socket"))
		socket(AF_INET, SOCK_STREAM, 0);
	else if (!strcmp(call, "unix"))
		socket(AF_UNIX, SOCK_STREAM, 0);
	else if (!strcmp(call, "dgram"))
		socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	else if (!strcmp(call, "connect"))
		connect(-1, (struct sockaddr *)&sa, sizeof(sa));
	else if (!strcmp(call, "open")) {
		long fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);

		if (fd >= 0)
			fprintf(stderr, "opened\n");
		else
			fprintf(stderr, "denied %d\n", errno);
	}
	else if (!strcmp(call, "create"))
		syscall(SYS_openat, AT_FDCWD, "/nonexistent/sr-sandbox-test",
			O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	else if (!strcmp(call, "unlink"))
		syscall(SYS_unlink, "/nonexistent/sr-sandbox-test");
	else if (!strcmp(call, "rename"))
		syscall(SYS_rename, "/nonexistent/a", "/nonexistent/b");
	else if (!strcmp(call, "write"))
		syscall(SYS_write, -1, "", 0);
	else if (!strcmp(call, "exec"))
		mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	else if (!strcmp(call, "seal")) {
		if (ftruncate(-1, 0) == 0 || errno != EBADF || fallocate(-1, 0, 0, 4096) == 0 ||
		    errno != EBADF)
			result = "failed: ftruncate or fallocate before the seal";
		else
			fprintf(stderr, "unsealed: allowed\n");
		sandbox_reader_seal();
		fallocate(-1, 0, 0, 4096);
	} else if (!strcmp(call, "ask"))
		ask_open();
	else if (!strcmp(call, "sigsys"))
		syscall(SYS_rt_sigaction, 0x100000000ull | SIGSYS, NULL, NULL, 8);
	else if (syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) < 0 ||
		 write(STDERR_FILENO, "allowed\n", 8) != 8)
		result = "failed";
}

static void on_kind(void *arg)
{
	(void)arg;
	make_call();
}

/* A worker starts on a reader's thread: its creator's filter. */
static void on_creator(void *arg)
{
	if (sandbox_run(kind, on_kind, arg))
		result = "could not start its thread";
}

int main(int argc, char **argv)
{
	char why[160];
	unsigned k;

	sr_set_prog(argv[0]);
	if (argc == 2 && !strcmp(argv[1], "sanitized")) {
#ifdef __SANITIZE_ADDRESS__
		puts("yes");
#else
		puts("no");
#endif
		return 0;
	}
	if (argc != 3)
		die(EXIT_USAGE, "usage: sandbox-test KIND CALL (see tests/sandbox_test.c)");
	for (k = 0; k < SANDBOX_KINDS && strcmp(argv[1], sandbox_kind_name(k)); k++)
		;
	if (k == SANDBOX_KINDS)
		die(EXIT_USAGE, "no thread kind \"%s\"", argv[1]);
	kind = k;
	call = argv[2];
	if (sandbox_prepare(why, sizeof(why)))
		die(EXIT_USAGE, "%s", why);
	if (kind == SANDBOX_DETACH) {
		/* A process of its own (sr-restore's forked parent): nothing before it. */
		sandbox_enter(kind);
		make_call();
		/* And ends as that parent does: _exit (no exit-time leak scan: not in its list). */
		if (result)
			die(1, "%s thread: the allowed call %s", argv[1], result);
		_exit(0);
	} else {
		sandbox_enter(SANDBOX_MAIN);
		if (kind == SANDBOX_MAIN || kind == SANDBOX_CONTROL) {
			sandbox_enter(kind);
			make_call();
		} else if (sandbox_run(kind == SANDBOX_WORKER ? SANDBOX_READER : kind,
				       kind == SANDBOX_WORKER ? on_creator : on_kind, NULL)) {
			die(EXIT_USAGE, "thread");
		}
	}
	if (result)
		die(1, "%s thread: the allowed call %s", argv[1], result);
	return 0;
}
