/* SPDX-License-Identifier: MIT */
/*
 * Disk files: identity and snapshots (libsr/disk.c; docs/format.md §3.8).
 *
 * What a saver records about a raw disk file and what a restorer checks it
 * against, and the copy a checkpoint takes of it.  Library code: it returns
 * errors as struct sr_error (index SR_NO_INDEX, offset: the file offset where
 * a read failed, else 0) and never prints.
 */
#ifndef SR_DISK_H
#define SR_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sr.h"

enum sr_disk_hash {
	SR_DISK_HASH_SAMPLE = 0,	/* SR_DISK_SAMPLE_BLOCKS x SR_DISK_SAMPLE_BS */
	SR_DISK_HASH_FULL = 1,		/* every byte */
};

/*
 * Identity of the open file fd (stat and hash, §3.8.1).  mode picks the
 * hash; a file of at most blocks x block size bytes is hashed whole either
 * way (and says hash_blocks 0).  Reads with pread: the file offset is not
 * moved.  Returns 0, or -1 with err set (SR_E_IO with sys_errno).
 */
int sr_disk_identity(int fd, enum sr_disk_hash mode, struct sr_disk_id *id, struct sr_error *err);

/*
 * As sr_disk_identity(), with the sample of `like` (its hash_blocks and
 * hash_block_size): what a restorer computes to compare with a saved id.
 */
int sr_disk_identity_like(int fd, const struct sr_disk_id *like, struct sr_disk_id *id,
			  struct sr_error *err);

/*
 * A sampled identity taken ahead of a pause and brought up to date in it:
 * the sampled blocks are kept, and in the pause only those a write touched
 * since are read again, and the hash computed again only when one changed
 * (the default sample is 64 reads of 4 KiB, too many for a save's downtime).
 * The identity that results is the one sr_disk_identity() would give at
 * the refresh, provided the writer reports every write it made since the
 * take (a write by anyone else changes mtime, which the refresh sees when
 * the writer made none, and then reads everything again).
 */
struct sr_disk_sample {
	struct sr_disk_id id;		/* as of the take or the last refresh */
	uint64_t off[SR_DISK_SAMPLE_BLOCKS];	/* block i's offset (id.hash_blocks of them) */
	uint8_t *buf;			/* the blocks as read, one after another */
};

/*
 * The take, in two steps, so that a writer can watch the blocks before they
 * are read: plan reads fstat and lays the blocks out (s->off[0..hash_blocks
 * - 1], SR_DISK_SAMPLE_BS bytes each; a file small enough to be hashed
 * whole has none, hash_blocks 0, and a refresh hashes it again); read reads
 * them and hashes, which gives sr_disk_identity(fd, SR_DISK_HASH_SAMPLE) as
 * of the plan.  0, or -1 with err set.
 */
int sr_disk_sample_plan(int fd, struct sr_disk_sample *s, struct sr_error *err);
int sr_disk_sample_read(int fd, struct sr_disk_sample *s, struct sr_error *err);

/*
 * The identity of fd now, into *id and s->id.  touched: bit i set when a
 * write reached block i since the take; writes: how many writes the writer
 * made since (0: an mtime that moved is someone else's write, and every
 * block is read again).  A size, device or inode that changed takes the
 * whole sample again.  0, or -1 with err set.
 */
int sr_disk_sample_refresh(int fd, struct sr_disk_sample *s, uint64_t touched, uint64_t writes,
			   struct sr_disk_id *id, struct sr_error *err);

void sr_disk_sample_free(struct sr_disk_sample *s);

/* Which field of two identities differs first; SR_DISK_SAME when none. */
enum sr_disk_diff {
	SR_DISK_SAME = 0,
	SR_DISK_DIFF_SIZE,
	SR_DISK_DIFF_FILE,		/* dev or ino: another file */
	SR_DISK_DIFF_MTIME,
	SR_DISK_DIFF_HASH,		/* content (or a different sample) */
};

/* Compare size and hash only (a disk copied to another host: dev/ino/mtime differ). */
#define SR_DISK_CMP_CONTENT	(1u << 0)

/*
 * Compares saved against now in the order size, dev+ino, mtime, hash and
 * returns the first difference; why (when non-NULL) gets one line naming
 * it with both values, e.g. "mtime 2026-11-29 11:40:03.120 -> 2026-11-29
 * 11:52:40.771".  Does not read anything.
 */
enum sr_disk_diff sr_disk_id_compare(const struct sr_disk_id *saved, const struct sr_disk_id *now,
				     unsigned flags, char *why, size_t len);

/*
 * sr_disk_identity_like(fd, saved) then sr_disk_id_compare(), cheapest
 * first: a size, file (dev+ino), mtime or sample layout that differs is
 * returned from fstat alone, and the file is read (hashed) only when those
 * all agree.  Returns the difference (>= 0) or -1 with err set when the
 * file could not be read.
 */
int sr_disk_check(int fd, const struct sr_disk_id *saved, unsigned flags, char *why,
		  size_t len, struct sr_error *err);

/* ------------------------------------------------------------ snapshots */

struct sr_snap_result {
	enum sr_snap_method method;	/* SR_SNAP_REFLINK or SR_SNAP_COPY */
	uint64_t ns;			/* wall time of the whole call */
	uint64_t bytes;			/* data bytes copied (0 for a reflink) */
	uint64_t size;			/* the file's size */
	int reflink_errno;		/* why FICLONE was not used (0: it was, or not tried) */
};

#define SR_SNAP_NO_REFLINK	(1u << 0)	/* copy even where FICLONE works (tests) */
#define SR_SNAP_REPLACE		(1u << 1)	/* dst may exist: replaced atomically */

/*
 * Fills dst, an empty file open for writing (an O_TMPFILE the caller names
 * later), with a copy of the open file src as it is now: by ioctl(FICLONE)
 * where the file system shares blocks, else a sparse-aware copy; then
 * fsyncs it.  On failure dst holds a partial copy: the caller discards it.
 * The caller keeps src from changing during the call.  Returns 0 with *res
 * filled, or -1 with err set (SR_E_IO with sys_errno: ENOSPC, EIO, ...).
 */
int sr_disk_snapshot_fd(int src, int dst, unsigned flags, struct sr_snap_result *res,
			struct sr_error *err);

/*
 * Makes dst a copy of the open file src as it is now: by ioctl(FICLONE)
 * where the file system shares blocks, else a sparse-aware copy (SEEK_DATA/
 * SEEK_HOLE over src, data ranges by copy_file_range, holes left holes, the
 * size set with ftruncate).  The copy is written to a temporary file in
 * dst's directory, fsynced, then linked as dst (with SR_SNAP_REPLACE renamed
 * over it; without, an existing dst is an error, EEXIST) and the directory
 * fsynced: dst is complete or absent.  The caller keeps src from changing
 * during the call (the guest paused, its disk drained).  Returns 0 with *res
 * filled, or -1 with err set.
 */
int sr_disk_snapshot(int src, const char *dst, unsigned flags, struct sr_snap_result *res,
		     struct sr_error *err);

/* "reflink", "copy", "none". */
const char *sr_snap_method_name(unsigned method);

#endif /* SR_DISK_H */
