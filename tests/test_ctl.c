/* SPDX-License-Identifier: MIT */
/*
 * The control socket's client side (tools/ctl.c), natively: save requests
 * survive a round trip and bad ones are refused; ctl_request against a
 * scripted runner (a thread on a socket in a temporary SR_RUN_DIR) reads
 * ok/error replies, progress lines, the two-phase "prepared" exchange, split
 * and overlong lines, a passed fd, and a runner that hangs up.  The
 * console (tools/console.c) an sr-ctl console attaches to: the tail, then
 * live bytes, nothing once detached.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "console.h"
#include "ctl.h"
#include "util.h"

/* ------------------------------------------------------ save requests */

static void parse_ok(const char *text, struct save_req *q)
{
	char why[256] = "";

	cr_assert_eq(save_req_parse(text, q, why, sizeof(why)), 0, "\"%s\": %s", text, why);
}

static void parse_refused(const char *text, const char *want)
{
	struct save_req q;
	char why[256] = "";

	cr_assert_eq(save_req_parse(text, &q, why, sizeof(why)), -1, "\"%s\" accepted", text);
	cr_assert(strstr(why, want), "\"%s\": \"%s\" does not say \"%s\"", text, why, want);
}

Test(save_req, every_field_survives_a_round_trip)
{
	struct save_req q, back;
	char buf[512];

	save_req_init(&q);
	q.live = q.checkpoint = q.paused = true;
	q.two_phase = false;
	snprintf(q.dirty_track, sizeof(q.dirty_track), "ring");
	snprintf(q.throttle, sizeof(q.throttle), "off");
	snprintf(q.compress, sizeof(q.compress), "none");
	q.downtime_ms = 75;
	q.max_iters = 9;
	q.max_bytes_factor = 4;
	q.stall_timeout_s = 3;
	q.threads = 5;
	q.bandwidth_mbs = 12;
	cr_assert_eq(save_req_format(&q, buf, sizeof(buf)), 0);
	cr_assert(!strncmp(buf, "save ", 5), "%s", buf);
	parse_ok(buf + 4, &back);
	cr_assert(back.live && back.checkpoint && back.paused && !back.two_phase, "%s", buf);
	cr_assert_str_eq(back.dirty_track, "ring");
	cr_assert_str_eq(back.throttle, "off");
	cr_assert_str_eq(back.compress, "none");
	cr_assert_eq(back.downtime_ms, 75);
	cr_assert_eq(back.max_iters, 9);
	cr_assert_eq(back.max_bytes_factor, 4);
	cr_assert_eq(back.stall_timeout_s, 3);
	cr_assert_eq(back.threads, 5);
	cr_assert_eq(back.bandwidth_mbs, 12);
}

Test(save_req, disk_hash_and_a_snapshot_path_of_any_bytes_survive)
{
	struct save_req q, back;
	static char buf[SAVE_REQ_MAX];
	char path[SAVE_SNAP_PATH_MAX + 1];

	save_req_init(&q);
	q.checkpoint = true;
	snprintf(q.disk_hash, sizeof(q.disk_hash), "full");
	snprintf(q.disk_snapshot, sizeof(q.disk_snapshot), "/srv/vm images/a=b\tc\n\xff.sr");
	cr_assert_eq(save_req_format(&q, buf, sizeof(buf)), 0);
	cr_assert(strstr(buf, " disk-hash=full disk-snapshot=2f"), "%s", buf);
	parse_ok(buf + 4, &back);
	cr_assert_str_eq(back.disk_hash, "full");
	cr_assert_str_eq(back.disk_snapshot, q.disk_snapshot);
	/* The longest path fits the longest request; the defaults carry none. */
	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = 0;
	snprintf(q.disk_snapshot, sizeof(q.disk_snapshot), "%s", path);
	cr_assert_eq(save_req_format(&q, buf, sizeof(buf)), 0);
	parse_ok(buf + 4, &back);
	cr_assert_str_eq(back.disk_snapshot, path);
	parse_ok("", &back);
	cr_assert_str_eq(back.disk_hash, "sample");
	cr_assert_str_eq(back.disk_snapshot, "");
}

Test(save_req, a_bad_snapshot_path_or_hash_is_refused)
{
	parse_refused("disk-hash=most", "\"disk-hash=most\"");
	parse_refused("disk-snapshot=", "\"disk-snapshot=\"");
	parse_refused("disk-snapshot=2f6", "\"disk-snapshot=2f6\"");		/* half a byte */
	parse_refused("disk-snapshot=2F61", "\"disk-snapshot=2F61\"");	/* not our hex */
	parse_refused("disk-snapshot=6162", "\"disk-snapshot=6162\"");	/* "ab": relative */
	parse_refused("disk-snapshot=2f0061", "\"disk-snapshot=2f0061\"");	/* a NUL byte */
}

Test(save_req, an_empty_request_is_the_defaults)
{
	struct save_req q;

	parse_ok("", &q);
	cr_assert(!q.live && !q.checkpoint && !q.paused && q.two_phase);
	cr_assert_str_eq(q.dirty_track, "auto");
	cr_assert_str_eq(q.throttle, "auto");
	cr_assert_str_eq(q.compress, "lz4");
	cr_assert_eq(q.threads, -1);
	cr_assert_eq(q.downtime_ms + q.max_iters + q.max_bytes_factor + q.stall_timeout_s +
		     q.bandwidth_mbs, 0);
	parse_ok(" threads=-1 threads=64 live=0", &q);
	cr_assert_eq(q.threads, 64);
}

Test(save_req, bad_keys_and_values_are_refused)
{
	parse_refused("live", "is not key=value");
	parse_refused("colour=blue", "unknown key or bad value \"colour=blue\"");
	parse_refused("live=2", "\"live=2\"");
	parse_refused("live=", "\"live=\"");
	parse_refused("compress=zstd", "\"compress=zstd\"");
	parse_refused("dirty-track=log", "\"dirty-track=log\"");
	parse_refused("throttle=on", "\"throttle=on\"");
	parse_refused("downtime-ms=", "\"downtime-ms=\"");
	parse_refused("max-iters=1x", "\"max-iters=1x\"");
	parse_refused("stall-timeout=3600001", "\"stall-timeout=3600001\"");
	parse_refused("threads=65", "\"threads=65\"");
	parse_refused("threads=-2", "\"threads=-2\"");
	parse_refused("threads=", "\"threads=\"");
	/* The largest allowed number is taken. */
	struct save_req q;

	parse_ok("bandwidth=3600000", &q);
	cr_assert_eq(q.bandwidth_mbs, 3600000);
}

Test(save_req, a_buffer_too_small_is_an_error)
{
	struct save_req q;
	char buf[32];

	save_req_init(&q);
	cr_assert_eq(save_req_format(&q, buf, sizeof(buf)), -1);
}

/* ----------------------------------------------------- a fake runner */

struct runner_script {
	const char *const *say;		/* written one by one; NULL ends */
	int listen_fd;
	char got[256];			/* the request */
	char answer[64];		/* what the client said to "prepared" */
	int passed_fd;			/* an fd that came with the request, or -1 */
	bool hang_up;			/* close after the script without more */
};

static ssize_t read_line(int fd, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		ssize_t k = read(fd, buf + n, 1);

		if (k <= 0)
			break;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
	return n;
}

static void *runner(void *arg)
{
	struct runner_script *s = arg;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { s->got, sizeof(s->got) - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd = accept(s->listen_fd, NULL, NULL);
	ssize_t n;

	cr_assert_geq(fd, 0);
	n = recvmsg(fd, &mh, 0);
	cr_assert_gt(n, 0);
	s->got[n] = 0;
	s->passed_fd = -1;
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&s->passed_fd, CMSG_DATA(c), sizeof(int));
	for (unsigned i = 0; s->say[i]; i++) {
		const char *line = s->say[i];

		if (!strcmp(line, "<answer>")) {	/* wait for the client's decision */
			read_line(fd, s->answer, sizeof(s->answer));
			continue;
		}
		cr_assert_eq(write(fd, line, strlen(line)), (ssize_t)strlen(line));
		usleep(20000);			/* separate reads on the other side */
	}
	close(fd);
	return NULL;
}

static char run_dir[64];

/* A fresh SR_RUN_DIR. */
static void make_run_dir(void)
{
	snprintf(run_dir, sizeof(run_dir), "/tmp/sr-test-ctl.XXXXXX");
	cr_assert(mkdtemp(run_dir));
	setenv("SR_RUN_DIR", run_dir, 1);
}

/* Serves one request on domain "dom" with the script; returns the thread. */
static pthread_t serve(struct runner_script *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t t;

	make_run_dir();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/dom.sock", run_dir);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(s->listen_fd, 1), 0);
	cr_assert_eq(pthread_create(&t, NULL, runner, s), 0);
	return t;
}

static void done(pthread_t t, struct runner_script *s)
{
	char path[128];

	pthread_join(t, NULL);
	close(s->listen_fd);
	snprintf(path, sizeof(path), "%s/dom.sock", run_dir);
	unlink(path);
	rmdir(run_dir);
}

struct seen {
	char lines[8][128];
	unsigned n;
	int verdict;			/* what on_prepared answers */
	char prepared[128];
};

static void on_progress(const char *line, void *arg)
{
	struct seen *s = arg;

	if (s->n < 8)
		snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s", line);
}

static int on_prepared(const char *line, void *arg)
{
	struct seen *s = arg;

	snprintf(s->prepared, sizeof(s->prepared), "%s", line);
	return s->verdict;
}

Test(ctl, ctl_dir_is_sr_run_dir_else_run_sr)
{
	unsetenv("SR_RUN_DIR");
	cr_assert_str_eq(ctl_dir(), "/run/sr");
	setenv("SR_RUN_DIR", "", 1);
	cr_assert_str_eq(ctl_dir(), "/run/sr");
	setenv("SR_RUN_DIR", "/tmp/x", 1);
	cr_assert_str_eq(ctl_dir(), "/tmp/x");
}

Test(ctl, ok_and_error_replies)
{
	static const char *const ok[] = { "ok name=dom state=running\n", NULL };
	static const char *const err[] = { "error busy: a save is running\n", NULL };
	static const char *const bare[] = { "ok\n", NULL };
	struct runner_script s = { .say = ok };
	char reply[256];
	pthread_t t = serve(&s);

	cr_assert_eq(ctl_request("dom", "status", -1, NULL, reply, sizeof(reply)), 0);
	done(t, &s);
	cr_assert_str_eq(s.got, "status");
	cr_assert_str_eq(reply, "name=dom state=running");
	s = (struct runner_script){ .say = err };
	t = serve(&s);
	cr_assert_eq(ctl_request("dom", "pause", -1, NULL, reply, sizeof(reply)), 1);
	done(t, &s);
	cr_assert_str_eq(reply, "busy: a save is running");
	s = (struct runner_script){ .say = bare };
	t = serve(&s);
	cr_assert_eq(ctl_request("dom", "resume", -1, NULL, reply, sizeof(reply)), 0);
	done(t, &s);
	cr_assert_str_eq(reply, "");
}

Test(ctl, progress_lines_go_to_the_hook_and_a_split_reply_is_joined)
{
	static const char *const say[] = { "progress 10/20 pages\nround 0 sent 20\n", "progress 2",
					   "0/20 pages\n", "o", "k saved\n", NULL };
	struct runner_script s = { .say = say };
	struct seen seen = { 0 };
	struct ctl_hooks h = { .on_progress = on_progress, .arg = &seen };
	char reply[256];
	pthread_t t = serve(&s);

	cr_assert_eq(ctl_request("dom", "save", -1, &h, reply, sizeof(reply)), 0);
	done(t, &s);
	cr_assert_eq(seen.n, 3);
	cr_assert_str_eq(seen.lines[0], "progress 10/20 pages");
	cr_assert_str_eq(seen.lines[1], "round 0 sent 20");
	cr_assert_str_eq(seen.lines[2], "progress 20/20 pages");
	cr_assert_str_eq(reply, "saved");
}

Test(ctl, stats_go_to_the_hook_and_unknown_lines_are_skipped)
{
	static const char *const say[] = { "stats pages=3 outcome=exits stop_reason=\n",
					   "okay, a line of a later version\nerrors: another\n",
					   "ok saved\n", NULL };
	struct runner_script s = { .say = say };
	struct seen seen = { 0 };
	struct ctl_hooks h = { .on_progress = on_progress, .arg = &seen };
	char reply[256];
	pthread_t t = serve(&s);

	cr_assert_eq(ctl_request("dom", "save", -1, &h, reply, sizeof(reply)), 0);
	done(t, &s);
	cr_assert_eq(seen.n, 1);
	cr_assert_str_eq(seen.lines[0], "stats pages=3 outcome=exits stop_reason=");
	cr_assert_str_eq(reply, "saved");
}

static void prepared_answer(int verdict, const char *want, int want_rc)
{
	static const char *const say[] = { "prepared 1234 bytes\n", "<answer>", "ok done\n", NULL };
	struct runner_script s = { .say = say };
	struct seen seen = { .verdict = verdict };
	struct ctl_hooks h = { .on_prepared = on_prepared, .arg = &seen, .fd = -1 };
	char reply[256];
	pthread_t t = serve(&s);

	cr_assert_eq(ctl_request("dom", "save", -1, &h, reply, sizeof(reply)), want_rc);
	done(t, &s);
	cr_assert_str_eq(seen.prepared, "1234 bytes");
	cr_assert_str_eq(s.answer, want, "on_prepared %d: the runner heard \"%s\"", verdict, s.answer);
	cr_assert_geq(h.fd, 0, "hooks->fd was not set for ctl_pending");
}

Test(ctl, prepared_is_answered_commit_abort_or_hold)
{
	prepared_answer(0, "commit", 0);
	prepared_answer(-1, "abort", 0);
	prepared_answer(1, "hold", 0);
}

Test(ctl, a_runner_that_hangs_up_is_an_error)
{
	static const char *const say[] = { "progress 1/2 pages\n", NULL };
	struct runner_script s = { .say = say };
	char reply[256];
	pthread_t t = serve(&s);

	cr_assert_eq(ctl_request("dom", "save", -1, NULL, reply, sizeof(reply)), -1);
	done(t, &s);
	cr_assert(strstr(reply, "closed the connection without a reply"), "%s", reply);
}

/*
 * The runner's longest line: 1022 characters and the newline (tools/runner.c
 * reply()), read whole however it arrives: after a progress line, or with
 * its newline in a read of its own.
 */
static void longest_line(const char *const *say)
{
	struct runner_script s = { .say = say };
	char reply[2048];
	pthread_t t;

	t = serve(&s);
	cr_assert_eq(ctl_request("dom", "status", -1, NULL, reply, sizeof(reply)), 0);
	done(t, &s);
	cr_assert_eq(strlen(reply), 1019, "reply of %zu characters", strlen(reply));
	cr_assert_eq(strspn(reply, "x"), 1019);
}

Test(ctl, the_longest_reply_line_is_read_whole)
{
	static char line[1024], text[1023];
	static const char *const after_progress[] = { "progress 1/2 pages\n", line, NULL };
	static const char *const newline_apart[] = { text, "\n", NULL };

	memcpy(text, "ok ", 3);
	memset(text + 3, 'x', 1019);
	memcpy(line, text, 1022);
	line[1022] = '\n';
	longest_line(after_progress);
	longest_line(newline_apart);
}

Test(ctl, a_passed_fd_arrives)
{
	static const char *const say[] = { "ok\n", NULL };
	struct runner_script s = { .say = say };
	char reply[256];
	struct stat a, b;
	pthread_t t = serve(&s);

	cr_assert_eq(ctl_request("dom", "save live=1", STDERR_FILENO, NULL, reply, sizeof(reply)), 0);
	done(t, &s);
	cr_assert_str_eq(s.got, "save live=1");
	cr_assert_geq(s.passed_fd, 0, "no fd came with the request");
	cr_assert_eq(fstat(s.passed_fd, &a), 0);
	cr_assert_eq(fstat(STDERR_FILENO, &b), 0);
	cr_assert(a.st_dev == b.st_dev && a.st_ino == b.st_ino, "a different file came");
	close(s.passed_fd);
}

Test(ctl, no_domain_or_a_bad_name)
{
	char reply[256];

	make_run_dir();
	cr_assert_eq(ctl_request("nobody", "status", -1, NULL, reply, sizeof(reply)), -1);
	cr_assert(strstr(reply, "no domain \"nobody\"") && strstr(reply, "not running"), "%s", reply);
	cr_assert_eq(ctl_request("a/b", "status", -1, NULL, reply, sizeof(reply)), -1);
	cr_assert(strstr(reply, "bad domain name \"a/b\""), "%s", reply);
	rmdir(run_dir);
}

/* What a peer or an image names reaches a terminal escaped, invisible reordering included. */
Test(str_escape, control_bytes_and_bad_utf8_are_escaped_printable_utf8_kept)
{
	char buf[200];

	cr_assert_str_eq(str_escape(buf, sizeof(buf), "a\x1b[2J\\\xff\xc3\xa9", 64),
			 "a\\x1b[2J\\\\\\xff\xc3\xa9");
}

Test(str_escape, bidi_controls_and_zero_width_characters_are_escaped)
{
	static const char *const hidden[] = {
		"\u200b", "\u200c", "\u200d", "\u200e", "\u200f",
		"\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
		"\u2066", "\u2067", "\u2068", "\u2069", "\ufeff",
	};
	char buf[200], in[32], want[64];

	for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
		const unsigned char *u = (const unsigned char *)hidden[i];

		snprintf(in, sizeof(in), "ab%scd", hidden[i]);
		snprintf(want, sizeof(want), "ab\\x%02x\\x%02x\\x%02xcd", u[0], u[1], u[2]);
		cr_assert_str_eq(str_escape(buf, sizeof(buf), in, sizeof(in)), want,
				 "U+%04X: \"%s\"", (u[0] & 0xf) << 12 | (u[1] & 0x3f) << 6 | (u[2] & 0x3f),
				 buf);
	}
	/* Their neighbours stay: U+2010 (hyphen), U+2030 (per mille). */
	cr_assert_str_eq(str_escape(buf, sizeof(buf), "\u2010\u2030", 16), "\u2010\u2030");
}

/* CP as UTF-8 in out (NUL-ended); its length. */
static size_t utf8_of(unsigned cp, char *out)
{
	size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
	static const unsigned char lead[] = { 0, 0, 0xc0, 0xe0, 0xf0 };

	for (size_t i = n; i-- > 1; cp >>= 6)
		out[i] = (char)(0x80 | (cp & 0x3f));
	out[0] = (char)(n == 1 ? cp : lead[n] | cp);
	out[n] = 0;
	return n;
}

/* "ab", CP, "cd" through str_escape: 1 if CP came out as \x escapes, 0 if raw. */
static int escaped(unsigned cp)
{
	char u[8], in[16], buf[64], want[64];
	size_t n = utf8_of(cp, u), o = 2;

	snprintf(in, sizeof(in), "ab%scd", u);
	str_escape(buf, sizeof(buf), in, sizeof(in));
	if (!strcmp(buf, in))
		return 0;
	memcpy(want, "ab", 2);
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(want + o, sizeof(want) - o, "\\x%02x", (unsigned char)u[i]);
	snprintf(want + o, sizeof(want) - o, "cd");
	cr_assert_str_eq(buf, want, "U+%04X neither raw nor escaped whole", cp);
	return 1;
}

/*
 * Every Default_Ignorable_Code_Point range (DerivedCoreProperties.txt), and
 * the look-alikes beyond it, is
 * escaped at both its bounds; a printable neighbour just outside stays.
 */
Test(str_escape, invisible_and_look_alike_code_points_are_escaped_at_every_bound)
{
	static const unsigned range[][2] = {
		{ 0x00ad, 0x00ad }, { 0x034f, 0x034f }, { 0x061c, 0x061c },
		{ 0x115f, 0x1160 }, { 0x17b4, 0x17b5 }, { 0x180b, 0x180f },
		{ 0x200b, 0x200f }, { 0x202a, 0x202e }, { 0x2060, 0x206f },
		{ 0x3164, 0x3164 }, { 0xfe00, 0xfe0f }, { 0xfeff, 0xfeff },
		{ 0xffa0, 0xffa0 }, { 0xfff0, 0xfff8 }, { 0x1bca0, 0x1bca3 },
		{ 0x1d173, 0x1d17a }, { 0xe0000, 0xe0fff },
		/* named inside the last: tags, variation selectors 17-256 */
		{ 0xe0001, 0xe0001 }, { 0xe0020, 0xe007f }, { 0xe0100, 0xe01ef },
		/* beyond it (audit7): other format characters, spaces but U+0020, the
		 * braille blank, enclosing and overlay marks, private use */
		{ 0x0600, 0x0605 }, { 0x06dd, 0x06dd }, { 0x070f, 0x070f }, { 0x0890, 0x0891 },
		{ 0x08e2, 0x08e2 }, { 0x110bd, 0x110bd }, { 0x110cd, 0x110cd }, { 0x13430, 0x1343f },
		{ 0x00a0, 0x00a0 }, { 0x1680, 0x1680 }, { 0x2000, 0x200a }, { 0x202f, 0x202f },
		{ 0x205f, 0x205f }, { 0x3000, 0x3000 }, { 0x2800, 0x2800 },
		{ 0x0488, 0x0489 }, { 0x1abe, 0x1abe }, { 0x20dd, 0x20e0 }, { 0x20e2, 0x20e4 },
		{ 0xa670, 0xa672 }, { 0x0334, 0x0338 }, { 0x20d2, 0x20d3 }, { 0x20d8, 0x20da },
		{ 0x20e5, 0x20e6 }, { 0x20ea, 0x20eb },
		{ 0xe000, 0xf8ff }, { 0xf0000, 0xffffd }, { 0x100000, 0x10fffd },
	};
	/* Printable neighbours that must stay: a check the ranges do not overreach. */
	static const unsigned kept[] = {
		0x00ae, 0x034e, 0x0350, 0x061b, 0x115e, 0x1161, 0x17b3, 0x17b6,
		0x180a, 0x1810, 0x2030, 0x2070, 0x3163, 0x3165, 0xfdfd, 0xfe10,
		0xff9f, 0xffa1, 0x1d172, 0x1d17b,
		0x0020, 0x00a1, 0x0301, 0x0333, 0x0339, 0x0487, 0x048a, 0x0606, 0x06de,
		0x1681, 0x20d1, 0x20e1, 0x20e7, 0x2801, 0x3001, 0xa673, 0xf900,
		0x1342e,
	};

	for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++) {
		cr_assert(escaped(range[i][0]), "U+%04X passed raw", range[i][0]);
		cr_assert(escaped(range[i][1]), "U+%04X passed raw", range[i][1]);
	}
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		cr_assert(!escaped(kept[i]), "U+%04X escaped", kept[i]);
}

/* ------------------------------------------------------------ console */

/* Reads from fd until want has arrived whole (2 s at most); the bytes read, NUL-ended. */
static size_t read_until(int fd, char *buf, size_t len, const char *want)
{
	size_t have = 0;

	buf[0] = 0;
	for (int i = 0; i < 200 && !strstr(buf, want); i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 10) == 1) {
			ssize_t n = read(fd, buf + have, len - 1 - have);

			if (n <= 0)
				break;
			have += n;
			buf[have] = 0;
		}
	}
	return have;
}

Test(console, an_attached_reader_gets_the_tail_then_what_follows_until_it_detaches)
{
	int out[2], sv[2];
	char buf[8192];
	struct console *c;
	struct pollfd p;

	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c = console_new(out[1], 1 << 16, NULL, NULL);
	cr_assert_not_null(c);
	console_write(c, "before attach\n", 14);
	read_until(out[0], buf, sizeof(buf), "before attach\n");
	console_attach(c, sv[0]);
	read_until(sv[1], buf, sizeof(buf), "before attach\n");
	cr_assert_str_eq(buf, "before attach\n", "the tail: \"%s\"", buf);
	console_write(c, "live\n", 5);
	read_until(sv[1], buf, sizeof(buf), "live\n");
	cr_assert_str_eq(buf, "live\n");
	read_until(out[0], buf, sizeof(buf), "live\n");
	cr_assert_str_eq(buf, "live\n", "the console fd still gets everything: \"%s\"", buf);
	console_detach(c, sv[0]);
	console_write(c, "after\n", 6);
	read_until(out[0], buf, sizeof(buf), "after\n");
	cr_assert_str_eq(buf, "after\n");
	p = (struct pollfd){ .fd = sv[1], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 100), 0, "a detached reader was sent more");
	console_free(c, 1000);
	close(sv[0]);
	close(sv[1]);
	close(out[0]);
	close(out[1]);
}

Test(console, the_tail_is_the_last_bytes_only)
{
	int out[2], sv[2];
	static char big[3 * CONSOLE_TAIL], buf[2 * CONSOLE_TAIL + 1];
	struct console *c;
	size_t n;

	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c = console_new(out[1], 1 << 16, NULL, NULL);
	memset(big, 'a', sizeof(big));
	memcpy(big + sizeof(big) - 4, "end\n", 4);
	console_write(c, big, sizeof(big));
	/* Drained to the pipe (it holds 64 KiB): then the tail is what it will ever be. */
	for (size_t got = 0; got < sizeof(big);) {
		ssize_t k = read(out[0], buf, sizeof(buf) - 1);

		cr_assert_gt(k, 0);
		got += k;
	}
	console_attach(c, sv[0]);
	n = read_until(sv[1], buf, sizeof(buf), "end\n");
	cr_assert_eq(n, CONSOLE_TAIL, "%zu bytes of tail", n);
	console_free(c, 1000);
	close(sv[0]);
	close(sv[1]);
	close(out[0]);
	close(out[1]);
}
