/* SPDX-License-Identifier: MIT */
/* sr-dump: inspect and verify an sr image. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dump_dev.h"
#include "sr.h"
#include "usage.h"
#include "util.h"

#define MAX_ITERS 4096
/* --json: the document's version (docs/control.md, "schema: dump"). */
#define DUMP_JSON_SCHEMA 1

struct iter_total {
	bool seen, has_rec;
	uint64_t batches, pages, raw, zero, lz4, data_bytes, rec_bytes;
	struct sr_rec_iteration rec;
	unsigned throttle;		/* THROTTLE: the most any vCPU was throttled */
};

struct dump {
	bool verify, json, pfns;
	uint32_t filter[16];
	unsigned nfilter;
	const char *path;
	bool first_json_rec;
	struct iter_total it[MAX_ITERS];
	uint32_t max_iter;
	uint64_t pages, raw, zero, lz4, data_bytes;
	uint64_t records;
	uint8_t page[SR_PAGE_SIZE];
	/* --json: what the document lists at its end, gathered on the way. */
	struct dev_seen {
		char name[32];
		uint32_t version, instance;
		uint64_t bytes;
	} *devs;
	struct vcpu_seen {
		uint32_t id;
		char blocks[256];	/* "\"REGS\",\"SREGS\",..." */
	} *vcpus;
	size_t ndevs, nvcpus;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: sr-dump [OPTIONS] FILE|-\n"
"Inspect and verify an sr image (\"-\" reads standard input).\n"
"\n"
"      --verify       check the whole image and print nothing on success\n"
"      --json         print one JSON document instead of text\n"
"  -t, --type NAMES   show only these record types (comma separated,\n"
"                     e.g. PAGE_DATA,VCPU_CONTEXT); the image is still checked\n"
"      --pfns         list every page (pfn, encoding, length) of PAGE_DATA\n"
"  -h, --help         this help\n"
"      --version      sr's version\n"
"\n"
"Exit status: 0 the image verified, 1 the image is corrupt, truncated or\n"
"foreign, 2 usage or I/O error.\n");
}

static bool shown(const struct dump *d, uint32_t type)
{
	if (!d->nfilter)
		return true;
	for (unsigned i = 0; i < d->nfilter; i++)
		if (d->filter[i] == type)
			return true;
	return false;
}

/* Machine error codes: the names of libsr's codes (sr.h), stable across versions. */
static const char *const err_codes[] = {
#define SR_X_CODE(name, text) [SR_E_##name] = #name,
	SR_ERROR_CODES(SR_X_CODE)
#undef SR_X_CODE
};

/* ,"error":{...}} closing the JSON document. */
static void print_json_error(const struct sr_error *err)
{
	printf(",\"error\":{\"code\":\"%s\",\"reason\":",
	       (unsigned)err->code < sizeof(err_codes) / sizeof(err_codes[0]) && err_codes[err->code] ?
	       err_codes[err->code] : "UNKNOWN");
	json_str(sr_strerror(err->code), 64);
	printf(",\"index\":%lld,\"offset\":%llu,\"message\":",
	       err->index == SR_NO_INDEX ? -1LL : (long long)err->index,
	       (unsigned long long)err->offset);
	json_str(err->msg, sizeof(err->msg));
	printf("}}\n");
}

/* The document's start, before the header: its version and the file. */
static void print_json_start(const struct dump *d)
{
	printf("{\"schema\":%d,\"file\":", DUMP_JSON_SCHEMA);
	json_str(d->path, 4096);
	printf(",");
}

/* Devices and vCPU contexts, kept for the document's end. */
static void remember(struct dump *d, const struct sr_record *rec)
{
	if (rec->type == SR_REC_DEVICE) {
		const void *data;
		size_t len;
		const struct sr_rec_device *dev = sr_device_view(rec, &data, &len);
		struct dev_seen *n = realloc(d->devs, (d->ndevs + 1) * sizeof(*n));

		if (!n)
			return;
		d->devs = n;
		n += d->ndevs++;
		memcpy(n->name, dev->name, sizeof(n->name));
		n->version = dev->version;
		n->instance = dev->instance;
		n->bytes = len;
	} else if (rec->type == SR_REC_VCPU_CONTEXT) {
		struct sr_block_iter bi;
		struct sr_block blk;
		const struct sr_rec_context *ctx = sr_context_begin(rec, &bi);
		struct vcpu_seen *n = realloc(d->vcpus, (d->nvcpus + 1) * sizeof(*n));
		size_t o = 0;

		if (!n)
			return;
		d->vcpus = n;
		n += d->nvcpus++;
		n->id = ctx->id;
		n->blocks[0] = 0;
		while (sr_context_next(&bi, &blk) && o < sizeof(n->blocks))
			o += snprintf(n->blocks + o, sizeof(n->blocks) - o, "%s\"%s\"", o ? "," : "",
				      sr_block_kind_name(blk.kind) ? sr_block_kind_name(blk.kind) : "?");
		if (o >= sizeof(n->blocks))
			n->blocks[0] = 0;	/* cannot be: a context has a dozen kinds */
	}
}

/* "domain", "vcpus", "devices": the DOMAIN record and what came after it, as fields. */
static void print_json_machine(const struct dump *d, const struct sr_reader *r)
{
	const struct sr_region *reg;
	const struct sr_rec_domain *dom = sr_reader_domain(r, &reg);
	uint64_t mem = 0;

	printf(",\"domain\":");
	if (!dom) {
		printf("null");
	} else {
		const uint8_t *u = dom->uuid;

		printf("{\"name\":");
		json_str(dom->name, sizeof(dom->name));
		printf(",\"uuid\":\"%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x\","
		       "\"guest_kind\":\"%s\",\"vcpus\":%u,\"boot_entry\":%llu,\"boot_arg\":%llu,"
		       "\"regions\":[", u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
		       u[10], u[11], u[12], u[13], u[14], u[15],
		       dom->guest_kind == SR_GUEST_LINUX ? "linux" :
		       dom->guest_kind == SR_GUEST_TEST ? "test" : "other", dom->vcpu_count,
		       (unsigned long long)dom->boot_entry, (unsigned long long)dom->boot_arg);
		for (uint32_t i = 0; i < dom->region_count; i++) {
			mem += reg[i].size;
			printf("%s{\"gpa\":%llu,\"size\":%llu,\"flags\":%u,\"slot\":%u}", i ? "," : "",
			       (unsigned long long)reg[i].gpa, (unsigned long long)reg[i].size,
			       reg[i].flags, reg[i].slot);
		}
		printf("],\"memory_bytes\":%llu}", (unsigned long long)mem);
	}
	printf(",\"vcpus\":[");
	for (size_t i = 0; i < d->nvcpus; i++)
		printf("%s{\"id\":%u,\"blocks\":[%s]}", i ? "," : "", d->vcpus[i].id,
		       d->vcpus[i].blocks);
	printf("],\"devices\":[");
	for (size_t i = 0; i < d->ndevs; i++) {
		printf("%s{\"name\":", i ? "," : "");
		json_str(d->devs[i].name, sizeof(d->devs[i].name));
		printf(",\"version\":%u,\"instance\":%u,\"bytes\":%llu}", d->devs[i].version,
		       d->devs[i].instance, (unsigned long long)d->devs[i].bytes);
	}
	printf("]");
}

static void print_header(struct dump *d, const struct sr_ihdr *h)
{
	time_t t = h->created_ns / 1000000000ull;
	char when[64];
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (d->json) {
		print_json_start(d);
		printf("\"header\":{\"version\":\"%u.%u\",\"page_size\":%u,\"creator\":",
		       h->version_major, h->version_minor, h->page_size);
		json_str(h->creator, sizeof(h->creator));
		printf(",\"created\":\"%s\",\"flags\":%u,\"live\":%s},\"records\":[", when,
		       h->flags, h->flags & SR_IHDR_F_LIVE ? "true" : "false");
		return;
	}
	char creator[4 * sizeof(h->creator) + 1];

	printf("sr image %u.%u, page size %u, created %s by \"%s\"%s\n",
	       h->version_major, h->version_minor, h->page_size, when,
	       str_escape(creator, sizeof(creator), h->creator, sizeof(h->creator)),
	       h->flags & SR_IHDR_F_LIVE ? ", live save" : "");
	printf("%6s %12s  %-13s %8s  %s\n", "#", "offset", "type", "length", "summary");
}

/* Summary of one record, as text. */
static void summarize(struct dump *d, const struct sr_record *rec, const struct sr_reader *r,
		      char *s, size_t len)
{
	const struct sr_region *reg;
	const struct sr_rec_domain *dom;
	const struct sr_rec_iteration *it;
	const struct sr_rec_context *ctx;
	const struct sr_rec_device *dev;
	const struct sr_rec_end *end;
	struct sr_block_iter bi;
	struct sr_block blk;
	const void *data;
	size_t dlen, o;
	uint64_t mem = 0;
	char esc[4 * 64 + 1];		/* a name, escaped */
	(void)d;

	switch (rec->type) {
	case SR_REC_DOMAIN:
		dom = sr_reader_domain(r, &reg);
		for (uint32_t i = 0; i < dom->region_count; i++)
			mem += reg[i].size;
		snprintf(s, len, "%s guest \"%s\", %u vCPU%s, %u region%s, %llu MiB",
			 dom->guest_kind == SR_GUEST_LINUX ? "linux" : "test",
			 str_escape(esc, sizeof(esc), dom->name, sizeof(dom->name)),
			 dom->vcpu_count, dom->vcpu_count == 1 ? "" : "s", dom->region_count,
			 dom->region_count == 1 ? "" : "s", (unsigned long long)(mem >> 20));
		break;
	case SR_REC_THROTTLE: {
		const struct sr_rec_throttle *th = rec->body;
		const uint8_t *pct = (const uint8_t *)rec->body + sizeof(*th);
		o = snprintf(s, len, "iter %u: vCPU throttle", th->iteration);
		for (uint32_t i = 0; i < th->vcpu_count && o < len; i++)
			o += snprintf(s + o, len - o, " %u%%", pct[i]);
		break;
	}
	case SR_REC_ITERATION:
		it = rec->body;
		snprintf(s, len, "iter %u%s: %llu pages sent, %llu dirtied, %llu bytes, %.3f ms",
			 it->iteration, it->flags & SR_ITER_F_FINAL ? " (final)" : "",
			 (unsigned long long)it->pages_sent, (unsigned long long)it->pages_dirtied,
			 (unsigned long long)it->bytes, it->duration_ns / 1e6);
		break;
	case SR_REC_HVM_CONTEXT:
	case SR_REC_VCPU_CONTEXT:
		ctx = sr_context_begin(rec, &bi);
		o = snprintf(s, len, rec->type == SR_REC_VCPU_CONTEXT ? "vCPU %u:" : "VM:", ctx->id);
		while (sr_context_next(&bi, &blk) && o < len)
			o += snprintf(s + o, len - o, " %s", sr_block_kind_name(blk.kind) ?
				      sr_block_kind_name(blk.kind) : "?");
		break;
	case SR_REC_DISK:
	case SR_REC_DEVICE:
		if (dev_summary(rec, s, len))
			break;
		dev = sr_device_view(rec, &data, &dlen);
		snprintf(s, len, "%s v%u instance %u, %zu bytes",
			 str_escape(esc, sizeof(esc), dev->name, sizeof(dev->name)), dev->version,
			 dev->instance, dlen);
		break;
	case SR_REC_END:
		end = rec->body;
		snprintf(s, len, "%llu records, stream hash 0x%016llx",
			 (unsigned long long)end->record_count,
			 (unsigned long long)end->stream_hash);
		break;
	default:
		snprintf(s, len, "unknown optional record, skipped");
	}
}

static int page_data(struct dump *d, const struct sr_record *rec, bool show,
		     struct sr_error *err)
{
	struct sr_page_iter pi;
	const struct sr_page_desc *pd;
	uint64_t n[3] = { 0 }, bytes = 0, pages = 0, runs = 0, run_pages = 0;
	int rc;

	sr_page_iter_init(rec, &pi);
	if (show && d->json)
		printf("\"iteration\":%u", pi.iteration);
	if (show && d->json && d->pfns)
		printf(",\"page_list\":[");
	while ((rc = sr_page_iter_next(&pi, &pd, d->page, err)) == 1) {
		if (pd->enc == SR_PAGE_ZERO_RUN) {
			n[SR_PAGE_ZERO] += pd->length;
			pages += pd->length;
			run_pages += pd->length;
			runs++;
		} else {
			n[pd->enc]++;
			pages++;
		}
		bytes += sr_page_data_len(pd);
		if (show && d->pfns) {
			if (d->json)
				printf("%s{\"pfn\":%llu,\"enc\":\"%s\",\"length\":%u}",
				       pi.i > 1 ? "," : "", (unsigned long long)pd->pfn,
				       sr_page_enc_name(pd->enc), pd->length);
		}
	}
	if (rc < 0)
		return -1;
	if (show && d->json) {
		if (d->pfns)
			printf("]");
		printf(",\"pages\":%llu,\"raw\":%llu,\"zero\":%llu,\"lz4\":%llu,\"zero_runs\":%llu",
		       (unsigned long long)pages, (unsigned long long)n[0],
		       (unsigned long long)n[1], (unsigned long long)n[2], (unsigned long long)runs);
	} else if (show) {
		printf("iter %u: %llu pages, %llu raw, %llu zero", pi.iteration,
		       (unsigned long long)pages, (unsigned long long)n[0], (unsigned long long)n[1]);
		if (runs)
			printf(" (%llu in %llu run%s)", (unsigned long long)run_pages,
			       (unsigned long long)runs, runs == 1 ? "" : "s");
		printf(", %llu lz4\n", (unsigned long long)n[2]);
		if (d->pfns) {
			sr_page_iter_init(rec, &pi);
			while (sr_page_iter_next(&pi, &pd, NULL, err) == 1)
				printf("%40s pfn 0x%09llx %-4s %u\n", "", (unsigned long long)pd->pfn,
				       sr_page_enc_name(pd->enc), pd->length);
		}
	}
	if (pi.iteration < MAX_ITERS) {
		struct iter_total *t = &d->it[pi.iteration];

		t->seen = true;
		t->batches++;
		t->pages += pages;
		t->raw += n[0];
		t->zero += n[1];
		t->lz4 += n[2];
		t->data_bytes += bytes;
		t->rec_bytes += rec->length + 16;
		if (pi.iteration > d->max_iter)
			d->max_iter = pi.iteration;
	}
	d->pages += pages;
	d->raw += n[0];
	d->zero += n[1];
	d->lz4 += n[2];
	d->data_bytes += bytes;
	return 0;
}

static void print_totals(struct dump *d, const struct sr_reader *r, bool ok)
{
	const struct sr_region *reg;
	const struct sr_rec_domain *dom = sr_reader_domain(r, &reg);
	uint64_t mem = 0;
	double ratio;

	for (uint32_t i = 0; dom && i < dom->region_count; i++)
		mem += reg[i].size;
	ratio = d->pages ? (double)d->data_bytes / ((double)d->pages * SR_PAGE_SIZE) : 0;
	if (d->json) {
		printf("],\"iterations\":[");
		for (uint32_t i = 0, first = 1; i <= d->max_iter && i < MAX_ITERS; i++) {
			struct iter_total *t = &d->it[i];

			if (!t->seen && !t->has_rec)
				continue;
			printf("%s{\"iteration\":%u,\"batches\":%llu,\"pages\":%llu,\"raw\":%llu,"
			       "\"zero\":%llu,\"lz4\":%llu,\"data_bytes\":%llu",
			       first ? "" : ",", i, (unsigned long long)t->batches,
			       (unsigned long long)t->pages, (unsigned long long)t->raw,
			       (unsigned long long)t->zero, (unsigned long long)t->lz4,
			       (unsigned long long)t->data_bytes);
			if (t->has_rec)
				printf(",\"pages_dirtied\":%llu,\"duration_ns\":%llu,\"final\":%s",
				       (unsigned long long)t->rec.pages_dirtied,
				       (unsigned long long)t->rec.duration_ns,
				       t->rec.flags & SR_ITER_F_FINAL ? "true" : "false");
			printf(",\"throttle_pct\":%u", t->throttle);
			printf("}");
			first = 0;
		}
		printf("],\"totals\":{\"records\":%llu,\"pages\":%llu,\"raw\":%llu,\"zero\":%llu,"
		       "\"lz4\":%llu,\"data_bytes\":%llu,\"memory_bytes\":%llu,\"stream_bytes\":%llu,"
		       "\"compression_ratio\":%.4f},\"verified\":%s",
		       (unsigned long long)d->records, (unsigned long long)d->pages,
		       (unsigned long long)d->raw, (unsigned long long)d->zero,
		       (unsigned long long)d->lz4, (unsigned long long)d->data_bytes,
		       (unsigned long long)mem, (unsigned long long)sr_reader_offset(r), ratio,
		       ok ? "true" : "false");
		print_json_machine(d, r);
		return;
	}
	printf("\n%5s %8s %10s %8s %8s %8s %12s %10s %10s %9s\n", "iter", "batches", "pages", "raw",
	       "zero", "lz4", "data bytes", "dirtied", "ms", "throttle");
	for (uint32_t i = 0; i <= d->max_iter && i < MAX_ITERS; i++) {
		struct iter_total *t = &d->it[i];

		if (!t->seen && !t->has_rec)
			continue;
		printf("%5u %8llu %10llu %8llu %8llu %8llu %12llu", i,
		       (unsigned long long)t->batches, (unsigned long long)t->pages,
		       (unsigned long long)t->raw, (unsigned long long)t->zero,
		       (unsigned long long)t->lz4, (unsigned long long)t->data_bytes);
		if (t->has_rec)
			printf(" %10llu %10.1f %8u%%%s\n", (unsigned long long)t->rec.pages_dirtied,
			       t->rec.duration_ns / 1e6, t->throttle,
			       t->rec.flags & SR_ITER_F_FINAL ? " final" : "");
		else
			printf(" %10s %10s %8u%%\n", "-", "-", t->throttle);
	}
	printf("\n%llu records, %llu bytes; %llu pages sent (%llu raw, %llu zero, %llu lz4) "
	       "of %llu MiB guest memory\n",
	       (unsigned long long)d->records, (unsigned long long)sr_reader_offset(r),
	       (unsigned long long)d->pages, (unsigned long long)d->raw,
	       (unsigned long long)d->zero, (unsigned long long)d->lz4,
	       (unsigned long long)(mem >> 20));
	printf("page data: %llu bytes for %llu bytes of pages, ratio %.3f\n",
	       (unsigned long long)d->data_bytes,
	       (unsigned long long)d->pages * SR_PAGE_SIZE, ratio);
	printf("stream hash: %s\n", ok ? "verified" : "NOT verified");
}

static int dump(struct dump *d, int fd)
{
	struct sr_error err = { 0 };
	struct sr_reader *r;
	struct sr_record rec;
	char line[512], ebuf[512];
	int rc;

	r = sr_reader_open(fd, &err);
	if (!r)
		goto bad;
	if (!d->verify)
		print_header(d, sr_reader_header(r));
	while ((rc = sr_reader_next(r, &rec, &err)) >= 0) {
		const char *name = sr_rec_type_name(rec.type);
		bool show = !d->verify && shown(d, rec.type);

		d->records++;
		if (d->json)
			remember(d, &rec);
		if (!rec.known)
			pr_warn("record %llu at offset %llu: unknown optional record type 0x%08x "
				"(%u bytes) skipped", (unsigned long long)rec.index,
				(unsigned long long)rec.offset, rec.type, rec.length);
		if (show && d->json)
			printf("%s{\"index\":%llu,\"offset\":%llu,\"type\":\"%s\",\"type_id\":%u,"
			       "\"length\":%u,", d->first_json_rec ? "" : ",",
			       (unsigned long long)rec.index, (unsigned long long)rec.offset,
			       name ? name : "UNKNOWN", rec.type, rec.length);
		else if (show)
			printf("%6llu %12llu  %-13s %8u  ", (unsigned long long)rec.index,
			       (unsigned long long)rec.offset, name ? name : "?", rec.length);
		if (rec.type == SR_REC_PAGE_DATA) {
			if (page_data(d, &rec, show, &err))
				goto bad_reader;
		} else {
			if (rec.type == SR_REC_THROTTLE) {
				const struct sr_rec_throttle *th = rec.body;
				const uint8_t *pct = (const uint8_t *)rec.body + sizeof(*th);

				for (uint32_t i = 0; th->iteration < MAX_ITERS && i < th->vcpu_count; i++)
					if (pct[i] > d->it[th->iteration].throttle)
						d->it[th->iteration].throttle = pct[i];
			}
			if (rec.type == SR_REC_ITERATION) {
				const struct sr_rec_iteration *it = rec.body;

				if (it->iteration < MAX_ITERS) {
					d->it[it->iteration].has_rec = true;
					d->it[it->iteration].rec = *it;
					if (it->iteration > d->max_iter)
						d->max_iter = it->iteration;
				}
			}
			if (show) {
				summarize(d, &rec, r, line, sizeof(line));
				if (d->json) {
					printf("\"summary\":");
					json_str(line, sizeof(line));
				} else {
					printf("%s\n", line);
				}
				dev_details(&rec, d->json);
			}
		}
		if (show && d->json) {
			printf("}");
			d->first_json_rec = false;
		}
		if (rc == 0)
			break;
	}
	if (rc < 0)
		goto bad_reader;
	if (!d->verify)
		print_totals(d, r, true);
	if (d->json && !d->verify)
		printf(",\"error\":null}\n");
	sr_reader_free(r);
	return 0;

bad_reader:
	if (d->json && !d->verify) {
		print_totals(d, r, false);
		print_json_error(&err);
	}
	sr_reader_free(r);
	goto report;
bad:
	/* No header to show, but --json still owes one document: the error. */
	if (d->json && !d->verify) {
		print_json_start(d);
		printf("\"header\":null,\"records\":[],\"iterations\":[],\"totals\":null,"
		       "\"verified\":false,\"domain\":null,\"vcpus\":[],\"devices\":[]");
		print_json_error(&err);
	}
report:
	fflush(stdout);
	sr_error_format(&err, ebuf, sizeof(ebuf));
	pr_err("%s: %s", d->path, ebuf);
	return err.code == SR_E_IO || err.code == SR_E_NOMEM ? EXIT_USAGE : EXIT_CORRUPT;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "verify", no_argument, NULL, 'v' },
		{ "json", no_argument, NULL, 'j' },
		{ "type", required_argument, NULL, 't' },
		{ "pfns", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		USAGE_VERSION_OPTION,
		{ 0 }
	};
	static struct dump d = { .first_json_rec = true };
	int c, fd, rc;

	sr_set_prog(argv[0]);
	while ((c = usage_getopt(argc, argv, "t:h", opts)) != -1) {
		switch (c) {
		case 'v': d.verify = true; break;
		case 'j': d.json = true; break;
		case 'p': d.pfns = true; break;
		case 't':
			for (char *tok = strtok(optarg, ","); tok; tok = strtok(NULL, ",")) {
				if (d.nfilter == 16 || sr_rec_type_from_name(tok, &d.filter[d.nfilter]))
					usage_error("unknown record type \"%s\" (try PAGE_DATA, DOMAIN, "
					    "HVM_CONTEXT, VCPU_CONTEXT, ITERATION, THROTTLE, DEVICE, DISK, END)", tok);
				d.nfilter++;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: return EXIT_USAGE;
		}
	}
	if (optind == argc)
		usage_error("no FILE given (or - for standard input)");
	if (optind < argc - 1)
		usage_error("unexpected argument '%s' (one FILE only)", argv[optind + 1]);
	d.path = argv[optind];
	if (!strcmp(d.path, "-")) {
		fd = STDIN_FILENO;
	} else {
		fd = open(d.path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			struct sr_error err = { .code = SR_E_IO, .sys_errno = errno,
						.index = SR_NO_INDEX };
			int e = errno;

			snprintf(err.msg, sizeof(err.msg), "opening %s: %s", d.path, strerror(e));
			if (d.json && !d.verify) {
				/* --json owes a document for every failure, this one too. */
				print_json_start(&d);
				printf("\"header\":null,\"records\":[],\"iterations\":[],"
				       "\"totals\":null,\"verified\":false,\"domain\":null,"
				       "\"vcpus\":[],\"devices\":[]");
				print_json_error(&err);
				fflush(stdout);
			}
			die(EXIT_USAGE, "%s: %s", d.path, strerror(e));
		}
	}
	rc = dump(&d, fd);
	free(d.devs);
	free(d.vcpus);
	if (fd != STDIN_FILENO)
		close(fd);
	if (fflush(stdout) == EOF && !rc)
		die(EXIT_USAGE, "writing output: %s", strerror(errno));
	return rc;
}
