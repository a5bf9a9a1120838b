/* SPDX-License-Identifier: MIT */
/*
 * kvm-dirty-log: the test guest rewrites its pages with generation numbers
 * while this host side fetches KVM's dirty log and checks, page by page, the
 * rules of the kernel's dirty_log_test: a page the log calls clean must not
 * have changed since the previous fetch, unless it was written after this
 * fetch began (generation >= the one current at the fetch) -- and then the
 * next fetch must call it dirty.  Also checks xc's capability errors.
 *
 * usage: kvm-dirty-log GUEST [bitmap|clear|ring] [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "xc.h"

#define TEST_ASSERT(cond, fmt, ...)						\
	do {									\
		if (!(cond)) {							\
			fprintf(stderr, "FAIL %s:%d: %s: " fmt "\n", __FILE__, __LINE__, \
				#cond, ##__VA_ARGS__);				\
			exit(1);						\
		}								\
	} while (0)

static struct xc_domain *dom;

static enum xc_action on_pio(void *opaque, struct xc_vcpu *v, uint16_t port, bool out,
			     void *data, unsigned size, unsigned count)
{
	uint32_t arg = *(uint32_t *)data;
	const char *s;

	(void)opaque; (void)v; (void)count;
	if (!out || size != 4)
		return XC_CONTINUE;
	switch (port - SR_HC_PORT) {
	case SR_HC_PRINT:
		if ((s = xc_gpa_to_hva(dom, arg, 1)) && memchr(s, 0, 256))
			fputs(s, stdout);
		return XC_CONTINUE;
	case SR_HC_ASSERT:
		s = xc_gpa_to_hva(dom, arg, 1);
		fprintf(stderr, "FAIL guest assertion: %.300s\n", s ? s : "?");
		exit(1);
	case SR_HC_DONE:
		xc_domain_set_status(dom, arg);
		return XC_STOP;
	}
	return XC_CONTINUE;
}

static const struct xc_exit_ops ops = { .pio = on_pio };

static void check_cap_errors(void)
{
	static const long bogus[] = { 99999 };
	struct xc_domain_config c = { .vcpus = 1, .ops = &ops, .extra_caps = bogus,
				      .n_extra_caps = 1 };
	struct xc_error err;

	TEST_ASSERT(xc_domain_create(&c, &err) == NULL, "a missing capability was accepted");
	TEST_ASSERT(strstr(err.msg, "KVM_CAP 99999"), "error does not name the capability: %s",
		    err.msg);
	printf("ok: missing capability reported as: %s\n", err.msg);
	c.extra_caps = NULL;
	c.n_extra_caps = 0;
	c.vcpus = 0;
	TEST_ASSERT(xc_domain_create(&c, &err) == NULL, "0 vCPUs accepted");
}

int main(int argc, char **argv)
{
	enum xc_dirty_mode mode = XC_DIRTY_BITMAP;
	uint64_t mem = 32ull << 20;
	unsigned vcpus = 2, iters = 40;
	struct xc_domain_config cfg = { .vcpus = vcpus, .ops = &ops };
	struct sr_bootinfo bi = { .magic = SR_BOOTINFO_MAGIC, .vcpus = vcpus, .mem_bytes = mem,
				  .rounds = 0, .pages_per_round = 64, .working_set_pages = 512,
				  .flags = SR_BOOTINFO_F_QUIET };
	volatile struct sr_guest_status *st;
	struct xc_error err;
	uint64_t npages = mem / 4096, *bitmap, *recorded, dirty_total = 0, deferred_total = 0;
	uint8_t *must_be_dirty;

	if (argc < 2) {
		fprintf(stderr, "usage: kvm-dirty-log GUEST [bitmap|clear|ring] [iterations]\n");
		return 2;
	}
	if (argc > 2 && !strcmp(argv[2], "clear"))
		mode = XC_DIRTY_CLEAR;
	if (argc > 2 && !strcmp(argv[2], "ring")) {
		mode = XC_DIRTY_RING;
		cfg.dirty_ring = true;
	}
	if (argc > 3)
		iters = atoi(argv[3]);
	{
		struct xc_host h;

		if (xc_host_probe(&h, NULL)) {
			fprintf(stderr, "kvm-dirty-log: %s\n", h.why);
			return 3;
		}
	}
	check_cap_errors();

	dom = xc_domain_create(&cfg, &err);
	TEST_ASSERT(dom, "%s", err.msg);
	if (!xc_dirty_mode_supported(dom, mode)) {
		printf("FAIL: dirty-log mode %s is not offered by this kernel\n", argv[2]);
		return 1;
	}
	TEST_ASSERT(!xc_mem_add(dom, 0, mem, &err), "%s", err.msg);
	TEST_ASSERT(xc_load_file(dom, argv[1], SR_GUEST_LOAD, 3 << 20, &err) > 0, "%s", err.msg);
	memcpy(xc_gpa_to_hva(dom, SR_GUEST_BOOTINFO, sizeof(bi)), &bi, sizeof(bi));
	st = xc_gpa_to_hva(dom, SR_GUEST_STATUS, sizeof(*st));
	for (unsigned i = 0; i < vcpus; i++)
		TEST_ASSERT(xc_vcpu_create(dom, i, &err), "%s", err.msg);
	TEST_ASSERT(!xc_vcpu_boot_pm32(xc_vcpu_get(dom, 0), SR_GUEST_LOAD, &err), "%s", err.msg);
	TEST_ASSERT(!xc_dirty_log_enable(dom, mode, true, &err), "%s", err.msg);

	bitmap = calloc(npages / 64 + 1, 8);
	recorded = calloc(npages, 8);
	must_be_dirty = calloc(npages, 1);
	TEST_ASSERT(!xc_domain_start(dom, false, &err), "%s", err.msg);

	/* Wait for every vCPU to be writing. */
	for (int i = 0; i < 3000 && !(st->generation[vcpus - 1] > 1 && st->generation[0] > 1); i++)
		usleep(10000);
	TEST_ASSERT(st->generation[0] > 1, "the guest did not start writing");
	TEST_ASSERT(!xc_dirty_log_get(dom, 0, bitmap, &err), "%s", err.msg);	/* baseline */
	if (mode == XC_DIRTY_CLEAR)
		TEST_ASSERT(!xc_dirty_log_clear(dom, 0, 0, npages, bitmap, &err), "%s", err.msg);
	for (uint64_t p = 0; p < npages; p++)
		recorded[p] = *(volatile uint64_t *)xc_gpa_to_hva(dom, p * 4096, 8);

	for (unsigned it = 0; it < iters; it++) {
		uint64_t gen_at_fetch = UINT64_MAX, dirty = 0, deferred = 0;

		usleep(20000);
		for (unsigned c = 0; c < vcpus; c++)
			if (st->generation[c] < gen_at_fetch)
				gen_at_fetch = st->generation[c];
		TEST_ASSERT(!xc_dirty_log_get(dom, 0, bitmap, &err), "%s", err.msg);
		if (mode == XC_DIRTY_CLEAR)
			TEST_ASSERT(!xc_dirty_log_clear(dom, 0, 0, npages, bitmap, &err), "%s", err.msg);
		for (uint64_t p = SR_GUEST_WORK / 4096; p < npages; p++) {
			volatile uint64_t *pg = xc_gpa_to_hva(dom, p * 4096, 4096);
			uint64_t now = pg[0];
			bool is_dirty = bitmap[p / 64] >> (p % 64) & 1;

			if (is_dirty) {
				dirty++;
				must_be_dirty[p] = 0;
			} else {
				TEST_ASSERT(!must_be_dirty[p],
					    "iteration %u: pfn 0x%llx was written during the previous fetch "
					    "(generation %llu) but is still clean", it,
					    (unsigned long long)p, (unsigned long long)recorded[p]);
				if (now != recorded[p]) {
					TEST_ASSERT(now >= gen_at_fetch,
						    "iteration %u: pfn 0x%llx changed from generation %llu "
						    "to %llu, older than %llu at the fetch, and the log "
						    "calls it clean", it, (unsigned long long)p,
						    (unsigned long long)recorded[p],
						    (unsigned long long)now,
						    (unsigned long long)gen_at_fetch);
					must_be_dirty[p] = 1;
					deferred++;
				}
			}
			recorded[p] = now;
		}
		dirty_total += dirty;
		deferred_total += deferred;
	}
	xc_domain_stop(dom);
	printf("ok: %u fetches (%s), %llu dirty pages seen, %llu written during a fetch and "
	       "caught by the next, guest at generation %llu\n", iters,
	       mode == XC_DIRTY_CLEAR ? "KVM_CLEAR_DIRTY_LOG" :
	       mode == XC_DIRTY_RING ? "dirty rings" : "KVM_GET_DIRTY_LOG",
	       (unsigned long long)dirty_total, (unsigned long long)deferred_total,
	       (unsigned long long)st->generation[0]);
	TEST_ASSERT(dirty_total > 0, "the log never reported a dirty page");
	xc_domain_destroy(dom);
	free(bitmap);
	free(recorded);
	free(must_be_dirty);
	return 0;
}
