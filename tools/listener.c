/* SPDX-License-Identifier: MIT */
/* A migration receiver's listener (see listener.h). */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"
#include "net.h"
#include "tls.h"
#include "util.h"

/* A limit of the moment (descriptors, memory): accepting rests this long. */
#define ACCEPT_REST_NS		(200 * 1000000ull)
/* A plaintext peer part way through the magic is looked at again this often. */
#define PARTIAL_POLL_MS		10

struct pending {
	int fd;
	struct tls_conn *tls;		/* TLS: its handshake so far */
	uint64_t deadline;
	short events;			/* what it waits for */
	bool partial;			/* plaintext: some of the magic came */
	char peer[128];
};

struct lstate {
	const struct listener_opts *o;
	struct pending p[LISTENER_PENDING];
	unsigned n;
	uint64_t rest_until;		/* no accepts before (a limit was hit) */
	bool resting_said;
};

static void drop(struct lstate *s, unsigned i, const char *why)
{
	struct pending *p = &s->p[i];

	if (why)
		s->o->refused(s->o->arg, p->peer, why);
	tls_abort(p->tls);
	close(p->fd);
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

/* One pending peer moved on: 1 it is the source, 0 still pending, -1 dropped. */
static int step(struct lstate *s, unsigned i)
{
	struct pending *p = &s->p[i];
	char why[400];
	int rc = p->tls ? tls_step(p->tls, &p->events, why, sizeof(why)) :
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

/* A connection waiting on the listening socket taken into the table; -1: the socket broke. */
static int take(struct lstate *s, char *why, size_t len)
{
	const struct listener_opts *o = s->o;
	struct pending *p = &s->p[s->n];
	char err[200];
	int fd = net_accept(o->lfd, o->idle_s, p->peer, sizeof(p->peer), err, sizeof(err));

	if (fd < 0) {
		int e = errno;

		if (!net_accept_again(e)) {
			snprintf(why, len, "%s", err);
			return -1;
		}
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
	p->fd = fd;
	p->tls = NULL;
	p->partial = false;
	p->events = POLLIN;
	p->deadline = mono_ns() + o->handshake_ms * 1000000ull;
	if (o->creds) {
		p->tls = tls_begin(o->creds, fd, err, sizeof(err));
		if (!p->tls) {
			o->refused(o->arg, p->peer, err);
			close(fd);
			return 0;
		}
	}
	s->n++;
	return 0;
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

int listener_accept(const struct listener_opts *o, struct listener_source *src, char *why,
		    size_t len)
{
	struct lstate s = { .o = o };

	for (;;) {
		struct pollfd pf[LISTENER_PENDING + 1];
		uint64_t now = mono_ns(), wake = o->until_ns;
		bool accepting = s.n < LISTENER_PENDING && now >= s.rest_until;
		unsigned np = 0;
		int ms;

		if (o->until_ns && now >= o->until_ns) {
			while (s.n)
				drop(&s, 0, NULL);
			snprintf(why, len, "no connection within %llu s",
				 (unsigned long long)((o->until_ns - now + 999999999) / 1000000000));
			return -1;
		}
		/* Peers past their time go; the rest wait for their bytes. */
		for (unsigned i = 0; i < s.n;) {
			if (now >= s.p[i].deadline) {
				char w[100];

				snprintf(w, sizeof(w), s.p[i].tls ? "TLS handshake: not done within %d s" :
					 "sent nothing within %d s", o->handshake_ms / 1000);
				if (s.p[i].partial)
					snprintf(w, sizeof(w), "sent part of an image's start within %d s",
						 o->handshake_ms / 1000);
				drop(&s, i, w);
				continue;
			}
			if (!wake || s.p[i].deadline < wake)
				wake = s.p[i].deadline;
			i++;
		}
		if (!accepting && s.n < LISTENER_PENDING && (!wake || s.rest_until < wake))
			wake = s.rest_until;
		for (unsigned i = 0; i < s.n; i++)
			pf[np++] = (struct pollfd){ .fd = s.p[i].partial ? -1 : s.p[i].fd,
						    .events = s.p[i].events };
		pf[np++] = (struct pollfd){ .fd = accepting ? o->lfd : -1, .events = POLLIN };
		ms = wake ? (int)((wake > now ? wake - now : 0) / 1000000) + 1 : -1;
		for (unsigned i = 0; i < s.n; i++)
			if (s.p[i].partial && (ms < 0 || ms > PARTIAL_POLL_MS))
				ms = PARTIAL_POLL_MS;
		if (poll(pf, np, ms) < 0 && errno != EINTR) {
			snprintf(why, len, "waiting for a connection: %s", strerror(errno));
			return -1;
		}
		/* From the end: a dropped peer's slot takes the last one's, already seen. */
		for (unsigned i = s.n; i-- > 0;) {
			int rc;

			if (!pf[i].revents && !s.p[i].partial)
				continue;
			rc = step(&s, i);
			if (rc == 1) {
				chosen(&s, i, src);
				return 0;
			}
		}
		if (pf[np - 1].revents && take(&s, why, len))
			return -1;
	}
}
