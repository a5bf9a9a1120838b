/* SPDX-License-Identifier: MIT */
/*
 * A migration receiver's listener: takes connections until one source
 * authenticates (TLS) or starts an image (plaintext); the others are
 * dropped, each reported, and listening goes on.  Up to LISTENER_PENDING
 * peers handshake at once, each within its own deadline, driven by one
 * poll loop: a few idle or slow connections cannot keep a source out.
 * Nothing here prints or exits.
 */
#ifndef SR_LISTENER_H
#define SR_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#define LISTENER_PENDING	16

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
