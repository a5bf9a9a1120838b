/* SPDX-License-Identifier: MIT */
/* Client side of a domain's control socket (sr-ctl, sr-save). */
#ifndef SR_CTL_H
#define SR_CTL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The control protocol's version (docs/control.md): the "version" request
 * and every status reply carry it.  Requests and reply keys are only ever
 * added under one number; a change an old client would misread bumps it.
 */
#define CTL_PROTOCOL	1

/*
 * Where control sockets live: $SR_RUN_DIR; else $XDG_RUNTIME_DIR/sr for a
 * user other than root (a directory of the user's own); else /run/sr.
 */
const char *ctl_dir(void);

/*
 * Sends request to domain name and reads only its first reply line, byte by
 * byte (nothing past it is taken): for requests after whose "ok" the
 * connection carries something else (the console's raw bytes).  Returns the
 * connection, or -1 with reply saying why: the domain's "error ..." reason,
 * or why it could not be reached (*refused then tells the two apart:
 * false when the domain is not there at all).
 */
int ctl_open(const char *name, const char *request, char *reply, size_t len, bool *refused);

/*
 * Sends one request (with send_fd passed along when >= 0) to domain name and
 * reads the reply.  Lines starting with "progress ", "round " (live-save
 * round statistics) or "stats " (a save's numbers) are handed whole to
 * on_progress (when set) as they arrive; other lines that are neither "ok"
 * nor "error" are skipped.  The final line goes into reply without its
 * "ok "/"error " prefix.  Returns 0 for "ok", 1 for "error", -1 when the domain could not
 * be reached (reply then says why).
 *
 * Two-phase save: a "prepared ..." line means the image is complete and the
 * domain waits, paused, for the client's decision: on_prepared (which must
 * be set for a request that asks for it) returns 0 to answer "commit", -1
 * to answer "abort" (the domain resumes) or 1 to answer "hold" (it stays
 * paused: a migration whose outcome is unknown); then the final line is
 * read as above.
 */
struct ctl_hooks {
	void (*on_progress)(const char *line, void *arg);
	int (*on_prepared)(const char *line, void *arg);
	void *arg;
	int fd;				/* the request's connection, set by ctl_request */
	char unread[1024];		/* a final line ctl_pending read instead of "held" */
};

/*
 * From on_prepared, before the decision: asks the domain to hold it ("pending")
 * and waits for its acknowledgement ("held").  Once held, nothing but this
 * client's own word can end the wait: no cancel, no stall timer, no lost
 * client resumes the domain (it stays paused).  A migration asks before it
 * tells the receiver "go" and sends "go" only once held.  Returns 0 when
 * held, -1 when not (the save was cancelled or the domain went away: the
 * runner's final answer, if it gave one, is what ctl_request returns).
 */
#define CTL_PENDING_TIMEOUT_MS	10000
int ctl_pending(struct ctl_hooks *hooks);

int ctl_request(const char *name, const char *request, int send_fd,
		struct ctl_hooks *hooks, char *reply, size_t len);

/*
 * A deadline for every read and write of the requests that follow (ms; 0,
 * the default: none): sr-ctl list is not held up by a runner that does not
 * answer.  A request past it returns -1, reply saying so.
 */
void ctl_set_timeout(int ms);

/*
 * A save request, as sr-save sends it and the runner reads it: one typed
 * struct, one encoder and one parser, so both ends agree on every field and
 * a key either end does not know is refused.
 */
/* An image path for --disk-snapshot: its snapshots, PATH.diskN, fit a DISK record's 4095 bytes. */
#define SAVE_SNAP_PATH_MAX	4088
/* The longest save request line (the path in hex, and the rest). */
#define SAVE_REQ_MAX		(2 * SAVE_SNAP_PATH_MAX + 512)

struct save_req {
	bool checkpoint, paused, live, two_phase;
	char dirty_track[8];		/* auto, bitmap, clear, ring */
	char throttle[8];		/* auto, off */
	char compress[8];		/* lz4, none */
	unsigned downtime_ms, max_iters, max_bytes_factor;	/* 0: the defaults */
	unsigned stall_timeout_s;	/* no output progress for this long cancels; 0: 30 */
	int threads;			/* encoding workers, 0..64; -1: the online CPUs */
	unsigned bandwidth_mbs;		/* MB/s the stream may take; 0: no cap */
	char disk_hash[8];		/* sample, full: the DISK records' identity hash */
	/*
	 * --disk-snapshot: the image's absolute path (disk N's snapshot is
	 * PATH.diskN beside it); "" for none.  Hex in the request, so any
	 * file name travels as one token.
	 */
	char disk_snapshot[SAVE_SNAP_PATH_MAX + 1];
};


#define SAVE_STALL_DEFAULT_S	30

/* Defaults: cold, lz4, auto tracking and throttle, two-phase. */
void save_req_init(struct save_req *q);
/* "save key=value ..." into buf; returns -1 when it does not fit. */
int save_req_format(const struct save_req *q, char *buf, size_t len);
/* Parses what follows "save"; -1 with why filled for an unknown key or a bad value. */
int save_req_parse(const char *text, struct save_req *q, char *why, size_t len);

#endif
