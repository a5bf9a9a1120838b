/* SPDX-License-Identifier: MIT */
/* A checkpoint's disk snapshots: all under their names or none (snapshots.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshots.h"

int snapshots_init(struct snapshots *sn, const char *image)
{
	const char *slash = strrchr(image, '/');
	char dir[4096];

	memset(sn, 0, sizeof(*sn));
	sn->image = image;
	for (unsigned k = 0; k < SR_MAX_DISKS; k++)
		sn->f[k].fd = -1;
	if (!slash || slash[1] == 0 || (size_t)(slash - image) >= sizeof(dir)) {
		sn->dir = -1;
		errno = EINVAL;
		return -1;
	}
	snprintf(dir, sizeof(dir), "%.*s", slash == image ? 1 : (int)(slash - image), image);
	sn->dir = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return sn->dir < 0 ? -1 : 0;
}

int snapshots_open(struct snapshots *sn, unsigned disk, const char *disk_path, char *why,
		   size_t len)
{
	struct snap_file *f = &sn->f[disk];
	const char *base = strrchr(sn->image, '/') + 1;
	size_t dir_len = (size_t)(base - sn->image);
	struct stat st;
	int n;

	n = snprintf(f->name, sizeof(f->name), "%s.disk%u", base, disk);
	if (dir_len + strlen(f->name) >= sizeof(f->path))
		n = -1;
	else		/* IMAGE.diskN: the image's directory, then the name */
		memcpy(mempcpy(f->path, sn->image, dir_len), f->name, strlen(f->name) + 1);
	if (n < 0 || (size_t)n >= sizeof(f->name) ||
	    (size_t)snprintf(f->side_name, sizeof(f->side_name), "%s.disk%u.sr-tmp-%d", base, disk,
			     (int)getpid()) >= sizeof(f->side_name)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	/* A directory there would be found only at the commit, the image placed: refused now. */
	if (!fstatat(sn->dir, f->name, &st, AT_SYMLINK_NOFOLLOW) && S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		goto fail;
	}
	f->fd = openat(sn->dir, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (f->fd >= 0) {
		f->unnamed = true;
		return 0;
	}
	/* No O_TMPFILE here (9p, older file systems): its side name, never an existing file. */
	f->fd = openat(sn->dir, f->side_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	if (f->fd >= 0) {
		f->side = true;
		return 0;
	}
	snprintf(why, len, "disk %u %.100s: its snapshot %.200s (as %.100s): %s", disk, disk_path,
		 f->path, f->side_name, strerror(errno));
	return -1;
fail:
	snprintf(why, len, "disk %u %.100s: its snapshot %.200s: %s", disk, disk_path, f->path,
		 strerror(errno));
	return -1;
}

int snapshots_stage(struct snapshots *sn, char *why, size_t len)
{
	for (unsigned k = 0; k < SR_MAX_DISKS; k++) {
		struct snap_file *f = &sn->f[k];
		char proc[64];

		if (f->fd < 0 || f->side)
			continue;
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
		if (linkat(AT_FDCWD, proc, sn->dir, f->side_name, AT_SYMLINK_FOLLOW)) {
			snprintf(why, len, "disk %u: its snapshot %.200s: linking it in as %.100s: %s",
				 k, f->path, f->side_name, strerror(errno));
			return -1;
		}
		f->side = true;
	}
	return 0;
}

/* Takes back every final name placed (so none outlives an image that failed). */
static void unplace(struct snapshots *sn)
{
	for (unsigned k = 0; k < SR_MAX_DISKS; k++)
		if (sn->f[k].placed && !unlinkat(sn->dir, sn->f[k].name, 0))
			sn->f[k].placed = false;
}

int snapshots_place(struct snapshots *sn, char *why, size_t len)
{
	bool any = false;

	for (unsigned k = 0; k < SR_MAX_DISKS; k++) {
		struct snap_file *f = &sn->f[k];

		if (!f->side)
			continue;
		/* Same directory: atomic, replacing an older snapshot (a file, not a directory). */
		if (renameat(sn->dir, f->side_name, sn->dir, f->name)) {
			snprintf(why, len, "disk %u: its snapshot %.200s: %s; no snapshot of this "
				 "image is kept", k, f->path, strerror(errno));
			unplace(sn);
			return -1;
		}
		f->side = false;
		f->placed = any = true;
	}
	if (any && fsync(sn->dir)) {
		snprintf(why, len, "fsync of the snapshots' directory: %s; no snapshot of this image "
			 "is kept", strerror(errno));
		unplace(sn);
		return -1;
	}
	return 0;
}

void snapshots_discard(struct snapshots *sn)
{
	for (unsigned k = 0; k < SR_MAX_DISKS; k++) {
		struct snap_file *f = &sn->f[k];

		if (f->fd >= 0)
			close(f->fd);
		f->fd = -1;
		if (f->side)
			unlinkat(sn->dir, f->side_name, 0);
		f->side = false;
	}
	if (sn->dir >= 0)
		close(sn->dir);
	sn->dir = -1;
}
