/* SPDX-License-Identifier: MIT */
/*
 * Structure-aware mutation for the libFuzzer targets (fuzz_reader.c,
 * fuzz_restore.c): bit flips mostly die at the checksum, so half the time
 * the mutator parses the input into records, lets libFuzzer mutate one
 * record's body (or drop, duplicate or swap records, or change a type, or
 * send a PAGE_DATA record's pages again in another record's round, right
 * after it: a round with a pfn twice, with other contents, as a hostile
 * writer would send it), and writes the records again with the real writer,
 * which gives every record a fresh checksum and END a fresh count and
 * stream hash.  Mutated fields then reach the semantic checks behind the
 * checksums.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sr.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

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
	static uint8_t body[SR_REC_LENGTH_MAX + 64];
	struct sr_image_info info = { .creator = "fuzz" };
	struct sr_error err;
	struct sr_writer *w;
	unsigned n, pick, what, after = MAX_RECS;
	size_t out;
	int fd;

	srand(seed);
	if (size < sizeof(struct sr_ihdr) || rand() % 2 || !(n = split(data, size, recs)))
		return LLVMFuzzerMutate(data, size, max_size);
	pick = rand() % n;
	what = rand() % 8;
	if (what == 4 && recs[pick].type == SR_REC_PAGE_DATA &&
	    recs[pick].len >= sizeof(struct sr_rec_page_data) && recs[pick].len <= sizeof(body)) {
		/* Pages again: a copy of pick after another PAGE_DATA record, in its round. */
		for (unsigned k = 0, i = rand() % n; k < n; k++, i = (i + 1) % n)
			if (recs[i].type == SR_REC_PAGE_DATA && recs[i].len >= sizeof(struct sr_rec_page_data)) {
				after = i;
				break;
			}
	}
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
		if (i == after) {
			struct sr_rec_page_data ph;

			if (sr_write_record(w, type, b, len, &err))
				break;
			memcpy(&ph, recs[i].body, sizeof(ph));
			memcpy(body, recs[pick].body, recs[pick].len);
			memcpy(body + offsetof(struct sr_rec_page_data, iteration), &ph.iteration,
			       sizeof(ph.iteration));
			b = body;
			len = recs[pick].len;
		} else if (i == pick && after < MAX_RECS) {
			/* written as it was */
		} else if (i == pick) {
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
