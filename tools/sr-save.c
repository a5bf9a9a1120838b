/* SPDX-License-Identifier: MIT */
/*
 * sr-save: save a running domain to an image.
 *
 * The domain's runner writes the image into a file descriptor we pass it
 * over its control socket: an unnamed O_TMPFILE in FILE's directory (or
 * FILE.tmp where the filesystem has no O_TMPFILE).  Two-phase commit: when
 * the image is complete and fsynced the runner says "prepared" and waits,
 * the domain paused; we put FILE in place (linkat or rename), fsync the
 * directory with signals blocked, and only then answer "commit", after
 * which the runner ends, resumes or keeps the domain paused.  Whatever fails
 * before that, the domain goes on as before and FILE is not there.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"

static char tmp_path[4096];		/* FILE.tmp, when O_TMPFILE is not to be had */

static void usage(FILE *f)
{
	fprintf(f,
"usage: sr-save [OPTIONS] DOMAIN FILE|-\n"
"Save a running domain to FILE (or to standard output with \"-\").\n"
"\n"
"  -l, --live              live save: copy memory while the guest runs, re-send\n"
"                          what it dirties, pause only for the last remainder\n"
"      --dirty-track MODE  auto (default), bitmap (KVM_GET_DIRTY_LOG), clear\n"
"                          (KVM_CLEAR_DIRTY_LOG, each chunk re-armed just before\n"
"                          it is copied) or ring (per-vCPU dirty rings; the domain\n"
"                          must run with --dirty-ring); auto takes ring, then clear,\n"
"                          then bitmap, as the domain and kernel allow\n"
"      --downtime-ms N     stop pre-copy once the rest fits N ms (default 50)\n"
"      --max-iters N       at most N pre-copy rounds (default 30)\n"
"      --max-bytes-factor N  stop pre-copy once N x RAM is written, mid-round\n"
"                          if need be (default 3)\n"
"      --throttle MODE     auto (default): when the guest dirties memory faster\n"
"                          than it is sent, keep its vCPUs out of the guest for\n"
"                          a growing share of each period (20%%, then +10 or\n"
"                          more a round, up to 99%%; with --dirty-track=ring only\n"
"                          the vCPUs that dirty); off: never slow the guest\n"
"      --stats             print a table of the rounds and the downtime\n"
"      --stall-timeout S   cancel the save (the domain resumes) when no output\n"
"                          progress is made for S seconds (default 30)\n"
"  -c, --checkpoint        keep the domain running after the save\n"
"  -p, --paused            leave the domain paused after the save\n"
"      --compress MODE     lz4 (default) or none; zero pages are never written\n"
"  -q, --quiet             no progress line and no summary\n"
"  -h, --help\n"
"\n"
"By default the domain exits once its image is safely on disk.  The image is\n"
"written to FILE.tmp, fsynced and renamed; on any failure (disk full, I/O\n"
"error, a signal, the reader of \"-\" going away) the domain resumes as it was\n"
"and nothing is left at FILE.\n"
"\n"
"Exit status: 0 saved, 1 the save failed (the domain runs on), 2 usage error or\n"
"no such domain.\n");
}

static unsigned long parse_ulong(const char *opt, const char *s, unsigned long min,
				 unsigned long max)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*end || end == s || v < min || v > max)
		die(EXIT_USAGE, "%s: \"%s\" is not a number in %lu..%lu", opt, s, min, max);
	return v;
}

static void on_signal(int sig)
{
	/* The runner sees us go and abandons the save; an O_TMPFILE vanishes by itself. */
	if (tmp_path[0])
		unlink(tmp_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

struct progress {
	bool tty, stats, shown;
	struct timespec t0;
};

static void show_round(struct progress *p, const char *line)
{
	unsigned it, final, throttle;
	unsigned long long sent, dirtied, bytes, ns;

	if (sscanf(line, "round iteration=%u final=%u sent=%llu dirtied=%llu bytes=%llu ns=%llu "
		   "throttle=%u", &it, &final, &sent, &dirtied, &bytes, &ns, &throttle) != 7)
		return;
	if (p->shown)
		fputc('\n', stderr);
	p->shown = false;
	if (!p->stats)
		return;
	if (it == 0)
		fprintf(stderr, "%6s %12s %14s %10s %10s %12s %9s\n", "round", "pages sent",
			"pages dirtied", "MB/s", "ms", "bytes", "throttle");
	fprintf(stderr, "%6u %12llu %14llu %10.1f %10.1f %12llu %8u%%%s\n", it, sent, dirtied,
		ns ? bytes / (ns / 1e9) / 1e6 : 0, ns / 1e6, bytes, throttle,
		final ? "  (paused: stop and copy)" : "");
}

static void show_progress(const char *line, void *arg)
{
	struct progress *p = arg;
	unsigned long long done = 0, total = 0, bytes = 0;
	struct timespec now;
	double s;

	if (!strncmp(line, "round ", 6)) {
		show_round(p, line);
		return;
	}
	if (!p->tty || sscanf(line, "progress pages=%llu total=%llu bytes=%llu", &done, &total,
			      &bytes) != 3)
		return;
	p->shown = true;
	clock_gettime(CLOCK_MONOTONIC, &now);
	s = now.tv_sec - p->t0.tv_sec + (now.tv_nsec - p->t0.tv_nsec) / 1e9;
	fprintf(stderr, "\r%s: %llu/%llu pages, %.1f MiB written, %.1f MB/s   ", sr_prog, done,
		total, bytes / 1048576.0, s > 0 ? bytes / s / 1e6 : 0);
}

/* Where the image goes and how it gets its name at commit. */
struct target {
	const char *path;
	int fd;
	bool unnamed;			/* O_TMPFILE: linked into place at commit */
	bool placed;			/* FILE now names the image */
	char err[600];
};

static int open_target(struct target *t)
{
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s", t->path);
	t->fd = open(dirname(dir), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (t->fd >= 0) {
		t->unnamed = true;
		return 0;
	}
	/* No O_TMPFILE here (9p, older filesystems): a named temporary. */
	snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", t->path);
	t->fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (t->fd < 0) {
		int e = errno;

		tmp_path[0] = 0;
		errno = e;
		return -1;
	}
	return 0;
}

/* Gives the complete image its name: FILE appears whole or not at all. */
static int place_target(struct target *t)
{
	char proc[64], side[4200], dir[4096];
	int dfd;

	if (t->unnamed) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", t->fd);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, t->path, AT_SYMLINK_FOLLOW)) {
			if (errno != EEXIST)
				goto fail;
			/* Replacing an older image: link beside it, then rename over it. */
			snprintf(side, sizeof(side), "%s.sr-save-%d", t->path, (int)getpid());
			if (linkat(AT_FDCWD, proc, AT_FDCWD, side, AT_SYMLINK_FOLLOW))
				goto fail;
			if (rename(side, t->path)) {
				int e = errno;

				unlink(side);
				errno = e;
				goto fail;
			}
		}
	} else if (rename(tmp_path, t->path)) {
		goto fail;
	}
	tmp_path[0] = 0;
	t->placed = true;
	snprintf(dir, sizeof(dir), "%s", t->path);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd)) {
		snprintf(t->err, sizeof(t->err), "fsync of %s's directory: %s", t->path,
			 strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	close(dfd);
	return 0;
fail:
	snprintf(t->err, sizeof(t->err), "putting the image in place as %s: %s", t->path,
		 strerror(errno));
	return -1;
}

static void set_signals(void (*h)(int))
{
	signal(SIGINT, h);
	signal(SIGTERM, h);
	signal(SIGHUP, h);
}

static void block_signals(bool block)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

struct save_ctx {
	struct progress *prog;
	struct target *t;
	bool to_stdout;
};

/*
 * "prepared": the image is complete, the domain waits paused.  Signals stay
 * blocked from here to the end of the request: a ^C can no longer split
 * "FILE is there" from "the domain knows it is".
 */
static int on_prepared(const char *line, void *arg)
{
	struct save_ctx *c = arg;

	(void)line;
	block_signals(true);
	if (c->prog->shown)
		fputc('\n', stderr);
	c->prog->shown = false;
	if (c->to_stdout)
		return 0;	/* every byte went to stdout: that is all "committed" can mean */
	if (place_target(c->t))
		return -1;
	if (close(c->t->fd)) {
		snprintf(c->t->err, sizeof(c->t->err), "closing the image: %s", strerror(errno));
		c->t->fd = -1;
		return -1;
	}
	c->t->fd = -1;
	/* Testing aid: hold the commit window open so tests can signal into it. */
	if (getenv("SR_SAVE_COMMIT_DELAY_MS"))
		usleep(1000 * atoi(getenv("SR_SAVE_COMMIT_DELAY_MS")));
	return 0;
}

static void on_progress(const char *line, void *arg)
{
	struct save_ctx *c = arg;

	show_progress(line, c->prog);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "checkpoint", no_argument, NULL, 'c' },
		{ "live", no_argument, NULL, 'l' },
		{ "dirty-track", required_argument, NULL, 'D' },
		{ "downtime-ms", required_argument, NULL, 'T' },
		{ "max-iters", required_argument, NULL, 'I' },
		{ "max-bytes-factor", required_argument, NULL, 'F' },
		{ "throttle", required_argument, NULL, 'R' },
		{ "stall-timeout", required_argument, NULL, 'Z' },
		{ "stats", no_argument, NULL, 'S' },
		{ "paused", no_argument, NULL, 'p' },
		{ "compress", required_argument, NULL, 'z' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool checkpoint = false, paused = false, quiet = false, live = false, to_stdout;
	const char *track = "auto", *throttle = NULL;
	unsigned long downtime = 0, iters = 0, factor = 0, stall = SAVE_STALL_DEFAULT_S;
	struct save_req q;
	const char *compress = "lz4", *dom, *path;
	struct progress prog = { 0 };
	struct target t = { .fd = -1 };
	struct save_ctx sc = { .prog = &prog, .t = &t };
	struct ctl_hooks hooks = { .on_progress = on_progress, .on_prepared = on_prepared, .arg = &sc };
	char req[400], reply[1024];
	int c, fd, rc;

	sr_set_prog(argv[0]);
	while ((c = getopt_long(argc, argv, "lcpqh", opts, NULL)) != -1) {
		switch (c) {
		case 'l': live = true; break;
		case 'S': prog.stats = true; break;
		case 'D':
			if (strcmp(optarg, "auto") && strcmp(optarg, "bitmap") && strcmp(optarg, "clear") &&
			    strcmp(optarg, "ring"))
				die(EXIT_USAGE, "--dirty-track takes auto, bitmap, clear or ring");
			track = optarg;
			break;
		case 'T': downtime = parse_ulong("--downtime-ms", optarg, 1, 3600000); break;
		case 'I': iters = parse_ulong("--max-iters", optarg, 1, 1000); break;
		case 'F': factor = parse_ulong("--max-bytes-factor", optarg, 1, 100); break;
		case 'R':
			if (strcmp(optarg, "auto") && strcmp(optarg, "off"))
				die(EXIT_USAGE, "--throttle takes auto or off, not \"%s\"", optarg);
			throttle = optarg;
			break;
		case 'Z': stall = parse_ulong("--stall-timeout", optarg, 1, 3600); break;
		case 'c': checkpoint = true; break;
		case 'p': paused = true; break;
		case 'q': quiet = true; break;
		case 'z':
			if (strcmp(optarg, "lz4") && strcmp(optarg, "none"))
				die(EXIT_USAGE, "--compress takes lz4 or none, not \"%s\"", optarg);
			compress = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc - 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	dom = argv[optind];
	path = argv[optind + 1];
	to_stdout = !strcmp(path, "-");
	t.path = path;
	sc.to_stdout = to_stdout;
	if (to_stdout && isatty(STDOUT_FILENO))
		die(EXIT_USAGE, "refusing to write an image to a terminal");

	signal(SIGPIPE, SIG_IGN);
	if (to_stdout) {
		fd = STDOUT_FILENO;
	} else {
		set_signals(on_signal);
		if (open_target(&t))
			die(EXIT_USAGE, "%s: %s%s", tmp_path[0] ? tmp_path : path, strerror(errno),
			    errno == EEXIST ? " (another save in progress? remove it if not)" : "");
		fd = t.fd;
	}
	if (!live && (downtime || iters || factor || throttle || strcmp(track, "auto")))
		die(EXIT_USAGE, "--dirty-track, --downtime-ms, --max-iters, --max-bytes-factor and "
		    "--throttle need --live");
	save_req_init(&q);
	q.live = live;
	q.checkpoint = checkpoint;
	q.paused = paused;
	q.downtime_ms = downtime;
	q.max_iters = iters;
	q.max_bytes_factor = factor;
	q.stall_timeout_s = stall;
	snprintf(q.dirty_track, sizeof(q.dirty_track), "%s", track);
	snprintf(q.throttle, sizeof(q.throttle), "%s", throttle ? throttle : "auto");
	snprintf(q.compress, sizeof(q.compress), "%s", compress);
	if (save_req_format(&q, req, sizeof(req)))
		die(EXIT_USAGE, "save request too long");
	prog.tty = !quiet && isatty(STDERR_FILENO);
	prog.stats = prog.stats && !quiet;
	clock_gettime(CLOCK_MONOTONIC, &prog.t0);
	rc = ctl_request(dom, req, fd, &hooks, reply, sizeof(reply));
	if (prog.shown)
		fputc('\n', stderr);
	if (rc != 0) {
		if (t.fd >= 0)
			close(t.fd);
		if (tmp_path[0])
			unlink(tmp_path);
		/* Placed but not committed (the runner timed out or went away): no image. */
		if (t.placed && unlink(path) == 0)
			pr_err("removed %s again: the domain did not take the commit", path);
		die(rc < 0 ? EXIT_USAGE : 1, "%s%s%s%s", t.err[0] ? t.err : "", t.err[0] ? "; " : "",
		    reply, rc > 0 && !strstr(reply, "the domain ") ? "; the domain runs on as before" : "");
	}
	/* Committed: a signal held back during the commit no longer undoes anything. */
	set_signals(SIG_IGN);
	block_signals(false);
	if (!quiet)
		pr_info("%s: %s: %s", sr_prog, to_stdout ? "stdout" : path, reply);
	return 0;
}
