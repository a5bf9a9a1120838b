/* SPDX-License-Identifier: MIT */
/* Client side of a domain's control socket (sr-ctl, sr-save). */
#ifndef SR_CTL_H
#define SR_CTL_H

#include <stddef.h>

/* Where control sockets live: $SR_RUN_DIR, else /run/sr. */
const char *ctl_dir(void);

/*
 * Sends one request (with send_fd passed along when >= 0) to domain name and
 * reads the reply.  Lines starting with "progress " or "round " (live-save
 * round statistics) are handed whole to on_progress (when set) as they
 * arrive.  The final line goes into reply without its "ok "/"error "
 * prefix.  Returns 0 for "ok", 1 for "error", -1 when the domain could not
 * be reached (reply then says why).
 *
 * Two-phase save: a "prepared ..." line means the image is complete and the
 * domain waits, paused, for the client's decision: on_prepared (which must
 * be set for a request that asks for it) returns 0 to answer "commit" or -1
 * to answer "abort"; then the final line is read as above.
 */
struct ctl_hooks {
	void (*on_progress)(const char *line, void *arg);
	int (*on_prepared)(const char *line, void *arg);
	void *arg;
};

int ctl_request(const char *name, const char *request, int send_fd,
		const struct ctl_hooks *hooks, char *reply, size_t len);

#endif
