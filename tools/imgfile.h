/* SPDX-License-Identifier: MIT */
/*
 * An image file that appears whole or not at all: written unnamed
 * (O_TMPFILE in its directory) and linked into place once complete, or,
 * where the filesystem has no O_TMPFILE, written as PATH.tmp created with
 * O_EXCL|O_NOFOLLOW (never an existing file or a planted symlink) and
 * renamed.  sr-save and a guest-requested save (--save-to) both use it.
 */
#ifndef SR_TOOLS_IMGFILE_H
#define SR_TOOLS_IMGFILE_H

#include <stdbool.h>
#include <stddef.h>

struct img_file {
	const char *path;
	int fd;
	bool unnamed;			/* O_TMPFILE: linked into place */
	bool placed;			/* path now names the image */
	char tmp[4096];			/* PATH.tmp while it exists, else "" */
};

/* Opens the image's unnamed (or .tmp) file for path; -1 with errno set. */
int img_file_open(struct img_file *f, const char *path);

/* Gives the complete image its name, then fsyncs the directory; -1 with why. */
int img_file_place(struct img_file *f, char *why, size_t len);

/* Closes the file and removes a .tmp left behind (an unnamed one just goes). */
void img_file_discard(struct img_file *f);

#endif
