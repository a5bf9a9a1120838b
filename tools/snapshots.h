/* SPDX-License-Identifier: MIT */
/*
 * A checkpoint's disk snapshots (sr-save -c --disk-snapshot, docs/format.md
 * §3.8.3): all of them appear under their names, IMAGE.diskN, or none does.
 *
 * Each is written unnamed (O_TMPFILE in the image's directory; where the
 * file system has none, created as its side name, IMAGE.diskN.sr-tmp-PID).
 * Once the image is complete, before the client is asked to commit it,
 * each unnamed one is linked in under its side name (stage): a link that
 * fails fails the save, the image never placed.  Once the image is
 * committed, each side name is renamed to its final name (place); a rename
 * that fails takes back the ones already renamed, so no snapshot of an
 * image that is not there is left under its name.  Whatever is not placed
 * goes at discard: a failed save leaves no snapshot and no side file.
 * Every name is taken relative to the image's directory, opened once.
 */
#ifndef SR_TOOLS_SNAPSHOTS_H
#define SR_TOOLS_SNAPSHOTS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "sr_format.h"

struct snap_file {
	int fd;				/* -1: none (no such disk, or a read-only one) */
	bool unnamed;			/* O_TMPFILE: no name until staged */
	bool side;			/* its side name is in the directory */
	bool placed;			/* its final name is */
	char path[4096];		/* IMAGE.diskN, absolute (the DISK's snap_path) */
	char name[NAME_MAX + 1];	/* IMAGE.diskN's last component */
	char side_name[NAME_MAX + 1];	/* name.sr-tmp-PID */
};

struct snapshots {
	const char *image;		/* the image's absolute path */
	int dir;			/* the image's directory */
	struct snap_file f[SR_MAX_DISKS];	/* by disk index */
	char note[512];			/* what the summary says of them */
};

/* For the image at absolute path image (kept, not copied); -1 with errno. */
int snapshots_init(struct snapshots *sn, const char *image);

/*
 * The snapshot file of disk disk (whose file is disk_path), opened before
 * the save starts: a directory that refuses it fails the save at once;
 * -1 with why, naming the disk.
 */
int snapshots_open(struct snapshots *sn, unsigned disk, const char *disk_path, char *why,
		   size_t len);

/* The image is complete: every snapshot under its side name; -1 with why. */
int snapshots_stage(struct snapshots *sn, char *why, size_t len);

/* The image is committed: every snapshot under its final name, or none; -1 with why. */
int snapshots_place(struct snapshots *sn, char *why, size_t len);

/* Closes every file and removes each side name left; the directory too. */
void snapshots_discard(struct snapshots *sn);

#endif
