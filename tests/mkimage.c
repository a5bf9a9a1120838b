/* SPDX-License-Identifier: MIT */
/* mkimage: write a synthetic sr image (for tests and the libsr demo). */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr.h"

int main(int argc, char **argv)
{
	struct sr_gen_params p = { .mem_bytes = 8 << 20, .vcpus = 2, .iterations = 2,
				   .dirty_pages = 100, .compress = SR_COMPRESS_LZ4, .seed = 1,
				   .pct_zero = 40, .pct_text = 40 };
	struct sr_error err;
	char buf[512];
	int c, fd;

	while ((c = getopt(argc, argv, "m:v:i:d:s:nH:L:r:z:t:b:g:SB:")) != -1) {
		switch (c) {
		case 'm': p.mem_bytes = strtoull(optarg, NULL, 0) << 20; break;
		case 'v': p.vcpus = atoi(optarg); break;
		case 'i': p.iterations = atoi(optarg); break;
		case 'd': p.dirty_pages = atoi(optarg); break;
		case 's': p.seed = strtoull(optarg, NULL, 0); break;
		case 'n': p.compress = SR_COMPRESS_NONE; break;
		case 'H': p.pct_hole = atoi(optarg); break;
		case 'L':
			if (sscanf(optarg, "%" SCNi64 ":%" SCNu64, &p.skip_first, &p.skip_pages) != 2)
				goto usage;
			break;
		case 'r': p.regions = atoi(optarg); break;
		case 'z': p.pct_zero = atoi(optarg); break;
		case 't': p.pct_text = atoi(optarg); break;
		case 'b': p.blk = atoi(optarg); break;
		case 'g': p.rng = atoi(optarg); break;
		case 'S': p.snapshot = true; break;
		case 'B':
			if (sr_gen_break_from_name(optarg) < 0)
				goto usage;
			p.broken = sr_gen_break_from_name(optarg);
			break;
		default:
usage:
			fprintf(stderr, "usage: mkimage [-m MiB] [-v vcpus] [-i iters] [-d dirty] "
				"[-s seed] [-n] [-H hole%%] [-L PFN:N (N pages left out)] [-r regions] "
				"[-z zero%%] [-t text%%] [-b virtio-blks] [-g virtio-rngs] [-S (disk snapshots)] "
				"[-B BREAK: ring-outside, qsize3, index, unaligned, inflight, feature, "
				"unknown-bit, slot, no-disk, version, section, optional, disk-path, "
				"snap-ro, snap-size, snap-hash, snap-sample, snap-self] "
				"FILE|-\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "mkimage: missing FILE\n");
		return 2;
	}
	fd = strcmp(argv[optind], "-") ? open(argv[optind], O_WRONLY | O_CREAT | O_TRUNC, 0644)
				       : STDOUT_FILENO;
	if (fd < 0) {
		perror(argv[optind]);
		return 2;
	}
	if (sr_gen_image(fd, &p, &err)) {
		fprintf(stderr, "mkimage: %s\n", sr_error_format(&err, buf, sizeof(buf)));
		return 1;
	}
	return close(fd) ? 1 : 0;
}
