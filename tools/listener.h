/* SPDX-License-Identifier: MIT */
/*
 * A migration receiver's listener: takes connections until one source
 * authenticates (TLS) or starts an image (plaintext); the others are
 * dropped, each reported, and listening goes on.  Up to LISTENER_PENDING
 * peers handshake at once, each within its own deadline, driven by one
 * poll loop: idle or slow connections cannot keep a source out.
 *
 * When the table is full a newcomer takes a pending peer's place, chosen
 * so that a flood of connections from many addresses does not starve the
 * real source (which is mid-handshake, often behind a WAN's round trips):
 *  - a --tls-psk peer that has proved it holds a key (tls_key_proved: its
 *    ClientHello's binder verified) is never evicted;
 *  - of the rest, one from the address (IPv6: the /64) with the most
 *    pending peers; among those, first one whose whole ClientHello has not
 *    been parsed (a few bytes and a stall cost a flood nothing), the oldest.
 * Past LISTENER_PER_ADDRESS pending peers from one address, that address's
 * own oldest unproved peer goes.  A peer that has sent nothing holds only
 * its socket (its TLS session begins with its first bytes), so the table
 * is large: the real source's address has one or two pending peers and is
 * chosen last while a flood's addresses hold more; a flood must come from
 * more than LISTENER_PENDING / LISTENER_PER_ADDRESS addresses to fill it.
 * With X.509 (--tls-creds) the client proves itself only in its last
 * flight, so nothing is proved early: the source is protected by the
 * address rules and the table's size only.  An accept that fails for want
 * of a descriptor (RLIMIT_NOFILE below the table's size) frees one in the
 * same order.
 * Nothing here prints or exits.
 */
#ifndef SR_LISTENER_H
#define SR_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#define LISTENER_PENDING	1024
#define LISTENER_PER_ADDRESS	4	/* pending peers from one address */

struct tls_creds;
struct tls_conn;

struct listener_opts {
	int lfd;			/* listening, from net_listen */
	struct tls_creds *creds;	/* NULL: plaintext */
	const char *magic;		/* plaintext: the bytes a source's stream begins with */
	size_t magic_len;
	uint64_t until_ns;		/* give up then (mono_ns; 0: never) */
	unsigned idle_s;		/* net_tune's, on each connection */
	int handshake_ms;		/* each peer's time to authenticate or start */
	/* A peer dropped (peer NULL: an accept that failed for the moment). */
	void (*refused)(void *arg, const char *peer, const char *why);
	void *arg;
};

struct listener_source {
	int fd;				/* the TCP connection */
	struct tls_conn *tls;		/* with TLS: authenticated, owns fd */
	char peer[128];			/* its address */
};

/* The source taken, 0; -1 with why when until_ns passed or the listening socket broke. */
int listener_accept(const struct listener_opts *o, struct listener_source *src, char *why,
		    size_t len);

#endif
