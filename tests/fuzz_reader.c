/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: an sr image, whole, through the reader, every page
 * decoded and every context block walked, as sr-dump --verify and a restore
 * do before anything reaches KVM.
 *
 * Structure-aware mutation: bit flips mostly die at the checksum, so half
 * the time the mutator parses the input into records, lets libFuzzer mutate
 * one record's body (or drop, duplicate or swap records, or change a type),
 * and writes the records again with the real writer, which gives every
 * record a fresh checksum and END a fresh count and stream hash.  Mutated
 * fields then reach the semantic checks behind the checksums.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sr.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

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

/* ------------------------------------------------- structure-aware mutator */

#define MAX_RECS 256

struct rec {
	uint32_t type, len;
	const uint8_t *body;
};

/* Splits a framed stream into records without checking anything. */
static unsigned split(const uint8_t *d, size_t n, struct rec *out)
{
	size_t off = sizeof(struct sr_ihdr);
	unsigned k = 0;

	while (k < MAX_RECS && off + 8 <= n) {
		uint32_t type, len;
		size_t total;

		memcpy(&type, d + off, 4);
		memcpy(&len, d + off + 4, 4);
		total = 8 + (((size_t)len + 7) & ~(size_t)7) + 8;
		if (total > n - off)
			break;
		out[k++] = (struct rec){ type, len, d + off + 8 };
		off += total;
	}
	return k;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned seed)
{
	struct rec recs[MAX_RECS];
	static uint8_t body[1 << 20];
	struct sr_image_info info = { .creator = "fuzz" };
	struct sr_error err;
	struct sr_writer *w;
	unsigned n, pick, what;
	size_t out;
	int fd;

	srand(seed);
	if (size < sizeof(struct sr_ihdr) || rand() % 2 || !(n = split(data, size, recs)))
		return LLVMFuzzerMutate(data, size, max_size);
	pick = rand() % n;
	what = rand() % 8;
	fd = memfd_create("mut", MFD_CLOEXEC);
	if (fd < 0)
		return LLVMFuzzerMutate(data, size, max_size);
	memcpy(&info.flags, data + 20, 4);
	w = sr_writer_open(fd, &info, 0, &err);
	for (unsigned i = 0; w && i < n; i++) {
		const void *b = recs[i].body;
		uint32_t len = recs[i].len, type = recs[i].type;

		if (type == SR_REC_END)
			continue;	/* written fresh at the end */
		if (i == pick) {
			if (what == 0)
				continue;			/* drop it */
			if (what == 1 && i + 1 < n && recs[i + 1].type != SR_REC_END) {
				struct rec t = recs[i];		/* swap with the next */

				recs[i] = recs[i + 1];
				recs[i + 1] = t;
				b = recs[i].body;
				len = recs[i].len;
				type = recs[i].type;
			} else if (what == 2) {
				sr_write_record(w, type, b, len, &err);	/* twice */
			} else if (what == 3) {
				type ^= 1u << (rand() % 3);		/* another type */
			} else if (len <= sizeof(body)) {
				memcpy(body, b, len);
				len = LLVMFuzzerMutate(body, len, len + 64 <= sizeof(body) ? len + 64 : len);
				b = body;
			}
		}
		if (sr_write_record(w, type, b, len, &err))
			break;
	}
	if (w)
		sr_write_end(w, &err);
	sr_writer_free(w);
	out = lseek(fd, 0, SEEK_END);
	if (out == 0 || out > max_size) {
		close(fd);
		return LLVMFuzzerMutate(data, size, max_size);
	}
	if (pread(fd, data, out, 0) != (ssize_t)out)
		out = size;
	close(fd);
	return out;
}
