/* SPDX-License-Identifier: MIT */
/* Saving a running domain on behalf of sr-save or of the guest itself. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "ctl.h"
#include "hvmctx.h"
#include "sr_disk.h"
#include "virtio.h"
#include "imgfile.h"
#include "runner.h"
#include "serial8250.h"
#include "snapshots.h"
#include "util.h"

#define DEVICES_MAX	16
#define DEVICE_STATE_MAX	(64 << 10)	/* a DEVICE record's body is at most 64 KiB */

struct progress {
	int fd;
	enum sr_disk_hash hash;		/* --disk-hash */
	struct snapshots *sn;		/* NULL: no --disk-snapshot */
	uint64_t last_ns;
	struct save_job_state *js;
	struct runner *r;
	struct serial_state serial;
	/* The UART, then every device model on the bus, in bus order. */
	struct hvmctx_device dev[1 + DEVICES_MAX];
	struct hw_device *hw[1 + DEVICES_MAX];	/* NULL for the UART */
	void *buf[1 + DEVICES_MAX];
	unsigned ndev;
	struct sr_disk_info *disks;		/* one per virtio-blk */
	unsigned ndisks;
	/*
	 * Per virtio-blk (a sampled identity): its sample, taken before the
	 * save starts on a descriptor of our own, the device watching its
	 * blocks; the pause reads again only those written since.
	 */
	struct sr_disk_sample ahead[DEVICES_MAX];
	int ahead_fd[DEVICES_MAX];	/* -1: none (a full hash, read in the pause) */
	char fail[700];			/* a device whose state could not be taken */
	uint64_t disk_id_ns;		/* of the device capture: the disks' identities */
};

/* The pause's parts the runner sees and hvmctx does not (the summary and stats report them). */
struct pause_parts {
	uint64_t drain_ns;		/* devices drained (in hvmctx's pause_ns) */
	uint64_t disk_id_ns;		/* disk identities (in capture_dev_ns) */
};

/* A descriptor of our own, read-only, on the file behind fd (not O_DIRECT). */
static int reopen_ro(int fd)
{
	char self[64];

	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	return open(self, O_RDONLY | O_CLOEXEC);
}

/*
 * Disk d's sampled identity, ahead of the pause: the device watches the
 * blocks before they are read, so a write it does meanwhile is either read
 * here or marked for the pause to read again (hw/virtio.h).
 */
static int disk_ahead(struct progress *p, unsigned d, struct virtio_dev *vd, struct xc_error *err)
{
	struct sr_disk_sample *s = &p->ahead[d];
	const char *path = virtio_blk_opts(vd)->path;
	struct sr_error e;
	int fd;

	if ((fd = p->ahead_fd[d] = reopen_ro(virtio_blk_fd(vd))) < 0)
		return xc_set_error(err, errno, "disk %.200s", path);
	if (sr_disk_sample_plan(fd, s, &e))
		return xc_set_error(err, 0, "disk %.100s: %.140s", path, e.msg);
	virtio_blk_watch(vd, s->off, s->id.hash_blocks, SR_DISK_SAMPLE_BS);
	if (sr_disk_sample_read(fd, s, &e))
		return xc_set_error(err, 0, "disk %.100s: %.140s", path, e.msg);
	return 0;
}

/*
 * Live, the last pre-copy round done, just before the pause: each disk's
 * sample brought up to date while the guest still runs, the watch going on
 * from nothing, so the pause reads again only the blocks written in the
 * moments since (usually none) and seldom hashes the sample again.  A
 * failure, or a disk whose size changed (the blocks move), leaves the
 * pause to take its sample whole, the device drained, as without this.
 */
static void disks_before_pause(void *arg)
{
	struct progress *p = arg;
	unsigned d = 0;

	for (unsigned i = 0; i < p->ndev; i++) {
		struct virtio_dev *vd = (struct virtio_dev *)p->hw[i];
		struct sr_disk_sample *s;
		uint64_t touched, writes, size;
		struct sr_disk_id id;
		struct sr_error e;

		if (!vd || strcmp(p->hw[i]->ops->name, "virtio-blk"))
			continue;
		s = &p->ahead[d];
		if (p->ahead_fd[d++] < 0 || !s->id.hash_blocks)
			continue;
		size = s->id.size;
		touched = virtio_blk_touched_take(vd, &writes);
		if (sr_disk_sample_refresh(p->ahead_fd[d - 1], s, touched, writes, &id, &e) ||
		    s->id.size != size)
			s->id.hash_blocks = 0;
	}
}

/* Lists the devices and their buffers before the save starts (nothing allocated paused). */
static int devices_prepare(struct progress *p, struct hvmctx_save_opts *o, struct xc_error *err)
{
	struct hw_bus *b = runner_bus(p->r);

	if (runner_serial(p->r))
		p->dev[p->ndev++] = (struct hvmctx_device){ "serial8250", 1, 0, &p->serial,
							     sizeof(p->serial) };
	for (struct hw_device *h = b ? hw_bus_devices(b) : NULL; h; h = h->next) {
		if (!h->ops->save)
			continue;
		if (p->ndev == 1 + DEVICES_MAX)
			return xc_set_error(err, 0, "more than %d devices to save", DEVICES_MAX);
		unsigned i = p->ndev++;

		if (!(p->buf[i] = malloc(DEVICE_STATE_MAX)))
			return xc_set_error(err, ENOMEM, "device state");
		p->hw[i] = h;
		p->dev[i] = (struct hvmctx_device){ h->ops->name, h->ops->version, h->instance,
						     p->buf[i], 0 };
		if (!strcmp(h->ops->name, "virtio-blk")) {
			const struct virtio_blk_opts *bo = virtio_blk_opts((struct virtio_dev *)h);
			char why[600];

			if (p->hash == SR_DISK_HASH_SAMPLE &&
			    disk_ahead(p, p->ndisks, (struct virtio_dev *)h, err))
				return -1;
			p->ndisks++;
			/* A read-only disk needs no snapshot (§3.8.3). */
			if (p->sn && !bo->ro && bo->disk < SR_MAX_DISKS &&
			    snapshots_open(p->sn, bo->disk, bo->path, why, sizeof(why)))
				return xc_set_error(err, 0, "%s", why);
		}
	}
	if (p->ndisks && !(p->disks = calloc(p->ndisks, sizeof(*p->disks))))
		return xc_set_error(err, ENOMEM, "disk records");
	o->devices = p->dev;
	o->ndevices = p->ndev;
	o->disks = p->disks;
	o->ndisks = p->ndisks;
	return 0;
}

static void devices_free(struct progress *p)
{
	for (unsigned i = 0; i < p->ndev; i++) {
		/* The watch ends with the save (a device held or running: either is safe). */
		if (p->hw[i] && !strcmp(p->hw[i]->ops->name, "virtio-blk"))
			virtio_blk_watch((struct virtio_dev *)p->hw[i], NULL, 0, 0);
		free(p->buf[i]);
	}
	for (unsigned d = 0; d < DEVICES_MAX; d++) {
		if (p->ahead_fd[d] >= 0)
			close(p->ahead_fd[d]);
		sr_disk_sample_free(&p->ahead[d]);
	}
	free(p->disks);
}

/*
 * Disk di's snapshot into f, the guest paused and its disk drained: a
 * reflink or a sparse copy of src, then its identity, read back from the
 * copy, which must hash as the disk did (§3.8.3).
 */
static int take_snapshot(int src, struct sr_disk_info *di, struct snap_file *f, char *why,
			 size_t len)
{
	uint64_t t0 = mono_ns();
	struct sr_snap_result res;
	struct sr_error e;
	int fd, rc;

	if (sr_disk_snapshot_fd(src, f->fd, 0, &res, &e)) {
		snprintf(why, len, "disk %u %.100s: its snapshot %.100s: %.140s", di->disk, di->path,
			 f->path, e.msg);
		return -1;
	}
	if ((fd = reopen_ro(f->fd)) < 0) {
		snprintf(why, len, "disk %u: its snapshot %.100s: %s", di->disk, f->path,
			 strerror(errno));
		return -1;
	}
	rc = sr_disk_identity_like(fd, &di->id, &di->snap_id, &e);
	close(fd);
	if (rc) {
		snprintf(why, len, "disk %u: its snapshot %.100s: %.140s", di->disk, f->path, e.msg);
		return -1;
	}
	if (di->snap_id.size != di->id.size || di->snap_id.hash != di->id.hash) {
		snprintf(why, len, "disk %u %.100s: its snapshot %.100s does not hash as the disk "
			 "does: the copy is not whole", di->disk, di->path, f->path);
		return -1;
	}
	di->flags |= SR_DISK_F_SNAPSHOT;
	di->snap_method = res.method;
	di->snap_ns = mono_ns() - t0;
	snprintf(di->snap_path, sizeof(di->snap_path), "%s", f->path);
	return 0;
}

/*
 * A disk's DISK record: path, options and identity (stat and a sampled or
 * full hash, docs/format.md §3.8), read through a descriptor of its own on
 * the same file (the device's may be O_DIRECT, which the hash's reads do
 * not suit); with snap, the disk's snapshot.
 */
static int disk_record(struct virtio_dev *vd, struct sr_disk_info *di, enum sr_disk_hash mode,
		       struct sr_disk_sample *ahead, int ahead_fd, struct snap_file *snap,
		       uint64_t *id_ns, char *why, size_t len)
{
	const struct virtio_blk_opts *o = virtio_blk_opts(vd);
	uint64_t t0 = mono_ns(), touched, writes;
	struct sr_error e;
	int fd, rc;

	memset(di, 0, sizeof(*di));
	di->disk = o->disk;
	di->flags = o->ro ? SR_DISK_F_READ_ONLY : 0;
	di->cache = o->cache == VIRTIO_BLK_NONE ? SR_DISK_CACHE_NONE : SR_DISK_CACHE_WRITEBACK;
	snprintf(di->path, sizeof(di->path), "%s", o->path);
	if (ahead_fd >= 0) {
		/* Drained: every write the device did is marked; only those blocks are read. */
		touched = virtio_blk_touched(vd, &writes);
		rc = sr_disk_sample_refresh(ahead_fd, ahead, touched, writes, &di->id, &e);
		fd = ahead_fd;
	} else if ((fd = reopen_ro(virtio_blk_fd(vd))) < 0) {
		snprintf(why, len, "disk %.200s: %s", o->path, strerror(errno));
		return -1;
	} else {
		rc = sr_disk_identity(fd, mode, &di->id, &e);
	}
	*id_ns += mono_ns() - t0;
	if (rc)
		snprintf(why, len, "disk %.100s: %.140s", o->path, e.msg);
	else if (snap && snap->fd >= 0)
		rc = take_snapshot(fd, di, snap, why, len);
	if (fd != ahead_fd)
		close(fd);
	return rc;
}

/* Device state, read once the domain is paused and its devices drained. */
static void capture_devices(void *arg)
{
	struct progress *p = arg;
	unsigned d = 0;

	if (runner_serial(p->r))
		serial_save(runner_serial(p->r), &p->serial);
	for (unsigned i = 0; i < p->ndev; i++) {
		struct hw_device *h = p->hw[i];
		long n;

		if (!h)
			continue;
		n = h->ops->save(h, p->buf[i], DEVICE_STATE_MAX);
		if (n < 0 && !p->fail[0])
			snprintf(p->fail, sizeof(p->fail), "DEVICE %s %u: its state could not be taken",
				 h->ops->name, h->instance);
		p->dev[i].len = n < 0 ? 0 : (size_t)n;
		if (!strcmp(h->ops->name, "virtio-blk") && d < p->ndisks) {
			struct virtio_dev *vd = (struct virtio_dev *)h;
			uint32_t k = virtio_blk_opts(vd)->disk;
			unsigned e = d++;
			char why[sizeof(p->fail)];

			if (p->fail[0])
				continue;	/* the save fails: no more copies in the pause */
			if (disk_record(vd, &p->disks[e], p->hash, &p->ahead[e], p->ahead_fd[e],
					p->sn && k < SR_MAX_DISKS ? &p->sn->f[k] : NULL, &p->disk_id_ns,
					why, sizeof(why)))
				snprintf(p->fail, sizeof(p->fail), "%s", why);
		}
	}
}

/* Sends a progress line at most every 100 ms; a vanished client cancels the save. */
static int send_progress(void *arg, uint64_t done, uint64_t total, uint64_t bytes)
{
	struct progress *p = arg;
	char line[128];
	uint64_t now = mono_ns();
	int n;

	if (p->js) {
		if (bytes != p->js->bytes)
			p->js->progress_ns = now;
		p->js->pages = done;
		p->js->total = total;
		p->js->bytes = bytes;
		if (p->js->cancel)
			return -1;
	}
	if (p->fd < 0 || now - p->last_ns < 100000000ull)
		return 0;
	p->last_ns = now;
	n = snprintf(line, sizeof(line), "progress pages=%llu total=%llu bytes=%llu\n",
		     (unsigned long long)done, (unsigned long long)total,
		     (unsigned long long)bytes);
	return send(p->fd, line, n, MSG_NOSIGNAL) == n ? 0 : -1;
}

/* "round ..." lines for sr-save --stats. */
static void send_round(void *arg, const struct hvmctx_round *rd)
{
	struct progress *p = arg;
	char line[200];
	int n;

	if (p->fd < 0)
		return;
	n = snprintf(line, sizeof(line), "round iteration=%u final=%d sent=%llu dirtied=%llu "
		     "bytes=%llu ns=%llu throttle=%u\n", rd->iteration, rd->final,
		     (unsigned long long)rd->pages_sent, (unsigned long long)rd->pages_dirtied,
		     (unsigned long long)rd->bytes, (unsigned long long)rd->duration_ns,
		     rd->throttle_pct);
	if (send(p->fd, line, n, MSG_NOSIGNAL) != n)
		p->fd = -1;
}

/* What the summary says of the snapshots: which method and how long each held the guest. */
static void snapshot_note(struct snapshots *sn, const struct sr_disk_info *disks, unsigned n)
{
	size_t k = 0;

	for (unsigned i = 0; sn && i < n && k < sizeof(sn->note); i++) {
		const struct sr_disk_info *di = &disks[i];

		if (di->flags & SR_DISK_F_SNAPSHOT)
			k += snprintf(sn->note + k, sizeof(sn->note) - k, "disk %u snapshot %s by %s "
				      "in %.1f ms, the guest paused; ", di->disk, di->snap_path,
				      sr_snap_method_name(di->snap_method), di->snap_ns / 1e6);
	}
	if (sn && !k)
		snprintf(sn->note, sizeof(sn->note), "no writable disk: no snapshot; ");
}

static int do_save(struct runner *r, int fd, struct hvmctx_save_opts *o, int client_fd,
		   struct save_job_state *js, enum sr_disk_hash hash, struct snapshots *sn,
		   struct hvmctx_save_stats *st, struct pause_parts *pp, struct xc_error *err)
{
	const struct runner_config *cfg = runner_config(r);
	struct progress p = { .fd = client_fd, .r = r, .js = js, .hash = hash, .sn = sn };
	struct stat sb;
	int rc;

	for (unsigned d = 0; d < DEVICES_MAX; d++)
		p.ahead_fd[d] = -1;

	if (devices_prepare(&p, o, err)) {
		devices_free(&p);
		return -1;
	}
	o->capture_devices = capture_devices;
	o->before_pause = p.ndisks ? disks_before_pause : NULL;
	o->creator = "sr-save " SR_LIBRARY_VERSION;
	o->guest_kind = cfg->guest_kind;
	o->name = cfg->name;
	o->uuid = cfg->uuid;
	o->boot_entry = cfg->boot_entry;
	o->boot_arg = cfg->boot_arg;
	if (cfg->thread_start) {
		o->thread_start = runner_save_worker_started;
		o->thread_arg = r;
	}
	o->progress = send_progress;
	o->round = send_round;
	o->progress_arg = &p;
	o->cancel = js ? &js->cancel : NULL;
	o->msrs = runner_msrs(r);
	rc = hvmctx_save(runner_domain(r), fd, o, st, err);
	*pp = (struct pause_parts){ .drain_ns = o->live ? runner_drain_ns(r) : 0,
				    .disk_id_ns = p.disk_id_ns };
	if (!rc && !p.fail[0])
		snapshot_note(sn, p.disks, p.ndisks);
	devices_free(&p);
	/* What failed in the pause comes first: the image's own error may follow from it (ENOSPC). */
	if (p.fail[0])
		return xc_set_error(err, 0, "%s", p.fail);
	if (rc)
		return -1;
	/* Durable before anyone is told it worked (the domain may exit next). */
	if (!fstat(fd, &sb) && S_ISREG(sb.st_mode) && fsync(fd))
		return xc_set_error(err, errno, "fsync of the image");
	return 0;
}

/* The live-save part of a request into o. */
static int live_opts(struct xc_domain *d, const struct save_req *q, struct hvmctx_save_opts *o,
		     char *msg, size_t len)
{
	static const struct { const char *name; enum xc_dirty_mode mode; const char *why; } m[] = {
		{ "bitmap", XC_DIRTY_BITMAP, "the domain was started with --dirty-ring: "
					     "use --dirty-track=ring" },
		{ "clear", XC_DIRTY_CLEAR, "needs KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 and a "
					   "domain started without --dirty-ring" },
		{ "ring", XC_DIRTY_RING, "start the domain with --dirty-ring (sr-run or "
					 "sr-restore) to use the dirty ring" },
	};

	o->live = true;
	/* auto: the ring where the domain has one, else manual protect, else the plain bitmap. */
	o->dirty_mode = xc_dirty_mode_supported(d, XC_DIRTY_RING) ? XC_DIRTY_RING :
			xc_dirty_mode_supported(d, XC_DIRTY_CLEAR) ? XC_DIRTY_CLEAR : XC_DIRTY_BITMAP;
	for (unsigned i = 0; i < 3; i++) {
		if (strcmp(q->dirty_track, m[i].name))
			continue;
		if (!xc_dirty_mode_supported(d, m[i].mode)) {
			snprintf(msg, len, "--dirty-track=%s: %s", m[i].name, m[i].why);
			return -1;
		}
		o->dirty_mode = m[i].mode;
	}
	o->downtime_ms = q->downtime_ms;
	o->max_iters = q->max_iters;
	o->max_bytes_factor = q->max_bytes_factor;
	/* Testing aid: a cap below 1 x RAM, so a small guest's round 0 can reach it. */
	if (test_env("SR_TEST_MAX_BYTES"))
		o->max_bytes = strtoull(test_env("SR_TEST_MAX_BYTES"), NULL, 0);
	o->throttle = strcmp(q->throttle, "off") ? HVMCTX_THROTTLE_AUTO : HVMCTX_THROTTLE_OFF;
	return 0;
}

static void summary(const struct hvmctx_save_stats *st, const char *after, char *msg, size_t len)
{
	int n = snprintf(msg, len, "saved %llu pages (%llu zero, %llu lz4, %llu raw): %llu bytes "
			 "for %llu MiB of RAM in %.1f ms (CPU state read in %.2f ms); ",
			 (unsigned long long)st->pages, (unsigned long long)st->zero,
			 (unsigned long long)st->lz4, (unsigned long long)st->raw,
			 (unsigned long long)st->bytes, (unsigned long long)(st->mem_bytes >> 20),
			 st->duration_ns / 1e6, st->capture_ns / 1e6);

	if (st->downtime_target_ns && n > 0 && (size_t)n < len)
		n += snprintf(msg + n, len - n, "live: %u rounds (%s), downtime %.1f ms (target %.0f "
			      "ms%s), throttle up to %u%% (%.1f s of vCPU time held back); ",
			      st->rounds, st->stop_reason, st->downtime_ns / 1e6,
			      st->downtime_target_ns / 1e6,
			      st->downtime_ns <= st->downtime_target_ns ? ", met" : ", MISSED",
			      st->max_throttle_pct, st->throttled_ns / 1e9);
	if (n > 0 && (size_t)n < len)
		snprintf(msg + n, len - n, "%s", after);
}

/*
 * The summary's numbers for a client that reads them (sr-save --json):
 * "stats key=value ...", stop_reason last as the rest of the line.
 * Before the final "ok"; a client skips lines it does not know.
 */
static void send_stats(int fd, const struct hvmctx_save_stats *st, const struct pause_parts *pp,
		       uint64_t paused_ns, const char *outcome)
{
	char line[1000];
	int n = snprintf(line, sizeof(line), "stats pages=%llu zero=%llu lz4=%llu raw=%llu "
			 "bytes=%llu mem_bytes=%llu duration_ns=%llu capture_ns=%llu "
			 "pause_ns=%llu drain_ns=%llu capture_vm_ns=%llu capture_vcpu_ns=%llu "
			 "capture_dev_ns=%llu disk_id_ns=%llu final_pages_ns=%llu state_ns=%llu "
			 "rounds=%u "
			 "downtime_ns=%llu downtime_target_ns=%llu max_throttle_pct=%u "
			 "throttled_ns=%llu paused_ns=%llu outcome=%s stop_reason=%s\n",
			 (unsigned long long)st->pages, (unsigned long long)st->zero,
			 (unsigned long long)st->lz4, (unsigned long long)st->raw,
			 (unsigned long long)st->bytes, (unsigned long long)st->mem_bytes,
			 (unsigned long long)st->duration_ns, (unsigned long long)st->capture_ns,
			 (unsigned long long)st->pause_ns, (unsigned long long)pp->drain_ns,
			 (unsigned long long)st->capture_vm_ns, (unsigned long long)st->capture_vcpu_ns,
			 (unsigned long long)st->capture_dev_ns, (unsigned long long)pp->disk_id_ns,
			 (unsigned long long)st->final_pages_ns, (unsigned long long)st->state_ns,
			 st->rounds, (unsigned long long)st->downtime_ns,
			 (unsigned long long)st->downtime_target_ns, st->max_throttle_pct,
			 (unsigned long long)st->throttled_ns, (unsigned long long)paused_ns, outcome,
			 st->downtime_target_ns && st->stop_reason ? st->stop_reason : "");

	if (fd >= 0 && n > 0 && (size_t)n < sizeof(line))
		(void)!send(fd, line, n, MSG_NOSIGNAL);
}

/* How long a prepared save waits, the domain paused, for the client's "commit". */
#define COMMIT_TIMEOUT_MS	30000

/*
 * Phase two: tells the client the image is complete and waits for its
 * "commit" (sent once FILE is in place and durable, or once a migration's
 * receiver runs the domain).  Returns 0 on commit; 1 when the domain must
 * stay paused (a migration whose outcome is unknown); -1 with why filled
 * when it may resume ("abort", a cancel, a vanished client, or silence).
 *
 * A migration asks for "pending" before it tells its receiver "go" and
 * sends "go" only once it has our "held".  Held and cancelled are one
 * compare-and-swap on js->cancel: a cancel or stall that came first is
 * honoured and "held" is never sent; once held, no cancel, stall or lost
 * client resumes the domain, only the client's "abort" (its word that no
 * "go" went out).
 */
static int await_commit(int fd, const char *summary, struct save_job_state *js, char *why,
			size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char line[300], buf[32];
	size_t have = 0;
	int n = snprintf(line, sizeof(line), "prepared %s\n", summary), waited = 0;
	bool held = false;

	if (fd < 0) {
		snprintf(why, len, "no client to commit it");
		return -1;
	}
	js->prepared = 1;
	if (n < 0 || send(fd, line, n, MSG_NOSIGNAL) != n) {
		snprintf(why, len, "the client went away before the image was complete");
		return -1;
	}
	test_pause("prepared");		/* a cancel and a "pending" can then both be waiting */
	for (;;) {
		char *nl = memchr(buf, '\n', have);
		int rc, none = 0;
		ssize_t k;

		if (nl) {
			*nl = 0;
			if (!strcmp(buf, "pending") && !held) {
				if (!__atomic_compare_exchange_n(&js->cancel, &none, SAVE_HELD, false,
								 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
					snprintf(why, len, "cancelled");
					return -1;
				}
				if (send(fd, "held\n", 5, MSG_NOSIGNAL) != 5) {
					/* It never heard "held", so it never said "go". */
					snprintf(why, len, "the client went away before it heard \"held\"");
					return -1;
				}
				held = true;
				waited = 0;
				have -= nl + 1 - buf;
				memmove(buf, nl + 1, have);
				continue;
			}
			if (!strcmp(buf, "commit"))
				return 0;
			if (!strcmp(buf, "hold") || (held && strcmp(buf, "abort"))) {
				snprintf(why, len, "the client holds it: whether the receiver runs the "
					 "domain is unknown");
				return 1;
			}
			snprintf(why, len, "the client aborted");
			return -1;
		}
		if (have == sizeof(buf) - 1)
			have = 0;		/* overlong: not a word we know */
		rc = poll(&p, 1, 200);
		if (js->cancel == SAVE_CANCEL) {
			snprintf(why, len, "cancelled");
			return -1;
		}
		if (rc == 0 && (waited += 200) >= COMMIT_TIMEOUT_MS) {
			snprintf(why, len, "no commit within %d s%s", COMMIT_TIMEOUT_MS / 1000,
				 held ? " after the receiver may have been told to go: whether it "
				 "runs the domain is unknown" : "");
			return held ? 1 : -1;
		}
		if (rc <= 0)
			continue;
		k = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (k <= 0) {
			snprintf(why, len, "the client went away before it committed%s",
				 held ? ", after the receiver may have been told to go: whether it "
				 "runs the domain is unknown" : "");
			return held ? 1 : -1;
		}
		have += k;
	}
}

static int save_with(struct runner *r, int out_fd, const struct save_req *q, int client_fd,
		     struct save_job_state *js, struct hvmctx_save_opts *op, enum sr_disk_hash hash,
		     struct snapshots *sn, char *msg, size_t len)
{
	struct xc_domain *d = runner_domain(r);
	bool checkpoint = q->checkpoint, stay_paused = q->paused;
	bool was_paused = xc_domain_paused(d);
	struct hvmctx_save_opts o = *op;
	struct hvmctx_save_stats st;
	struct pause_parts pp;
	struct xc_error err;

	if (q->live) {
		if (was_paused) {
			snprintf(msg, len, "the domain is paused: a live save needs it running "
				 "(save without --live, or resume it first)");
			return -1;
		}
		if (live_opts(d, q, &o, msg, len))
			return -1;
	} else if (!was_paused && xc_domain_pause(d, &err)) {
		snprintf(msg, len, "%s", err.msg);
		return -1;
	}
	uint64_t t_pause = mono_ns(), paused_ns = 0;
	char commit_note[96] = "", after[700];
	if (do_save(r, out_fd, &o, client_fd, js, hash, sn, &st, &pp, &err)) {
		/* The domain goes on exactly as before (a live save resumed it already). */
		if (!was_paused && xc_domain_paused(d))
			xc_domain_resume(d, NULL);
		snprintf(msg, len, "%s%s", js->cancel ? "save cancelled: " : "", err.msg);
		return -1;
	}
	/* The domain is paused here; it ends, runs or stays paused only once committed. */
	char why[400];

	/* Each snapshot under its side name before the commit: a link that fails fails the save. */
	if (sn && snapshots_stage(sn, why, sizeof(why))) {
		if (!was_paused)
			xc_domain_resume(d, NULL);
		snprintf(msg, len, "%s; the domain %s", why, was_paused ? "stays paused" :
			 "runs on as before");
		return -1;
	}
	if (q->two_phase) {
		char sum[256];

		summary(&st, "image complete", sum, sizeof(sum));
		int c = await_commit(client_fd, sum, js, why, sizeof(why));

		if (!c && !was_paused) {
			/* The guest's real pause: until the commit (a migration: the receiver runs it). */
			paused_ns = mono_ns() - (q->live ? st.paused_at_ns : t_pause);
			snprintf(commit_note, sizeof(commit_note), "paused %.1f ms until the commit; ",
				 paused_ns / 1e6);
		}
		if (c) {
			bool resume = !was_paused && !stay_paused && c < 0;

			if (resume)
				xc_domain_resume(d, NULL);
			const char *name = runner_config(r)->name;

			if (c > 0)	/* held: only someone who can look at the receiver settles it */
				snprintf(msg, len, "the save was not committed: %s; the domain stays "
					 "paused: if the receiver runs it, end it here with sr-ctl "
					 "destroy %s, else resume it here with sr-ctl resume %s", why, name,
					 name);
			else
				snprintf(msg, len, "the save was not committed: %s; the domain %s", why,
					 resume ? "runs on as before" : "stays paused");
			fprintf(stderr, "%s: %s: %s\n", runner_config(r)->name, "save", msg);
			return -1;
		}
	}
	if (!checkpoint && !stay_paused) {
		snprintf(after, sizeof(after), "%sthe domain exits", commit_note);
		summary(&st, after, msg, len);
		send_stats(client_fd, &st, &pp, paused_ns, "exits");
		return 1;
	}
	/* Committed (the image is in place): the snapshots it names take their names. */
	int placed = sn ? snapshots_place(sn, why, sizeof(why)) : 0;

	if (!stay_paused && !was_paused)
		xc_domain_resume(d, NULL);
	if (placed) {
		snprintf(msg, len, "the image's disk snapshots: %s; the domain %s", why,
			 stay_paused || was_paused ? "stays paused" : "runs on");
		return -1;
	}
	send_stats(client_fd, &st, &pp, paused_ns, stay_paused || was_paused ? "paused" : "runs");
	snprintf(after, sizeof(after), "%s%s%s", commit_note, sn ? sn->note : "",
		 stay_paused || was_paused ? "the domain stays paused" : "the domain runs on");
	summary(&st, after, msg, len);
	return 0;
}

int runner_save(struct runner *r, int out_fd, const struct save_req *q, int client_fd,
		struct save_job_state *js, char *msg, size_t len)
{
	bool checkpoint = q->checkpoint, stay_paused = q->paused;
	struct hvmctx_save_opts o = { .compress = strcmp(q->compress, "none") ? SR_COMPRESS_LZ4
									       : SR_COMPRESS_NONE,
				      .threads = q->threads < 0 ? threads_default()
								: (unsigned)q->threads,
				      .bandwidth = q->bandwidth_mbs * 1000000ull };
	enum sr_disk_hash hash = strcmp(q->disk_hash, "full") ? SR_DISK_HASH_SAMPLE
							      : SR_DISK_HASH_FULL;
	struct snapshots *sn = NULL;
	int rc;

	if (q->disk_snapshot[0]) {
		if (!checkpoint && !stay_paused) {
			snprintf(msg, len, "--disk-snapshot is for a domain that lives on after the "
				 "save (-c or -p): this one ends with it, its disk as saved");
			return -1;
		}
		if (!(sn = malloc(sizeof(*sn)))) {
			snprintf(msg, len, "disk snapshots: out of memory");
			return -1;
		}
		if (snapshots_init(sn, q->disk_snapshot)) {
			snprintf(msg, len, "disk snapshots: the directory of %s: %s", q->disk_snapshot,
				 strerror(errno));
			free(sn);
			return -1;
		}
	}
	rc = save_with(r, out_fd, q, client_fd, js, &o, hash, sn, msg, len);
	if (sn)
		snapshots_discard(sn);
	free(sn);
	return rc;
}

int runner_guest_save(struct runner *r, const char *path, char *msg, size_t len)
{
	struct xc_domain *d = runner_domain(r);
	struct hvmctx_save_stats st;
	struct pause_parts pp;
	struct xc_error err;
	struct img_file f;

	if (xc_domain_pause(d, &err)) {
		snprintf(msg, len, "%s", err.msg);
		return -1;
	}
	/* As sr-save: unnamed until complete, never through an existing PATH.tmp or a symlink. */
	if (img_file_open(&f, path)) {
		snprintf(msg, len, "%s%s: %s", path, f.tmp[0] || errno == EEXIST || errno == ELOOP ?
			 ".tmp" : "", strerror(errno));
		return -1;
	}
	struct hvmctx_save_opts o = { .compress = SR_COMPRESS_LZ4, .threads = threads_default() };

	if (do_save(r, f.fd, &o, -1, NULL, SR_DISK_HASH_SAMPLE, NULL, &st, &pp, &err)) {
		img_file_discard(&f);
		snprintf(msg, len, "%s", err.msg);
		return -1;
	}
	if (img_file_place(&f, msg, len)) {
		if (!f.placed) {
			img_file_discard(&f);
			return -1;
		}
		/* In place, only the directory's fsync failed: the image is there; say so. */
		pr_warn("%s", msg);
	}
	img_file_discard(&f);
	summary(&st, "the domain exits", msg, len);
	return 0;
}
