/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: an sr image, whole, through the reader, every page
 * decoded and every context block walked, as sr-dump --verify and a restore
 * do before anything reaches KVM.
 * The structure-aware mutator is in fuzz_mutator.c.
 */
#include <stdbool.h>
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

/*
 * The placed path: pages land in a ring of scratch pages, one per call, so
 * no page of a record (at most 1024) or of the records a worker may still
 * be verifying (two jobs with one thread) shares its landing with another.
 */
#define LANDING_PAGES	(3 * SR_BATCH_MAX_PAGES)
static uint8_t *landing;
static unsigned landed;

static void *land(void *arg, uint64_t pfn)
{
	(void)arg;
	(void)pfn;
	if (!landing && !(landing = malloc((size_t)LANDING_PAGES * SR_PAGE_SIZE)))
		abort();
	return landing + (size_t)(landed++ % LANDING_PAGES) * SR_PAGE_SIZE;
}

/* Reads the whole input; returns the verdict (0: verified) with err filled. */
static int read_all(int fd, bool placed, unsigned threads, struct sr_error *err)
{
	static uint8_t page[SR_PAGE_SIZE];
	struct sr_page_sink sink = { .page_addr = land, .threads = threads };
	struct sr_record rec;
	struct sr_reader *r;
	int rc = -1;

	lseek(fd, 0, SEEK_SET);
	r = sr_reader_open(fd, err);
	if (r && placed && sr_reader_set_page_sink(r, &sink, err))
		abort();
	while (r && (rc = sr_reader_next(r, &rec, err)) == 1) {
		if (!rec.known)
			continue;
		if (rec.type == SR_REC_PAGE_DATA) {
			struct sr_page_iter it;
			const struct sr_page_desc *pd;

			sr_page_iter_init(&rec, &it);
			while ((rc = sr_page_iter_next(&it, &pd, page, err)) == 1)
				;
			if (rc < 0)
				break;
		} else if (rec.type == SR_REC_HVM_CONTEXT || rec.type == SR_REC_VCPU_CONTEXT) {
			struct sr_block_iter bi;
			struct sr_block blk;

			sr_context_begin(&rec, &bi);
			while (sr_context_next(&bi, &blk))
				;
		}
	}
	sr_reader_free(r);
	return rc;
}

/*
 * Each input is read the ordinary way and placed (with a worker thread for
 * one input in 16): both must reach the same verdict at the same record.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sr_error e1, e2;
	int fd = mem_fd(data, size);
	int v1 = read_all(fd, false, 0, &e1);
	int v2 = read_all(fd, true, size % 16 == 7, &e2);

	if (v1 != v2 || (v1 < 0 && (e1.code != e2.code || e1.index != e2.index))) {
		char m1[512], m2[512];

		fprintf(stderr, "fuzz-reader: buffered %d \"%s\", placed %d \"%s\"\n", v1,
			v1 < 0 ? sr_error_format(&e1, m1, sizeof(m1)) : "ok", v2,
			v2 < 0 ? sr_error_format(&e2, m2, sizeof(m2)) : "ok");
		abort();
	}
	close(fd);
	return 0;
}
