/* SPDX-License-Identifier: MIT */
/*
 * --detach (sr-run, sr-restore) and --migrate-receive: the domain runs in a
 * child of its own session, its console in a log; the parent returns once
 * the domain runs (0) or with the child's status when it fails first, its
 * error already on the parent's stderr.
 */
#ifndef SR_TOOLS_DETACH_H
#define SR_TOOLS_DETACH_H

/* Points fd at path (opened with flags, 0600), or returns -1 and leaves fd alone. */
int fd_reopen(int fd, const char *path, int flags);

/*
 * Forks: returns in the child (a new session); the parent waits for
 * detach_finish() or the child's end and exits.  Before any thread exists.
 * waiting, if not NULL, runs in the parent first (sr-restore's sandbox:
 * from there on, a byte and a status).
 */
void detach_begin(void (*waiting)(void));

/*
 * In the child once the domain runs: stdin from /dev/null, stdout and
 * stderr to log (appended), and the parent told to return.
 */
void detach_finish(const char *log);

/* $SR_RUN_DIR/NAME.log into buf (the default log); buf. */
const char *detach_log_path(char *buf, size_t len, const char *name);

#endif
