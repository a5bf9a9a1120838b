/* SPDX-License-Identifier: MIT */
/* Helpers for the tools' main()s: messages and exits live here, not in libraries. */
#ifndef SR_TOOLS_UTIL_H
#define SR_TOOLS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

extern const char *sr_prog;

/* Exit statuses shared by the tools. */
#define EXIT_CORRUPT	1	/* the image (or guest) is bad */
#define EXIT_USAGE	2	/* usage, I/O or environment error */

void sr_set_prog(const char *argv0);
void pr_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
/* hook gets die()'s message first (a migration receiver tells its source). */
void die_set_hook(void (*hook)(const char *msg));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t mono_ns(void);

/* poll() of one fd until deadline_ns (mono_ns; 0: forever), EINTR retried: poll's result. */
struct pollfd;
int poll_until(struct pollfd *p, uint64_t deadline_ns);

/* Worker threads by default: the online CPUs, 1..64. */
unsigned threads_default(void);

/* MemAvailable, in MiB (what the kernel thinks can be had without swapping); ~0 unknown. */
unsigned long long mem_available_mib(void);

/* Human-readable byte count into buf ("12.3 MiB"). */
const char *fmt_bytes(uint64_t n, char *buf, size_t len);

/*
 * Test hooks, compiled in only with -DSR_TEST_HOOKS (the tools the tests
 * run); installed tools honour none of them.  test_env(NAME) is getenv(NAME)
 * there and NULL otherwise.  test_pause(POINT): when SR_TEST_PAUSE_AT names
 * POINT, says "sr test hook: at POINT" on stderr and waits SR_TEST_PAUSE_MS
 * (default 2000), so a test can aim a fault at that step.
 */
const char *test_env(const char *name);
void test_pause(const char *point);
/* Whether this build has the test hooks (sr-ctl poke is one). */
bool test_hooks_built(void);

/*
 * s (at most max bytes, up to its NUL) made safe to print: control
 * characters, backslashes, bytes that are not UTF-8 and characters that
 * are not printable become \xNN (\\), and so do the UTF-8 bytes of the
 * invisible characters that reorder or hide text (bidirectional controls,
 * zero-width characters, the byte-order mark); into buf, which it returns.
 * For every string an image or a peer supplies, before a terminal sees it.
 */
char *str_escape(char *buf, size_t len, const char *s, size_t max);

/* Prints s (at most max bytes, up to its NUL) as a JSON string on stdout. */
void json_str(const char *s, size_t max);

#endif
