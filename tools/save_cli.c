/* SPDX-License-Identifier: MIT */
/*
 * sr-save and sr-migrate: save a running domain to an image, or move it to
 * another host.
 *
 * The domain's runner writes the image into a file descriptor we pass it
 * over its control socket: an unnamed O_TMPFILE in FILE's directory (or
 * FILE.tmp where the filesystem has no O_TMPFILE).  Two-phase commit: when
 * the image is complete and fsynced the runner says "prepared" and waits,
 * the domain paused; we put FILE in place (linkat or rename), fsync the
 * directory with signals blocked, and only then answer "commit", after
 * which the runner ends, resumes or keeps the domain paused.  Whatever fails
 * before that, the domain goes on as before and FILE is not there.
 *
 * To a network destination (tcp:HOST:PORT, a listening sr-restore, or
 * ssh:[USER@]HOST, which runs sr-restore --migrate-receive there) the
 * stream goes over the connection and "prepared" starts the migration
 * handshake (migrate.h) instead: "commit" only once the receiver says it
 * runs the domain.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "imgfile.h"
#include "migrate.h"
#include "net.h"
#include "save_cli.h"
#include "save_json.h"
#include "sr_format.h"
#include "tls.h"
#include "usage.h"
#include "util.h"
#include "virtio.h"

/* sr-migrate's own exit status: the domain is paused here, its fate unknown. */
#define EXIT_UNKNOWN	3

static struct img_file *sig_img;	/* FILE.tmp to remove on a signal, if any */
static struct save_json *sj;		/* --json, --progress json */

static void usage(FILE *f, bool migrate)
{
	if (migrate)
		fprintf(f,
"usage: sr-migrate [--live|--cold] [OPTIONS] DOMAIN tcp:HOST:PORT|ssh:[USER@]HOST\n"
"Move a running domain to another host: live by default (memory copied while\n"
"the guest runs, paused only for the remainder), or paused throughout (--cold).\n"
"tcp:HOST:PORT sends it to an sr-restore --listen PORT there ([ADDR]:PORT for\n"
"IPv6); ssh:[USER@]HOST runs sr-restore --migrate-receive there.  The domain\n"
"ends here only once the receiver says it runs it; before that, any failure\n"
"leaves it running here as before.\n"
"\n"
"      --cold              pause throughout instead of copying live\n");
	else
		fprintf(f,
"usage: sr-save [OPTIONS] DOMAIN FILE|-|tcp:HOST:PORT|ssh:[USER@]HOST\n"
"Save a running domain to FILE (or to standard output with \"-\"), or send it\n"
"to another host as sr-migrate does (a file named tcp:... needs ./).\n"
"\n"
"  -l, --live              live save: copy memory while the guest runs, re-send\n"
"                          what it dirties, pause only for the last remainder\n");
	fprintf(f,
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
"                          progress is made for S seconds (default 30)\n");
	if (!migrate)
		fprintf(f,
"  -c, --checkpoint        keep the domain running after the save\n"
"  -p, --paused            leave the domain paused after the save\n"
"      --disk-snapshot     with -c or -p: copy each writable disk, while the\n"
"                          guest is paused with its memory, to FILE.diskN beside\n"
"                          the image (a reflink where the file system can, else\n"
"                          a sparse copy); restoring the image runs on that copy\n");
	fprintf(f,
"      --disk-hash MODE    the disks' identity in the image: sample (default;\n"
"                          64 blocks of 4 KiB) or full (every byte, read at the\n"
"                          save and again at the restore)\n");
	fprintf(f,
"      --compress MODE     lz4 (default) or none; zero pages are never written\n"
"  -j, --threads N         threads that compress and hash page batches while\n"
"                          the next is filled and the last written (default:\n"
"                          the online CPUs; 0: none)\n"
"      --bandwidth MB/s    cap the stream's rate (a shared link); pre-copy then\n"
"                          judges convergence at that rate (default: no cap)\n"
"      --connect-timeout S  tcp: give up connecting after S seconds (default 10)\n"
"      --idle-timeout S    tcp: a connection silent for S seconds is dead\n"
"                          (keepalive; default 30)\n"
"      --tls-psk FILE      tcp: TLS 1.3 with a pre-shared key, the first\n"
"                          \"identity:hexkey\" line of FILE (psktool's format);\n"
"                          the receiver needs the same line\n"
"      --tls-creds DIR     tcp: TLS 1.3 with X.509: DIR/ca-cert.pem,\n"
"                          client-cert.pem, client-key.pem (QEMU's layout); the\n"
"                          receiver's certificate must be signed by the CA and\n"
"                          name HOST, or a name in --tls-authz\n"
"      --tls-authz NAME    a receiver allowed (repeat it for each): a\n"
"                          certificate's DN, whole, or a host name in its\n"
"                          subjectAltName (no wildcards)\n"
"                          Without TLS the stream is plaintext, unauthenticated\n"
"                          (a receiver listens so only on loopback unless told\n"
"                          --insecure-plaintext); ssh: has ssh's own\n"
"      --ssh CMD           ssh: the command that reaches HOST (default \"ssh\";\n"
"                          e.g. \"ssh -p 2222 -i KEY\")\n"
"      --remote CMD        ssh: sr-restore's path on HOST (default sr-restore)\n"
"  -n, --name NAME         the domain's name on the receiving host (default: its\n"
"                          name here; ssh: only)\n"
"      --remote-disk FILE[,ro][,cache=none|writeback]\n"
"                          ssh: the file of the domain's next disk on HOST\n"
"                          (once per disk, disk 0 first; a relative FILE is\n"
"                          from the remote user's home): sr-restore --disk there\n"
"                          (a domain with disks cannot be received without)\n"
"  -q, --quiet             no progress line and no summary\n"
"      --json              one JSON document on stdout at the end: the summary\n"
"                          and the rounds (docs/control.md, \"schema: save\")\n"
"      --progress MODE     text (default: a line on a terminal), json (an event\n"
"                          per line on stdout: start, progress, round, prepared,\n"
"                          commit, end) or none\n"
"  -h, --help              this help\n"
"      --version           sr's version\n"
"\n");
	if (migrate)
		fprintf(f,
"The handshake: the receiver verifies the stream to END and builds the VM\n"
"paused (\"ready\"); the domain here, paused, is not ended (\"go\"); the\n"
"receiver resumes it (\"running\"); only then does it end here.  If the link\n"
"fails between \"go\" and \"running\", nobody can know whether the receiver\n"
"runs it: the domain stays paused here and sr-migrate says how to check.\n"
"\n"
"Exit status: 0 migrated (the domain runs there and has ended here), 1 the\n"
"migration failed (the domain runs on here), 2 usage error or no such domain,\n"
"3 outcome unknown (the domain is paused here; see the message).\n");
	else
		fprintf(f,
"By default the domain exits once its image is safely on disk.  The image is\n"
"written unnamed (O_TMPFILE in FILE's directory), fsynced and linked in as\n"
"FILE (FILE.tmp and a rename only where the filesystem has no O_TMPFILE); on\n"
"any failure (disk full, I/O error, a signal, the reader of \"-\" going away)\n"
"the domain resumes as it was and nothing is left at FILE.\n"
"\n"
"Exit status: 0 saved, 1 the save failed (the domain runs on), 2 usage error or\n"
"no such domain, 3 (tcp:, ssh:) outcome unknown, as sr-migrate.\n");
}

static unsigned long parse_ulong(const char *opt, const char *s, unsigned long min,
				 unsigned long max)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*end || end == s || v < min || v > max)
		usage_error("%s: \"%s\" is not a number in %lu..%lu", opt, s, min, max);
	return v;
}

static void on_signal(int sig)
{
	/* The runner sees us go and abandons the save; an O_TMPFILE vanishes by itself. */
	if (sig_img && sig_img->tmp[0])
		unlink(sig_img->tmp);
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

/* A number of the runner's "stats" line, 0 when it has none. */
static double stat_ms(const char *line, const char *key)
{
	size_t k = strlen(key);

	for (const char *at = strstr(line, key); at; at = strstr(at + 1, key))
		if (at[-1] == ' ' && at[k] == '=')
			return strtoull(at + k + 1, NULL, 10) / 1e6;
	return 0;
}

/* --stats: where a live save's downtime went, phase by phase (docs/control.md, save.summary). */
static void show_pause(struct progress *p, const char *line)
{
	if (!p->stats || stat_ms(line, "downtime_target_ns") == 0)
		return;
	fprintf(stderr, "downtime %.2f ms: vCPUs stopped in %.2f (devices drained %.2f), state read "
		"%.2f (VM %.2f, vCPUs %.2f, devices %.2f, of which disk identities %.2f), last pages "
		"%.2f, records %.2f\n", stat_ms(line, "downtime_ns"), stat_ms(line, "pause_ns"),
		stat_ms(line, "drain_ns"), stat_ms(line, "capture_ns"), stat_ms(line, "capture_vm_ns"),
		stat_ms(line, "capture_vcpu_ns"), stat_ms(line, "capture_dev_ns"),
		stat_ms(line, "disk_id_ns"), stat_ms(line, "final_pages_ns"), stat_ms(line, "state_ns"));
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
	if (!strncmp(line, "stats ", 6)) {
		show_pause(p, line);
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
	struct img_file img;		/* a file: how FILE gets its name at commit */
	bool placed;			/* FILE now names the image */
	bool net;			/* tcp: or ssh: (the migration handshake) */
	bool unknown;			/* "go" sent, no "running" heard */
	bool ran_there;			/* the receiver said "running" */
	pid_t ssh;			/* ssh: the ssh process */
	struct tls_conn *tls;		/* tcp: with TLS (fd is its plain end) */
	char err[900];
};


/*
 * tcp:HOST:PORT: the stream and the handshake on one connection; with TLS
 * both go through it once the receiver has authenticated.
 */
static int open_tcp(struct target *t, const char *hostport, unsigned connect_s, unsigned idle_s,
		    struct tls_opts *to)
{
	struct tls_creds *creds = NULL;
	char host[256];
	int fd;

	t->net = true;
	if (to->psk_file || to->creds_dir) {
		net_host_of(hostport, host, sizeof(host));	/* a certificate must name it */
		to->peer_host = host;
		creds = tls_creds_new(to, t->err, sizeof(t->err));
		if (!creds)
			return -1;
	}
	fd = net_connect(hostport, connect_s * 1000, idle_s, t->err, sizeof(t->err));
	if (fd < 0 || !creds) {
		t->fd = fd;
		tls_creds_free(creds);
		return fd < 0 ? -1 : 0;
	}
	t->tls = tls_start(creds, fd, connect_s * 1000, t->err, sizeof(t->err));
	tls_creds_free(creds);
	if (!t->tls) {
		close(fd);
		return -1;
	}
	t->fd = tls_plain_fd(t->tls);
	return 0;
}

/* The network destination's connection goes (with TLS: what was written leaves first). */
static void close_net(struct target *t)
{
	if (t->tls)
		tls_end(t->tls);
	else
		close(t->fd);
	t->tls = NULL;
	t->fd = -1;
}

/*
 * ssh:[USER@]HOST: ssh runs "REMOTE --migrate-receive [--name N] -" there,
 * its stdin and stdout one end of a socket pair: the stream goes in, the
 * handshake comes back.  ssh's own messages and the receiver's go to our
 * stderr.
 */
/*
 * [USER@]HOST of names and addresses only: ssh expands %-tokens and passes
 * a host to its ProxyCommand's shell, so nothing else reaches it (an
 * allow-list; a host that ssh would take for an option is refused too, and
 * "--" ends ssh's options).
 */
static bool ssh_host_ok(const char *host)
{
	const char *at = strrchr(host, '@'), *h = at ? at + 1 : host;

	/* Neither USER nor HOST empty or an option (an old ssh put %h into ProxyCommand). */
	return *host && *host != '-' && *h && *h != '-' && at != host &&
	       strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
			    "._-@:[]") == strlen(host);
}

/*
 * The bytes no single-quoted word carries the same way in every login shell
 * sshd may run: a quote or backslash (fish reads \' and \\ inside quotes),
 * ! (csh's history works inside quotes), a newline (tcsh cannot quote it),
 * $ " ` and control bytes for good measure.  Refused in a --remote-disk FILE.
 */
static const char remote_unsafe[] = "'\"\\`$!";

static bool remote_word_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || strchr(remote_unsafe, *s))
			return false;
	return true;
}

/* s, which remote_word_ok passed, as one word of the remote shell's command line. */
static char *sh_quote(char *out, const char *s)
{
	out += sprintf(out, "'%s'", s);
	return out;
}

/*
 * "REMOTE --migrate-receive [--name N] [--disk 'FILE'...] -": the remote
 * user's shell reads it, so every FILE is quoted (N follows sr's name rules,
 * checked; REMOTE is the operator's command).  NULL when out of memory.
 */
static char *remote_command(const char *remote, const char *name, char *const *disks,
			    unsigned ndisks)
{
	size_t len = strlen(remote) + (name ? strlen(name) : 0) + 64;
	char *cmd, *p;

	for (unsigned i = 0; i < ndisks; i++)
		len += strlen(disks[i]) + 16;
	if (!(cmd = malloc(len)))
		return NULL;
	p = cmd + sprintf(cmd, "%s --migrate-receive%s%s", remote, name ? " --name " : "",
			  name ? name : "");
	for (unsigned i = 0; i < ndisks; i++) {
		p += sprintf(p, " --disk ");
		p = sh_quote(p, disks[i]);
	}
	strcpy(p, " -");
	return cmd;
}

static int open_ssh(struct target *t, const char *host, const char *ssh, const char *remote,
		    const char *name, char *const *disks, unsigned ndisks)
{
	char script[1200], *cmd;
	int sv[2];

	t->net = true;
	snprintf(script, sizeof(script), "exec %s \"$@\"", ssh);
	if (!(cmd = remote_command(remote, name, disks, ndisks))) {
		snprintf(t->err, sizeof(t->err), "the remote command: %s", strerror(ENOMEM));
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		snprintf(t->err, sizeof(t->err), "socketpair: %s", strerror(errno));
		free(cmd);
		return -1;
	}
	t->ssh = fork();
	if (t->ssh < 0) {
		snprintf(t->err, sizeof(t->err), "fork: %s", strerror(errno));
		free(cmd);
		return -1;
	}
	if (t->ssh == 0) {
		dup2(sv[1], STDIN_FILENO);
		dup2(sv[1], STDOUT_FILENO);
		signal(SIGPIPE, SIG_DFL);
		execlp("sh", "sh", "-c", script, "sh", "--", host, cmd, (char *)NULL);
		_exit(127);
	}
	free(cmd);
	close(sv[1]);
	t->fd = sv[0];
	return 0;
}

/* After the handshake: ssh ends once the receiver has let go of it. */
static void reap_ssh(struct target *t)
{
	int st;

	if (t->ssh <= 0)
		return;
	for (int i = 0; i < 150; i++) {
		if (waitpid(t->ssh, &st, WNOHANG) == t->ssh)
			return;
		usleep(100000);
	}
	kill(t->ssh, SIGTERM);
	waitpid(t->ssh, &st, 0);
}

static int open_target(struct target *t)
{
	if (img_file_open(&t->img, t->path))
		return -1;
	t->fd = t->img.fd;
	return 0;
}

/* Gives the complete image its name: FILE appears whole or not at all. */
static int place_target(struct target *t)
{
	int rc = img_file_place(&t->img, t->err, sizeof(t->err));

	t->placed = t->img.placed;
	return rc;
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
	struct ctl_hooks *hooks;
	const char *dom, *dest;
	bool to_stdout;
};

/* Whether the peer closed or reset the connection (nothing else is due from it now). */
static bool peer_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, 0) <= 0)
		return false;
	return (p.revents & (POLLHUP | POLLERR)) || recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

/*
 * The migration handshake, run while the domain waits paused for our word:
 * 0 "commit" (the receiver runs it: it ends here), -1 "abort" (it resumes
 * here), 1 "hold" (it stays paused: we cannot know).
 */
static int handshake(struct save_ctx *c)
{
	struct target *t = c->t;
	char line[512], why[200], esc[600];	/* the receiver's words, escaped */
	int rc = mig_recv(t->fd, line, sizeof(line), MIG_READY_TIMEOUT_MS, why, sizeof(why));

	if (rc != 1 || strcmp(line, MIG_READY)) {
		if (rc == 1 && !strncmp(line, MIG_ERROR " ", 6))
			snprintf(t->err, sizeof(t->err), "the receiver refused the domain: %s",
				 str_escape(esc, sizeof(esc), line + 6, sizeof(line)));
		else
			snprintf(t->err, sizeof(t->err), "the receiver did not say it was ready: %s",
				 rc == 1 ? str_escape(esc, sizeof(esc), line, sizeof(line)) : why);
		return -1;
	}
	/* A receiver known to be gone before "go" cannot run the domain: resume it here. */
	if (test_env("SR_MIGRATE_TEST_GO_DELAY_MS"))	/* testing aid: widen that window */
		usleep(1000 * atoi(test_env("SR_MIGRATE_TEST_GO_DELAY_MS")));
	test_pause("ready");
	if (peer_gone(t->fd)) {
		snprintf(t->err, sizeof(t->err), "the receiver went away after \"ready\", before "
			 "\"go\": it cannot run the domain");
		return -1;
	}
	/*
	 * The domain must hold before anyone can run it there: "go" goes out only
	 * once the runner says no cancel or stall can resume it any more.
	 */
	if (ctl_pending(c->hooks)) {
		snprintf(t->err, sizeof(t->err), "the domain here would not hold for \"go\" "
			 "(cancelled, timed out or gone): the receiver discards its copy");
		return -1;
	}
	test_pause("held");
	if (mig_send(t->fd, MIG_GO, NULL)) {
		/* Nothing or a part of "go\n" went out: the receiver runs only on the whole line. */
		snprintf(t->err, sizeof(t->err), "telling the receiver to go: %s", strerror(errno));
		return -1;
	}
	if (test_env("SR_MIGRATE_TEST_DROP_AFTER_GO")) {
		/* Testing aid: the link dies here, so any answer already queued is lost too. */
		shutdown(t->fd, SHUT_RDWR);
		rc = 0;
		snprintf(why, sizeof(why), "the connection was closed");
	} else {
		rc = mig_recv(t->fd, line, sizeof(line), MIG_RUNNING_TIMEOUT_MS, why, sizeof(why));
	}
	if (rc == 1 && !strcmp(line, MIG_RUNNING)) {
		t->ran_there = true;
		test_pause("running");
		return 0;
	}
	if (rc == 1 && !strncmp(line, MIG_ERROR " ", 6)) {
		/* It answers "running" only once its vCPUs run; this one exits without. */
		snprintf(t->err, sizeof(t->err), "the receiver could not start the domain: %s",
			 str_escape(esc, sizeof(esc), line + 6, sizeof(line)));
		return -1;
	}
	t->unknown = true;
	snprintf(t->err, sizeof(t->err), "the receiver was told to go but did not say it runs "
		 "the domain (%s): whether %s runs it is unknown, so \"%s\" stays paused here. "
		 "Check there (sr-ctl list); if it runs there, end it here with sr-ctl destroy %s, "
		 "else resume it here with sr-ctl resume %s",
		 rc == 1 ? str_escape(esc, sizeof(esc), line, sizeof(line)) : why, c->dest,
		 c->dom, c->dom, c->dom);
	return 1;
}

/*
 * "prepared": the image is complete, the domain waits paused.  Signals stay
 * blocked from here to the end of the request: a ^C can no longer split
 * "FILE is there" from "the domain knows it is".
 */
static int decide_prepared(const char *line, void *arg)
{
	struct save_ctx *c = arg;

	(void)line;
	block_signals(true);
	if (c->prog->shown)
		fputc('\n', stderr);
	c->prog->shown = false;
	if (c->t->net)
		return handshake(c);
	if (c->to_stdout)
		return 0;	/* every byte went to stdout: that is all "committed" can mean */
	test_pause("placing");	/* tests make FILE unplaceable here, past the checks up front */
	if (place_target(c->t))
		return -1;
	if (close(c->t->fd)) {
		snprintf(c->t->err, sizeof(c->t->err), "closing the image: %s", strerror(errno));
		c->t->fd = -1;
		return -1;
	}
	c->t->fd = -1;
	/* Testing aid: hold the commit window open so tests can signal into it. */
	if (test_env("SR_SAVE_COMMIT_DELAY_MS"))
		usleep(1000 * atoi(test_env("SR_SAVE_COMMIT_DELAY_MS")));
	test_pause("commit");
	return 0;
}

static int on_prepared(const char *line, void *arg)
{
	int v;

	save_json_step(sj, "prepared");
	v = decide_prepared(line, arg);
	save_json_step(sj, v == 0 ? "commit" : v > 0 ? "hold" : "abort");
	return v;
}

static void on_progress(const char *line, void *arg)
{
	struct save_ctx *c = arg;

	show_progress(line, c->prog);
	save_json_line(sj, line);
}

/*
 * The image's absolute path, which its disk snapshots are named after
 * (FILE.diskN): the runner makes them, from its own working directory.
 */
static int snapshot_base(const char *path, char *out, size_t len)
{
	char d[4096], b[4096], *dir;
	int n;

	snprintf(d, sizeof(d), "%s", path);
	snprintf(b, sizeof(b), "%s", path);
	if (!(dir = realpath(dirname(d), NULL)))
		return -1;
	n = snprintf(out, len, "%s/%s", strcmp(dir, "/") ? dir : "", basename(b));
	free(dir);
	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* A failure, as the JSON document's and the end event's message. */
static void json_failed(const char *msg)
{
	save_json_end(sj, false, msg);
}

int save_cli(int argc, char **argv, bool migrate)
{
	static const struct option opts[] = {
		{ "checkpoint", no_argument, NULL, 'c' },
		{ "live", no_argument, NULL, 'l' },
		{ "cold", no_argument, NULL, 'C' },
		{ "dirty-track", required_argument, NULL, 'D' },
		{ "downtime-ms", required_argument, NULL, 'T' },
		{ "max-iters", required_argument, NULL, 'I' },
		{ "max-bytes-factor", required_argument, NULL, 'F' },
		{ "throttle", required_argument, NULL, 'R' },
		{ "stall-timeout", required_argument, NULL, 'Z' },
		{ "stats", no_argument, NULL, 'S' },
		{ "paused", no_argument, NULL, 'p' },
		{ "disk-snapshot", no_argument, NULL, 'K' },
		{ "disk-hash", required_argument, NULL, 'k' },
		{ "compress", required_argument, NULL, 'z' },
		{ "threads", required_argument, NULL, 'j' },
		{ "bandwidth", required_argument, NULL, 'B' },
		{ "connect-timeout", required_argument, NULL, 'O' },
		{ "idle-timeout", required_argument, NULL, 'W' },
		{ "tls-psk", required_argument, NULL, 'P' },
		{ "tls-creds", required_argument, NULL, 'X' },
		{ "tls-authz", required_argument, NULL, 'A' },
		{ "ssh", required_argument, NULL, 'H' },
		{ "remote", required_argument, NULL, 'r' },
		{ "name", required_argument, NULL, 'n' },
		{ "remote-disk", required_argument, NULL, 'd' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'J' },
		{ "progress", required_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		USAGE_VERSION_OPTION,
		{ 0 }
	};
	bool checkpoint = false, paused = false, quiet = false, live = migrate, to_stdout;
	bool json = false, events = false, no_progress = false, disk_snapshot = false;
	const char *disk_hash = "sample";
	const char *track = "auto", *throttle = NULL, *ssh = "ssh", *remote = "sr-restore";
	const char *name = NULL;
	char *rdisk[SR_MAX_DISKS];	/* --remote-disk, in disk order */
	unsigned nrdisk = 0;
	unsigned long downtime = 0, iters = 0, factor = 0, stall = SAVE_STALL_DEFAULT_S;
	unsigned long bandwidth = 0, connect_s = 10, idle_s = 30;
	long threads = -1;
	struct save_req q;
	const char *compress = "lz4", *dom, *path;
	struct progress prog = { 0 };
	struct target t = { .fd = -1 };
	struct tls_opts tlso = { .server = false };
	struct ctl_hooks hooks = { .on_progress = on_progress, .on_prepared = on_prepared };
	struct save_ctx sc = { .prog = &prog, .t = &t, .hooks = &hooks };
	char req[SAVE_REQ_MAX], reply[1024];
	int c, fd, rc;

	hooks.arg = &sc;
	sr_set_prog(argv[0]);
	while ((c = usage_getopt(argc, argv, migrate ? "qj:n:h" : "lcpqj:n:h", opts)) != -1) {
		switch (c) {
		case 'l': live = true; break;
		case 'C':
			if (!migrate)
				usage_error("--cold is sr-migrate's; sr-save is cold unless --live");
			live = false;
			break;
		case 'S': prog.stats = true; break;
		case 'D':
			if (strcmp(optarg, "auto") && strcmp(optarg, "bitmap") && strcmp(optarg, "clear") &&
			    strcmp(optarg, "ring"))
				usage_error("--dirty-track takes auto, bitmap, clear or ring");
			track = optarg;
			break;
		case 'T': downtime = parse_ulong("--downtime-ms", optarg, 1, 3600000); break;
		case 'I': iters = parse_ulong("--max-iters", optarg, 1, 1000); break;
		case 'F': factor = parse_ulong("--max-bytes-factor", optarg, 1, 100); break;
		case 'R':
			if (strcmp(optarg, "auto") && strcmp(optarg, "off"))
				usage_error("--throttle takes auto or off, not \"%s\"", optarg);
			throttle = optarg;
			break;
		case 'Z': stall = parse_ulong("--stall-timeout", optarg, 1, 3600); break;
		case 'j': threads = parse_ulong("--threads", optarg, 0, 64); break;
		case 'B': bandwidth = parse_ulong("--bandwidth", optarg, 1, 1000000); break;
		case 'O': connect_s = parse_ulong("--connect-timeout", optarg, 1, 3600); break;
		case 'W': idle_s = parse_ulong("--idle-timeout", optarg, 1, 3600); break;
		case 'P': tlso.psk_file = optarg; break;
		case 'X': tlso.creds_dir = optarg; break;
		case 'A': {
			char bad[200];

			if (tls_opts_authz(&tlso, optarg, bad, sizeof(bad)))
				usage_error("%s", bad);
			break;
		}
		case 'H': ssh = optarg; break;
		case 'r': remote = optarg; break;
		case 'd':
			if (nrdisk == SR_MAX_DISKS)
				usage_error("--remote-disk: at most %u disks", SR_MAX_DISKS);
			{	/* sr-restore's --disk grammar, checked before ssh starts */
				struct virtio_blk_opts d;
				char why[200];

				if (virtio_blk_parse(optarg, &d, why, sizeof(why)))
					usage_error("--remote-disk takes FILE[,ro][,cache=none|writeback]: %s",
					    why);
				if (!remote_word_ok(optarg))
					usage_error("--remote-disk: a FILE for the remote shell may not hold "
					    "' \" \\ ` $ ! or a control character (sh, fish and tcsh "
					    "quote them differently): rename it, or migrate over tcp: "
					    "with sr-restore --listen --disk there");
			}
			rdisk[nrdisk++] = optarg;
			break;
		case 'n':
			/* It goes into the remote shell's command line: sr's name rules, checked here. */
			if (!*optarg || *optarg == '.' || strlen(optarg) > 48 ||
			    strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					   "0123456789._-") != strlen(optarg))
				usage_error("bad domain name \"%s\": 1..48 characters of "
				    "A-Z a-z 0-9 . _ -, not starting with a dot", optarg);
			name = optarg;
			break;
		case 'K':
			if (migrate)
				usage_error("--disk-snapshot is sr-save's (a migration ends the domain here)");
			disk_snapshot = true;
			break;
		case 'k':
			if (strcmp(optarg, "sample") && strcmp(optarg, "full"))
				usage_error("--disk-hash takes sample or full, not \"%s\"", optarg);
			disk_hash = optarg;
			break;
		case 'c': checkpoint = true; break;
		case 'p': paused = true; break;
		case 'q': quiet = true; break;
		case 'J': json = true; break;
		case 'G':
			if (strcmp(optarg, "json") && strcmp(optarg, "text") && strcmp(optarg, "none"))
				usage_error("--progress takes text, json or none, not \"%s\"", optarg);
			events = !strcmp(optarg, "json");
			no_progress = !strcmp(optarg, "none");
			break;
		case 'z':
			if (strcmp(optarg, "lz4") && strcmp(optarg, "none"))
				usage_error("--compress takes lz4 or none, not \"%s\"", optarg);
			compress = optarg;
			break;
		case 'h': usage(stdout, migrate); return 0;
		default: return EXIT_USAGE;
		}
	}
	if (optind > argc - 2)
		usage_error("%s", optind == argc ? "no DOMAIN given" : migrate ?
			    "no destination given (tcp:HOST:PORT or ssh:[USER@]HOST)" :
			    "no FILE given (or -, tcp:HOST:PORT, ssh:[USER@]HOST)");
	if (optind < argc - 2)
		usage_error("unexpected argument '%s' (DOMAIN and %s only)", argv[optind + 2],
			    migrate ? "a destination" : "FILE");
	dom = argv[optind];
	path = argv[optind + 1];
	sc.dom = dom;
	sc.dest = path;
	t.path = path;
	t.net = !strncmp(path, "tcp:", 4) || !strncmp(path, "ssh:", 4);
	if (migrate && !t.net)
		usage_error("DEST is tcp:HOST:PORT or ssh:[USER@]HOST, not \"%s\" (sr-save writes "
		    "files)", path);
	if (t.net && (checkpoint || paused))
		usage_error("--checkpoint and --paused would leave the domain here as well as "
		    "there; a migration ends it here");
	if ((tlso.psk_file || tlso.creds_dir || tlso.nauthz) && strncmp(path, "tcp:", 4))
		usage_error("--tls-psk, --tls-creds and --tls-authz are for tcp: (ssh: has "
		    "ssh's own)");
	if (tlso.psk_file && tlso.creds_dir)
		usage_error("--tls-psk or --tls-creds, not both");
	if (tlso.nauthz && !tlso.creds_dir)
		usage_error("--tls-authz names certificates: it needs --tls-creds");
	if (name && strncmp(path, "ssh:", 4))
		usage_error("--name is for ssh: (sr-restore --listen --name sets it for tcp:)");
	if (nrdisk && strncmp(path, "ssh:", 4))
		usage_error("--remote-disk is for ssh: (sr-restore --listen --disk gives them for "
		    "tcp:)");
	to_stdout = !strcmp(path, "-");
	sc.to_stdout = to_stdout;
	if (disk_snapshot && !checkpoint && !paused)
		usage_error("--disk-snapshot needs -c or -p: a domain that ends with the save "
		    "leaves its disk as saved");
	if (disk_snapshot && (to_stdout || t.net))
		usage_error("--disk-snapshot writes FILE.diskN beside an image FILE: not with %s",
		    to_stdout ? "-" : "a network destination");
	if (to_stdout && isatty(STDOUT_FILENO))
		usage_error("refusing to write an image to a terminal");
	if (to_stdout && (json || events))
		usage_error("--json and --progress json print on stdout, where - sends the image");
	if (!live && (downtime || iters || factor || throttle || strcmp(track, "auto")))
		usage_error("--dirty-track, --downtime-ms, --max-iters, --max-bytes-factor and "
		    "--throttle need %s", migrate ? "a live migration (not --cold)" : "--live");
	if (!strncmp(path, "tcp:", 4) && net_check_hostport(path + 4, t.err, sizeof(t.err)))
		usage_error("%s", t.err);
	if (!strncmp(path, "ssh:", 4) && !ssh_host_ok(path + 4))
		usage_error("%s: not a [USER@]HOST", path);
	/* From here every failure is a JSON document too (--json, --progress json). */
	if (json || events) {
		sj = save_json_new(migrate ? "sr-migrate" : "sr-save", dom, path, live, json, events);
		if (!sj)
			die(EXIT_USAGE, "out of memory");
		die_set_hook(json_failed);
	}
	/* Nothing is written, sent or started on another host for a domain that is not here. */
	if (ctl_request(dom, "status", -1, NULL, reply, sizeof(reply)) < 0)
		die(EXIT_USAGE, "%s; nothing was %s%s", reply, !t.net ? "written" :
		    path[0] == 't' ? "sent to " : "started on ", t.net ? path + 4 : "");

	signal(SIGPIPE, SIG_IGN);
	if (to_stdout) {
		fd = STDOUT_FILENO;
	} else if (!strncmp(path, "tcp:", 4)) {
		if (open_tcp(&t, path + 4, connect_s, idle_s, &tlso))
			die(1, "%s; the domain was not touched", t.err);
		fd = t.fd;
		if (prog.stats && !quiet)
			fprintf(stderr, "transport: %s%s%s\n", t.tls ? tls_describe(t.tls) :
				"plaintext TCP (no TLS)", t.tls ? "; the receiver is " : "",
				t.tls ? tls_peer_name(t.tls) : "");
	} else if (!strncmp(path, "ssh:", 4)) {
		if (open_ssh(&t, path + 4, ssh, remote, name, rdisk, nrdisk))
			die(1, "%s; the domain was not touched", t.err);
		fd = t.fd;
	} else {
		sig_img = &t.img;
		set_signals(on_signal);
		if (open_target(&t))
			die(EXIT_USAGE, "%s%s: %s%s", path, errno == EEXIST || errno == ELOOP ? ".tmp" : "",
			    strerror(errno), errno == EEXIST || errno == ELOOP ?
			    " (another save in progress? remove it if not)" : "");
		fd = t.fd;
	}
	save_req_init(&q);
	q.live = live;
	q.checkpoint = checkpoint;
	q.paused = paused;
	q.downtime_ms = downtime;
	q.max_iters = iters;
	q.max_bytes_factor = factor;
	q.stall_timeout_s = stall;
	q.threads = (int)threads;
	q.bandwidth_mbs = bandwidth;
	snprintf(q.dirty_track, sizeof(q.dirty_track), "%s", track);
	snprintf(q.throttle, sizeof(q.throttle), "%s", throttle ? throttle : "auto");
	snprintf(q.compress, sizeof(q.compress), "%s", compress);
	snprintf(q.disk_hash, sizeof(q.disk_hash), "%s", disk_hash);
	if (disk_snapshot && snapshot_base(path, q.disk_snapshot, sizeof(q.disk_snapshot)))
		die(EXIT_USAGE, "%s: %s", path, strerror(errno));
	if (save_req_format(&q, req, sizeof(req)))
		die(EXIT_USAGE, "save request too long");
	prog.tty = !quiet && !events && !no_progress && isatty(STDERR_FILENO);
	prog.stats = prog.stats && !quiet;
	clock_gettime(CLOCK_MONOTONIC, &prog.t0);
	rc = ctl_request(dom, req, fd, &hooks, reply, sizeof(reply));
	if (prog.shown)
		fputc('\n', stderr);
	if (t.net && rc != 0 && !t.err[0] && !t.ran_there) {
		/* The stream broke: the receiver may have said why before it went. */
		char line[512], why[64], esc[600];

		shutdown(t.fd, SHUT_WR);
		if (mig_recv(t.fd, line, sizeof(line), 2000, why, sizeof(why)) == 1 &&
		    !strncmp(line, MIG_ERROR " ", 6))
			snprintf(t.err, sizeof(t.err), "the receiver: %s",
				 str_escape(esc, sizeof(esc), line + 6, sizeof(line)));
		else
			snprintf(t.err, sizeof(t.err), "sending to %s", path);
	}
	if (t.net) {
		close_net(&t);
		reap_ssh(&t);
	}
	if (rc != 0) {
		if (t.fd >= 0)
			close(t.fd);
		if (t.img.tmp[0])
			unlink(t.img.tmp);
		/* Placed but not committed (the runner timed out or went away): no image. */
		if (t.placed && unlink(path) == 0)
			pr_err("removed %s again: the domain did not take the commit", path);
		if (t.unknown)
			die(EXIT_UNKNOWN, "%s", t.err);
		if (t.ran_there)
			/* It runs there: only the copy here is in doubt, and it cannot run unasked. */
			die(EXIT_UNKNOWN, "the receiver runs \"%s\" on %s, but the domain here did not "
			    "confirm the commit (%s): if sr-ctl status %s still finds it here, it is "
			    "paused: end it with sr-ctl destroy %s", dom, path, reply, dom, dom);
		die(rc < 0 ? EXIT_USAGE : 1, "%s%s%s%s", t.err[0] ? t.err : "", t.err[0] ? "; " : "",
		    reply, rc > 0 && !strstr(reply, "the domain ") ? "; the domain runs on as before" : "");
	}
	/* Committed: a signal held back during the commit no longer undoes anything. */
	set_signals(SIG_IGN);
	block_signals(false);
	if (!quiet)
		pr_info("%s: %s: %s%s", sr_prog, to_stdout ? "stdout" : path,
			t.net ? "the receiver runs the domain; " : "", reply);
	save_json_end(sj, true, reply);
	return 0;
}
