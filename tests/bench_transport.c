/* SPDX-License-Identifier: MIT */
/*
 * bench-transport: one end of a migration stream, through the code the
 * tools use (tools/net.c, tools/listener.c, tools/tls.c), natively, so
 * what TLS costs is measured on the host's CPU rather than in the box's
 * emulated one.  tests/bench-transport.sh runs a receiver and a sender per
 * transport and compares them.
 *
 *   bench-transport recv [ADDR:]PORT [--psk FILE] [--record BYTES]
 *   bench-transport send HOST:PORT [--psk FILE] [--record BYTES] [--mib N]
 *
 * The receiver is set up as sr-restore --listen sets up its stream
 * (net_listen, listener_accept with the same timeouts, net_guard_start
 * with the default bounds); the sender as sr-migrate's tcp: target
 * (tls_creds_new, net_connect, tls_start).  With --psk the stream is TLS
 * 1.3; SR_KTLS=off keeps the records in user space, as for the tools.
 *
 * The payload is page-like: 4 KiB pages, three of four random and one
 * zero, sent as sr's writer sends a batch record (writev of a small header
 * and --record bytes of pages, SR_BATCH_MAX_PAGES pages by default) and
 * read as sr's reader reads it (a 64 KiB read-ahead, then the rest of the
 * record straight into place).  Neither end looks at the bytes beyond
 * hashing them (XXH3): the caller compares the two hashes, so a stream
 * that lost or changed a byte fails the run.
 *
 * Prints one line of key=value on stdout: the payload's bytes, the
 * seconds from the authenticated connection to the end of the stream,
 * the CPU seconds the whole process spent in that time (both directions'
 * TLS threads and the guard included), peak RSS and the hash.  Exit 0 on a whole stream,
 * 1 on any failure (said on stderr).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <xxhash.h>

#include "listener.h"
#include "net.h"
#include "tls.h"
#include "util.h"

#define PAGE		4096u
#define POOL_BYTES	(64u << 20)	/* distinct page data, sent round and round */
#define READ_AHEAD	(64u << 10)	/* libsr/reader.c's RD_AHEAD */
#define HDR_BYTES	16u		/* a record header and a batch header, roughly */
#define IDLE_S		30		/* the tools' --idle-timeout default */
#define CONNECT_S	10		/* sr-migrate's --connect-timeout default */
#define HANDSHAKE_MS	10000		/* sr-restore's HANDSHAKE_TIMEOUT_MS */
/* Each record's first bytes; the plaintext listener takes a peer that sends them (SR_MAGIC's role). */
#define MAGIC		"srbench\n"

struct opts {
	const char *addr;
	const char *psk;
	size_t record;			/* page bytes per record */
	uint64_t bytes;			/* send: payload bytes in all */
};

struct result {
	uint64_t bytes;
	uint64_t hash;
	double secs;
	double cpu0;			/* the process's CPU seconds when the stream began */
	const char *transport;
};

/* User and system CPU seconds of the whole process, every thread. */
static double cpu_secs(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-transport recv [ADDR:]PORT [--psk FILE] [--record BYTES]\n"
		"       bench-transport send HOST:PORT [--psk FILE] [--record BYTES] [--mib N]\n");
	exit(2);
}

/* Three pages of four random, the fourth zero (a written guest's memory, uncompressed). */
static uint8_t *page_pool(void)
{
	uint8_t *p = malloc(POOL_BYTES);

	if (!p)
		die(1, "out of memory");
	for (size_t off = 0; off < POOL_BYTES; off += PAGE) {
		if ((off / PAGE) % 4 == 3) {
			memset(p + off, 0, PAGE);
			continue;
		}
		for (size_t k = 0; k < PAGE;) {
			ssize_t n = getrandom(p + off + k, PAGE - k, 0);

			if (n < 0 && errno != EINTR)
				die(1, "getrandom: %s", strerror(errno));
			k += n > 0 ? (size_t)n : 0;
		}
	}
	return p;
}

/* All of the iovecs, as sr_writer_flush writes them. */
static int writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t done = writev(fd, iov, n);

		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return -1;
		while (n > 0 && (size_t)done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

/* Records of o->record page bytes from the pool, until o->bytes are sent. */
static int send_stream(int fd, const struct opts *o, const uint8_t *pool, struct result *r)
{
	uint8_t hdr[HDR_BYTES] = { 0 };
	XXH3_state_t *h = XXH3_createState();
	uint64_t pages = 0;
	size_t off = 0;
	int rc = 0;

	if (!h)
		die(1, "out of memory");
	XXH3_64bits_reset(h);
	while (pages < o->bytes && !rc) {
		size_t n = o->record;
		struct iovec iov[2];

		if (n > o->bytes - pages)
			n = o->bytes - pages;
		if (off + n > POOL_BYTES)
			off = 0;
		memcpy(hdr, MAGIC, 8);
		memcpy(hdr + 8, &pages, sizeof(pages));
		iov[0] = (struct iovec){ hdr, sizeof(hdr) };
		iov[1] = (struct iovec){ (void *)(pool + off), n };
		XXH3_64bits_update(h, hdr, sizeof(hdr));
		XXH3_64bits_update(h, pool + off, n);
		rc = writev_all(fd, iov, 2);
		if (rc)
			fprintf(stderr, "bench-transport: send after %llu bytes: %s\n",
				(unsigned long long)r->bytes, strerror(errno));
		r->bytes += sizeof(hdr) + n;
		pages += n;
		off += n;
	}
	r->hash = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	return rc;
}

/* A read-ahead of 64 KiB, the rest of each record read straight into place, until EOF. */
static int recv_stream(int fd, const struct opts *o, struct result *r, uint64_t t0)
{
	size_t rec = HDR_BYTES + o->record, have = 0;
	uint8_t *buf = malloc(rec > READ_AHEAD ? rec : READ_AHEAD);
	XXH3_state_t *h = XXH3_createState();
	int rc = 0;

	if (!buf || !h)
		die(1, "out of memory");
	XXH3_64bits_reset(h);
	for (;;) {
		bool direct = have && rec - have >= READ_AHEAD;
		ssize_t k = read(fd, direct ? buf + have : buf, direct ? rec - have : READ_AHEAD);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			fprintf(stderr, "bench-transport: read after %llu bytes: %s\n",
				(unsigned long long)r->bytes, strerror(errno));
			rc = -1;
			break;
		}
		if (k == 0)
			break;
		XXH3_64bits_update(h, direct ? buf + have : buf, k);
		r->bytes += k;
		have = (have + k) % rec;
	}
	r->hash = XXH3_64bits_digest(h);
	r->secs = (mono_ns() - t0) / 1e9;
	XXH3_freeState(h);
	free(buf);
	return rc;
}

static struct tls_creds *creds_for(const struct opts *o, bool server, const char *peer_host)
{
	struct tls_opts to = { .psk_file = o->psk, .server = server, .peer_host = peer_host };
	struct tls_creds *c;
	char why[400];

	if (!o->psk)
		return NULL;
	c = tls_creds_new(&to, why, sizeof(why));
	if (!c)
		die(1, "%s", why);
	return c;
}

static void refused(void *arg, const char *peer, const char *why)
{
	(void)arg;
	fprintf(stderr, "bench-transport: refused %s: %s\n", peer ? peer : "a peer", why);
}

static uint64_t tls_count(const void *arg)
{
	return tls_bytes_in(arg);
}

static int run_recv(const struct opts *o, struct result *r)
{
	struct net_guard_opts bounds = { 3600, 64, 10, NULL };	/* sr-restore's defaults */
	struct tls_creds *creds = creds_for(o, true, NULL);
	struct listener_source src;
	struct listener_opts lso = {
		.creds = creds, .magic = MAGIC, .magic_len = 8, .idle_s = IDLE_S,
		.handshake_ms = HANDSHAKE_MS, .refused = refused,
		.until_ns = mono_ns() + 120 * 1000000000ull,
	};
	struct net_guard *guard;
	char bound[128], why[400];
	int fd, rc;

	lso.lfd = net_listen(o->addr, false, bound, sizeof(bound), why, sizeof(why));
	if (lso.lfd < 0)
		die(1, "%s", why);
	printf("listening %s\n", bound);
	fflush(stdout);
	if (listener_accept(&lso, &src, why, sizeof(why)))
		die(1, "%s: %s", bound, why);
	close(lso.lfd);
	fd = src.tls ? tls_plain_fd(src.tls) : src.fd;
	guard = net_guard_start(src.fd, fd, src.tls && !tls_is_ktls(src.tls) ?
				tls_count : NULL, src.tls, &bounds, why, sizeof(why));
	if (!guard)
		die(1, "%s", why);
	r->transport = src.tls ? tls_describe(src.tls) : "plaintext TCP";
	r->cpu0 = cpu_secs();
	rc = recv_stream(fd, o, r, mono_ns());
	if (net_guard_stop(guard, why, sizeof(why))) {
		fprintf(stderr, "bench-transport: the guard cut the stream: %s\n", why);
		rc = -1;
	}
	/* Printed before the end, which frees the description. */
	printf("transport=\"%s\" ", r->transport);
	if (src.tls)
		tls_end(src.tls);
	else
		close(src.fd);
	tls_creds_free(creds);
	return rc;
}


static int run_send(const struct opts *o, struct result *r)
{
	char host[256], why[400];
	struct tls_creds *creds;
	struct tls_conn *t = NULL;
	int fd, rc;
	uint64_t t0;

	uint8_t *pool = page_pool();	/* before the clock starts */

	net_host_of(o->addr, host, sizeof(host));
	creds = creds_for(o, false, host);
	fd = net_connect(o->addr, CONNECT_S * 1000, IDLE_S, why, sizeof(why));
	if (fd < 0)
		die(1, "%s", why);
	if (creds) {
		t = tls_start(creds, fd, CONNECT_S * 1000, why, sizeof(why));
		if (!t)
			die(1, "%s", why);
	}
	printf("transport=\"%s\" ", t ? tls_describe(t) : "plaintext TCP");
	t0 = mono_ns();
	r->cpu0 = cpu_secs();
	rc = send_stream(t ? tls_plain_fd(t) : fd, o, pool, r);
	/* The end is the sender's: TLS's pump has sent all that was written once tls_end returns. */
	if (t)
		tls_end(t);
	else
		close(fd);
	r->secs = (mono_ns() - t0) / 1e9;
	tls_creds_free(creds);
	free(pool);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "psk", required_argument, NULL, 'p' },
		{ "record", required_argument, NULL, 'r' },
		{ "mib", required_argument, NULL, 'm' },
		{ 0 }
	};
	struct opts o = { .record = 1024 * PAGE, .bytes = 2048ull << 20 };
	struct result r = { 0 };
	struct rusage ru;
	bool send;
	int c, rc;

	sr_set_prog("bench-transport");
	signal(SIGPIPE, SIG_IGN);	/* a broken stream is a write error, as in the tools */
	if (argc < 3 || (strcmp(argv[1], "recv") && strcmp(argv[1], "send")))
		usage();
	send = !strcmp(argv[1], "send");
	o.addr = argv[2];
	optind = 3;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'p': o.psk = optarg; break;
		case 'r': o.record = strtoull(optarg, NULL, 0); break;
		case 'm': o.bytes = strtoull(optarg, NULL, 0) << 20; break;
		default: usage();
		}
	}
	if (o.record < PAGE || o.record > POOL_BYTES || !o.bytes)
		usage();
	rc = send ? run_send(&o, &r) : run_recv(&o, &r);
	getrusage(RUSAGE_SELF, &ru);
	printf("role=%s bytes=%llu secs=%.3f mbps=%.1f cpu=%.3f maxrss_kib=%ld hash=%016llx\n",
	       send ? "send" : "recv", (unsigned long long)r.bytes, r.secs,
	       r.secs > 0 ? r.bytes / r.secs / 1e6 : 0.0, cpu_secs() - r.cpu0, ru.ru_maxrss,
	       (unsigned long long)r.hash);
	return rc ? 1 : 0;
}
