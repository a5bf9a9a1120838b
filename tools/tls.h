/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 for migration streams, through GnuTLS (QEMU's library): mutual
 * authentication by a pre-shared key (psktool's keys.psk, "identity:hexkey"
 * a line) or by X.509 certificates in QEMU's layout (DIR/ca-cert.pem,
 * server-cert.pem + server-key.pem, client-cert.pem + client-key.pem), the
 * peer verified against the CA and, given an allow-list, its name.
 *
 * The stream's users (sr-restore's reader, the runner that writes a save)
 * read and write a plain file descriptor.  When the kernel carries the
 * record layer both ways (kTLS) that is the TCP socket itself; otherwise
 * it is one end of a socket pair that two threads pump through GnuTLS, one
 * a direction (GnuTLS allows one sender and one receiver at once).
 * Errors come back as text; nothing here prints or exits.
 */
#ifndef SR_TLS_H
#define SR_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_AUTHZ_MAX	16

struct tls_opts {
	const char *psk_file;		/* --tls-psk FILE, or NULL */
	const char *creds_dir;		/* --tls-creds DIR, or NULL */
	/*
	 * --tls-authz, one name a time: a DN taken whole (DNs have commas), a
	 * host name, a PSK identity.  None: any peer the CA signed.
	 */
	const char *authz[TLS_AUTHZ_MAX];
	unsigned nauthz;
	const char *peer_host;		/* client, X.509, no authz: the name the server's cert must bear */
	bool server;
	void (*thread_start)(void);	/* optional: first on each pump thread (a sandbox) */
};

/* Adds one --tls-authz name; -1 (why said) when it is empty or has a '*', or the list is full. */
int tls_opts_authz(struct tls_opts *o, const char *name, char *why, size_t len);

struct tls_creds;
struct tls_conn;

/* Loads the credentials (files read now, so a bad path fails before any connection). */
struct tls_creds *tls_creds_new(const struct tls_opts *o, char *why, size_t len);
void tls_creds_free(struct tls_creds *c);

/*
 * The TLS 1.3 handshake on connected socket fd, authentication included,
 * within timeout_ms.  On success the connection owns fd.  On failure fd is
 * left to the caller and why says what failed, without secrets.
 */
struct tls_conn *tls_start(struct tls_creds *c, int fd, int timeout_ms, char *why, size_t len);

/*
 * The same handshake without blocking, for a listener that handshakes
 * several peers at once: tls_begin makes fd non-blocking; each tls_step
 * goes as far as the peer's bytes allow.  tls_step returns 1 once the peer
 * has authenticated (fd blocking again, the stream ready as after
 * tls_start), 0 while it waits for *events on fd, -1 on failure (why).
 * tls_abort drops a connection that did not finish (fd stays the caller's).
 */
struct tls_conn *tls_begin(struct tls_creds *c, int fd, char *why, size_t len);
int tls_step(struct tls_conn *t, short *events, char *why, size_t len);
void tls_abort(struct tls_conn *t);

/*
 * A receiver with --tls-psk, mid-handshake: the peer has shown it holds a
 * key.  TLS 1.3's ClientHello carries a binder, an HMAC under the PSK over
 * the hello, which GnuTLS checks before it answers: a wrong key or unknown
 * identity fails there with nothing sent, and a ServerHello (not a
 * HelloRetryRequest, sent before any check) goes out only with the
 * identity's binder verified.  So: an identity selected and the last
 * message sent past ServerHello.  (A ClientHello recorded on the path and
 * replayed passes too; its sender cannot finish.)  X.509: always false, the
 * client proves itself only in its last flight.
 */
bool tls_key_proved(const struct tls_conn *t);
/* A server's peer: its whole ClientHello has been parsed (it may still fail). */
bool tls_hello_parsed(const struct tls_conn *t);

/* The descriptor the stream is read and written through (owned by conn). */
int tls_plain_fd(const struct tls_conn *t);

/* The TCP socket underneath (for shutdown, TCP_INFO). */
int tls_socket_fd(const struct tls_conn *t);

/* "TLS1.3 AES-128-GCM, kernel TLS (kTLS)" or "... user-space TLS (GnuTLS)". */
const char *tls_describe(const struct tls_conn *t);
bool tls_is_ktls(const struct tls_conn *t);

/* Who the peer authenticated as: its PSK identity or its certificate's DN, escaped for a terminal. */
const char *tls_peer_name(const struct tls_conn *t);

/*
 * User-space TLS: the payload bytes handed to the stream's users so far
 * (the guard's count of what the peer delivered).  kTLS: 0, not counted.
 */
uint64_t tls_bytes_in(const struct tls_conn *t);

/* Ends the connection: the pumps are stopped, every descriptor closed. */
void tls_end(struct tls_conn *t);

#endif
