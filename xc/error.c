/* SPDX-License-Identifier: MIT */
/* The library's one way to fail: a message and errno into the caller's struct xc_error (xc.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "xc.h"

int xc_set_error(struct xc_error *err, int sys_errno, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!err)
		return -1;
	err->sys_errno = sys_errno;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (sys_errno) {
		n = strlen(err->msg);
		snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(sys_errno));
	}
	return -1;
}
