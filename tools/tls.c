/* SPDX-License-Identifier: MIT */
/* TLS 1.3 for migration streams through GnuTLS (see tls.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls.h"
#include "util.h"

/*
 * AES-GCM first (AES-NI; the kernel's kTLS has it since 4.13), the server's
 * order deciding.
 */
#define PRIO_CIPHERS	"-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"
/*
 * TLS 1.3 only; a PSK always with ECDHE, so a key learned later does not
 * open old streams.  Elliptic-curve groups only: a peer not yet
 * authenticated could otherwise ask the listener (which handshakes all its
 * peers on one thread) for an 8192-bit finite-field DH, ~150x X25519's work.
 */
#define PRIO_GROUPS	"-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1"
#define PRIO_X509	"NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.3:" PRIO_GROUPS ":" PRIO_CIPHERS
#define PRIO_PSK	"NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK:" \
		PRIO_GROUPS ":" PRIO_CIPHERS

#define PUMP_BUF	(256 << 10)
#define WIRE_BUF	(256 << 10)	/* the receive pump's read-ahead of the socket */

struct tls_creds {
	bool server, psk;
	gnutls_psk_client_credentials_t psk_cli;
	gnutls_psk_server_credentials_t psk_srv;
	gnutls_certificate_credentials_t x509;
	char identity[256];		/* client: the PSK identity it presents */
	char *psk_path;			/* its name, for messages */
	int psk_fd;			/* server: opened once, read again at each handshake */
	char *authz[TLS_AUTHZ_MAX];	/* the allow-list, each name whole */
	unsigned nauthz;
	char peer_host[256];
	void (*thread_start)(void);
};

struct tls_conn {
	gnutls_session_t s;
	const struct tls_creds *c;
	int sock;			/* the TCP connection */
	int plain;			/* what the stream's users read and write */
	int pump;			/* the pumps' end of the pair (-1: kTLS both ways) */
	pthread_t out, in;
	void (*thread_start)(void);
	bool ktls;
	_Atomic uint64_t bytes_in;	/* payload handed to the users (user-space TLS) */
	uint8_t *wire;			/* the receive pump's read-ahead: wire[woff..wlen) */
	size_t woff, wlen;
	bool eof;			/* the peer's TCP FIN, kept from GnuTLS (pull_ahead) */
	char desc[200], peer[1024], why_user[100];
};

int tls_opts_authz(struct tls_opts *o, const char *name, char *why, size_t len)
{
	/* A '*' would match a shared wildcard certificate literally: names are whole. */
	if (!*name || strchr(name, '*')) {
		snprintf(why, len, "--tls-authz \"%s\": a host name, DN or PSK identity, whole "
			 "(no wildcards)", name);
		return -1;
	}
	if (o->nauthz >= TLS_AUTHZ_MAX) {
		snprintf(why, len, "--tls-authz: at most %d names", TLS_AUTHZ_MAX);
		return -1;
	}
	o->authz[o->nauthz++] = name;
	return 0;
}

static void fail(char *why, size_t len, const char *what, int rc)
{
	snprintf(why, len, "%s: %s", what, gnutls_strerror(rc));
}

/* The most a --tls-psk file may hold: psktool's lines are under 200 bytes. */
#define PSK_FILE_MAX	(64 << 10)

/*
 * psktool's format, one key a line: "identity:hexkey".  The client takes
 * the first; the server checks them all now and looks the peer's identity
 * up again at each handshake, so keys added to the file are seen.  want:
 * the identity whose key goes to key (NULL: the first line's).
 */
static int read_psk_lines(struct tls_creds *c, char *text, const char *want,
			  gnutls_datum_t *key, char *why, size_t len)
{
	unsigned n = 0, lineno = 0;
	char *next;

	for (char *line = text; line; line = next) {
		char *colon, *hex;
		size_t hl;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		lineno++;
		line[strcspn(line, "\r")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		colon = strchr(line, ':');
		hex = colon ? colon + 1 : NULL;
		hl = hex ? strlen(hex) : 0;
		if (!colon || colon == line || colon - line >= (long)sizeof(c->identity) ||
		    hl < 32 || hl % 2 ||
		    strspn(hex, "0123456789abcdefABCDEF") != hl) {
			snprintf(why, len, "--tls-psk %s: line %u is not identity:hexkey (psktool's "
				 "format; a key of at least 16 bytes, in hex)", c->psk_path, lineno);
			return -1;
		}
		*colon = 0;
		if (key && !key->data && (want ? !strcmp(line, want) : n == 0)) {
			gnutls_datum_t h = { (unsigned char *)hex, hl };

			if (!want)
				memcpy(c->identity, line, colon - line + 1);
			if (gnutls_hex_decode2(&h, key)) {
				snprintf(why, len, "--tls-psk %s: line %u: the key is not hex",
					 c->psk_path, lineno);
				return -1;
			}
		}
		n++;
	}
	if (!n) {
		snprintf(why, len, "--tls-psk %s: no key in it", c->psk_path);
		return -1;
	}
	return 0;
}

/*
 * The file's text, read whole from the descriptor opened once (pread: no
 * name is opened after the sandbox, and no offset is shared), into a buffer
 * of ours wiped before we return (the heap would keep the keys).
 */
static int read_psk_fd(struct tls_creds *c, int fd, const char *want, gnutls_datum_t *key,
		       char *why, size_t len)
{
	static __thread char text[PSK_FILE_MAX + 1];
	size_t have = 0;
	ssize_t k;
	int rc;

	while ((k = pread(fd, text + have, sizeof(text) - have, have)) > 0)
		have += k;
	if (k < 0) {
		snprintf(why, len, "--tls-psk %s: %s", c->psk_path, strerror(errno));
		rc = -1;
	} else if (have > PSK_FILE_MAX) {
		snprintf(why, len, "--tls-psk %s: more than %u KiB", c->psk_path, PSK_FILE_MAX >> 10);
		rc = -1;
	} else {
		text[have] = 0;
		rc = read_psk_lines(c, text, want, key, why, len);
	}
	explicit_bzero(text, have < sizeof(text) ? have + 1 : sizeof(text));
	return rc;
}

/* A decoded key, wiped before it is freed. */
static void drop_key(gnutls_datum_t *key)
{
	if (key->data) {
		gnutls_memset(key->data, 0, key->size);
		gnutls_free(key->data);
	}
	key->data = NULL;
	key->size = 0;
}

/*
 * The file opened at the start is still the one under its name: a key file
 * deleted, or replaced by rename, revokes its keys (fails closed: the new
 * file is read once sr-restore starts again), as it would were the file
 * opened at each handshake (audit8).
 */
static bool psk_file_current(const struct tls_creds *c)
{
	struct stat held, named;

	return !fstat(c->psk_fd, &held) && held.st_nlink > 0 && !stat(c->psk_path, &named) &&
	       held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

/*
 * The server's key for the identity a peer names, looked up in the file at
 * each handshake (as GnuTLS's own file lookup does, but through buffers
 * that are wiped); GnuTLS wipes and frees key once it is used.
 */
static int psk_lookup(gnutls_session_t s, const gnutls_datum_t *user, gnutls_datum_t *key)
{
	const struct tls_conn *t = gnutls_session_get_ptr(s);
	char name[256], why[200];
	struct tls_creds scratch = { .psk_path = t ? t->c->psk_path : NULL };

	if (!t || !user->size || user->size >= sizeof(name) || memchr(user->data, 0, user->size))
		return -1;
	memcpy(name, user->data, user->size);
	name[user->size] = 0;
	key->data = NULL;
	key->size = 0;
	if (!psk_file_current(t->c))
		return -1;
	if (read_psk_fd(&scratch, t->c->psk_fd, name, key, why, sizeof(why)) || !key->data) {
		drop_key(key);
		return -1;
	}
	return 0;
}

static int psk_creds(struct tls_creds *c, const char *path, char *why, size_t len)
{
	gnutls_datum_t key = { 0 };
	int rc;

	c->psk = true;
	if (!(c->psk_path = strdup(path))) {
		snprintf(why, len, "--tls-psk: %s", strerror(ENOMEM));
		return -1;
	}
	if ((c->psk_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
		snprintf(why, len, "--tls-psk %s: %s", path, strerror(errno));
		return -1;
	}
	if (c->server) {
		if (read_psk_fd(c, c->psk_fd, NULL, NULL, why, len))
			return -1;
		rc = gnutls_psk_allocate_server_credentials(&c->psk_srv);
		if (!rc)
			gnutls_psk_set_server_credentials_function2(c->psk_srv, psk_lookup);
	} else {
		rc = read_psk_fd(c, c->psk_fd, NULL, &key, why, len);
		close(c->psk_fd);
		c->psk_fd = -1;
		if (rc) {
			drop_key(&key);
			return -1;
		}
		rc = gnutls_psk_allocate_client_credentials(&c->psk_cli);
		if (!rc)
			rc = gnutls_psk_set_client_credentials(c->psk_cli, c->identity, &key,
							       GNUTLS_PSK_KEY_RAW);
		drop_key(&key);
	}
	if (rc) {
		fail(why, len, path, rc);
		return -1;
	}
	return 0;
}

/* QEMU's layout: DIR/ca-cert.pem, and DIR/{server,client}-{cert,key}.pem for our side. */
static int x509_creds(struct tls_creds *c, const char *dir, char *why, size_t len)
{
	const char *side = c->server ? "server" : "client";
	char ca[4200], cert[4200], key[4200];
	int rc;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, side);
	snprintf(key, sizeof(key), "%s/%s-key.pem", dir, side);
	rc = gnutls_certificate_allocate_credentials(&c->x509);
	if (rc) {
		fail(why, len, "certificate credentials", rc);
		return -1;
	}
	rc = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
	if (rc <= 0) {
		if (rc == 0)
			snprintf(why, len, "%s: no CA certificate in it", ca);
		else
			fail(why, len, ca, rc);
		return -1;
	}
	rc = gnutls_certificate_set_x509_key_file(c->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (rc < 0) {
		snprintf(why, len, "%s with %s: %s", cert, key, gnutls_strerror(rc));
		return -1;
	}
	return 0;
}

struct tls_creds *tls_creds_new(const struct tls_opts *o, char *why, size_t len)
{
	struct tls_creds *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		snprintf(why, len, "out of memory");
		return NULL;
	}
	c->server = o->server;
	c->psk_fd = -1;
	c->thread_start = o->thread_start;
	for (unsigned i = 0; i < o->nauthz && i < TLS_AUTHZ_MAX; i++) {
		c->authz[c->nauthz] = strdup(o->authz[i]);
		if (!c->authz[c->nauthz++]) {
			snprintf(why, len, "out of memory");
			tls_creds_free(c);
			return NULL;
		}
	}
	if (o->peer_host)
		snprintf(c->peer_host, sizeof(c->peer_host), "%s", o->peer_host);
	/*
	 * Before the first key byte is read: no core dump of this process, and
	 * no ptrace or /proc/PID/mem by another of the same user, can show a key
	 * (or what is left of one in a freed buffer) from here on.
	 */
	if ((o->psk_file || o->creds_dir) && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) {
		snprintf(why, len, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
		tls_creds_free(c);
		return NULL;
	}
	rc = o->psk_file ? psk_creds(c, o->psk_file, why, len) :
	     o->creds_dir ? x509_creds(c, o->creds_dir, why, len) : -1;
	if (rc) {
		if (!o->psk_file && !o->creds_dir)
			snprintf(why, len, "no TLS credentials given");
		tls_creds_free(c);
		return NULL;
	}
	return c;
}

void tls_creds_free(struct tls_creds *c)
{
	if (!c)
		return;
	if (c->psk_cli)
		gnutls_psk_free_client_credentials(c->psk_cli);
	if (c->psk_srv)
		gnutls_psk_free_server_credentials(c->psk_srv);
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	for (unsigned i = 0; i < c->nauthz; i++)
		free(c->authz[i]);
	free(c->psk_path);
	if (c->psk_fd >= 0)
		close(c->psk_fd);
	free(c);
}

/*
 * Whether name is on the allow-list (none: whoever authenticated is
 * allowed).  A host name matches the certificate's subjectAltName (or CN)
 * as GnuTLS checks it, but never through a wildcard: "*.test" is not a
 * name the operator allowed.
 */
static bool authz_has(const struct tls_creds *c, const char *name, gnutls_x509_crt_t crt)
{
	if (!c->nauthz)
		return true;
	for (unsigned i = 0; i < c->nauthz; i++) {
		if (!strcmp(c->authz[i], name))
			return true;
		if (crt && gnutls_x509_crt_check_hostname2(crt, c->authz[i],
							   GNUTLS_VERIFY_DO_NOT_ALLOW_WILDCARDS))
			return true;
	}
	return false;
}

/* After the handshake: who the peer is, and whether it may go on. */
static int check_peer(struct tls_conn *t, const struct tls_creds *c, char *why, size_t len)
{
	const gnutls_datum_t *certs;
	gnutls_x509_crt_t crt;
	gnutls_datum_t dn = { 0 };
	unsigned n = 0;
	bool ok;

	if (c->psk) {
		const char *id = c->server ? gnutls_psk_server_get_username(t->s) : c->identity;
		char esc[4 * 256 + 1];

		if (!id)
			id = "";
		snprintf(t->peer, sizeof(t->peer), "PSK identity %s",
			 str_escape(esc, sizeof(esc), id, 256));
		if (c->server && !authz_has(c, id, NULL)) {
			snprintf(why, len, "%s is not in --tls-authz", t->peer);
			return -1;
		}
		return 0;
	}
	certs = gnutls_certificate_get_peers(t->s, &n);
	if (!certs || !n || gnutls_x509_crt_init(&crt)) {
		snprintf(why, len, "the peer sent no certificate");
		return -1;
	}
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) ||
	    gnutls_x509_crt_get_dn3(crt, &dn, 0)) {
		gnutls_x509_crt_deinit(crt);
		snprintf(why, len, "the peer's certificate cannot be read");
		return -1;
	}
	/* The DN as it came compared; escaped for whoever prints it (the peer chose its bytes). */
	ok = strlen((char *)dn.data) == dn.size && authz_has(c, (char *)dn.data, crt);
	str_escape(t->peer, sizeof(t->peer), (char *)dn.data, dn.size);
	gnutls_free(dn.data);
	gnutls_x509_crt_deinit(crt);
	if (!ok) {
		snprintf(why, len, "certificate \"%s\" is not in --tls-authz", t->peer);
		return -1;
	}
	return 0;
}

/*
 * GNUTLS_NO_AUTO_REKEY: GnuTLS would send a TLS 1.3 KeyUpdate on its own
 * (after 2^24 records of one key).  A peer whose records the kernel carries
 * (kTLS, either side: SR_KTLS or a kernel without it can make the two sides
 * differ) cannot follow one: its kernel would take the next record under
 * the old key and fail the stream.  So neither side ever rekeys; TLS 1.3's
 * AES-GCM limits are far above one migration's records.
 */
static int new_session(struct tls_conn *t, const struct tls_creds *c, int fd, char *why,
		       size_t len)
{
	int rc = gnutls_init(&t->s, (c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_TICKETS |
			     GNUTLS_NO_AUTO_REKEY);

	if (rc) {
		fail(why, len, "gnutls_init", rc);
		return -1;
	}
	rc = gnutls_priority_set_direct(t->s, c->psk ? PRIO_PSK : PRIO_X509, NULL);
	if (!rc && c->psk)
		rc = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK,
					    c->server ? (void *)c->psk_srv : (void *)c->psk_cli);
	if (!rc && !c->psk)
		rc = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, c->x509);
	if (rc) {
		fail(why, len, "TLS session", rc);
		return -1;
	}
	if (!c->psk) {
		/* The peer's chain against the CA, in the handshake; a client also checks the host. */
		if (c->server)
			gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(t->s, !c->server && !c->nauthz && c->peer_host[0] ?
					       c->peer_host : NULL,
					       GNUTLS_VERIFY_DO_NOT_ALLOW_WILDCARDS);
	}
	gnutls_session_set_ptr(t->s, t);
	gnutls_transport_set_int(t->s, fd);
	return 0;
}

/* As far as the peer's bytes go: 1 done, 0 waiting for *events, -1 failed. */
static int handshake_step(struct tls_conn *t, short *events, char *why, size_t len)
{
	int rc = gnutls_handshake(t->s);

	if (rc == 0)
		return 1;
	if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED ||
	    (rc < 0 && !gnutls_error_is_fatal(rc))) {
		*events = gnutls_record_get_direction(t->s) ? POLLOUT : POLLIN;
		return 0;
	}
	if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		gnutls_datum_t out = { 0 };
		unsigned st = gnutls_session_get_verify_cert_status(t->s);

		gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &out, 0);
		snprintf(why, len, "TLS handshake: the peer's certificate: %s",
			 out.data ? (char *)out.data : "not verified");
		gnutls_free(out.data);
	} else {
		fail(why, len, "TLS handshake", rc);
	}
	return -1;
}

/* Sends all of buf as TLS records, corked into as few TCP sends as GnuTLS allows. */
static int send_all(gnutls_session_t s, const char *buf, size_t n)
{
	gnutls_record_cork(s);
	while (n) {
		ssize_t k = gnutls_record_send(s, buf, n);

		if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
			continue;
		if (k < 0)
			return -1;
		buf += k;
		n -= k;
	}
	for (;;) {
		int rc = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);

		if (rc >= 0)
			return 0;
		if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED)
			return -1;
	}
}

/*
 * All of buf into the pumps' end of the socket pair.  send, not write: the
 * pumps start on the listener's thread, whose seccomp list then needs no
 * write but stderr's (a socket call cannot reach a file).
 */
static int write_all(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t k = send(fd, buf, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		buf += k;
		n -= k;
	}
	return 0;
}

/* The stream's users to the peer.  Their EOF ends our half of the TCP connection. */
static void *pump_out(void *arg)
{
	struct tls_conn *t = arg;
	char *buf;

	if (t->thread_start)
		t->thread_start();
	buf = malloc(PUMP_BUF);
	for (;;) {
		ssize_t n = buf ? read(t->pump, buf, PUMP_BUF) : -1;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || send_all(t->s, buf, n)) {
			/* No close_notify: a kTLS reader would see an alert record as EIO. */
			shutdown(t->sock, n == 0 ? SHUT_WR : SHUT_RDWR);
			/*
			 * The connection broke: the users' writes fail (EPIPE), as they would
			 * on the socket itself, instead of waiting for ever on a socket pair
			 * nobody reads (bench-transport's sender hung when its receiver died).
			 */
			if (n != 0)
				shutdown(t->pump, SHUT_RD);
			break;
		}
	}
	free(buf);
	return NULL;
}

/* The most a TLS 1.3 record takes on the wire: header, 2^14 bytes, type, padding, tag. */
#define RECORD_WIRE_MAX	(5 + 16384 + 256)

/*
 * GnuTLS's pull once the stream runs (user-space TLS): the socket read
 * WIRE_BUF at a time.  GnuTLS's own asks for a record's header, then its
 * body: with record_ready's peek, three recv calls a 16 KiB record, each
 * dear under a paravirtual kernel (bench-transport: 50,321 recvfrom for
 * 256 MiB).  Only the receive pump calls it.  Not during the handshake:
 * bytes read ahead there would be lost to kTLS.
 *
 * The peer's FIN without a close_notify (a source that half-closes once its
 * stream is sent) is not shown to GnuTLS as the end: it would take it for a
 * truncation, a fatal error that invalidates the session for both
 * directions, and the answer the users then write would never be sent
 * (audit9).  GnuTLS is told "again"; the pump sees eof and ends the users'
 * stream, as it did.
 */
static ssize_t pull_ahead(gnutls_transport_ptr_t p, void *data, size_t n)
{
	struct tls_conn *t = p;
	size_t m;

	if (t->woff == t->wlen) {
		ssize_t k = t->eof ? 0 : recv(t->sock, t->wire, WIRE_BUF, 0);

		if (k == 0) {
			t->eof = true;
			errno = EAGAIN;
			return -1;
		}
		if (k < 0)
			return k;
		t->woff = 0;
		t->wlen = k;
	}
	m = t->wlen - t->woff < n ? t->wlen - t->woff : n;
	memcpy(data, t->wire + t->woff, m);
	t->woff += m;
	return m;
}

/*
 * Whether another record can be had without waiting: one GnuTLS has, or a
 * whole one read ahead or in the socket (GnuTLS takes a record's bytes and
 * no more, so a record's worth queued is at least the rest of the next
 * one).  The socket's share is counted by a peek that copies nothing
 * (TCP's MSG_TRUNC), a call the pumps' seccomp list has (recvfrom), where
 * FIONREAD's ioctl is not.
 */
static bool record_ready(const struct tls_conn *t)
{
	size_t ahead = t->wlen - t->woff;
	ssize_t k;

	if (gnutls_record_check_pending(t->s) || ahead >= RECORD_WIRE_MAX)
		return true;
	k = recv(t->sock, NULL, RECORD_WIRE_MAX, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
	return k > 0 && ahead + (size_t)k >= RECORD_WIRE_MAX;
}

/*
 * The peer to the stream's users: whole records, batched while another is
 * ready (record_ready), so the users are woken once per batch rather than
 * once per 16 KiB record (a socket-pair handoff, two context switches, per
 * record cost the receiver ~8x the cipher's CPU; bench-transport).  A
 * silent peer is the users' to judge (their idle timeout); the end of the
 * connection, clean or not, is their EOF.
 */
static void *pump_in(void *arg)
{
	struct tls_conn *t = arg;
	char *buf;

	if (t->thread_start)
		t->thread_start();
	buf = malloc(PUMP_BUF);
	while (buf) {
		size_t have = 0;
		ssize_t k;

		for (;;) {
			k = gnutls_record_recv(t->s, buf + have, PUMP_BUF - have);
			if (k > 0) {
				have += k;
				if (PUMP_BUF - have >= 16384 && record_ready(t))
					continue;
			} else if ((k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED) && !have &&
				   !t->eof) {
				continue;
			}
			break;
		}
		if (have && write_all(t->pump, buf, have))
			break;
		atomic_fetch_add_explicit(&t->bytes_in, have, memory_order_relaxed);
		if (k == 0 || t->eof || (k < 0 && k != GNUTLS_E_AGAIN && k != GNUTLS_E_INTERRUPTED))
			break;
	}
	shutdown(t->pump, SHUT_WR);
	free(buf);
	return NULL;
}

/* The users' end carries the socket's idle timeout (SO_RCVTIMEO), as the socket would. */
static int start_pumps(struct tls_conn *t, char *why, size_t len)
{
	struct timeval tv;
	socklen_t tl = sizeof(tv);
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		snprintf(why, len, "socketpair: %s", strerror(errno));
		return -1;
	}
	if (!getsockopt(t->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, &tl))
		setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	t->plain = sv[0];
	t->pump = sv[1];
	t->wire = malloc(WIRE_BUF);
	if (!t->wire) {
		snprintf(why, len, "out of memory");
		return -1;
	}
	/* Receives through pull_ahead; sends as before, straight to the socket. */
	gnutls_transport_set_ptr2(t->s, t, (gnutls_transport_ptr_t)(intptr_t)t->sock);
	gnutls_transport_set_pull_function(t->s, pull_ahead);
	if (pthread_create(&t->out, NULL, pump_out, t)) {
		snprintf(why, len, "starting the TLS threads failed");
		return -1;
	}
	if (pthread_create(&t->in, NULL, pump_in, t)) {
		shutdown(t->pump, SHUT_RDWR);
		pthread_join(t->out, NULL);
		snprintf(why, len, "starting the TLS threads failed");
		return -1;
	}
	return 0;
}

/*
 * Kernel TLS.  Debian builds GnuTLS without its kTLS code (Debian bug
 * 1034350), so the record keys GnuTLS exports (gnutls_record_get_state) are
 * handed to the kernel here, as GnuTLS's own lib/system/ktls.c does: the
 * "tls" ULP on the socket, then one direction's cipher state each.
 * Returns 0 (the kernel carries both directions), or -1 with nothing
 * changed on the socket's data path.
 */
union ktls_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

#define KTLS_FILL(ci, type, iv_off, d_iv, d_key, seq)					\
	do {										\
		(ci).info.version = TLS_1_3_VERSION;					\
		(ci).info.cipher_type = (type);						\
		memcpy((ci).iv, (d_iv).data + (iv_off), sizeof((ci).iv));		\
		memcpy((ci).key, (d_key).data, sizeof((ci).key));			\
		memcpy((ci).rec_seq, (seq), sizeof((ci).rec_seq));			\
	} while (0)

/* One direction's state (read: the peer's records) as the kernel takes it; its size, or 0. */
static socklen_t ktls_state(gnutls_session_t s, bool read, union ktls_info *ki)
{
	gnutls_datum_t mac, iv, key;
	unsigned char seq[8];

	memset(ki, 0, sizeof(*ki));
	if (gnutls_record_get_state(s, read, &mac, &iv, &key, seq) || iv.size != 12)
		return 0;
	switch (gnutls_cipher_get(s)) {
	case GNUTLS_CIPHER_AES_128_GCM:
		if (key.size != sizeof(ki->gcm128.key))
			return 0;
		/* TLS 1.3's 12-byte IV: the first 4 bytes are the kernel's salt. */
		memcpy(ki->gcm128.salt, iv.data, sizeof(ki->gcm128.salt));
		KTLS_FILL(ki->gcm128, TLS_CIPHER_AES_GCM_128, 4, iv, key, seq);
		return sizeof(ki->gcm128);
	case GNUTLS_CIPHER_AES_256_GCM:
		if (key.size != sizeof(ki->gcm256.key))
			return 0;
		memcpy(ki->gcm256.salt, iv.data, sizeof(ki->gcm256.salt));
		KTLS_FILL(ki->gcm256, TLS_CIPHER_AES_GCM_256, 4, iv, key, seq);
		return sizeof(ki->gcm256);
	case GNUTLS_CIPHER_CHACHA20_POLY1305:
		if (key.size != sizeof(ki->chacha.key))
			return 0;
		KTLS_FILL(ki->chacha, TLS_CIPHER_CHACHA20_POLY1305, 0, iv, key, seq);
		return sizeof(ki->chacha);
	default:
		return 0;
	}
}

/*
 * Probed per connection: a kernel without CONFIG_TLS refuses the ULP
 * (ENOENT).  The receive side goes first: if the kernel refuses it, the
 * socket still carries GnuTLS's records untouched.  SR_KTLS=off keeps
 * TLS in user space.
 */
static int ktls_enable(struct tls_conn *t, char *why, size_t len)
{
	union ktls_info rx, tx;
	socklen_t rl = ktls_state(t->s, true, &rx), tl = ktls_state(t->s, false, &tx);
	const char *env = getenv("SR_KTLS");
	int rc = -1;

	if (env && !strcmp(env, "off"))
		snprintf(t->why_user, sizeof(t->why_user), "SR_KTLS=off");
	else if (!rl || !tl || gnutls_protocol_get_version(t->s) != GNUTLS_TLS1_3)
		snprintf(t->why_user, sizeof(t->why_user), "kTLS lacks the cipher");
	else if (gnutls_record_check_pending(t->s))
		snprintf(t->why_user, sizeof(t->why_user), "data already buffered");
	else if (setsockopt(t->sock, SOL_TCP, TCP_ULP, "tls", sizeof("tls")))
		snprintf(t->why_user, sizeof(t->why_user), "no kTLS in this kernel: %s",
			 strerror(errno));
	else if (setsockopt(t->sock, SOL_TLS, TLS_RX, &rx, rl))
		snprintf(t->why_user, sizeof(t->why_user), "kTLS refused the receive side: %s",
			 strerror(errno));
	else if (setsockopt(t->sock, SOL_TLS, TLS_TX, &tx, tl))
		/* Half in the kernel: neither GnuTLS nor the kernel can carry the stream now. */
		snprintf(why, len, "kTLS took the receive side but refused the send side: %s",
			 strerror(errno));
	else
		rc = 0;
	if (rc == 0) {
		/*
		 * TLS 1.3 hides a record's type after padding, so the kernel decrypts
		 * into a buffer of its own and copies, unless told the peer does not
		 * pad (GnuTLS does not): then it decrypts straight into the reader's
		 * buffer.  A padded record is decrypted again the slow way, so this
		 * costs nothing when wrong; a kernel before 6.0 lacks it.
		 */
		int one = 1;

		setsockopt(t->sock, SOL_TLS, TLS_RX_EXPECT_NO_PAD, &one, sizeof(one));
	}
	gnutls_memset(&rx, 0, sizeof(rx));
	gnutls_memset(&tx, 0, sizeof(tx));
	return rc;
}

static void describe(struct tls_conn *t)
{
	const char *proto = gnutls_protocol_get_name(gnutls_protocol_get_version(t->s));
	const char *cipher = gnutls_cipher_get_name(gnutls_cipher_get(t->s));

	if (t->ktls)
		snprintf(t->desc, sizeof(t->desc), "%s %s, kernel TLS (kTLS)", proto, cipher);
	else
		snprintf(t->desc, sizeof(t->desc), "%s %s, user-space TLS (GnuTLS; %s)", proto,
			 cipher, t->why_user);
}

void tls_abort(struct tls_conn *t)
{
	if (!t)
		return;
	if (t->s)
		gnutls_deinit(t->s);
	if (t->plain >= 0 && t->plain != t->sock) {
		close(t->plain);
		close(t->pump);
	}
	fcntl(t->sock, F_SETFL, fcntl(t->sock, F_GETFL) & ~O_NONBLOCK);
	free(t->wire);
	free(t);
}

struct tls_conn *tls_begin(struct tls_creds *c, int fd, char *why, size_t len)
{
	struct tls_conn *t = calloc(1, sizeof(*t));
	int fl = fcntl(fd, F_GETFL);

	if (!t) {
		snprintf(why, len, "out of memory");
		return NULL;
	}
	t->c = c;
	t->sock = fd;
	t->plain = t->pump = -1;
	t->thread_start = c->thread_start;
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK)) {
		snprintf(why, len, "fcntl: %s", strerror(errno));
		free(t);
		return NULL;
	}
	if (new_session(t, c, fd, why, len)) {
		tls_abort(t);
		return NULL;
	}
	return t;
}

/* Authenticated: the peer checked, the socket blocking again, the stream set up. */
static int finish(struct tls_conn *t, char *why, size_t len)
{
	if (check_peer(t, t->c, why, len)) {
		gnutls_alert_send(t->s, GNUTLS_AL_FATAL, GNUTLS_A_ACCESS_DENIED);
		return -1;
	}
	if (fcntl(t->sock, F_SETFL, fcntl(t->sock, F_GETFL) & ~O_NONBLOCK)) {
		snprintf(why, len, "fcntl: %s", strerror(errno));
		return -1;
	}
	/* kTLS both ways: the kernel carries the records, the socket itself is the stream. */
	why[0] = 0;
	t->ktls = ktls_enable(t, why, len) == 0;
	if (why[0])
		return -1;
	describe(t);
	if (t->ktls) {
		t->plain = t->sock;
		return 0;
	}
	return start_pumps(t, why, len);
}

int tls_step(struct tls_conn *t, short *events, char *why, size_t len)
{
	int rc = handshake_step(t, events, why, len);

	if (rc <= 0)
		return rc;
	return finish(t, why, len) ? -1 : 1;
}

struct tls_conn *tls_start(struct tls_creds *c, int fd, int timeout_ms, char *why, size_t len)
{
	uint64_t deadline = timeout_ms > 0 ? mono_ns() + timeout_ms * 1000000ull : 0;
	struct tls_conn *t = tls_begin(c, fd, why, len);
	int rc = t ? 0 : -1;

	while (rc == 0) {
		struct pollfd p = { .fd = fd };

		rc = tls_step(t, &p.events, why, len);
		if (rc == 0 && poll_until(&p, deadline) <= 0) {
			snprintf(why, len, "TLS handshake: no answer within %d s", timeout_ms / 1000);
			rc = -1;
		}
	}
	if (rc < 0) {
		tls_abort(t);
		return NULL;
	}
	return t;
}

bool tls_key_proved(const struct tls_conn *t)
{
	gnutls_handshake_description_t out;

	if (!t || !t->s || !t->c->psk || !t->c->server || !gnutls_psk_server_get_username(t->s))
		return false;
	out = gnutls_handshake_get_last_out(t->s);
	return out == GNUTLS_HANDSHAKE_SERVER_HELLO || out == GNUTLS_HANDSHAKE_ENCRYPTED_EXTENSIONS ||
	       out == GNUTLS_HANDSHAKE_FINISHED;
}

bool tls_hello_parsed(const struct tls_conn *t)
{
	/* The last message in is HELLO_REQUEST (0) until a whole one arrives. */
	return t && t->s && t->c->server &&
	       gnutls_handshake_get_last_in(t->s) != GNUTLS_HANDSHAKE_HELLO_REQUEST;
}

int tls_plain_fd(const struct tls_conn *t)
{
	return t->plain;
}

int tls_socket_fd(const struct tls_conn *t)
{
	return t->sock;
}

const char *tls_describe(const struct tls_conn *t)
{
	return t->desc;
}

bool tls_is_ktls(const struct tls_conn *t)
{
	return t->ktls;
}

const char *tls_peer_name(const struct tls_conn *t)
{
	return t->peer;
}

uint64_t tls_bytes_in(const struct tls_conn *t)
{
	return atomic_load_explicit(&t->bytes_in, memory_order_relaxed);
}

/*
 * What the users wrote goes out first (the outgoing pump sees their EOF,
 * however many processes hold the descriptor); then the connection goes.
 */
void tls_end(struct tls_conn *t)
{
	if (!t)
		return;
	if (t->pump >= 0) {
		shutdown(t->plain, SHUT_WR);
		pthread_join(t->out, NULL);
		shutdown(t->sock, SHUT_RDWR);
		shutdown(t->pump, SHUT_RDWR);
		pthread_join(t->in, NULL);
		close(t->pump);
		close(t->plain);
	}
	gnutls_deinit(t->s);
	close(t->sock);
	free(t->wire);
	free(t);
}
