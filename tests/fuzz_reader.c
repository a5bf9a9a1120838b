/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: an sr image, whole, through the reader, every page
 * decoded and every context block walked, as sr-dump --verify and a restore
 * do before anything reaches KVM.
 * The structure-aware mutator is in fuzz_mutator.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sr.h"

static int mem_fd(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	lseek(fd, 0, SEEK_SET);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t page[SR_PAGE_SIZE];
	struct sr_error err;
	struct sr_record rec;
	struct sr_reader *r;
	int fd = mem_fd(data, size);

	r = sr_reader_open(fd, &err);
	while (r && sr_reader_next(r, &rec, &err) == 1) {
		if (!rec.known)
			continue;
		if (rec.type == SR_REC_PAGE_DATA) {
			struct sr_page_iter it;
			const struct sr_page_desc *pd;

			sr_page_iter_init(&rec, &it);
			while (sr_page_iter_next(&it, &pd, page, &err) == 1)
				;
		} else if (rec.type == SR_REC_HVM_CONTEXT || rec.type == SR_REC_VCPU_CONTEXT) {
			struct sr_block_iter bi;
			struct sr_block blk;

			sr_context_begin(&rec, &bi);
			while (sr_context_next(&bi, &blk))
				;
		}
	}
	sr_reader_free(r);
	close(fd);
	return 0;
}
