/* SPDX-License-Identifier: MIT */
/* The migration handshake's lines (see migrate.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate.h"
#include "util.h"

int mig_send(int fd, const char *word, const char *detail)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s%s%s\n", word, detail ? " " : "",
			 detail ? detail : "");
	ssize_t k;

	if (n < 0 || (size_t)n >= sizeof(line))
		n = sizeof(line) - 1, line[n - 1] = '\n';
	for (char *p = line; p < line + n - 1; p++)
		if (*p == '\n')
			*p = ' ';
	do
		k = send(fd, line, n, MSG_NOSIGNAL);
	while (k < 0 && errno == EINTR);
	if (k < 0 && errno == ENOTSOCK)		/* a pipe (ssh's stdout) */
		k = write(fd, line, n);
	return k == n ? 0 : -1;
}

int mig_recv(int fd, char *line, size_t len, int timeout_ms, char *why, size_t wlen)
{
	uint64_t deadline = mono_ns() + timeout_ms * 1000000ull;
	size_t have = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int rc = poll_until(&p, deadline);
		ssize_t k;
		char c;

		if (rc == 0) {
			snprintf(why, wlen, "no answer within %d s", timeout_ms / 1000);
			return -1;
		}
		if (rc < 0) {
			snprintf(why, wlen, "poll: %s", strerror(errno));
			return -1;
		}
		k = read(fd, &c, 1);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0) {
			snprintf(why, wlen, "%s", strerror(errno));
			return -1;
		}
		if (k == 0) {
			snprintf(why, wlen, "the connection was closed");
			return 0;
		}
		if (c == '\n') {
			line[have] = 0;
			return 1;
		}
		if (have + 1 < len)
			line[have++] = c;
	}
}
