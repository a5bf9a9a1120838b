/* SPDX-License-Identifier: MIT */
/*
 * The migration handshake, after Xen's xl migrate.  One connection carries
 * the image from the source, then one line at a time each way:
 *
 *   receiver: "ready"    END verified, the VM built, paused
 *             "error TEXT"  anything failed before that (and it exits, no VM)
 *   source:   "go"       its domain is paused and not ended: run yours
 *   receiver: "running"  resumed; only now does the source end its domain
 *
 * Before "ready" the source resumes on any failure; a receiver that hears
 * no "go" discards its VM; a source that sent "go" and hears no "running"
 * keeps its domain paused and says the outcome is unknown.
 */
#ifndef SR_MIGRATE_H
#define SR_MIGRATE_H

#include <stddef.h>

#define MIG_READY	"ready"
#define MIG_GO		"go"
#define MIG_RUNNING	"running"
#define MIG_ERROR	"error"

/* How long each side waits for the other's next line. */
#define MIG_READY_TIMEOUT_MS	25000	/* under the runner's 30 s commit window */
#define MIG_GO_TIMEOUT_MS	30000
#define MIG_RUNNING_TIMEOUT_MS	30000

/* Sends "word" or "word detail" as one line; returns 0 or -1 (errno). */
int mig_send(int fd, const char *word, const char *detail);

/*
 * Reads one line (without its newline) within timeout_ms, never a byte
 * past it.  Returns 1 with line filled, 0 when the peer closed, -1 on a
 * timeout or an error (why says which).
 */
int mig_recv(int fd, char *line, size_t len, int timeout_ms, char *why, size_t wlen);

#endif
