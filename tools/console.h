/* SPDX-License-Identifier: MIT */
/*
 * The guest console: vCPU threads hand output to a bounded buffer and never
 * wait; a thread of its own writes it out.  A reader that stops (a full
 * pipe, a suspended terminal) costs console bytes, counted and reported,
 * never a stuck vCPU that a pause or a save would then wait for.
 */
#ifndef SR_TOOLS_CONSOLE_H
#define SR_TOOLS_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

struct console;

/*
 * Starts the writer thread on fd with a buffer of size bytes; NULL on
 * failure.  thread_start (optional) runs first on that thread.
 */
struct console *console_new(int fd, size_t size, void (*thread_start)(void *arg), void *arg);

/* Queues len bytes without blocking; what does not fit is dropped and counted. */
void console_write(struct console *c, const void *buf, size_t len);

/*
 * An attached reader (sr-ctl console) beside fd: it is sent the last
 * CONSOLE_TAIL bytes at once, then what follows, never waited on (what its
 * socket cannot take at once is lost to it, not to fd).  One at a time: a
 * new one replaces the last.  The caller owns sock and closes it after
 * console_detach(), which returns once the writer no longer uses it.
 */
#define CONSOLE_TAIL	4096
void console_attach(struct console *c, int sock);
void console_detach(struct console *c, int sock);

/* Bytes dropped so far. */
uint64_t console_dropped(struct console *c);

/* Writes out what is queued (waiting at most timeout_ms), stops the thread, frees c. */
void console_free(struct console *c, int timeout_ms);

#endif
