/* SPDX-License-Identifier: MIT */
/* Image files that appear whole or not at all (imgfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgfile.h"

int img_file_open(struct img_file *f, const char *path)
{
	char dir[4096];
	struct stat st;

	memset(f, 0, sizeof(*f));
	f->path = path;
	f->fd = -1;
	/* A directory would be found only at commit, the domain paused: refused now. */
	if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	f->fd = open(dirname(dir), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (f->fd >= 0) {
		f->unnamed = true;
		return 0;
	}
	/* No O_TMPFILE here (9p, older filesystems): a named temporary, never an existing one. */
	snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", path);
	f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		int e = errno;

		f->tmp[0] = 0;
		errno = e;
		return -1;
	}
	return 0;
}

int img_file_place(struct img_file *f, char *why, size_t len)
{
	char proc[64], side[4200], dir[4096];
	int dfd;

	if (f->unnamed) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, f->path, AT_SYMLINK_FOLLOW)) {
			if (errno != EEXIST)
				goto fail;
			/* Replacing an older image: link beside it, then rename over it. */
			snprintf(side, sizeof(side), "%s.sr-save-%d", f->path, (int)getpid());
			if (linkat(AT_FDCWD, proc, AT_FDCWD, side, AT_SYMLINK_FOLLOW))
				goto fail;
			if (rename(side, f->path)) {
				int e = errno;

				unlink(side);
				errno = e;
				goto fail;
			}
		}
	} else if (rename(f->tmp, f->path)) {
		goto fail;
	}
	f->tmp[0] = 0;
	f->placed = true;
	snprintf(dir, sizeof(dir), "%s", f->path);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd)) {
		snprintf(why, len, "fsync of %s's directory: %s", f->path, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	close(dfd);
	return 0;
fail:
	snprintf(why, len, "putting the image in place as %s: %s", f->path, strerror(errno));
	return -1;
}

void img_file_discard(struct img_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->tmp[0])
		unlink(f->tmp);
	f->tmp[0] = 0;
}
