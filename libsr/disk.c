/* SPDX-License-Identifier: MIT */
/*
 * Disk files: identity (stat and a sampled or full XXH3 hash) and snapshots
 * (reflink, else a sparse-aware copy).  docs/format.md §3.8.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>

#include "sr_disk.h"
#include "internal.h"

#define FULL_CHUNK	(1u << 20)

static int disk_errno(struct sr_error *err, uint64_t off, const char *what)
{
	int e = errno;

	sr_set_error(err, SR_E_IO, SR_NO_INDEX, off, "%s: %s", what, strerror(e));
	if (err)
		err->sys_errno = e;
	return -1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* n bytes at off, all of them: a short read means the file shrank under us. */
static int read_at(int fd, void *buf, size_t n, uint64_t off, struct sr_error *err)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return disk_errno(err, off + got, "disk read");
		if (r == 0) {
			errno = ENODATA;
			return disk_errno(err, off + got, "disk shrank while hashed");
		}
		got += (size_t)r;
	}
	return 0;
}

/* Block i of n blocks of bs bytes spread over size bytes (§3.8.1). */
static uint64_t sample_offset(uint64_t size, uint32_t i, uint32_t n, uint32_t bs)
{
	if (n == 1)
		return 0;
	return (uint64_t)((unsigned __int128)i * (size - bs) / (n - 1));
}

static int hash_file(int fd, uint64_t size, uint32_t n, uint32_t bs, uint64_t *hash,
		     struct sr_error *err)
{
	size_t bufsz = n ? bs : FULL_CHUNK;
	uint8_t *buf = malloc(bufsz);
	XXH3_state_t *st = XXH3_createState();
	int rc = -1;

	if (!buf || !st) {
		sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, 0, "disk hash buffer");
		goto out;
	}
	XXH3_64bits_reset(st);
	if (n) {
		for (uint32_t i = 0; i < n; i++) {
			uint64_t off = sample_offset(size, i, n, bs);

			if (read_at(fd, buf, bs, off, err))
				goto out;
			XXH3_64bits_update(st, buf, bs);
		}
	} else {
		for (uint64_t off = 0; off < size; off += bufsz) {
			size_t k = size - off < bufsz ? (size_t)(size - off) : bufsz;

			if (read_at(fd, buf, k, off, err))
				goto out;
			XXH3_64bits_update(st, buf, k);
		}
	}
	*hash = XXH3_64bits_digest(st);
	rc = 0;
out:
	XXH3_freeState(st);
	free(buf);
	return rc;
}

/* What fstat says (size, dev, ino, mtime) and how the file will be hashed; nothing read yet. */
static int identity_stat(int fd, uint32_t n, uint32_t bs, struct sr_disk_id *id,
			 struct sr_error *err)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (fstat(fd, &st))
		return disk_errno(err, 0, "disk fstat");
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		return disk_errno(err, 0, "disk is not a regular file");
	}
	id->size = (uint64_t)st.st_size;
	id->dev = (uint64_t)st.st_dev;
	id->ino = (uint64_t)st.st_ino;
	id->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
	if (n && id->size <= (uint64_t)n * bs)
		n = bs = 0;		/* small enough to hash whole */
	id->hash_blocks = n;
	id->hash_block_size = bs;
	return 0;
}

static int identity(int fd, uint32_t n, uint32_t bs, struct sr_disk_id *id, struct sr_error *err)
{
	if (identity_stat(fd, n, bs, id, err))
		return -1;
	return hash_file(fd, id->size, id->hash_blocks, id->hash_block_size, &id->hash, err);
}

int sr_disk_identity(int fd, enum sr_disk_hash mode, struct sr_disk_id *id, struct sr_error *err)
{
	if (mode == SR_DISK_HASH_FULL)
		return identity(fd, 0, 0, id, err);
	return identity(fd, SR_DISK_SAMPLE_BLOCKS, SR_DISK_SAMPLE_BS, id, err);
}

int sr_disk_sample_plan(int fd, struct sr_disk_sample *s, struct sr_error *err)
{
	const uint32_t n = SR_DISK_SAMPLE_BLOCKS, bs = SR_DISK_SAMPLE_BS;

	if (identity_stat(fd, n, bs, &s->id, err))
		return -1;
	for (uint32_t i = 0; i < s->id.hash_blocks; i++)
		s->off[i] = sample_offset(s->id.size, i, n, bs);
	return 0;
}

int sr_disk_sample_read(int fd, struct sr_disk_sample *s, struct sr_error *err)
{
	const uint32_t n = s->id.hash_blocks, bs = SR_DISK_SAMPLE_BS;

	if (!n)				/* hashed whole: nothing kept */
		return hash_file(fd, s->id.size, 0, 0, &s->id.hash, err);
	if (!s->buf && !(s->buf = malloc((size_t)SR_DISK_SAMPLE_BLOCKS * bs)))
		return sr_set_error(err, SR_E_NOMEM, SR_NO_INDEX, 0, "disk sample buffer");
	for (uint32_t i = 0; i < n; i++)
		if (read_at(fd, s->buf + (size_t)i * bs, bs, s->off[i], err))
			return -1;
	s->id.hash = XXH3_64bits(s->buf, (size_t)n * bs);
	return 0;
}

int sr_disk_sample_refresh(int fd, struct sr_disk_sample *s, uint64_t touched, uint64_t writes,
			   struct sr_disk_id *id, struct sr_error *err)
{
	const uint32_t bs = SR_DISK_SAMPLE_BS;
	struct sr_disk_id now;

	if (identity_stat(fd, SR_DISK_SAMPLE_BLOCKS, bs, &now, err))
		return -1;
	if (!s->id.hash_blocks || now.size != s->id.size || now.dev != s->id.dev ||
	    now.ino != s->id.ino || (!writes && now.mtime_ns != s->id.mtime_ns)) {
		if (sr_disk_sample_plan(fd, s, err) || sr_disk_sample_read(fd, s, err))
			return -1;
		*id = s->id;
		return 0;
	}
	for (uint32_t i = 0; i < s->id.hash_blocks; i++)
		if ((touched >> i) & 1 &&
		    read_at(fd, s->buf + (size_t)i * bs, bs, s->off[i], err))
			return -1;
	now.hash = touched ? XXH3_64bits(s->buf, (size_t)s->id.hash_blocks * bs) : s->id.hash;
	*id = s->id = now;
	return 0;
}

void sr_disk_sample_free(struct sr_disk_sample *s)
{
	free(s->buf);
	s->buf = NULL;
}

static int sample_ok(const struct sr_disk_id *like, struct sr_error *err)
{
	/* The reader's rule too (device.c): checked again here, whoever filled like. */
	if (like->hash_blocks > SR_DISK_HASH_BLOCKS_MAX ||
	    (like->hash_blocks && (like->hash_block_size < SR_DISK_HASH_BS_MIN ||
				   like->hash_block_size > SR_DISK_HASH_BS_MAX ||
				   (like->hash_block_size & (like->hash_block_size - 1)))))
		return sr_set_error(err, SR_E_INVAL, SR_NO_INDEX, 0, "disk sample of %u x %u bytes",
				    like->hash_blocks, like->hash_block_size);
	return 0;
}

int sr_disk_identity_like(int fd, const struct sr_disk_id *like, struct sr_disk_id *id,
			  struct sr_error *err)
{
	if (sample_ok(like, err))
		return -1;
	return identity(fd, like->hash_blocks, like->hash_block_size, id, err);
}

static void fmt_time(char *s, size_t len, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	size_t k;

	if (!gmtime_r(&t, &tm) || !(k = strftime(s, len, "%Y-%m-%d %H:%M:%S", &tm))) {
		snprintf(s, len, "%llu ns", (unsigned long long)ns);
		return;
	}
	snprintf(s + k, len - k, ".%09llu UTC", (unsigned long long)(ns % 1000000000ull));
}

enum sr_disk_diff sr_disk_id_compare(const struct sr_disk_id *saved, const struct sr_disk_id *now,
				     unsigned flags, char *why, size_t len)
{
	char a[64], b[64];
	bool content = flags & SR_DISK_CMP_CONTENT;

	if (!why || !len) {
		why = a;
		len = sizeof(a);
	}
	if (saved->size != now->size) {
		snprintf(why, len, "size %llu -> %llu bytes", (unsigned long long)saved->size,
			 (unsigned long long)now->size);
		return SR_DISK_DIFF_SIZE;
	}
	if (!content && (saved->dev != now->dev || saved->ino != now->ino)) {
		snprintf(why, len, "another file (device 0x%llx inode %llu -> device 0x%llx inode %llu)",
			 (unsigned long long)saved->dev, (unsigned long long)saved->ino,
			 (unsigned long long)now->dev, (unsigned long long)now->ino);
		return SR_DISK_DIFF_FILE;
	}
	if (!content && saved->mtime_ns != now->mtime_ns) {
		fmt_time(a, sizeof(a), saved->mtime_ns);
		fmt_time(b, sizeof(b), now->mtime_ns);
		snprintf(why, len, "mtime %s -> %s", a, b);
		return SR_DISK_DIFF_MTIME;
	}
	if (saved->hash_blocks != now->hash_blocks || saved->hash_block_size != now->hash_block_size) {
		snprintf(why, len, "hashed differently (%u x %u bytes -> %u x %u bytes)",
			 saved->hash_blocks, saved->hash_block_size, now->hash_blocks,
			 now->hash_block_size);
		return SR_DISK_DIFF_HASH;
	}
	if (saved->hash != now->hash) {
		snprintf(why, len, "content: %s hash 0x%016llx -> 0x%016llx",
			 saved->hash_blocks ? "sampled" : "full", (unsigned long long)saved->hash,
			 (unsigned long long)now->hash);
		return SR_DISK_DIFF_HASH;
	}
	if (why != a)
		snprintf(why, len, "unchanged");
	return SR_DISK_SAME;
}

int sr_disk_check(int fd, const struct sr_disk_id *saved, unsigned flags, char *why,
		  size_t len, struct sr_error *err)
{
	struct sr_disk_id now;
	enum sr_disk_diff d;

	/*
	 * The cheap fields first: a file of another size, another file or a
	 * later mtime is refused from fstat alone, before a byte is read (a
	 * full hash of a wrong 100 GB file would read it all to say so).
	 */
	if (sample_ok(saved, err) ||
	    identity_stat(fd, saved->hash_blocks, saved->hash_block_size, &now, err))
		return -1;
	now.hash = saved->hash;
	d = sr_disk_id_compare(saved, &now, flags, why, len);
	if (d != SR_DISK_SAME)
		return (int)d;
	if (hash_file(fd, now.size, now.hash_blocks, now.hash_block_size, &now.hash, err))
		return -1;
	return (int)sr_disk_id_compare(saved, &now, flags, why, len);
}

/* ------------------------------------------------------------ snapshots */

const char *sr_snap_method_name(unsigned method)
{
	switch (method) {
	case SR_SNAP_REFLINK:	return "reflink";
	case SR_SNAP_COPY:	return "copy";
	default:		return "none";
	}
}

/* [off, off + n) of src to the same place in dst: copy_file_range, else read and write. */
static int copy_range(int src, int dst, uint64_t off, uint64_t n, uint64_t *bytes,
		      struct sr_error *err)
{
	static __thread uint8_t buf[1u << 16];
	bool plain = false;

	while (n) {
		ssize_t r;

		if (!plain) {
			loff_t in = (loff_t)off, out = (loff_t)off;

			r = copy_file_range(src, &in, dst, &out, n, 0);
			if (r < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				      errno == EOPNOTSUPP)) {
				plain = true;
				continue;
			}
		} else {
			size_t k = n < sizeof(buf) ? (size_t)n : sizeof(buf);

			r = pread(src, buf, k, (off_t)off);
			if (r > 0) {
				ssize_t w = 0;

				while (w < r) {
					ssize_t x = pwrite(dst, buf + w, (size_t)(r - w), (off_t)(off + w));

					if (x < 0 && errno == EINTR)
						continue;
					if (x < 0)
						return disk_errno(err, off + w, "snapshot write");
					w += x;
				}
			}
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return disk_errno(err, off, plain ? "snapshot read" :
					  "snapshot copy_file_range");
		if (r == 0) {
			errno = ENODATA;
			return disk_errno(err, off, "disk shrank while copied");
		}
		off += (uint64_t)r;
		n -= (uint64_t)r;
		*bytes += (uint64_t)r;
	}
	return 0;
}

/* The data of src (holes skipped) into dst, already truncated to size. */
static int sparse_copy(int src, int dst, uint64_t size, uint64_t *bytes, struct sr_error *err)
{
	uint64_t off = 0;

	while (off < size) {
		off_t data = lseek(src, (off_t)off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			return 0;		/* only a hole from off to the end */
		if (data < 0 && errno == EINVAL)
			return copy_range(src, dst, off, size - off, bytes, err);	/* no SEEK_DATA */
		if (data < 0)
			return disk_errno(err, off, "snapshot SEEK_DATA");
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0)
			return disk_errno(err, (uint64_t)data, "snapshot SEEK_HOLE");
		if ((uint64_t)hole > size)
			hole = (off_t)size;
		if (copy_range(src, dst, (uint64_t)data, (uint64_t)(hole - data), bytes, err))
			return -1;
		off = (uint64_t)hole;
	}
	return 0;
}

static int fsync_dir_of(const char *path, struct sr_error *err)
{
	char tmp[PATH_MAX];
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), "%s", path);
	fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (fsync(fd) && errno != EINVAL))
		rc = disk_errno(err, 0, "snapshot directory fsync");
	if (fd >= 0)
		close(fd);
	return rc;
}

int sr_disk_snapshot_fd(int src, int dst, unsigned flags, struct sr_snap_result *res,
			struct sr_error *err)
{
	uint64_t t0 = now_ns();
	struct stat st;

	memset(res, 0, sizeof(*res));
	if (fstat(src, &st))
		return disk_errno(err, 0, "snapshot fstat");
	res->size = (uint64_t)st.st_size;
	if (!(flags & SR_SNAP_NO_REFLINK) && ioctl(dst, FICLONE, src) == 0) {
		res->method = SR_SNAP_REFLINK;
	} else {
		res->reflink_errno = flags & SR_SNAP_NO_REFLINK ? 0 : errno;
		res->method = SR_SNAP_COPY;
		if (ftruncate(dst, st.st_size))
			return disk_errno(err, 0, "snapshot ftruncate");
		if (sparse_copy(src, dst, (uint64_t)st.st_size, &res->bytes, err))
			return -1;
	}
	if (fsync(dst))
		return disk_errno(err, 0, "snapshot fsync");
	res->ns = now_ns() - t0;
	return 0;
}

int sr_disk_snapshot(int src, const char *dst, unsigned flags, struct sr_snap_result *res,
		     struct sr_error *err)
{
	uint64_t t0 = now_ns();
	char tmp[PATH_MAX];
	struct stat st;
	int fd;

	memset(res, 0, sizeof(*res));
	if (fstat(src, &st))
		return disk_errno(err, 0, "snapshot fstat");
	if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", dst) >= (int)sizeof(tmp))
		return sr_set_error(err, SR_E_INVAL, SR_NO_INDEX, 0, "snapshot path too long");
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return disk_errno(err, 0, "snapshot create");
	if (fchmod(fd, st.st_mode & 0777))
		goto fail_errno;
	if (sr_disk_snapshot_fd(src, fd, flags, res, err))
		goto fail;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, flags & SR_SNAP_REPLACE ? 0 : RENAME_NOREPLACE))
		goto fail_errno;
	close(fd);
	if (fsync_dir_of(dst, err))
		return -1;
	res->ns = now_ns() - t0;
	return 0;
fail_errno:
	disk_errno(err, 0, "snapshot");
fail:
	close(fd);
	unlink(tmp);
	return -1;
}
