/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include <stdlib.h>

const char *ctl_dir(void)
{
	const char *d = getenv("SR_RUN_DIR");

	return d && *d ? d : "/run/sr";
}

static int connect_domain(const char *name, char *reply, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strchr(name, '/') ||
	    (size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s.sock", ctl_dir(), name) >=
	    sizeof(sa.sun_path)) {
		snprintf(reply, len, "bad domain name \"%s\"", name);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(reply, len, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		snprintf(reply, len, "no domain \"%s\" (%s: %s)", name, sa.sun_path,
			 errno == ENOENT || errno == ECONNREFUSED ? "not running" : strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int ctl_request(const char *name, const char *request, int send_fd,
		const struct ctl_hooks *hooks, char *reply, size_t len)
{
	char line[1024], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { (void *)request, strlen(request) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	size_t have = 0;
	int fd = connect_domain(name, reply, len);

	if (fd < 0)
		return -1;
	if (send_fd >= 0) {
		struct cmsghdr *c;

		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &send_fd, sizeof(int));
	}
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0) {
		snprintf(reply, len, "sending to domain \"%s\": %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	for (;;) {
		char *nl;
		ssize_t n;

		while ((nl = memchr(line, '\n', have))) {
			*nl = 0;
			if (!strncmp(line, "progress ", 9) || !strncmp(line, "round ", 6)) {
				if (hooks && hooks->on_progress)
					hooks->on_progress(line, hooks->arg);
			} else if (!strncmp(line, "prepared ", 9)) {
				bool go = hooks && hooks->on_prepared &&
					  hooks->on_prepared(line + 9, hooks->arg) == 0;
				const char *word = go ? "commit\n" : "abort\n";

				if (send(fd, word, strlen(word), MSG_NOSIGNAL) != (ssize_t)strlen(word) &&
				    go) {
					snprintf(reply, len, "the domain went away before it heard "
						 "\"commit\": %s", strerror(errno));
					close(fd);
					return 1;
				}
			} else {
				int rc = strncmp(line, "ok", 2) ? 1 : 0;
				const char *msg = line + (rc ? (strncmp(line, "error ", 6) ? 0 : 6) :
							  (line[2] == ' ' ? 3 : 2));

				snprintf(reply, len, "%s", msg);
				close(fd);
				return rc;
			}
			have -= nl + 1 - line;
			memmove(line, nl + 1, have);
		}
		if (have == sizeof(line) - 1)
			have = 0;		/* overlong line: drop it */
		n = read(fd, line + have, sizeof(line) - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(reply, len, "domain \"%s\" closed the connection without a reply "
				 "(did it exit?)", name);
			close(fd);
			return -1;
		}
		have += n;
	}
}
