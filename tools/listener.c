/* SPDX-License-Identifier: MIT */
/* A migration receiver's listener (see listener.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"
#include "net.h"
#include "sandbox.h"
#include "tls.h"
#include "util.h"

/* A limit of the moment (descriptors, memory): accepting rests this long. */
#define ACCEPT_REST_NS		(200 * 1000000ull)
/* A plaintext peer part way through the magic is looked at again this often. */
#define PARTIAL_POLL_MS		10
/* Connections taken at most per poll (the listening socket is non-blocking). */
#define ACCEPT_BATCH		32

struct pending {
	int fd;
	struct tls_conn *tls;		/* TLS: its handshake so far (NULL until it spoke) */
	uint64_t deadline;
	unsigned addr;			/* its address's index in lstate.a */
	short events;			/* what it waits for */
	bool partial;			/* plaintext: some of the magic came */
	bool hello;			/* TLS: its whole ClientHello was parsed */
	bool proved;			/* TLS-PSK: its binder verified (tls_key_proved) */
	char peer[128];
};

/* An address (IPv4, or an IPv6 /64) with peers pending. */
struct addr {
	unsigned char key[16];
	unsigned n;
};

struct lstate {
	const struct listener_opts *o;
	struct pending *p;
	struct addr *a;
	unsigned n, na, cap;
	uint64_t rest_until;		/* no accepts before (a limit was hit) */
	bool resting_said;
};

/* One peer fewer from address i; an address with none left leaves the table. */
static void addr_put(struct lstate *s, unsigned i)
{
	unsigned last;

	if (--s->a[i].n)
		return;
	last = --s->na;
	if (i == last)
		return;
	s->a[i] = s->a[last];
	for (unsigned k = 0; k < s->n; k++)
		if (s->p[k].addr == last)
			s->p[k].addr = i;
}

/* The address a peer is counted under: IPv4 (as ::ffff:a.b.c.d) whole, IPv6 by its /64. */
static void addr_key(int fd, unsigned char key[16])
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	memset(key, 0, 16);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl))
		return;
	if (ss.ss_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		const unsigned char *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;

		memcpy(key, a, IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a) ? 16 : 8);
	}
}

/* The index of key's address, added with no peers if new (the table has room: na <= n < cap). */
static unsigned addr_find(struct lstate *s, const unsigned char key[16])
{
	for (unsigned i = 0; i < s->na; i++)
		if (!memcmp(s->a[i].key, key, 16))
			return i;
	memcpy(s->a[s->na].key, key, 16);
	s->a[s->na].n = 0;
	return s->na++;
}

static void drop(struct lstate *s, unsigned i, const char *why)
{
	struct pending *p = &s->p[i];

	if (why)
		s->o->refused(s->o->arg, p->peer, why);
	tls_abort(p->tls);
	close(p->fd);
	addr_put(s, p->addr);
	s->p[i] = s->p[--s->n];
}

/*
 * Plaintext: a connection counts once it has sent the image's first bytes
 * (a port scan, a silent or foreign client is dropped).  Peeked, so the
 * reader reads them again.  1 all there, 0 not yet, -1 with why.
 */
static int plain_step(const struct listener_opts *o, struct pending *p, char *why, size_t len)
{
	char buf[64];
	size_t want = o->magic_len < sizeof(buf) ? o->magic_len : sizeof(buf);
	ssize_t k = recv(p->fd, buf, want, MSG_PEEK | MSG_DONTWAIT);

	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (k <= 0) {
		snprintf(why, len, "closed the connection");
		return -1;
	}
	if (memcmp(buf, o->magic, k)) {
		snprintf(why, len, "did not send an sr image");
		return -1;
	}
	p->partial = (size_t)k < want;
	return !p->partial;
}

/* TLS: the session begins with the peer's first bytes (a silent peer holds only its socket). */
static int tls_step_lazy(struct lstate *s, struct pending *p, char *why, size_t len)
{
	int rc;

	if (!p->tls) {
		p->tls = tls_begin(s->o->creds, p->fd, why, len);
		if (!p->tls)
			return -1;
	}
	rc = tls_step(p->tls, &p->events, why, len);
	if (rc == 0) {
		p->hello = tls_hello_parsed(p->tls);
		p->proved = tls_key_proved(p->tls);
	}
	return rc;
}

/* One pending peer moved on: 1 it is the source, 0 still pending, -1 dropped. */
static int step(struct lstate *s, unsigned i)
{
	struct pending *p = &s->p[i];
	char why[400];
	int rc;

	rc = s->o->creds ? tls_step_lazy(s, p, why, sizeof(why)) :
	     plain_step(s->o, p, why, sizeof(why));
	if (rc < 0) {
		if (p->tls) {
			tls_abort(p->tls);
			p->tls = NULL;
		}
		drop(s, i, why);
	}
	return rc;
}

/*
 * Whether pending peer a is evicted before b (see listener.h): busiest
 * address, then no whole ClientHello yet, then oldest.  The address comes
 * first: a flood's connections can each send a few bytes and stall (audit7:
 * 6 of 18 sources got in when any byte counted), but cannot share the
 * source's address.
 */
static bool evict_before(const struct lstate *s, const struct pending *a, const struct pending *b)
{
	if (s->a[a->addr].n != s->a[b->addr].n)
		return s->a[a->addr].n > s->a[b->addr].n;
	if (a->hello != b->hello)
		return !a->hello;
	return a->deadline < b->deadline;
}

/*
 * Room for a newcomer from address ai (see listener.h for the order), or
 * (ai -1u) for one that accept could not take for want of a descriptor.
 * False: every candidate has proved its key, the newcomer is refused.
 */
static bool make_room(struct lstate *s, unsigned ai)
{
	bool own = ai != -1u && s->a[ai].n > LISTENER_PER_ADDRESS;	/* the newcomer counted */
	unsigned v = s->n;

	if (!own && ai != -1u && s->n < s->cap)
		return true;
	for (unsigned i = 0; i < s->n; i++) {
		const struct pending *p = &s->p[i];

		if (p->proved || (own && p->addr != ai))
			continue;
		if (v == s->n || evict_before(s, p, &s->p[v]))
			v = i;
	}
	if (v == s->n)
		return false;
	drop(s, v, own ? "a newer connection from its address took its place" :
	     ai == -1u ? "a newer connection took its place (no descriptor left)" :
	     "a newer connection took its place (every slot was taken)");
	return true;
}

/*
 * A connection waiting on the listening socket taken into the table: 1, or
 * 0 none taken (none waiting, or a limit); -1: the socket broke.
 */
static int take(struct lstate *s, char *why, size_t len)
{
	const struct listener_opts *o = s->o;
	struct pending np = { .fd = -1 }, *p;
	unsigned char key[16];
	char err[200];
	unsigned ai;
	int fd = net_accept(o->lfd, o->idle_s, np.peer, sizeof(np.peer), err, sizeof(err));

	if (fd < 0) {
		int e = errno;

		if (!net_accept_again(e)) {
			snprintf(why, len, "%s", err);
			return -1;
		}
		/* No descriptor left: the table's are the ones to free, in its order. */
		if ((e == EMFILE || e == ENFILE) && make_room(s, -1u))
			return 1;
		if (e != EAGAIN && e != EINTR && e != ECONNABORTED) {
			/* A limit: rest, said once per spell, not a busy loop on the waiting peer. */
			s->rest_until = mono_ns() + ACCEPT_REST_NS;
			if (!s->resting_said)
				o->refused(o->arg, NULL, err);
			s->resting_said = true;
		}
		return 0;
	}
	s->resting_said = false;
	addr_key(fd, key);
	ai = addr_find(s, key);
	s->a[ai].n++;			/* the newcomer counted: its address stays */
	if (!make_room(s, ai)) {
		o->refused(o->arg, np.peer, "every slot it could take holds a peer that proved its key");
		close(fd);
		addr_put(s, addr_find(s, key));
		return 1;
	}
	ai = addr_find(s, key);		/* a drop may have moved it */
	p = &s->p[s->n++];
	*p = np;
	p->fd = fd;
	p->addr = ai;
	p->events = POLLIN;
	p->deadline = mono_ns() + o->handshake_ms * 1000000ull;
	return 1;
}

static void chosen(struct lstate *s, unsigned i, struct listener_source *src)
{
	src->fd = s->p[i].fd;
	src->tls = s->p[i].tls;
	snprintf(src->peer, sizeof(src->peer), "%s", s->p[i].peer);
	s->p[i] = s->p[--s->n];
	while (s->n)
		drop(s, 0, NULL);	/* the others: a source is taken */
}

/* Accepts and handshakes until a source is taken (0) or the wait ends (-1). */
static int accept_loop(struct lstate *s, struct pollfd *pf, struct listener_source *src,
		       char *why, size_t len)
{
	const struct listener_opts *o = s->o;
	uint64_t t0 = mono_ns();

	for (;;) {
		uint64_t now = mono_ns(), wake = o->until_ns;
		bool accepting;
		unsigned np = 0;
		int ms;

		if (o->until_ns && now >= o->until_ns) {
			while (s->n)
				drop(s, 0, NULL);
			/* the whole wait, rounded (until_ns - now is past zero here) */
			snprintf(why, len, "no connection within %llu s",
				 (unsigned long long)((o->until_ns - t0 + 500000000) / 1000000000));
			return -1;
		}
		/* Peers past their time go; the rest wait for their bytes. */
		for (unsigned i = 0; i < s->n;) {
			if (now >= s->p[i].deadline) {
				char w[100];

				snprintf(w, sizeof(w), s->p[i].tls ? "TLS handshake: not done within %d s" :
					 "sent nothing within %d s", o->handshake_ms / 1000);
				if (s->p[i].partial)
					snprintf(w, sizeof(w), "sent part of an image's start within %d s",
						 o->handshake_ms / 1000);
				drop(s, i, w);
				continue;
			}
			if (!wake || s->p[i].deadline < wake)
				wake = s->p[i].deadline;
			i++;
		}
		/*
		 * Decided after the drops above, and always accepting but while
		 * resting from an accept error: a full table makes room (make_room).
		 * (Decided before them, a full table that the deadlines emptied
		 * left no deadline and no listening socket to wake the poll: wedged.)
		 */
		accepting = now >= s->rest_until;
		if (!accepting && (!wake || s->rest_until < wake))
			wake = s->rest_until;
		for (unsigned i = 0; i < s->n; i++)
			pf[np++] = (struct pollfd){ .fd = s->p[i].partial ? -1 : s->p[i].fd,
						    .events = s->p[i].events };
		pf[np++] = (struct pollfd){ .fd = accepting ? o->lfd : -1, .events = POLLIN };
		ms = wake ? (int)((wake > now ? wake - now : 0) / 1000000) + 1 : -1;
		for (unsigned i = 0; i < s->n; i++)
			if (s->p[i].partial && (ms < 0 || ms > PARTIAL_POLL_MS))
				ms = PARTIAL_POLL_MS;
		if (poll(pf, np, ms) < 0 && errno != EINTR) {
			snprintf(why, len, "waiting for a connection: %s", strerror(errno));
			return -1;
		}
		/* From the end: a dropped peer's slot takes the last one's, already seen. */
		for (unsigned i = s->n; i-- > 0;) {
			int rc;

			if (!pf[i].revents && !s->p[i].partial)
				continue;
			rc = step(s, i);
			if (rc == 1) {
				chosen(s, i, src);
				return 0;
			}
		}
		/* A batch while they wait: one a poll of the whole table is too slow for a flood. */
		for (int k = 0, rc = pf[np - 1].revents ? 1 : 0; rc == 1 && k < ACCEPT_BATCH; k++)
			if ((rc = take(s, why, len)) < 0)
				return -1;
	}
}

struct accept_call {
	const struct listener_opts *o;
	struct listener_source *src;
	char *why;
	size_t len;
	int rc;
};

static void accept_on_thread(void *arg)
{
	struct accept_call *c = arg;
	struct lstate s = { .o = c->o, .cap = LISTENER_PENDING };
	struct pollfd *pf = calloc(s.cap + 1, sizeof(*pf));

	c->rc = -1;
	s.p = calloc(s.cap, sizeof(*s.p));
	s.a = calloc(s.cap + 1, sizeof(*s.a));
	if (!pf || !s.p || !s.a)
		snprintf(c->why, c->len, "listening: out of memory");
	else if (fcntl(c->o->lfd, F_SETFL, fcntl(c->o->lfd, F_GETFL) | O_NONBLOCK))
		snprintf(c->why, c->len, "listening: fcntl: %s", strerror(errno));
	else
		c->rc = accept_loop(&s, pf, c->src, c->why, c->len);
	free(pf);
	free(s.p);
	free(s.a);
}

/*
 * On a thread of its own under the listen kind's seccomp list (sandbox.h):
 * the peers' bytes are not handled under the main thread's, which holds
 * every list of the threads it starts.  Inline without a sandbox.
 */
int listener_accept(const struct listener_opts *o, struct listener_source *src, char *why,
		    size_t len)
{
	struct accept_call c = { .o = o, .src = src, .why = why, .len = len };
	int e = sandbox_run(SANDBOX_LISTEN, accept_on_thread, &c);

	if (e) {
		snprintf(why, len, "listening: its thread: %s", strerror(e));
		return -1;
	}
	return c.rc;
}
