/* SPDX-License-Identifier: MIT */
/*
 * imgedit: rewrites a valid image with one semantic change and fresh
 * checksums, to test what a restore does with an image from another host.
 *   imgedit cpuid LEAF SUB REG BIT IN OUT   set a CPUID feature bit (REG 0..3 = eax..edx)
 *   imgedit msr INDEX IN OUT                 rename the first MSR to INDEX
 *   imgedit clock-flags MASK IN OUT          clear MASK in the CLOCK block's flags
 *   imgedit region-size MIB IN OUT           make DOMAIN's region 0 MIB MiB (an image of
 *                                            the layout before the hole: one region from 0)
 *   imgedit virtio FIELD VALUE... IN OUT     set FIELDs of the first virtio DEVICE: device_features,
 *                                            driver_features, or queue 0's flags, signalled_used,
 *                                            avail_event, ready
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "sr.h"

static uint32_t leaf, sub, reg, bit, msr;
static int mode;		/* 1 cpuid, 2 msr, 3 clock-flags, 4 region-size, 5 virtio */
static char **vargs;		/* FIELD VALUE pairs */
static int nvargs;
static bool vdone;
static uint32_t clear_flags;
static uint64_t region_size;

/* Edits the CPUID or MSRS block of a VCPU_CONTEXT, or HVM_CONTEXT's CLOCK, in place. */
static void edit_context(uint8_t *body, uint32_t len)
{
	struct sr_rec_context *c = (void *)body;
	uint8_t *p = body + sizeof(*c), *end = body + len;

	for (uint32_t b = 0; b < c->block_count && p + 8 <= end; b++) {
		struct sr_block_hdr *h = (void *)p;
		struct sr_blk_count *cnt = (void *)(h + 1);

		if (mode == 1 && h->kind == SR_BLK_CPUID) {
			struct kvm_cpuid_entry2 *e = (void *)(cnt + 1);

			for (uint32_t i = 0; i < cnt->count; i++)
				if (e[i].function == leaf && (e[i].index == sub ||
				    !(e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX)))
					(&e[i].eax)[reg] |= 1u << bit;
		}
		if (mode == 2 && h->kind == SR_BLK_MSRS && cnt->count)
			((struct kvm_msr_entry *)(cnt + 1))->index = msr;
		if (mode == 3 && h->kind == SR_BLK_CLOCK)
			((struct kvm_clock_data *)(h + 1))->flags &= ~clear_flags;
		p += sizeof(*h) + (h->length + 7) / 8 * 8;
	}
}

static uint64_t old_size;

/* The first virtio DEVICE with the fields vargs names set, re-encoded; 1 when rec is not that one. */
static int edit_virtio(struct sr_writer *w, const struct sr_record *rec, struct sr_error *err)
{
	static struct sr_virtio_state s;
	static uint8_t buf[SR_VIRTIO_DATA_MAX];
	const struct sr_rec_device *d;
	const void *data;
	size_t len;
	ssize_t n;

	if (vdone || rec->type != SR_REC_DEVICE || !(d = sr_device_view(rec, &data, &len)) ||
	    strncmp(d->name, "virtio-", 7) || sr_virtio_view(rec, &s, err))
		return 1;
	for (int i = 0; i + 1 < nvargs; i += 2) {
		const char *f = vargs[i];
		uint64_t v = strtoull(vargs[i + 1], NULL, 0);

		if (!strcmp(f, "device_features"))
			s.tr.device_features = v;
		else if (!strcmp(f, "driver_features"))
			s.tr.driver_features = v;
		else if (!strcmp(f, "flags"))
			s.q[0].flags = v;
		else if (!strcmp(f, "signalled_used"))
			s.q[0].signalled_used = v;
		else if (!strcmp(f, "avail_event"))
			s.q[0].avail_event = v;
		else
			s.q[0].ready = v;	/* main took only these names */
	}
	vdone = true;
	if ((n = sr_virtio_encode(&s, buf, sizeof(buf), err)) < 0)
		return -1;
	return sr_write_device(w, d->name, d->version, d->instance, buf, (size_t)n, err);
}

/* Pages [old, new) of region 0 as zero runs, in one PAGE_DATA record of round 0 (once). */
static int grow_region(struct sr_writer *w, uint64_t old, uint64_t new, struct sr_error *err)
{
	struct sr_batch *b = sr_batch_new(SR_COMPRESS_NONE, 0);
	uint64_t pfn = old / SR_PAGE_SIZE, end = new / SR_PAGE_SIZE;
	int rc = -1;

	if (!b)
		return -1;
	sr_batch_reset(b, 0);
	while (pfn < end) {
		uint64_t n = end - pfn > (1u << 20) ? 1u << 20 : end - pfn;

		if (sr_batch_add_zero_run(b, pfn, n) < 0)
			goto out;
		pfn += n;
	}
	rc = sr_write_page_batch(w, b, err);
	region_size = old;		/* done: no other record adds them again */
out:
	sr_batch_free(b);
	return rc;
}

int main(int argc, char **argv)
{
	struct sr_image_info info = { .creator = "imgedit" };
	struct sr_error err;
	struct sr_record rec;
	struct sr_reader *r;
	struct sr_writer *w;
	char buf[512];
	int in, out, rc;

	if (argc == 8 && !strcmp(argv[1], "cpuid")) {
		mode = 1;
		leaf = strtoul(argv[2], NULL, 0);
		sub = strtoul(argv[3], NULL, 0);
		reg = strtoul(argv[4], NULL, 0) & 3;
		bit = strtoul(argv[5], NULL, 0) & 31;
	} else if (argc == 5 && !strcmp(argv[1], "msr")) {
		mode = 2;
		msr = strtoul(argv[2], NULL, 0);
	} else if (argc == 5 && !strcmp(argv[1], "clock-flags")) {
		mode = 3;
		clear_flags = strtoul(argv[2], NULL, 0);
	} else if (argc == 5 && !strcmp(argv[1], "region-size")) {
		mode = 4;
		region_size = strtoull(argv[2], NULL, 0) << 20;
	} else if (argc >= 6 && argc % 2 == 0 && !strcmp(argv[1], "virtio")) {
		mode = 5;
		vargs = argv + 2;
		nvargs = argc - 4;
		for (int i = 0; i < nvargs; i += 2)
			if (snprintf(buf, sizeof(buf), " %s ", vargs[i]) >= (int)sizeof(buf) ||
			    !strstr(" device_features driver_features flags signalled_used avail_event "
				    "ready ", buf)) {
				fprintf(stderr, "imgedit: no virtio field %s\n", vargs[i]);
				return 2;
			}
	} else {
		fprintf(stderr, "usage: imgedit cpuid LEAF SUB REG BIT IN OUT | msr INDEX IN OUT | "
			"clock-flags MASK IN OUT | region-size MIB IN OUT | virtio FIELD VALUE... IN OUT\n");
		return 2;
	}
	in = open(argv[argc - 2], O_RDONLY);
	out = open(argv[argc - 1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0 || !(r = sr_reader_open(in, &err))) {
		fprintf(stderr, "imgedit: cannot open the images\n");
		return 2;
	}
	info.flags = sr_reader_header(r)->flags;
	w = sr_writer_open(out, &info, 0, &err);
	while (w && (rc = sr_reader_next(r, &rec, &err)) == 1) {
		uint8_t *body;

		if (rec.type == SR_REC_END)
			continue;
		body = malloc(rec.length ? rec.length : 1);
		memcpy(body, rec.body, rec.length);
		if (rec.type == SR_REC_VCPU_CONTEXT || rec.type == SR_REC_HVM_CONTEXT)
			edit_context(body, rec.length);
		if (rec.type == SR_REC_DOMAIN && mode == 4) {
			struct sr_region *r0 = (void *)(body + sizeof(struct sr_rec_domain));

			old_size = r0->size;
			r0->size = region_size;
		}
		if (mode != 5 || (rc = edit_virtio(w, &rec, &err)) == 1)
			rc = sr_write_record(w, rec.type, body, rec.length, &err);
		free(body);
		if (rc)
			break;
		/* A grown region's new pages go into round 0 as zero runs: the image stays complete. */
		if (rec.type == SR_REC_PAGE_DATA && mode == 4 && region_size > old_size &&
		    (rc = grow_region(w, old_size, region_size, &err)))
			break;
	}
	if (!w || rc < 0 || sr_write_end(w, &err)) {
		fprintf(stderr, "imgedit: %s\n", sr_error_format(&err, buf, sizeof(buf)));
		return 1;
	}
	sr_writer_free(w);
	sr_reader_free(r);
	return close(out) ? 1 : 0;
}
