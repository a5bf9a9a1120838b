/* SPDX-License-Identifier: MIT */
/*
 * TCP for migration streams: IPv4 and IPv6, bounded connects and accepts,
 * keepalive and an idle timeout on every connection.  Errors come back as
 * text in why; nothing here prints or exits.
 */
#ifndef SR_NET_H
#define SR_NET_H

#include <stddef.h>

/*
 * Connects to "HOST:PORT" ("[V6ADDR]:PORT" for a literal IPv6 address),
 * trying each address HOST resolves to within timeout_ms in all.  Returns
 * the socket, tuned (net_tune), or -1.
 */
int net_connect(const char *hostport, int timeout_ms, unsigned idle_s, char *why, size_t len);

/*
 * Listens on "[ADDR:]PORT" (no ADDR: every address, IPv6 and IPv4).  Puts
 * the address it is bound to, as "ADDR:PORT", in bound.  Returns the
 * listening socket or -1.
 */
int net_listen(const char *spec, char *bound, size_t blen, char *why, size_t len);

/* Accepts one connection within timeout_ms (0: forever); its peer in peer. */
int net_accept(int lfd, int timeout_ms, unsigned idle_s, char *peer, size_t plen, char *why,
	       size_t len);

/*
 * Keepalive (a dead peer is found within about idle_s) and, for reads and
 * unacknowledged writes, an idle timeout of idle_s seconds: a read that
 * waits longer fails with EAGAIN, a write with ETIMEDOUT.
 */
void net_tune(int fd, unsigned idle_s);

#endif
