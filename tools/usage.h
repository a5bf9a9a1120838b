/* SPDX-License-Identifier: MIT */
/*
 * The command-line convention every sr tool follows (GNU's): --help to
 * stdout and exit 0; --version as "TOOL (sr) VERSION"; a usage error is one
 * line naming the problem, then "Try 'TOOL --help' for more information.",
 * exit 2.  TOOL is sr_prog (util.h).
 */
#ifndef SR_TOOLS_USAGE_H
#define SR_TOOLS_USAGE_H

#include <getopt.h>

/* getopt_long()'s value for --version; a tool's option table lists USAGE_VERSION_OPTION. */
#define USAGE_VERSION		0x7600
#define USAGE_VERSION_OPTION	{ "version", no_argument, NULL, USAGE_VERSION }

/* "TOOL (sr) VERSION" on stdout (the Makefile's VERSION), exit 0. */
void usage_version(void) __attribute__((noreturn));

/* "TOOL: MESSAGE" and the Try line on stderr, exit 2 (EXIT_USAGE). */
void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * getopt_long() that answers --version itself and turns an unknown option,
 * a missing argument or an argument given to a flag into getopt's own one-line
 * message and the Try line, exit 2:
 * what remains for the tool's switch is its own options.
 */
int usage_getopt(int argc, char **argv, const char *shorts, const struct option *longs);

#endif
