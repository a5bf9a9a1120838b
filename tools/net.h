/* SPDX-License-Identifier: MIT */
/*
 * TCP for migration streams: IPv4 and IPv6, bounded connects and accepts,
 * keepalive and an idle timeout on every connection.  Errors come back as
 * text in why; nothing here prints or exits.
 */
#ifndef SR_NET_H
#define SR_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Connects to "HOST:PORT" ("[V6ADDR]:PORT" for a literal IPv6 address),
 * trying each address HOST resolves to within timeout_ms in all.  Returns
 * the socket, tuned (net_tune), or -1.
 */
int net_connect(const char *hostport, int timeout_ms, unsigned idle_s, char *why, size_t len);

/* Whether hostport is "HOST:PORT" as net_connect takes it (nothing resolved); -1 with why. */
int net_check_hostport(const char *hostport, char *why, size_t len);

/* HOST of HOST:PORT or [V6]:PORT, without the brackets, into host (len bytes). */
void net_host_of(const char *hostport, char *host, size_t len);

/*
 * Listens on "[ADDR:]PORT" ("[V6ADDR]:PORT" for a literal IPv6 address).
 * No ADDR: every address, IPv6 and IPv4 on one dual-stack socket, or IPv4
 * alone on a host without IPv6; with loopback_only, 127.0.0.1.  With
 * loopback_only an ADDR that is not a loopback address is refused.  Puts
 * the address it is bound to, as "ADDR:PORT", in bound.  Returns the
 * listening socket or -1.
 */
int net_listen(const char *spec, bool loopback_only, char *bound, size_t blen, char *why,
	       size_t len);

/*
 * Accepts one connection waiting on lfd (the caller polls), tuned; its peer
 * in peer.  -1 with why and errno; net_accept_again(errno) says whether
 * the listener can go on (a peer that gave up, a descriptor or memory
 * limit of the moment) or is broken.
 */
int net_accept(int lfd, unsigned idle_s, char *peer, size_t plen, char *why, size_t len);
bool net_accept_again(int err);

/*
 * Keepalive (a dead peer is found within about idle_s) and, for reads and
 * unacknowledged writes, an idle timeout of idle_s seconds: a read that
 * waits longer fails with EAGAIN, a write with ETIMEDOUT.
 */
void net_tune(int fd, unsigned idle_s);

/*
 * A receiver's bounds on a stream, beyond the idle timeout: an overall
 * deadline, and a least rate the peer must keep up over each window (a
 * peer trickling a few bytes per idle timeout is cut).  A guard thread
 * counts the payload the stream delivered: count(arg) when given (user-space
 * TLS: what its pump decrypted), else the bytes the reader took from the
 * socket (TCP_INFO's received bytes less those still queued: a partial
 * kTLS record waiting in the socket is not delivered).  Time during which
 * the reader's descriptor (users) is readable, payload waiting for a
 * reader that is the slow one, does not count against the peer.  A peer
 * that breaks a bound has its connection shut down both ways, so a blocked
 * reader sees the stream end.
 */
struct net_guard_opts {
	unsigned deadline_s;		/* 0: none */
	unsigned min_rate_kbs;		/* KB/s (1000 bytes); 0: none */
	unsigned window_s;		/* the span the rate is averaged over */
	void (*thread_start)(void);	/* optional: first on the guard's thread (a sandbox) */
};

struct net_guard;

typedef uint64_t net_count_fn(const void *arg);

struct net_guard *net_guard_start(int sock, int users, net_count_fn *count, const void *arg,
				  const struct net_guard_opts *o, char *why, size_t len);

/* Stops watching; true when the guard cut the connection, why saying which bound. */
bool net_guard_stop(struct net_guard *g, char *why, size_t len);

#endif
