/* SPDX-License-Identifier: MIT */
/* TCP for migration streams (see net.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>		/* not netinet/tcp.h: its tcp_info lacks tcpi_bytes_received */
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
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
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
	char h[NI_MAXHOST], s[NI_MAXSERV];

	if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		/* An IPv4 peer of a dual-stack socket: shown as IPv4. */
		const uint8_t *a = &s6->sin6_addr.s6_addr[12];

		snprintf(buf, len, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], ntohs(s6->sin6_port));
		return;
	}

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

int net_check_hostport(const char *hostport, char *why, size_t len)
{
	char host[256];
	const char *port;

	if (split(hostport, host, sizeof(host), &port) || !host[0] || !valid_port(port)) {
		snprintf(why, len, "\"%s\" is not HOST:PORT (a literal IPv6 address goes in "
			 "brackets: [::1]:PORT)", hostport);
		return -1;
	}
	return 0;
}

int net_connect(const char *hostport, int timeout_ms, unsigned idle_s, char *why, size_t len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
	uint64_t deadline = mono_ns() + timeout_ms * 1000000ull;
	char host[256];
	const char *port;
	int fd = -1, err = 0, rc;

	if (net_check_hostport(hostport, why, len))
		return -1;
	split(hostport, host, sizeof(host), &port);
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

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* Binds and listens on one address; the socket or -1 (errno in err). */
static int listen_one(const struct addrinfo *ai, bool dual, int *err)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	int one = 1, zero = 0;

	if (fd < 0) {
		*err = errno;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (dual)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	/*
	 * A long queue (somaxconn's, 4096 by default): under a flood of
	 * connections a short one is full whenever the listener is behind, the
	 * kernel drops the real source's SYN, and its retries (1 s, 3 s) outlast
	 * its connect and handshake time.
	 */
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, SOMAXCONN)) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

/* Every address of a family (AI_PASSIVE), or host's addresses; the first that binds. */
static int listen_on(const char *host, const char *port, int family, bool loopback_only,
		     int *err, char *why, size_t len)
{
	struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *res, *ai;
	int fd = -1, rc = getaddrinfo(host, port, &hints, &res);

	if (rc) {
		snprintf(why, len, "%s: %s", host ? host : "every address", gai_strerror(rc));
		*err = -1;
		return -1;
	}
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		if (loopback_only && !is_loopback(ai->ai_addr)) {
			snprintf(why, len, "%s is not a loopback address: without TLS (--tls-psk, "
				 "--tls-creds) --listen takes only loopback addresses, unless "
				 "--insecure-plaintext is given", host);
			*err = -1;
			break;
		}
		fd = listen_one(ai, !host && ai->ai_family == AF_INET6, err);
	}
	freeaddrinfo(res);
	return fd;
}

int net_listen(const char *spec, bool loopback_only, char *bound, size_t blen, char *why,
	       size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256];
	const char *port;
	int fd, err = 0;

	if (split(spec, host, sizeof(host), &port) || !valid_port(port)) {
		snprintf(why, len, "\"%s\" is not [ADDR:]PORT (a literal IPv6 address goes in "
			 "brackets: [::1]:PORT)", spec);
		return -1;
	}
	if (host[0])
		fd = listen_on(host, port, AF_UNSPEC, loopback_only, &err, why, len);
	else if (loopback_only)
		fd = listen_on("127.0.0.1", port, AF_INET, true, &err, why, len);
	else {
		/* Dual-stack IPv6; IPv4 alone where the host has no IPv6 (EAFNOSUPPORT and kin). */
		fd = listen_on(NULL, port, AF_INET6, false, &err, why, len);
		if (fd < 0 && err != EADDRINUSE && err != EACCES)
			fd = listen_on(NULL, port, AF_INET, false, &err, why, len);
	}
	if (fd < 0) {
		if (err != -1)
			snprintf(why, len, "listening on %s: %s", spec, strerror(err));
		return -1;
	}
	if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
		addr_text((struct sockaddr *)&ss, sl, bound, blen);
	return fd;
}

int net_accept(int lfd, unsigned idle_s, char *peer, size_t plen, char *why, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0) {
		int e = errno;

		snprintf(why, len, "accept: %s", strerror(e));
		errno = e;
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	addr_text((struct sockaddr *)&ss, sl, peer, plen);
	net_tune(fd, idle_s);
	return fd;
}

/*
 * accept(2)'s errors that belong to one peer or to this moment: the peer
 * reset the connection before it was taken, a protocol or firewall error on
 * it, or a limit (descriptors, buffers, memory) that frees as connections
 * close.  The rest mean the listening socket itself is broken.
 */
bool net_accept_again(int err)
{
	switch (err) {
	case EAGAIN: case EINTR: case ECONNABORTED: case EPROTO: case EPERM:
	case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM:
	case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH:
	case EOPNOTSUPP: case ENETUNREACH: case ETIMEDOUT:
		return true;
	default:
		return false;
	}
}

struct net_guard {
	int fd, users;
	net_count_fn *count;
	const void *arg;
	struct net_guard_opts o;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, cut;
	char why[200];
};

/*
 * The payload the stream delivered so far: the count given, else the bytes
 * the reader took from the socket (received in order, less those queued).
 */
static uint64_t bytes_in(const struct net_guard *g)
{
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	int queued = 0;

	if (g->count)
		return g->count(g->arg);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(g->fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) ||
	    tl < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
		return 0;
	if (ioctl(g->fd, FIONREAD, &queued) || queued < 0)
		queued = 0;
	return ti.tcpi_bytes_received - (uint64_t)queued;
}

/* Whether payload waits for the reader now (it, not the peer, is the slow side). */
static bool reader_behind(const struct net_guard *g)
{
	struct pollfd p = { .fd = g->users, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Whether the stream broke a bound at now; why says which. */
static bool guard_check(struct net_guard *g, uint64_t start, uint64_t now, uint64_t *win_t,
			uint64_t *win_b)
{
	uint64_t b = bytes_in(g), span = now - *win_t;

	if (g->o.deadline_s && now - start >= g->o.deadline_s * 1000000000ull) {
		snprintf(g->why, sizeof(g->why), "the stream did not end within --deadline %u s",
			 g->o.deadline_s);
		return true;
	}
	if (reader_behind(g)) {
		*win_t = now;		/* we are the slow side: the peer is not to blame */
		*win_b = b;
		return false;
	}
	if (!g->o.min_rate_kbs || span < g->o.window_s * 1000000000ull)
		return false;
	if ((b - *win_b) * 1e9 / span < g->o.min_rate_kbs * 1000.0) {
		snprintf(g->why, sizeof(g->why), "the peer sent %.1f KB/s over the last %.0f s, "
			 "under --min-rate %u KB/s", (b - *win_b) * 1e6 / span, span / 1e9,
			 g->o.min_rate_kbs);
		return true;
	}
	*win_t = now;
	*win_b = b;
	return false;
}

static void *guard_run(void *arg)
{
	struct net_guard *g = arg;
	uint64_t start = mono_ns(), win_t = start, win_b = bytes_in(g);
	struct timespec ts;

	if (g->o.thread_start)
		g->o.thread_start();
	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&g->cond, &g->lock, &ts);
		if (g->stop)
			break;
		if (guard_check(g, start, mono_ns(), &win_t, &win_b)) {
			g->cut = true;
			/*
			 * The reader wakes to an end of stream; the write side stays, so
			 * the source can still be told it was cut (it heard nothing).
			 */
			shutdown(g->fd, SHUT_RD);
			break;
		}
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

struct net_guard *net_guard_start(int sock, int users, net_count_fn *count, const void *arg,
				  const struct net_guard_opts *o, char *why, size_t len)
{
	struct net_guard *g = calloc(1, sizeof(*g));
	pthread_condattr_t ca;

	if (!g) {
		snprintf(why, len, "out of memory");
		return NULL;
	}
	g->fd = sock;
	g->users = users;
	g->count = count;
	g->arg = arg;
	g->o = *o;
	if (!g->o.window_s)
		g->o.window_s = 10;
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&g->thread, NULL, guard_run, g)) {
		snprintf(why, len, "starting the stream's guard thread failed");
		free(g);
		return NULL;
	}
	return g;
}

bool net_guard_stop(struct net_guard *g, char *why, size_t len)
{
	bool cut;

	if (!g)
		return false;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	cut = g->cut;
	if (cut)
		snprintf(why, len, "%s", g->why);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->cond);
	free(g);
	return cut;
}

void net_host_of(const char *hostport, char *host, size_t len)
{
	const char *end = hostport[0] == '[' ? strchr(hostport, ']') : strrchr(hostport, ':');
	size_t n = end ? (size_t)(end - hostport) : strlen(hostport);

	if (hostport[0] == '[')
		hostport++, n--;
	snprintf(host, len, "%.*s", (int)n, hostport);
}
