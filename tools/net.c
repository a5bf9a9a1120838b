/* SPDX-License-Identifier: MIT */
/* TCP for migration streams (see net.h). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

/* Splits "HOST:PORT" / "[V6]:PORT" / "PORT" (host NULL). */
static int split(const char *spec, char *host, size_t hlen, const char **port)
{
	const char *colon;

	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= hlen)
			return -1;
		memcpy(host, spec + 1, close - spec - 1);
		host[close - spec - 1] = 0;
		*port = close + 2;
		return 0;
	}
	colon = strrchr(spec, ':');
	if (!colon) {
		host[0] = 0;
		*port = spec;
		return 0;
	}
	if ((size_t)(colon - spec) >= hlen || strchr(spec, ':') != colon)
		return -1;		/* a bare IPv6 address needs brackets */
	memcpy(host, spec, colon - spec);
	host[colon - spec] = 0;
	*port = colon + 1;
	return 0;
}

static int valid_port(const char *p)
{
	char *end;
	long v = strtol(p, &end, 10);

	return *p && !*end && v > 0 && v < 65536;
}

static void addr_text(const struct sockaddr *sa, socklen_t sl, char *buf, size_t len)
{
	char h[NI_MAXHOST], s[NI_MAXSERV];

	if (getnameinfo(sa, sl, h, sizeof(h), s, sizeof(s), NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, len, "?");
		return;
	}
	snprintf(buf, len, strchr(h, ':') ? "[%s]:%s" : "%s:%s", h, s);
}

void net_tune(int fd, unsigned idle_s)
{
	int one = 1, idle = idle_s > 4 ? (int)idle_s / 2 : 2, intvl = 2, cnt = 3;
	unsigned user_timeout = idle_s * 1000;
	struct timeval tv = { .tv_sec = idle_s };

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* One address, non-blocking connect bounded by the deadline. */
static int try_connect(const struct addrinfo *ai, uint64_t deadline, int *err)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			ai->ai_protocol);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	socklen_t el = sizeof(*err);
	int rc;

	if (fd < 0) {
		*err = errno;
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
		*err = errno;
		close(fd);
		return -1;
	}
	rc = poll_until(&p, deadline);
	if (rc <= 0) {
		*err = rc == 0 ? ETIMEDOUT : errno;
		close(fd);
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &el) || *err) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int net_connect(const char *hostport, int timeout_ms, unsigned idle_s, char *why, size_t len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
	uint64_t deadline = mono_ns() + timeout_ms * 1000000ull;
	char host[256];
	const char *port;
	int fd = -1, err = 0, rc;

	if (split(hostport, host, sizeof(host), &port) || !host[0] || !valid_port(port)) {
		snprintf(why, len, "\"%s\" is not HOST:PORT (a literal IPv6 address goes in "
			 "brackets: [::1]:PORT)", hostport);
		return -1;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		snprintf(why, len, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai && fd < 0 && mono_ns() < deadline; ai = ai->ai_next)
		fd = try_connect(ai, deadline, &err);
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, len, "connecting to %s: %s", hostport,
			 err == ETIMEDOUT ? "no answer (connect timeout)" : strerror(err ? err : ETIMEDOUT));
		return -1;
	}
	net_tune(fd, idle_s);
	return fd;
}

int net_listen(const char *spec, char *bound, size_t blen, char *why, size_t len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256];
	const char *port;
	int fd = -1, err = 0, one = 1, zero = 0, rc;

	if (split(spec, host, sizeof(host), &port) || !valid_port(port)) {
		snprintf(why, len, "\"%s\" is not [ADDR:]PORT", spec);
		return -1;
	}
	if (!host[0])
		hints.ai_family = AF_INET6;	/* dual-stack: IPv4 too, mapped */
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc) {
		snprintf(why, len, "%s: %s", host[0] ? host : spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6 && !host[0])
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1)) {
			err = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, len, "listening on %s: %s", spec, strerror(err));
		return -1;
	}
	if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
		addr_text((struct sockaddr *)&ss, sl, bound, blen);
	return fd;
}

int net_accept(int lfd, int timeout_ms, unsigned idle_s, char *peer, size_t plen, char *why,
	       size_t len)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int rc, fd;

	rc = poll_until(&p, timeout_ms > 0 ? mono_ns() + timeout_ms * 1000000ull : 0);
	if (rc == 0) {
		snprintf(why, len, "no connection within %d s", timeout_ms / 1000);
		return -1;
	}
	if (rc < 0) {
		snprintf(why, len, "waiting for a connection: %s", strerror(errno));
		return -1;
	}
	fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "accept: %s", strerror(errno));
		return -1;
	}
	addr_text((struct sockaddr *)&ss, sl, peer, plen);
	net_tune(fd, idle_s);
	return fd;
}
