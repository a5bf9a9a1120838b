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

struct tls_opts {
	const char *psk_file;		/* --tls-psk FILE, or NULL */
	const char *creds_dir;		/* --tls-creds DIR, or NULL */
	const char *authz;		/* --tls-authz NAME[,NAME...], or NULL: any the CA signed */
	const char *peer_host;		/* client, X.509, no authz: the name the server's cert must bear */
	bool server;
	void (*thread_start)(void);	/* optional: first on each pump thread (a sandbox) */
};

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

/* The descriptor the stream is read and written through (owned by conn). */
int tls_plain_fd(const struct tls_conn *t);

/* The TCP socket underneath (for shutdown, TCP_INFO). */
int tls_socket_fd(const struct tls_conn *t);

/* "TLS1.3 AES-128-GCM, kernel TLS (kTLS)" or "... user-space TLS (GnuTLS)". */
const char *tls_describe(const struct tls_conn *t);
bool tls_is_ktls(const struct tls_conn *t);

/* Who the peer authenticated as: its PSK identity or its certificate's DN. */
const char *tls_peer_name(const struct tls_conn *t);

/* Ends the connection: the pumps are stopped, every descriptor closed. */
void tls_end(struct tls_conn *t);

#endif
