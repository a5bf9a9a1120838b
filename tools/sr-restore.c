/* SPDX-License-Identifier: MIT */
/* sr-restore: build a domain from an image and run it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abi.h"
#include "ctl.h"
#include "detach.h"
#include "hvmctx.h"
#include "listener.h"
#include "migrate.h"
#include "net.h"
#include "runner.h"
#include "sandbox.h"
#include "serial8250.h"
#include "sr_disk.h"
#include "sr_format.h"
#include "host.h"
#include "restore_teardown.h"
#include "tls.h"
#include "usage.h"
#include "util.h"
#include "virtio.h"

#define EXIT_BAD_IMAGE 5
#define EXIT_NOT_MIGRATED 6	/* the source never said "go": no VM is left here */

/* A connection that has not authenticated (or sent an image's first bytes) by then is dropped. */
#define HANDSHAKE_TIMEOUT_MS	10000
#define DEADLINE_DEFAULT_S	3600
#define MIN_RATE_DEFAULT_KBS	64
#define RATE_WINDOW_S		10

static void usage(FILE *f)
{
	fprintf(f,
"usage: sr-restore [OPTIONS] FILE|-\n"
"       sr-restore --listen [ADDR:]PORT [OPTIONS]\n"
"       sr-restore --migrate-receive [OPTIONS] -\n"
"Build a domain from an sr image (\"-\": standard input) and resume it; this\n"
"process then runs it, like sr-run: console on stdout, control socket\n"
"$SR_RUN_DIR/NAME.sock (sr-ctl, sr-save work on it).\n"
"\n"
"      --listen [ADDR:]PORT  receive one migration over TCP (sr-migrate DOMAIN\n"
"                           tcp:HOST:PORT), then run the domain here as above.\n"
"                           With TLS, ADDR left out is every address (IPv6 and\n"
"                           IPv4); without TLS only loopback is allowed (ADDR\n"
"                           left out: 127.0.0.1).  Connections that fail or do\n"
"                           not authenticate are dropped and listening goes on\n"
"      --tls-psk FILE       TLS 1.3 with a pre-shared key: FILE has psktool's\n"
"                           \"identity:hexkey\" lines; the source's identity\n"
"                           must be one of them\n"
"      --tls-creds DIR      TLS 1.3 with X.509: DIR/ca-cert.pem, server-cert.pem,\n"
"                           server-key.pem (QEMU's layout); the source must show\n"
"                           a certificate the CA signed\n"
"      --tls-authz NAME     only these peers (repeat it for each): a\n"
"                           certificate's DN, whole, or a host name in its\n"
"                           subjectAltName (no wildcards); a PSK identity\n"
"      --insecure-plaintext  allow --listen without TLS on a non-loopback address:\n"
"                           anyone who reaches the port can send a VM\n"
"      --deadline S         --listen: the stream must end within S s (default\n"
"                           3600)\n"
"      --min-rate KB/s      --listen: cut a source that sends less than this,\n"
"                           averaged over 10 s (default 64; 0: no least rate)\n"
"      --migrate-receive    receive one migration on stdin, answer on stdout\n"
"                           (what sr-migrate ssh: runs); once the domain runs,\n"
"                           detach (the console goes to --log)\n"
"      --accept-timeout S   --listen: give up when no source connects in S s\n"
"      --idle-timeout S     --listen: a stream silent for S s is dead (default 30)\n"
"      --detach             run in the background once the domain runs: the\n"
"                           console goes to --log, NAME.pid beside NAME.sock;\n"
"                           returns 0 then, or the restore's failure and status\n"
"                           (sr-ctl console NAME attaches to the console)\n"
"      --log FILE           --detach, --migrate-receive: the console once\n"
"                           detached (default $SR_RUN_DIR/NAME.log);\n"
"                           --migrate-receive: its own messages too, from\n"
"                           the start (not on ssh's stderr to the source)\n"
"  -n, --name NAME          domain name (default: the name in the image)\n"
"      --dirty-ring         track dirty pages with per-vCPU rings\n"
"                           (KVM_CAP_DIRTY_LOG_RING; for sr-save --live)\n"
"  -p, --paused             restore paused (resume with sr-ctl resume NAME)\n"
"      --clock MODE         advance (default): guest time moves on by the wall\n"
"                           time since the save; freeze: it resumes where it stopped\n"
"      --save-to FILE       where a guest-requested SAVE writes the next image\n"
"  -j, --threads N          threads that verify and decode page data while the\n"
"                           next is read (default: online CPUs; 0: none)\n"
"  -v, --verbose            say what was restored, and how long it took\n"
"      --progress MODE      text: a line of what was read so far, as sr-save's\n"
"                           (the default on a terminal); none: no line\n"
"      --max-memory MiB     refuse an image whose guest has more RAM than this\n"
"                           (default: this host's MemAvailable), before anything\n"
"                           is allocated\n"
"      --disk FILE[,ro][,cache=none|writeback]\n"
"                           the file of the image's disk N: the first --disk is\n"
"                           disk 0, the next disk 1, ... (sr-dump's \"disk N\"): an\n"
"                           image only names its disks, sr-restore never opens\n"
"                           what it names (for a checkpoint with --disk-snapshot:\n"
"                           its snapshot); one for each disk, no more.  ro: read-\n"
"                           only (refused for a disk the guest has writable);\n"
"                           cache=: the host cache, over the image's\n"
"      --disk-changed ok    use a disk whose file changed since the save (size,\n"
"                           file, mtime or content), with a warning; without it\n"
"                           such a restore is refused, naming it.  An image\n"
"                           saved with --disk-snapshot runs on its snapshot\n"
"      --no-sandbox         run without the per-thread seccomp filters (a kernel\n"
"                           without seccomp, or a call the filters do not know)\n"
"  -h, --help               this help\n"
"      --version            sr's version\n"
"\n"
"Nothing from the image reaches a vCPU before the whole image has verified.\n"
"Exit status: as sr-run (0 PASS, 1 guest failed, 2 usage/setup error, 3 KVM\n"
"error or a host that cannot run sr's guests, 4 destroyed), and 5 when the image is corrupt, truncated or foreign\n"
"(no guest code ran), 6 when a migration's source never said \"go\" (the VM was\n"
"discarded), 159 when a thread made a call outside its seccomp allow-list.  A migration receiver tells its source why it failed before it exits.\n");
}

/* --disk-changed ok: a disk whose identity differs from the image's is used anyway. */
static bool disk_changed_ok;

/*
 * --disk FILE[,ro][,cache=none|writeback], once per disk of the image in its
 * order: the files the guest's disks are.  An image (or a migration peer)
 * only names its disks; were the restore to open what it names, a crafted
 * one would hand the guest any file this host can open, read-write.  The
 * operator's ro and cache= are theirs too: the image only says what the
 * saved guest had.
 */
static struct virtio_blk_opts op_disk[SR_MAX_DISKS];
static unsigned op_disks;
static bool op_disk_used[SR_MAX_DISKS];

/*
 * What a migration's source hears when the restore fails here: a class of
 * cause, never this host's facts (its paths, its files, its free memory,
 * the names of the domains it runs, what its KVM lacks): those go to our
 * stderr only.  Only a fault in the stream itself (EBADMSG: the bytes the
 * source sent) is told as it is, and that none came in time (EAGAIN).  The
 * first cause set is the one told.
 */
static char peer_why[320];
/*
 * --listen without TLS: every source is unauthenticated, so a class would
 * still let anyone who connects probe this host (is a name in use, how
 * much memory is free: audit8).  It hears one answer for all of them; only
 * a fault in its own stream is told as it is (peer_why_stream).
 */
static bool peer_anonymous;
static bool peer_why_stream;
#define PEER_ANONYMOUS_WHY "refused by the receiver (an unauthenticated source is told no more; " \
			   "the receiver's log says why)"

static void peer_vset(bool stream, const char *fmt, va_list ap)
{
	if (peer_why[0])
		return;
	vsnprintf(peer_why, sizeof(peer_why), fmt, ap);
	peer_why_stream = stream;
}

static void __attribute__((format(printf, 1, 2))) peer_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	peer_vset(false, fmt, ap);
	va_end(ap);
}

/* A cause in the source's own stream: its bytes, its silence, or the guard's cut. */
static void __attribute__((format(printf, 1, 2))) peer_set_stream(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	peer_vset(true, fmt, ap);
	va_end(ap);
}

/* The guard cut the stream: its bound, whose values are the operator's, only to an authenticated source (audit9). */
static void peer_cut(const char *why)
{
	if (peer_anonymous)
		peer_set_stream("the receiver cut the stream: too slow, or past its deadline");
	else
		peer_set_stream("the receiver cut the stream: %s", why);
}

/* Any disk refused: which one, not why (the operator's files are theirs). */
static void peer_refused(unsigned disk)
{
	peer_set("disk %u: refused by the receiver: it has no file for it, or not this disk "
		 "(the receiver's log says why)", disk);
}

/* A failure with no class of its own: the fault of the stream, or of this host's KVM, or none said. */
static void peer_classify(const struct xc_error *err, const char *msg)
{
	if (err && err->sys_errno == EBADMSG)
		peer_set_stream("the receiver refused the stream: %s", msg);
	else if (err && err->sys_errno == EAGAIN)	/* the idle timeout; its text not told (audit8) */
		peer_set_stream("the receiver gave up on the stream: no data for its idle timeout");
	else if (err && err->sys_errno == EOPNOTSUPP)
		peer_set("refused by the receiver: its KVM cannot run this guest's CPU state (the "
			 "receiver's log says what it lacks)");
	else
		peer_set("the receiver could not restore the domain (the receiver's log says why)");
}

/*
 * A DISK record, before any vCPU exists: the operator's file for it must
 * still be the one the saved guest had (size, the same file, mtime, the
 * sampled or full hash, as the record says), else the restore is refused
 * naming what changed.  A checkpoint's disk (--disk-snapshot) is its
 * snapshot, checked against the snapshot's identity: the guest runs on
 * that, never on the disk the checkpointed domain went on writing
 * (docs/format.md §3.8.3).  The device then takes the very descriptor
 * checked, read-only when the image or the operator says so.
 */
static int check_disk(void *arg, const struct sr_disk_info *di, struct xc_error *err)
{
	bool snap = di->flags & SR_DISK_F_SNAPSHOT, image_ro = di->flags & SR_DISK_F_READ_ONLY;
	struct virtio_blk_opts o;
	struct sr_error e;
	struct stat st;
	char name[SR_DISK_PATH_MAX + 40], why[256], esc[4 * SR_DISK_PATH_MAX + 1];
	int fd, diff;

	if (di->disk >= op_disks) {
		peer_refused(di->disk);
		return xc_set_error(err, 0, "disk %u: the image names %s%s; sr-restore opens only the "
				    "files its operator names: --disk FILE for each disk, disk 0 "
				    "first", di->disk, snap ? "its snapshot " : "",
				    str_escape(esc, sizeof(esc), snap ? di->snap_path : di->path,
					       SR_DISK_PATH_MAX));
	}
	op_disk_used[di->disk] = true;
	o = op_disk[di->disk];
	o.disk = di->disk;
	/* "disk 0 /srv/vm.img", or "disk 0 snapshot /srv/ckpt.sr.disk0" (an error has 255 bytes). */
	snprintf(name, sizeof(name), snap ? "disk %u snapshot %s" : "disk %u %s", di->disk, o.path);
	/*
	 * The operator's ro is the last word: a guest that negotiated a writable
	 * disk cannot be given a read-only one under it, so that is refused.
	 * The image's ro stands whatever the operator said (more restrictive).
	 */
	if (o.ro && !image_ro) {
		peer_refused(di->disk);
		return xc_set_error(err, 0, "%s: --disk ...,ro, but the saved guest has disk %u "
				    "writable (it negotiated a writable disk; it cannot be made "
				    "read-only under it): restore refused", name, di->disk);
	}
	o.ro = image_ro;
	if (!o.cache_given)
		o.cache = di->cache == SR_DISK_CACHE_NONE ? VIRTIO_BLK_NONE : VIRTIO_BLK_WRITEBACK;
	/*
	 * Opened once, in the mode the guest will have it: the device takes this
	 * descriptor, so the file checked is the file used (audit7: a name
	 * re-opened can find another file, even under the same inode number).
	 * Not blocking on a FIFO, not taking a terminal: only a regular file is a disk.
	 */
	if ((fd = open(o.path, (o.ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0) {
		peer_refused(di->disk);
		return xc_set_error(err, errno, "%s", name);
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		peer_refused(di->disk);
		return xc_set_error(err, 0, "%s: not a regular file", name);
	}
	diff = sr_disk_check(fd, snap ? &di->snap_id : &di->id, 0, why, sizeof(why), &e);
	if (diff < 0) {
		close(fd);
		peer_refused(di->disk);
		return xc_set_error(err, 0, "%s: %s", name, e.msg);
	}
	if (diff != SR_DISK_SAME && !disk_changed_ok) {
		close(fd);
		peer_refused(di->disk);
		return xc_set_error(err, 0, "%s changed since the save: %s (--disk-changed ok uses it "
				    "anyway)", name, why);
	}
	if (diff != SR_DISK_SAME)
		pr_warn("%s changed since the save: %s; used anyway (--disk-changed ok)", name, why);
	if (snap)
		pr_info("%s: %s: the guest runs on the checkpoint's snapshot (%s is not opened)",
			sr_prog, name, str_escape(esc, sizeof(esc), di->path, SR_DISK_PATH_MAX));
	o.want_id = true;		/* the device takes this descriptor, no file by its name */
	o.checked_fd = fd;
	test_pause("disk-checked");	/* tests put another file at its name here */
	if (runner_add_image_disk(arg, &o, err)) {
		close(fd);
		return -1;
	}
	return 0;
}

/*
 * Once the image's DISK records are all checked: a --disk that matched none
 * of them is an operator's mistake (a disk left out of the guest, or files
 * given in the wrong order), refused before any vCPU exists.
 */
static int disks_done(void *arg, unsigned ndisks, struct xc_error *err)
{
	(void)arg;
	for (unsigned i = 0; i < op_disks; i++) {
		if (op_disk_used[i])
			continue;
		peer_set("refused by the receiver: its disk files are not the image's disks (the "
			 "receiver's log says why)");
		return xc_set_error(err, 0, "--disk given %u time%s, the image has %u disk%s (%s "
				    "is disk %u, which it has not)%s", op_disks,
				    op_disks == 1 ? "" : "s", ndisks, ndisks == 1 ? "" : "s",
				    op_disk[i].path, i, ndisks ? "" : ": it runs with no disk");
	}
	return 0;
}

/*
 * The reader's calls that open a disk file, which its list refuses: run by
 * the main thread, which waits for the reader meanwhile (sandbox_ask).
 */
struct disk_call {
	struct runner *r;
	const struct sr_disk_info *di;
	const char *name;
	uint32_t version, instance;
	const void *data;
	size_t len;
	struct xc_error *err;
	int rc;
};

static void disk_on_main(void *arg)
{
	struct disk_call *c = arg;

	if (c->di) {
		c->rc = check_disk(c->r, c->di, c->err);
		return;
	}
	c->rc = runner_device_load(c->r, c->name, c->version, c->instance, c->data, c->len,
				   c->err);
	/* Its error names this host's file (which the source must not learn). */
	if (c->rc)
		peer_refused(c->instance);
}

static int restore_disk(void *arg, const struct sr_disk_info *di, struct xc_error *err)
{
	struct disk_call c = { .r = arg, .di = di, .err = err };

	sandbox_reader_seal();		/* no disk descriptor within reach of ftruncate/fallocate */
	sandbox_ask(disk_on_main, &c);
	return c.rc;
}

/*
 * DEVICE records: the UART and the device models.  A virtio-blk device is
 * made on the main thread: it opens the disk its DISK record named.
 */
static int restore_device(void *arg, const char *name, uint32_t version, uint32_t instance,
			  const void *data, size_t len, struct xc_error *err)
{
	struct disk_call c = { .r = arg, .name = name, .version = version, .instance = instance,
			       .data = data, .len = len, .err = err };

	if (strcmp(name, "virtio-blk"))
		return runner_device_load(arg, name, version, instance, data, len, err);
	sandbox_ask(disk_on_main, &c);
	return c.rc;
}

/*
 * A migration: where the receiver's answers go (-1: none; the source's come
 * in on the stream's fd), and the detached parent's pipe.
 */
static int chan = -1;
static struct tls_conn *tls;		/* --listen with TLS: the source's connection */
static struct net_guard *stream_guard;	/* --listen: the stream's bounds (net.h) */

/* The die() hook too: msg is for our stderr, the source hears peer_why's class (above). */
static void tell_source(const char *msg)
{
	(void)msg;
	if (chan >= 0) {
		peer_classify(NULL, NULL);
		mig_send(chan, MIG_ERROR, peer_anonymous && !peer_why_stream ? PEER_ANONYMOUS_WHY :
			 peer_why);
	}
	if (tls && chan >= 0) {
		/* It counts what the pump decrypted: stopped before the connection is freed (audit9). */
		net_guard_stop(stream_guard, NULL, 0);
		stream_guard = NULL;
		tls_end(tls);		/* the answer leaves before we exit */
		tls = NULL;
		chan = -1;
		test_pause("told");	/* tests hold the exit here, past the guard's next look */
	}
}

/* The parent --detach and --migrate-receive leave waiting: a byte and a status, nothing else. */
static void detach_parent_start(void)
{
	sandbox_enter(SANDBOX_DETACH);
}

/* The sandbox: each thread the runner starts narrows its filter to its kind. */
static void runner_thread_start(enum runner_thread kind)
{
	static const enum sandbox_kind as[] = {
		[RUNNER_THREAD_VCPU] = SANDBOX_VCPU, [RUNNER_THREAD_CONSOLE] = SANDBOX_CONSOLE,
		[RUNNER_THREAD_INPUT] = SANDBOX_INPUT, [RUNNER_THREAD_SAVE] = SANDBOX_SAVE,
		[RUNNER_THREAD_SAVE_WORKER] = SANDBOX_WORKER,
		[RUNNER_THREAD_CONTROL] = SANDBOX_CONTROL, [RUNNER_THREAD_DEVICE] = SANDBOX_DEVICE,
	};

	sandbox_enter(as[kind]);
}

static void worker_thread_start(void *arg)
{
	(void)arg;
	sandbox_enter(SANDBOX_WORKER);
}

/* --listen: the stream's guard and the TLS pumps narrow to their kinds as they start. */
static void guard_thread_start(void)
{
	sandbox_enter(SANDBOX_GUARD);
}

static void pump_thread_start(void)
{
	sandbox_enter(SANDBOX_TLS_PUMP);
}

/* The image: parsed, and its state put into KVM, on the reader's thread (sandbox_run). */
struct read_call {
	int fd;
	struct hvmctx_image *img;
	struct hvmctx_restore *rs;
	struct xc_domain *d;
	const struct hvmctx_restore_opts *ro;
	struct hvmctx_restore_stats *st;
	struct xc_error *err;
	int rc;
};

static void read_begin(void *arg)
{
	struct read_call *c = arg;

	c->rs = hvmctx_restore_begin(c->fd, c->img, c->err);
}

static void read_finish(void *arg)
{
	struct read_call *c = arg;

	c->rc = hvmctx_restore_finish(c->rs, c->d, c->ro, c->st, c->err);
}

static int on_reader(void (*fn)(void *), struct read_call *c)
{
	int e = sandbox_run(SANDBOX_READER, fn, c);

	/* errno 0: pthread_create's EAGAIN is this host's, not the idle timeout's (audit9). */
	if (e)
		return xc_set_error(c->err, 0, "starting the reader's thread: %s", strerror(e));
	return 0;
}

/* Ends the stream's watch: the guard's bound when it cut the connection, else msg. */
static const char *stream_why(struct net_guard **guard, const char *msg)
{
	static char why[200];
	bool cut = *guard && net_guard_stop(*guard, why, sizeof(why));

	*guard = NULL;
	return cut ? why : msg;
}

struct listen_opts {
	const char *spec;
	bool insecure;
	struct tls_creds *creds;	/* NULL: plaintext */
	unsigned long accept_s, idle_s;
	struct net_guard_opts bounds;
};

static void refused(void *arg, const char *peer, const char *why)
{
	if (peer)
		pr_warn("%s: refused %s: %s; still listening", (const char *)arg, peer, why);
	else
		pr_warn("%s: %s; still listening", (const char *)arg, why);
}

/* The stream's payload so far, for the guard (user-space TLS: what the pump decrypted). */
static uint64_t tls_count(const void *conn)
{
	return tls_bytes_in(conn);
}

/*
 * Accepts sources until one authenticates (TLS) or starts an image
 * (plaintext), several at once (listener.h); the others are logged and
 * dropped, and listening goes on.  Nothing is answered to them: an
 * unauthenticated peer learns nothing about this host.  The stream's
 * bounds are watched from then on.  Returns the stream's descriptor.
 */
static int accept_source(const struct listen_opts *o, int lfd, const char *bound,
			 struct net_guard **guard)
{
	char why[400];
	struct listener_source src;
	struct listener_opts lso = {
		.lfd = lfd, .creds = o->creds, .magic = SR_MAGIC, .magic_len = sizeof(SR_MAGIC) - 1,
		.until_ns = o->accept_s ? mono_ns() + o->accept_s * 1000000000ull : 0,
		.idle_s = o->idle_s, .handshake_ms = HANDSHAKE_TIMEOUT_MS,
		.refused = refused, .arg = (void *)bound,
	};
	int fd;

	if (listener_accept(&lso, &src, why, sizeof(why)))
		die(EXIT_USAGE, "%s: %s", bound, why);
	close(lfd);
	tls = src.tls;
	fd = tls ? tls_plain_fd(tls) : src.fd;
	*guard = net_guard_start(src.fd, fd, tls && !tls_is_ktls(tls) ? tls_count : NULL, tls,
				 &o->bounds, why, sizeof(why));
	if (!*guard)
		die(EXIT_USAGE, "%s", why);
	if (tls)
		pr_info("%s: receiving a domain from %s, authenticated as %s (%s)", sr_prog,
			src.peer, tls_peer_name(tls), tls_describe(tls));
	else
		pr_info("%s: receiving a domain from %s", sr_prog, src.peer);
	return fd;
}

static unsigned long parse_num(const char *opt, const char *s, unsigned long min,
			       unsigned long max)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*end || end == s || s[0] == '-' || v < min || v > max)
		usage_error("%s takes %lu..%lu, not \"%s\"", opt, min, max, s);
	return v;
}

/* The line a restore shows while it reads the image, as sr-save's while it writes one. */
struct read_progress {
	uint64_t total;			/* FILE's size; 0: not known (a pipe, a migration) */
	uint64_t t0, last;		/* mono_ns */
	bool shown;
};

static void show_read(void *arg, uint64_t bytes)
{
	struct read_progress *p = arg;
	uint64_t now = mono_ns();
	double s = (now - p->t0) / 1e9;

	if (now - p->last < 100000000ull && bytes != p->total)	/* ten a second at most */
		return;
	p->last = now;
	p->shown = true;
	if (p->total)
		fprintf(stderr, "\r%s: %.1f of %.1f MiB read, %.1f MB/s   ", sr_prog,
			bytes / 1048576.0, p->total / 1048576.0, s > 0 ? bytes / s / 1e6 : 0);
	else
		fprintf(stderr, "\r%s: %.1f MiB read, %.1f MB/s   ", sr_prog, bytes / 1048576.0,
			s > 0 ? bytes / s / 1e6 : 0);
}

/* NAME is this process's before the image is read: a second domain of that name is refused at once. */
/* This host cannot run guests: why, to our stderr; the source hears the class. */
static void __attribute__((noreturn)) refuse_host(const char *why)
{
	peer_set("refused by the receiver: its host cannot run guests now (the receiver's log "
		 "says why)");
	die(EXIT_NO_KVM, "%s", why);
}

static void claim_name(const char *name, struct runner_config *cfg)
{
	struct xc_error err;

	if (runner_claim_name(name, &cfg->lock_fd, &err)) {
		/* Not which domains run here, nor where: that the name is taken. */
		peer_set("refused by the receiver: the domain's name is in use there");
		die(EXIT_USAGE, "%s", err.msg);
	}
	cfg->claimed = true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "paused", no_argument, NULL, 'p' },
		{ "dirty-ring", no_argument, NULL, 'R' },
		{ "clock", required_argument, NULL, 'k' },
		{ "save-to", required_argument, NULL, 's' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "max-memory", required_argument, NULL, 'M' },
		{ "threads", required_argument, NULL, 'j' },
		{ "listen", required_argument, NULL, 'L' },
		{ "migrate-receive", no_argument, NULL, 'm' },
		{ "accept-timeout", required_argument, NULL, 'A' },
		{ "idle-timeout", required_argument, NULL, 'W' },
		{ "log", required_argument, NULL, 'g' },
		{ "detach", no_argument, NULL, 'd' },
		{ "tls-psk", required_argument, NULL, 'P' },
		{ "tls-creds", required_argument, NULL, 'X' },
		{ "tls-authz", required_argument, NULL, 'Z' },
		{ "insecure-plaintext", no_argument, NULL, 'I' },
		{ "deadline", required_argument, NULL, 'D' },
		{ "min-rate", required_argument, NULL, 'r' },
		{ "no-sandbox", no_argument, NULL, 'S' },
		{ "disk-changed", required_argument, NULL, 'K' },
		{ "disk", required_argument, NULL, 0x100 },
		{ "progress", required_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		USAGE_VERSION_OPTION,
		{ 0 }
	};
	struct hvmctx_restore_opts ro = { .clock = HVMCTX_CLOCK_ADVANCE };
	uint64_t t_start = mono_ns();
	struct runner_config cfg = { 0 };
	struct hvmctx_restore_stats st;
	struct hvmctx_image img;
	struct hvmctx_restore *rs;
	struct xc_error err;
	struct runner *r = NULL;
	const char *path, *name = NULL, *listen_on = NULL, *log = NULL;
	bool paused = false, verbose = false, receive = false, started = false, sandbox = true;
	bool detach = false;
	unsigned long accept_s = 0, idle_s = 30;
	struct tls_opts tlso = { .server = true };
	struct listen_opts lo = { .bounds = { DEADLINE_DEFAULT_S, MIN_RATE_DEFAULT_KBS,
					      RATE_WINDOW_S } };
	struct read_call rc_read = { 0 };
	char logbuf[4200];
	unsigned long long max_mib = 0;
	char *end;
	int c, fd = -1, rc;
	int progress = -1;		/* --progress: 1 text, 0 none, -1 a line on a terminal */
	struct read_progress rp = { 0 };
	struct stat sb;

	sr_set_prog(argv[0]);
	ro.threads = threads_default();
	while ((c = usage_getopt(argc, argv, "n:pvj:h", opts)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'p': paused = true; break;
		case 'R': cfg.dirty_ring = true; break;
		case 'v': verbose = true; break;
		case 's': cfg.save_to = optarg; break;
		case 'M':
			max_mib = strtoull(optarg, &end, 10);
			if (*end || end == optarg || !max_mib)
				usage_error("--max-memory takes a number of MiB, not \"%s\"", optarg);
			break;
		case 'L': listen_on = optarg; break;
		case 'm': receive = true; break;
		case 'g': log = optarg; break;
		case 'd': detach = true; break;
		case 'P': tlso.psk_file = optarg; break;
		case 'X': tlso.creds_dir = optarg; break;
		case 'Z': {
			char bad[200];

			if (tls_opts_authz(&tlso, optarg, bad, sizeof(bad)))
				usage_error("%s", bad);
			break;
		}
		case 'I': lo.insecure = true; break;
		case 'D': lo.bounds.deadline_s = parse_num("--deadline", optarg, 1, 7 * 86400); break;
		case 'r': lo.bounds.min_rate_kbs = parse_num("--min-rate", optarg, 0, 10000000); break;
		case 'S': sandbox = false; break;
		case 0x100: {
			struct virtio_blk_opts *d = &op_disk[op_disks];
			char why[200], *real;

			if (op_disks == SR_MAX_DISKS)
				usage_error("--disk: at most %u disks", SR_MAX_DISKS);
			if (virtio_blk_parse(optarg, d, why, sizeof(why)))
				usage_error("%s", why);
			/* Absolute (a later save records it, and DISK paths are), and there now:
			 * a mistyped FILE is no error found after the whole stream was read. */
			if (!(real = realpath(d->path, NULL)))
				usage_error("--disk %s: %s", d->path, strerror(errno));
			if (strlen(real) >= sizeof(d->path))
				usage_error("--disk %s: a path too long", d->path);
			strcpy(d->path, real);
			free(real);
			op_disks++;
			break;
		}
		case 'K':
			if (strcmp(optarg, "ok"))
				usage_error("--disk-changed takes ok, not \"%s\"", optarg);
			disk_changed_ok = true;
			break;
		case 'G':
			if (strcmp(optarg, "text") && strcmp(optarg, "none"))
				usage_error("--progress takes text or none, not \"%s\"", optarg);
			progress = !strcmp(optarg, "text");
			break;
		case 'A':
		case 'W':
			{
				unsigned long v = strtoul(optarg, &end, 10);

				if (*end || end == optarg || optarg[0] == '-' || !v || v > 86400)
					usage_error("--%s takes 1..86400 seconds, not \"%s\"",
					    c == 'A' ? "accept-timeout" : "idle-timeout", optarg);
				*(c == 'A' ? &accept_s : &idle_s) = v;
			}
			break;
		case 'j':
			ro.threads = strtoul(optarg, &end, 10);
			if (*end || end == optarg || optarg[0] == '-' || ro.threads > 64)
				usage_error("--threads takes 0..64, not \"%s\"", optarg);
			break;
		case 'k':
			if (!strcmp(optarg, "advance"))
				ro.clock = HVMCTX_CLOCK_ADVANCE;
			else if (!strcmp(optarg, "freeze"))
				ro.clock = HVMCTX_CLOCK_FREEZE;
			else
				usage_error("--clock takes advance or freeze, not \"%s\"", optarg);
			break;
		case 'h': usage(stdout); return 0;
		default: return EXIT_USAGE;
		}
	}
	if (listen_on && receive)
		usage_error("--listen or --migrate-receive, not both");
	if (!listen_on && optind == argc)
		usage_error("no FILE given (or - for standard input)");
	if (optind < argc - !listen_on)
		usage_error("unexpected argument '%s' (%s)", argv[optind + !listen_on],
			    listen_on ? "--listen takes no FILE" : "one FILE only");
	if (receive && strcmp(argv[optind], "-"))
		usage_error("--migrate-receive reads standard input: its FILE is -, not '%s'",
			    argv[optind]);
	if (optind != argc - (listen_on ? 0 : 1) || (listen_on && receive) ||
	    (receive && strcmp(argv[optind], "-"))) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (log && !detach && !receive)
		usage_error("--log is for --detach or --migrate-receive");
	if ((listen_on || receive) && paused)
		usage_error("--paused does not go with a migration: the source decides when it runs");
	if ((tlso.psk_file || tlso.creds_dir || tlso.nauthz || lo.insecure) && !listen_on)
		usage_error("--tls-psk, --tls-creds, --tls-authz and --insecure-plaintext are "
		    "for --listen");
	if (tlso.psk_file && tlso.creds_dir)
		usage_error("--tls-psk or --tls-creds, not both");
	if (tlso.nauthz && !tlso.psk_file && !tlso.creds_dir)
		usage_error("--tls-authz needs --tls-psk or --tls-creds");
	if (lo.insecure && (tlso.psk_file || tlso.creds_dir))
		usage_error("--insecure-plaintext does not go with TLS");
	path = listen_on ? listen_on : argv[optind];
	if (name && !sr_name_valid(name))
		usage_error("bad domain name: 1..%u characters of A-Z a-z 0-9 . _ -, not "
		    "starting with a dot", SR_NAME_MAX);
	if (progress < 0)
		progress = isatty(STDERR_FILENO);	/* TCGETS: asked before the sandbox, which refuses it */
	signal(SIGPIPE, SIG_IGN);
	die_set_hook(tell_source);
	/* FILE opens first: a mistyped path is named before the host is probed. */
	if (!listen_on && !receive) {
		fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
		if (fd < 0)
			die(EXIT_USAGE, "%s: %s", path, strerror(errno));
		if (!fstat(fd, &sb) && S_ISREG(sb.st_mode))
			rp.total = sb.st_size;	/* for the progress line: asked before the sandbox */
	}
	if (sandbox) {
		/*
		 * Built now, enforced before the first thread starts and the first byte
		 * a peer sent is read (sandbox.h); a detached parent enters its own.
		 */
		char why[160];

		if (sandbox_prepare(why, sizeof(why)))
			die(EXIT_USAGE, "sandbox: %s (--no-sandbox runs without it)", why);
		cfg.thread_start = runner_thread_start;
		ro.thread_start = worker_thread_start;
		lo.bounds.thread_start = guard_thread_start;
		tlso.thread_start = pump_thread_start;
	}
	if (receive) {
		/* The stream on its own fd, the answers on another; the console never on either. */
		detach_begin(sandbox ? detach_parent_start : NULL);
		fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
		chan = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
		if (fd < 0 || chan < 0)
			die(EXIT_USAGE, "dup: %s", strerror(errno));
		fd_reopen(STDIN_FILENO, "/dev/null", O_RDONLY);
		/*
		 * Under ssh our stderr is the source's: with --log, all we say goes
		 * there from now on, and the source hears only the answers (audit8).
		 */
		if (log && fd_reopen(STDERR_FILENO, log, O_WRONLY | O_CREAT | O_APPEND))
			die(EXIT_USAGE, "--log: %s", strerror(errno));
		dup2(STDERR_FILENO, STDOUT_FILENO);
		path = "the migration stream";
	}
	if (detach && !receive) {
		/* Before any thread, and before the sandbox is entered: fork is not on its lists. */
		detach_begin(sandbox ? detach_parent_start : NULL);
		if (listen_on || strcmp(path, "-"))
			fd_reopen(STDIN_FILENO, "/dev/null", O_RDONLY);
	}
	if (name)
		claim_name(name, &cfg);
	/* A listener probes the host now and says why once a source has authenticated (below). */
	if (!listen_on) {
		char host_why[400];

		if (!host_check(host_why, sizeof(host_why)))
			refuse_host(host_why);
	} else {
		char why[400], host_why[400], bound[128] = "?";
		/* Probed now (it runs a guest), said once a source has authenticated: only it learns why. */
		bool host_ok = host_check(host_why, sizeof(host_why));
		int lfd;

		if (tlso.psk_file || tlso.creds_dir) {
			lo.creds = tls_creds_new(&tlso, why, sizeof(why));
			if (!lo.creds)
				die(EXIT_USAGE, "%s", why);
		}
		lo.spec = listen_on;
		lo.accept_s = accept_s;
		lo.idle_s = idle_s;
		lfd = net_listen(lo.spec, !lo.creds && !lo.insecure, bound, sizeof(bound), why,
				 sizeof(why));
		if (lfd < 0)
			die(EXIT_USAGE, "%s", why);
		/*
		 * Before the first peer's byte is read (the handshakes run on this thread,
		 * under this list) and before the pumps and the guard start (each narrows it).
		 */
		sandbox_enter(SANDBOX_MAIN);
		pr_info("%s: listening on %s (%s)", sr_prog, bound,
			lo.creds ? "TLS" : "plaintext, no authentication");
		fd = accept_source(&lo, lfd, bound, &stream_guard);
		chan = fd;
		peer_anonymous = !tls;
		if (!host_ok)
			refuse_host(host_why);
		path = "the migration stream";
		if (verbose)
			pr_info("%s: transport: %s", sr_prog, tls ? tls_describe(tls) :
				"plaintext TCP (no TLS)");
	}
	/* Before any thread starts: the image itself is read on the reader's thread. */
	if (!listen_on)
		sandbox_enter(SANDBOX_MAIN);
	rc_read.fd = fd;
	rc_read.img = &img;
	rc_read.err = &err;
	rs = on_reader(read_begin, &rc_read) ? NULL : rc_read.rs;
	if (!rs) {
		const char *msg = err.sys_errno == EAGAIN ? "no data for the idle timeout" : err.msg;
		const char *why = stream_why(&stream_guard, msg);

		if (why != msg)
			peer_cut(why);
		peer_classify(&err, why);
		die(err.sys_errno == EBADMSG ? EXIT_BAD_IMAGE : EXIT_USAGE, "%s: %s", path, why);
	}
	if (chan >= 0)
		hvmctx_restore_stop_at_end(rs);
	cfg.name = name ? name : img.name[0] ? img.name : "restored";
	if (!cfg.claimed)
		claim_name(cfg.name, &cfg);	/* the name in the image: known now, pages still unread */
	cfg.vcpus = img.vcpus;
	for (unsigned i = 0; i < img.nregions; i++)
		cfg.mem_bytes += img.regions[i].size;
	cfg.test_guest = img.guest_kind == SR_GUEST_TEST;
	cfg.serial = img.guest_kind == SR_GUEST_LINUX;
	cfg.pci = img.guest_kind == SR_GUEST_LINUX;	/* its devices come with their DEVICE records */
	cfg.guest_kind = img.guest_kind;
	cfg.boot_entry = img.boot_entry;
	cfg.boot_arg = img.boot_arg;
	memcpy(cfg.uuid, img.uuid, 16);
	cfg.verbose = verbose;
	if (!max_mib)
		max_mib = mem_available_mib();
	if (cfg.mem_bytes >> 20 > max_mib) {
		peer_set("refused by the receiver: the guest's %llu MiB of RAM is more than it "
			 "accepts now", (unsigned long long)(cfg.mem_bytes >> 20));
		die(EXIT_USAGE, "%s: the image's guest has %llu MiB of RAM, more than the %llu MiB "
		    "allowed (%s); nothing was allocated", path,
		    (unsigned long long)(cfg.mem_bytes >> 20), max_mib,
		    max_mib == mem_available_mib() ? "this host's MemAvailable; --max-memory sets "
		    "another limit" : "--max-memory");
	}
	if (cfg.vcpus > XC_MAX_VCPUS) {
		peer_set("refused by the receiver: %u vCPUs, it runs at most %d", cfg.vcpus,
			 XC_MAX_VCPUS);
		die(EXIT_USAGE, "%s: %u vCPUs, this build runs at most %d", path, cfg.vcpus,
		    XC_MAX_VCPUS);
	}

	r = runner_new(&cfg, &err);
	if (!r)
		goto fail;
	ro.device = restore_device;
	ro.device_arg = r;
	ro.disk = restore_disk;
	ro.disk_arg = r;
	ro.disks_done = disks_done;
	if (progress == 1) {
		rp.t0 = mono_ns();
		ro.progress = show_read;	/* on the reader's thread: stderr only */
		ro.progress_arg = &rp;
	}
	rc_read.rs = rs;
	rc_read.d = runner_domain(r);
	rc_read.ro = &ro;
	rc_read.st = &st;
	rc = on_reader(read_finish, &rc_read) ? -1 : rc_read.rc;
	if (rp.shown) {
		if (!rc) {
			rp.last = 0;		/* the whole stream, END included */
			show_read(&rp, st.bytes);
		}
		fputc('\n', stderr);
	}
	if (rc)
		goto fail;
	stream_why(&stream_guard, NULL);	/* the stream is in: its bounds are kept */
	if (cfg.test_guest) {
		/* The test guest counts its restores (guest/abi.h). */
		struct sr_bootinfo *bi = xc_gpa_to_hva(runner_domain(r), SR_GUEST_BOOTINFO, sizeof(*bi));

		if (bi && bi->magic == SR_BOOTINFO_MAGIC)
			bi->restores++;
	}
	if (runner_listen(r, &err))
		goto fail;
	hvmctx_restore_free(rs);
	rs = NULL;
	if (chan >= 0) {
		char line[64], why[128];
		int k;

		/* Built, paused: the source decides whether it runs here. */
		if (mig_send(chan, MIG_READY, NULL)) {
			pr_err("%s: the source went away before it heard \"ready\": the VM is "
			       "discarded", path);
			runner_free(r);
			return EXIT_NOT_MIGRATED;
		}
		if (test_env("SR_MIGRATE_TEST_DIE_AFTER_READY"))	/* testing aid: killed right here */
			raise(SIGKILL);
		/* "go" comes the way the stream came (under ssh: stdin; stdout only goes out). */
		k = mig_recv(fd, line, sizeof(line), MIG_GO_TIMEOUT_MS, why, sizeof(why));
		if (k != 1 || strcmp(line, MIG_GO)) {
			char esc[4 * sizeof(line) + 1];

			pr_err("%s: the source did not say \"go\" (%s): the VM is discarded; the "
			       "domain stays with the source", path,
			       k == 1 ? str_escape(esc, sizeof(esc), line, sizeof(line)) : why);
			runner_free(r);
			return EXIT_NOT_MIGRATED;
		}
		test_pause("go");
		/* "running" only once it does, signals held for the loop: nothing can undo it now. */
		rc = runner_start(r, false, &err);
		if (rc) {
			peer_classify(NULL, NULL);	/* the stream is in: this host's failure */
			tell_source(err.msg);
			pr_err("%s: the domain did not start: %s; the source resumes its copy", path,
			       err.msg);
			runner_free(r);
			return rc;
		}
		started = true;
		if (mig_send(chan, MIG_RUNNING, NULL))
			pr_warn("the source did not hear \"running\"; it keeps its copy paused "
				"and says the outcome is unknown: this one runs");
		die_set_hook(NULL);
		if (chan != fd)
			close(chan);
		chan = -1;
		if (receive) {
			if (!log)
				log = detach_log_path(logbuf, sizeof(logbuf), cfg.name);
			pr_info("%s: \"%s\" runs here; detached, console in %s", sr_prog, cfg.name,
				log);
			detach_finish(log);
		} else {
			pr_info("%s: \"%s\" runs here", sr_prog, cfg.name);
		}
	}
	if (tls)
		tls_end(tls);		/* "running" has left before the connection goes */
	else if (fd != STDIN_FILENO)
		close(fd);
	tls = NULL;
	tls_creds_free(lo.creds);
	if (verbose)
		pr_info("%s: restored \"%s\": %u vCPU%s, %llu pages, %llu bytes in %.1f ms; clock %s "
			"(%+.1f ms); TSC %s%s%s", sr_prog, cfg.name, cfg.vcpus, cfg.vcpus == 1 ? "" : "s",
			(unsigned long long)st.pages, (unsigned long long)st.bytes,
			st.duration_ns / 1e6, ro.clock == HVMCTX_CLOCK_ADVANCE ? "advanced" : "frozen",
			st.clock_jump_ns / 1e6,
			st.tsc == HVMCTX_TSC_CARRIED ? "offsets carried" :
			st.tsc == HVMCTX_TSC_FROM_MSR ? "from vCPU 0's saved TSC" :
			st.tsc == HVMCTX_TSC_ALIGNED ? "offsets aligned to vCPU 0" : "as saved",
			st.tsc_why ? ": " : "", st.tsc_why ? st.tsc_why : "");
	if (verbose)
		pr_info("%s: page data: %llu of %llu records read straight into guest memory, "
			"%u thread%s; stream read and verified in %.1f ms; vCPUs start %.1f ms after "
			"sr-restore did", sr_prog, (unsigned long long)st.placed,
			(unsigned long long)(st.placed + st.buffered), ro.threads,
			ro.threads == 1 ? "" : "s", st.stream_ns / 1e6, (mono_ns() - t_start) / 1e6);
	if (verbose)
		pr_info("%s: sandbox: %s", sr_prog, sandbox ? "on (a seccomp allow-list per thread: "
			"main, reader, worker, vCPU, console, input, control, save, device; --listen: "
			"guard, tls-pump; --detach, --migrate-receive: detach)" : "off (--no-sandbox)");
	if (detach && !receive) {
		if (!log)
			log = detach_log_path(logbuf, sizeof(logbuf), cfg.name);
		/* The console goes to the log from the guest's first byte. */
		if (!started && fd_reopen(STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_APPEND))
			pr_warn("%s: %s; the console goes nowhere", log, strerror(errno));
	}
	if (!started && (rc = runner_start(r, paused, &err))) {
		pr_err("%s", err.msg);
		runner_free(r);
		return rc;
	}
	if (detach && !receive) {
		pr_info("%s: \"%s\" runs detached, pid %d; console in %s (sr-ctl console %s)",
			sr_prog, cfg.name, (int)getpid(), log, cfg.name);
		detach_finish(log);
	}
	rc = runner_loop(r);
	runner_free(r);
	return rc;
fail:
	{
		/* The guard's bound when it cut the stream; never err.msg onto itself. */
		const char *cut = stream_why(&stream_guard, NULL);

		if (cut) {
			snprintf(err.msg, sizeof(err.msg), "%s", cut);
			peer_cut(cut);
		}
	}
	peer_classify(&err, err.msg);
	tell_source(err.msg);
	pr_err("%s: %s", path, err.msg);
	restore_abandon(r, rs);
	return err.sys_errno == EBADMSG ? EXIT_BAD_IMAGE : EXIT_USAGE;
}
