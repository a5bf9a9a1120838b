/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "migrate.h"
#include "util.h"
#include <stdlib.h>

const char *ctl_dir(void)
{
	static char xdg[4096];
	const char *d = getenv("SR_RUN_DIR"), *x = getenv("XDG_RUNTIME_DIR");

	if (d && *d)
		return d;
	if (geteuid() != 0 && x && *x == '/' &&
	    (size_t)snprintf(xdg, sizeof(xdg), "%s/sr", x) < sizeof(xdg))
		return xdg;
	return "/run/sr";
}

static int timeout_ms;		/* ctl_set_timeout: 0 waits as long as it takes */

void ctl_set_timeout(int ms)
{
	timeout_ms = ms;
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
	if (timeout_ms > 0) {
		struct timeval tv = { timeout_ms / 1000, timeout_ms % 1000 * 1000 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
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
		struct ctl_hooks *hooks, char *reply, size_t len)
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
			if (!strcmp(line, "held")) {
				/* A late answer to a ctl_pending that gave up waiting: the word sent since decides. */
			} else if (!strncmp(line, "progress ", 9) || !strncmp(line, "round ", 6) ||
				   !strncmp(line, "stats ", 6)) {
				if (hooks && hooks->on_progress)
					hooks->on_progress(line, hooks->arg);
			} else if (!strncmp(line, "prepared ", 9)) {
				if (hooks)
					hooks->fd = fd;
				int verdict = hooks && hooks->on_prepared ?
					      hooks->on_prepared(line + 9, hooks->arg) : -1;
				bool go = verdict == 0;
				const char *word = go ? "commit\n" : verdict > 0 ? "hold\n" : "abort\n";

				if (send(fd, word, strlen(word), MSG_NOSIGNAL) != (ssize_t)strlen(word) &&
				    go) {
					snprintf(reply, len, "the domain went away before it heard "
						 "\"commit\": %s", strerror(errno));
					close(fd);
					return 1;
				}
				if (hooks && hooks->unread[0]) {
					/* The final line ctl_pending read in place of "held". */
					size_t u = strlen(hooks->unread);

					have -= nl + 1 - line;
					if (have + u + 1 >= sizeof(line))
						have = 0;
					memmove(line + u + 1, nl + 1, have);
					memcpy(line, hooks->unread, u);
					line[u] = '\n';
					have += u + 1;
					hooks->unread[0] = 0;
					continue;
				}
			} else if ((strncmp(line, "ok", 2) || (line[2] && line[2] != ' ')) &&
				   strncmp(line, "error ", 6) && strcmp(line, "error")) {
				/* A line this client does not know (docs/control.md): skipped. */
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
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && timeout_ms > 0) {
			snprintf(reply, len, "domain \"%s\" did not answer within %d ms", name,
				 timeout_ms);
			close(fd);
			return -1;
		}
		if (n <= 0) {
			snprintf(reply, len, "domain \"%s\" closed the connection without a reply "
				 "(did it exit?)", name);
			close(fd);
			return -1;
		}
		have += n;
	}
}

int ctl_open(const char *name, const char *request, char *reply, size_t len, bool *refused)
{
	char line[1024];
	size_t have = 0;
	int fd;

	if (refused)
		*refused = false;
	fd = connect_domain(name, reply, len);
	if (fd < 0)
		return -1;
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request)) {
		snprintf(reply, len, "sending to domain \"%s\": %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	while (have < sizeof(line) - 1) {
		ssize_t n = read(fd, line + have, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (line[have] == '\n') {
			line[have] = 0;
			if (!strncmp(line, "ok", 2) && (line[2] == 0 || line[2] == ' ')) {
				snprintf(reply, len, "%s", line + (line[2] ? 3 : 2));
				return fd;
			}
			snprintf(reply, len, "%s", line + (strncmp(line, "error ", 6) ? 0 : 6));
			if (refused)
				*refused = true;
			close(fd);
			return -1;
		}
		have++;
	}
	snprintf(reply, len, "domain \"%s\" closed the connection without a reply (did it exit?)",
		 name);
	close(fd);
	return -1;
}

int ctl_pending(struct ctl_hooks *hooks)
{
	char line[sizeof(hooks->unread)], why[64];
	int k;

	hooks->unread[0] = 0;
	if (send(hooks->fd, "pending\n", 8, MSG_NOSIGNAL) != 8)
		return -1;
	test_pause("pending");
	/* Byte by byte: nothing past the answer is taken from ctl_request's stream. */
	k = mig_recv(hooks->fd, line, sizeof(line), CTL_PENDING_TIMEOUT_MS, why, sizeof(why));
	if (k == 1 && !strcmp(line, "held"))
		return 0;
	if (k == 1)
		snprintf(hooks->unread, sizeof(hooks->unread), "%s", line);
	return -1;
}

/* ------------------------------------------------------- save requests */

void save_req_init(struct save_req *q)
{
	memset(q, 0, sizeof(*q));
	q->two_phase = true;
	snprintf(q->dirty_track, sizeof(q->dirty_track), "auto");
	snprintf(q->throttle, sizeof(q->throttle), "auto");
	snprintf(q->compress, sizeof(q->compress), "lz4");
	snprintf(q->disk_hash, sizeof(q->disk_hash), "sample");
	q->threads = -1;
}

int save_req_format(const struct save_req *q, char *buf, size_t len)
{
	int n = snprintf(buf, len, "save live=%d checkpoint=%d paused=%d two-phase=%d "
			 "dirty-track=%s throttle=%s compress=%s downtime-ms=%u max-iters=%u "
			 "max-bytes-factor=%u stall-timeout=%u threads=%d bandwidth=%u", q->live,
			 q->checkpoint, q->paused, q->two_phase, q->dirty_track, q->throttle,
			 q->compress, q->downtime_ms, q->max_iters, q->max_bytes_factor,
			 q->stall_timeout_s, q->threads, q->bandwidth_mbs);

	if (n >= 0 && (size_t)n < len)
		n += snprintf(buf + n, len - n, " disk-hash=%s", q->disk_hash);
	if (n >= 0 && (size_t)n < len && q->disk_snapshot[0]) {
		n += snprintf(buf + n, len - n, " disk-snapshot=");
		for (const char *c = q->disk_snapshot; *c && n >= 0 && (size_t)n < len; c++)
			n += snprintf(buf + n, len - n, "%02x", (unsigned char)*c);
	}
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The hex of disk-snapshot= back into a path: whole bytes, no NUL, not too long. */
static bool unhex_path(const char *hex, char *out, size_t cap)
{
	size_t n = strlen(hex), k;

	if (!n || n % 2 || n / 2 >= cap || strspn(hex, "0123456789abcdef") != n)
		return false;
	for (k = 0; k < n / 2; k++) {
		unsigned v;

		sscanf(hex + 2 * k, "%2x", &v);
		if (!v)
			return false;
		out[k] = (char)v;
	}
	out[k] = 0;
	return out[0] == '/';
}

static bool one_of(const char *v, const char *const *allowed)
{
	for (; *allowed; allowed++)
		if (!strcmp(v, *allowed))
			return true;
	return false;
}

int save_req_parse(const char *text, struct save_req *q, char *why, size_t len)
{
	static const char *const tracks[] = { "auto", "bitmap", "clear", "ring", NULL };
	static const char *const throttles[] = { "auto", "off", NULL };
	static const char *const comps[] = { "lz4", "none", NULL };
	static const char *const flags[] = { "0", "1", NULL };
	static const char *const hashes[] = { "sample", "full", NULL };
	char tok[SAVE_REQ_MAX];
	int used;

	save_req_init(q);
	if (strlen(text) >= sizeof(tok)) {
		snprintf(why, len, "save request: longer than %zu bytes", sizeof(tok) - 1);
		return -1;
	}
	while (sscanf(text, " %s%n", tok, &used) == 1) {
		char *eq = strchr(tok, '='), *val, *end;
		unsigned long num;

		text += used;
		if (!eq) {
			snprintf(why, len, "save request: \"%s\" is not key=value", tok);
			return -1;
		}
		*eq = 0;
		val = eq + 1;
		num = strtoul(val, &end, 10);
#define FLAG(k, f) else if (!strcmp(tok, k) && one_of(val, flags)) q->f = *val == '1'
#define WORD(k, f, set) else if (!strcmp(tok, k) && one_of(val, set)) snprintf(q->f, sizeof(q->f), "%s", val)
#define NUM(k, f) else if (!strcmp(tok, k) && *val && !*end && num <= 3600000) q->f = num
		if (0) {}
		FLAG("live", live);
		FLAG("checkpoint", checkpoint);
		FLAG("paused", paused);
		FLAG("two-phase", two_phase);
		WORD("dirty-track", dirty_track, tracks);
		WORD("throttle", throttle, throttles);
		WORD("compress", compress, comps);
		WORD("disk-hash", disk_hash, hashes);
		NUM("downtime-ms", downtime_ms);
		NUM("max-iters", max_iters);
		NUM("max-bytes-factor", max_bytes_factor);
		NUM("stall-timeout", stall_timeout_s);
		NUM("bandwidth", bandwidth_mbs);
		else if (!strcmp(tok, "disk-snapshot") &&
			 unhex_path(val, q->disk_snapshot, sizeof(q->disk_snapshot)))
			;
		else if (!strcmp(tok, "threads") && (!strcmp(val, "-1") || (*val && !*end && num <= 64)))
			q->threads = !strcmp(val, "-1") ? -1 : (int)num;
		else {
			snprintf(why, len, "save request: unknown key or bad value \"%s=%s\"", tok, val);
			return -1;
		}
#undef FLAG
#undef WORD
#undef NUM
	}
	return 0;
}
