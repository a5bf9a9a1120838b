/* SPDX-License-Identifier: MIT */
/*
 * --disk FILE[,ro][,cache=none|writeback]: one grammar for sr-run, sr-restore
 * and sr-save/sr-migrate's --remote-disk (which check it before ssh starts and
 * link no device model).
 */
#include <stdio.h>
#include <string.h>

#include "virtio.h"

int virtio_blk_parse(const char *arg, struct virtio_blk_opts *o, char *why, size_t len)
{
	const char *comma = strchr(arg, ',');
	size_t plen = comma ? (size_t)(comma - arg) : strlen(arg);

	memset(o, 0, sizeof(*o));
	if (!plen || plen >= sizeof(o->path)) {
		snprintf(why, len, "--disk \"%s\": no file, or a path too long", arg);
		return -1;
	}
	memcpy(o->path, arg, plen);
	while (comma) {
		const char *opt = comma + 1;
		size_t n;

		comma = strchr(opt, ',');
		n = comma ? (size_t)(comma - opt) : strlen(opt);
		if (n == 2 && !strncmp(opt, "ro", 2))
			o->ro = true;
		else if (n == 10 && !strncmp(opt, "cache=none", 10))
			o->cache = VIRTIO_BLK_NONE, o->cache_given = true;
		else if (n == 15 && !strncmp(opt, "cache=writeback", 15))
			o->cache = VIRTIO_BLK_WRITEBACK, o->cache_given = true;
		else {
			snprintf(why, len, "--disk %s: \"%.*s\" is not ro, cache=none or cache=writeback",
				 o->path, (int)n, opt);
			return -1;
		}
	}
	return 0;
}
