/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk on a raw file (device-types/blk).  Requests run one at a time
 * on the device's thread, straight between the file and guest memory
 * (preadv/pwritev over the chain's buffers).  With cache=none the file is
 * opened O_DIRECT; a request whose buffers are not sector-aligned goes
 * through an aligned bounce buffer.  FLUSH is fdatasync: once it completes
 * every write before it is on stable storage.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtio.h"

#define VIRTIO_BLK_F_SEG_MAX		2
#define VIRTIO_BLK_F_RO			5
#define VIRTIO_BLK_F_BLK_SIZE		6
#define VIRTIO_BLK_F_FLUSH		9
#define VIRTIO_BLK_F_DISCARD		13
#define VIRTIO_BLK_F_WRITE_ZEROES	14

#define T_IN		0
#define T_OUT		1
#define T_FLUSH		4
#define T_GET_ID	8
#define T_DISCARD	11
#define T_WRITE_ZEROES	13

#define S_OK		0
#define S_IOERR		1
#define S_UNSUPP	2

#define SECTOR		512
#define SEG_MAX		(VIRTQ_SIZE_MAX - 2)
#define DISCARD_MAX	(1u << 22)	/* sectors (2 GiB) a discard or write-zeroes segment may span */
#define ID_BYTES	20
#define BOUNCE_ALIGN	4096

struct blk {
	struct virtio_blk_opts o;
	int fd;
	uint64_t sectors;
	char id[ID_BYTES];
	uint8_t config[SR_VIRTIO_BLK_CONFIG_LEN];	/* what the driver reads */
	/* A save's watch (virtio_blk_watch): the blocks its disk identity keeps. */
	uint64_t watch_off[VIRTIO_BLK_WATCH_MAX];
	uint32_t watch_bs;
	unsigned watch_n;		/* atomic; 0: no watch */
	uint64_t touched;		/* atomic: bit i, block i written since the watch began */
	uint64_t writes;		/* atomic: writes done since */
};

/*
 * After a write to [off, off + len) is done (or failed: it may have changed
 * some of it): the watched blocks it touched.  Looked at only once the
 * write is done, so a watch that begins meanwhile either sees it here or
 * reads its blocks after it (virtio_blk_watch).
 */
static void blk_wrote(struct blk *b, uint64_t off, uint64_t len)
{
	unsigned n;
	uint64_t mask = 0;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	n = __atomic_load_n(&b->watch_n, __ATOMIC_SEQ_CST);
	uint64_t bs = __atomic_load_n(&b->watch_bs, __ATOMIC_RELAXED);

	/* Relaxed: a watch replaced meanwhile began after this write was done (see above). */
	for (unsigned i = 0; i < n; i++) {
		uint64_t at = __atomic_load_n(&b->watch_off[i], __ATOMIC_RELAXED);

		if (off < at + bs && at < off + len)
			mask |= 1ull << i;
	}
	if (mask)
		__atomic_fetch_or(&b->touched, mask, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&b->writes, 1, __ATOMIC_SEQ_CST);
}

static uint8_t status_of(ssize_t rc, uint64_t want)
{
	return rc >= 0 && (uint64_t)rc == want ? S_OK : S_IOERR;
}

/* Whether every buffer and the offset suit O_DIRECT (the sector size; most file systems take it). */
static bool aligned(const struct iovec *v, unsigned n, uint64_t off)
{
	if (off % SECTOR)
		return false;
	for (unsigned i = 0; i < n; i++)
		if ((uintptr_t)v[i].iov_base % SECTOR || v[i].iov_len % SECTOR)
			return false;
	return true;
}

/*
 * Reads or writes the whole of v at off: straight, or (O_DIRECT refused
 * the alignment) through one aligned bounce buffer.  Returns bytes or -1.
 */
static ssize_t blk_rw(struct blk *b, bool write, const struct iovec *v, unsigned n, uint64_t off,
		      uint64_t total)
{
	ssize_t rc = -1;

	if (b->o.cache != VIRTIO_BLK_NONE || aligned(v, n, off)) {
		rc = write ? pwritev(b->fd, v, n, off) : preadv(b->fd, v, n, off);
		if (rc >= 0 || errno != EINVAL || b->o.cache != VIRTIO_BLK_NONE)
			return rc;
	}
	void *bounce;

	if (posix_memalign(&bounce, BOUNCE_ALIGN, (total + BOUNCE_ALIGN - 1) / BOUNCE_ALIGN * BOUNCE_ALIGN))
		return -1;
	if (write) {
		uint64_t at = 0;

		for (unsigned i = 0; i < n; at += v[i].iov_len, i++)
			memcpy((uint8_t *)bounce + at, v[i].iov_base, v[i].iov_len);
		rc = pwrite(b->fd, bounce, total, off);
	} else {
		rc = pread(b->fd, bounce, total, off);
		uint64_t at = 0;

		for (unsigned i = 0; rc > 0 && i < n; at += v[i].iov_len, i++)
			memcpy(v[i].iov_base, (uint8_t *)bounce + at, v[i].iov_len);
	}
	free(bounce);
	return rc;
}

/* DISCARD punches holes; WRITE_ZEROES zeroes (a hole where the guest allows unmapping). */
static uint8_t blk_ranges(struct blk *b, unsigned type, struct virtq_chain *c)
{
	uint64_t n = (c->rlen - 16) / 16;

	if (b->o.ro)
		return S_IOERR;
	if ((c->rlen - 16) % 16 || !n)
		return S_IOERR;
	for (uint64_t i = 0; i < n; i++) {
		uint8_t seg[16];
		uint64_t sector;
		uint32_t num, flags;

		virtq_read(c, 16 + 16 * i, seg, 16);
		memcpy(&sector, seg, 8);
		memcpy(&num, seg + 8, 4);
		memcpy(&flags, seg + 12, 4);
		if (num > DISCARD_MAX || sector > b->sectors || num > b->sectors - sector ||
		    (flags & ~1u))
			return S_IOERR;
		off_t at = sector * SECTOR, len = (off_t)num * SECTOR;

		if (type == T_DISCARD) {
			/* A hint: a file system that cannot punch holes keeps the data. */
			fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, len);
			blk_wrote(b, at, len);
			continue;
		}
		if (!fallocate(b->fd, (flags & 1 ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) |
			       FALLOC_FL_KEEP_SIZE, at, len)) {
			blk_wrote(b, at, len);
			continue;
		}
		/* No fallocate here: write the zeroes. */
		static const uint8_t zero[64 * 1024] __attribute__((aligned(BOUNCE_ALIGN)));

		for (off_t done = 0; done < len;) {
			size_t k = len - done < (off_t)sizeof(zero) ? (size_t)(len - done) : sizeof(zero);

			if (pwrite(b->fd, zero, k, at + done) != (ssize_t)k) {
				blk_wrote(b, at, len);
				return S_IOERR;
			}
			done += k;
		}
		blk_wrote(b, at, len);
	}
	return S_OK;
}

static uint32_t blk_request(struct virtio_dev *vd, unsigned q, struct virtq_chain *c)
{
	struct blk *b = virtio_priv(vd);
	struct iovec v[VIRTQ_SIZE_MAX];
	uint8_t hdr[16], st = S_OK;
	uint32_t type, written = 0;
	uint64_t sector, off, len;
	unsigned n;

	(void)q;
	/* Header in the readable part, status the writable part's last byte: any framing. */
	if (c->rlen < 16 || c->wlen < 1)
		return 0;		/* no room for a status: nothing to say */
	virtq_read(c, 0, hdr, 16);
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	off = sector * SECTOR;
	switch (type) {
	case T_IN:
	case T_OUT:
		len = type == T_IN ? c->wlen - 1 : c->rlen - 16;
		if (len % SECTOR || sector > b->sectors || len / SECTOR > b->sectors - sector ||
		    (type == T_OUT && b->o.ro)) {
			st = S_IOERR;
			break;
		}
		n = virtq_slice(c, type == T_IN, type == T_IN ? 0 : 16, len, v, VIRTQ_SIZE_MAX);
		st = status_of(blk_rw(b, type == T_OUT, v, n, off, len), len);
		if (type == T_OUT)
			blk_wrote(b, off, len);
		if (type == T_IN && st == S_OK)
			written = len;
		break;
	case T_FLUSH:
		st = fdatasync(b->fd) ? S_IOERR : S_OK;
		break;
	case T_GET_ID:
		written = virtq_write(c, 0, b->id, c->wlen - 1 < ID_BYTES ? c->wlen - 1 : ID_BYTES);
		break;
	case T_DISCARD:
	case T_WRITE_ZEROES:
		st = blk_ranges(b, type, c);
		break;
	default:
		st = S_UNSUPP;
	}
	virtq_write(c, c->wlen - 1, &st, 1);
	return written + 1;
}

static void blk_free(struct virtio_dev *vd)
{
	struct blk *b = virtio_priv(vd);

	if (!b)
		return;
	if (b->fd >= 0)
		close(b->fd);
	free(b);
}

/* The BLK section (docs/format.md §6.1.6): capacity, which DISK, the serial, the config space. */
static void blk_save(struct virtio_dev *vd, struct sr_virtio_state *s)
{
	struct blk *b = virtio_priv(vd);

	s->blk.capacity = b->sectors;
	s->blk.disk = b->o.disk;
	memcpy(s->blk.serial, b->id, sizeof(s->blk.serial));
	memcpy(s->blk.config, b->config, sizeof(b->config));
}

static int blk_load(struct virtio_dev *vd, const struct sr_virtio_state *s, struct xc_error *err)
{
	struct blk *b = virtio_priv(vd);

	if (s->blk.capacity != b->sectors)
		return xc_set_error(err, 0, "disk %s has %llu sectors, the image's guest saw %llu",
				    b->o.path, (unsigned long long)b->sectors,
				    (unsigned long long)s->blk.capacity);
	if (s->blk.disk != b->o.disk)
		return xc_set_error(err, 0, "DEVICE virtio-blk: disk %u, this device is on disk %u",
				    s->blk.disk, b->o.disk);
	/* The guest keeps the serial it read: it is the image's, not this file's inode. */
	memcpy(b->id, s->blk.serial, sizeof(b->id));
	if (memcmp(s->blk.config, b->config, sizeof(b->config)))
		return xc_set_error(err, 0, "DEVICE virtio-blk: the guest read another config space "
				    "(limits or capacity) than this sr's disk gives");
	return 0;
}

static const struct virtio_type blk_type = {
	.name = "virtio-blk", .device_id = VIRTIO_ID_BLOCK, .class_code = 0x018000,
	.nqueues = 1, .request = blk_request, .save = blk_save, .load = blk_load,
	.free = blk_free,
};

const struct virtio_blk_opts *virtio_blk_opts(const struct virtio_dev *vd)
{
	return &((const struct blk *)virtio_priv(vd))->o;
}

int virtio_blk_fd(const struct virtio_dev *vd)
{
	return ((const struct blk *)virtio_priv(vd))->fd;
}

void virtio_blk_watch(struct virtio_dev *vd, const uint64_t *off, unsigned n, uint32_t bs)
{
	struct blk *b = virtio_priv(vd);

	if (n > VIRTIO_BLK_WATCH_MAX)
		n = 0;
	__atomic_store_n(&b->watch_n, 0, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < n; i++)
		__atomic_store_n(&b->watch_off[i], off[i], __ATOMIC_RELAXED);
	__atomic_store_n(&b->watch_bs, bs, __ATOMIC_RELAXED);
	__atomic_store_n(&b->touched, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&b->writes, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&b->watch_n, n, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

uint64_t virtio_blk_touched(struct virtio_dev *vd, uint64_t *writes)
{
	struct blk *b = virtio_priv(vd);

	*writes = __atomic_load_n(&b->writes, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&b->touched, __ATOMIC_SEQ_CST);
}

uint64_t virtio_blk_touched_take(struct virtio_dev *vd, uint64_t *writes)
{
	struct blk *b = virtio_priv(vd);

	*writes = __atomic_exchange_n(&b->writes, 0, __ATOMIC_SEQ_CST);
	return __atomic_exchange_n(&b->touched, 0, __ATOMIC_SEQ_CST);
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

struct virtio_dev *virtio_blk_new(struct hw_bus *bus, struct pci_host *h,
				  const struct virtio_blk_opts *o, struct xc_error *err)
{
	struct blk *b = calloc(1, sizeof(*b));
	uint8_t *cfg;
	struct stat st;
	struct virtio_dev *vd;
	bool direct_refused;

	if (!b) {
		xc_set_error(err, ENOMEM, "disk %s", o->path);
		return NULL;
	}
	b->o = *o;
	/* Not blocking on a FIFO, not taking a terminal: only a regular file is a disk. */
	if (o->want_id) {	/* the checked file itself: its descriptor is the device's now */
		b->fd = o->checked_fd;
		b->o.checked_fd = -1;
		direct_refused = o->cache == VIRTIO_BLK_NONE &&
				 fcntl(b->fd, F_SETFL, fcntl(b->fd, F_GETFL) | O_DIRECT);
	} else {
		b->fd = open(o->path, (o->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK |
			     O_NOCTTY | (o->cache == VIRTIO_BLK_NONE ? O_DIRECT : 0));
		direct_refused = b->fd < 0 && errno == EINVAL && o->cache == VIRTIO_BLK_NONE;
	}
	if (direct_refused) {
		xc_set_error(err, 0, "disk %s: cache=none needs O_DIRECT, which its file system "
			     "refuses (tmpfs does); use cache=writeback there", o->path);
		goto fail;
	}
	if (b->fd < 0 || fstat(b->fd, &st)) {
		xc_set_error(err, errno, "disk %s", o->path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		xc_set_error(err, 0, "disk %s is not a regular file", o->path);
		goto fail;
	}
	if (fcntl(b->fd, F_SETFL, fcntl(b->fd, F_GETFL) & ~O_NONBLOCK)) {
		xc_set_error(err, errno, "disk %s: clearing O_NONBLOCK", o->path);
		goto fail;
	}
	b->sectors = st.st_size / SECTOR;
	cfg = b->config;
	/* The serial the guest sees (/sys/block/vdX/serial): the file's inode, as a hint. */
	snprintf(b->id, sizeof(b->id), "sr%llx", (unsigned long long)st.st_ino);
	memcpy(cfg, &b->sectors, 8);			/* capacity */
	put32(cfg + 12, SEG_MAX);
	put32(cfg + 20, SECTOR);			/* blk_size */
	put32(cfg + 36, DISCARD_MAX);			/* max_discard_sectors */
	put32(cfg + 40, 1);				/* max_discard_seg */
	put32(cfg + 44, 1);				/* discard_sector_alignment */
	put32(cfg + 48, DISCARD_MAX);			/* max_write_zeroes_sectors */
	put32(cfg + 52, 1);				/* max_write_zeroes_seg */
	cfg[56] = 1;					/* write_zeroes_may_unmap */
	struct virtio_dev_config c = {
		.type = &blk_type, .config = cfg, .config_len = 60, .priv = b,
		.features = 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE |
			    1ull << VIRTIO_BLK_F_FLUSH |
			    (o->ro ? 1ull << VIRTIO_BLK_F_RO :
			     1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES),
	};

	vd = virtio_pci_new(bus, h, &c, err);	/* frees b on failure (blk_free) */
	return vd;
fail:
	if (b->fd >= 0)
		close(b->fd);
	free(b);
	return NULL;
}
