/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usage.h"
#include "util.h"

#ifndef SR_VERSION
#error "SR_VERSION comes from the Makefile's VERSION"
#endif

void usage_version(void)
{
	printf("%s (sr) %s\n", sr_prog, SR_VERSION);
	exit(fflush(stdout) ? EXIT_USAGE : 0);
}

void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", sr_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", sr_prog);
	exit(EXIT_USAGE);
}

int usage_getopt(int argc, char **argv, const char *shorts, const struct option *longs)
{
	char *argv0 = argv[0];
	int c;

	/* getopt names the problem in one line, under argv[0]: the tool's name, not its path. */
	argv[0] = (char *)sr_prog;
	opterr = 1;
	c = getopt_long(argc, argv, shorts, longs, NULL);
	argv[0] = argv0;
	if (c == USAGE_VERSION)
		usage_version();
	if (c == '?') {
		fprintf(stderr, "Try '%s --help' for more information.\n", sr_prog);
		exit(EXIT_USAGE);
	}
	return c;
}
