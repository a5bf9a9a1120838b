/* SPDX-License-Identifier: MIT */
/*
 * CPU compatibility: before any vCPU is created, the image's CPUID feature
 * bits and MSR list are checked against what this host's KVM offers
 * (KVM_GET_SUPPORTED_CPUID, KVM_GET_MSR_INDEX_LIST), as Xen checks a
 * migrating domain's CPU policy.  A guest that was running with AVX-512 must
 * not wake up on a host without it: the refusal names what is missing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hvmctx.h"
#include "hvmctx_priv.h"

/* The feature words compared: leaf, subleaf, register (0 eax .. 3 edx), name. */
static const struct feature_word {
	uint32_t leaf, sub;
	unsigned reg;
	const char *name;
	uint32_t ignore;		/* bits that are not host features (set by sr itself) */
} words[] = {
	{ 0x1, 0, 2, "1.ecx", 1u << 31 | 1u << 27 },	/* hypervisor, OSXSAVE (guest CR4) */
	{ 0x1, 0, 3, "1.edx", 0 },
	{ 0x7, 0, 1, "7.0.ebx", 0 },
	{ 0x7, 0, 2, "7.0.ecx", 1u << 4 },		/* OSPKE (guest CR4) */
	{ 0x7, 0, 3, "7.0.edx", 0 },
	{ 0xd, 1, 0, "0xd.1.eax", 0 },
	{ 0x80000001, 0, 2, "0x80000001.ecx", 0 },
	{ 0x80000001, 0, 3, "0x80000001.edx", 0 },
};

/* Names for the bits most likely to differ between hosts. */
static const struct { uint32_t leaf, sub; unsigned reg, bit; const char *name; } names[] = {
	{ 1, 0, 2, 0, "sse3" }, { 1, 0, 2, 9, "ssse3" }, { 1, 0, 2, 12, "fma" },
	{ 1, 0, 2, 13, "cx16" }, { 1, 0, 2, 19, "sse4.1" }, { 1, 0, 2, 20, "sse4.2" },
	{ 1, 0, 2, 22, "movbe" }, { 1, 0, 2, 23, "popcnt" }, { 1, 0, 2, 25, "aes" },
	{ 1, 0, 2, 26, "xsave" }, { 1, 0, 2, 28, "avx" }, { 1, 0, 2, 29, "f16c" },
	{ 1, 0, 2, 30, "rdrand" }, { 1, 0, 2, 5, "vmx" }, { 1, 0, 2, 24, "tsc-deadline" },
	{ 7, 0, 1, 3, "bmi1" }, { 7, 0, 1, 5, "avx2" }, { 7, 0, 1, 8, "bmi2" },
	{ 7, 0, 1, 9, "erms" }, { 7, 0, 1, 16, "avx512f" }, { 7, 0, 1, 17, "avx512dq" },
	{ 7, 0, 1, 18, "rdseed" }, { 7, 0, 1, 19, "adx" }, { 7, 0, 1, 29, "sha" },
	{ 7, 0, 1, 30, "avx512bw" }, { 7, 0, 1, 31, "avx512vl" }, { 7, 0, 2, 1, "avx512vbmi" },
	{ 7, 0, 2, 9, "vaes" }, { 7, 0, 2, 10, "vpclmulqdq" }, { 7, 0, 3, 24, "amx-tile" },
	{ 0x80000001, 0, 2, 2, "svm" }, { 0x80000001, 0, 2, 5, "abm" },
	{ 0x80000001, 0, 3, 27, "rdtscp" }, { 0x80000001, 0, 3, 26, "pdpe1gb" },
	{ 0xd, 1, 0, 0, "xsaveopt" }, { 0xd, 1, 0, 1, "xsavec" }, { 0xd, 1, 0, 3, "xsaves" },
};

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid_entry2 *e, uint32_t n,
					   uint32_t leaf, uint32_t sub)
{
	for (uint32_t i = 0; i < n; i++)
		if (e[i].function == leaf &&
		    (!(e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e[i].index == sub))
			return &e[i];
	return NULL;
}

static uint32_t reg_of(const struct kvm_cpuid_entry2 *e, unsigned reg)
{
	return reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

/* Appends "name" (or "word bit N") for each bit of missing to buf. */
static void name_bits(const struct feature_word *w, uint32_t missing, char *buf, size_t len)
{
	for (unsigned bit = 0; bit < 32; bit++) {
		const char *nm = NULL;
		size_t n = strlen(buf);

		if (!(missing & (1u << bit)))
			continue;
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (names[k].leaf == w->leaf && names[k].sub == w->sub &&
			    names[k].reg == w->reg && names[k].bit == bit)
				nm = names[k].name;
		if (nm)
			snprintf(buf + n, len - n, "%s%s", n ? ", " : "", nm);
		else
			snprintf(buf + n, len - n, "%s%s bit %u", n ? ", " : "", w->name, bit);
	}
}

int hvmctx_host_lacks(struct xc_error *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->sys_errno = EOPNOTSUPP;
	return -1;
}

int hvmctx_check_cpu(struct xc_domain *d, const struct sr_record *vcpu0, struct xc_error *err)
{
	const struct kvm_cpuid2 *host = xc_domain_cpuid(d);
	struct sr_block blk;
	const struct sr_blk_count *cnt;
	const struct kvm_cpuid_entry2 *img;
	char missing[512] = "";

	if (!sr_context_find(vcpu0, SR_BLK_CPUID, &blk))
		return xc_set_error(err, 0, "record %llu: no CPUID block", (unsigned long long)vcpu0->index);
	cnt = blk.data;
	img = (const void *)(cnt + 1);
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		const struct kvm_cpuid_entry2 *a = find(img, cnt->count, words[i].leaf, words[i].sub);
		const struct kvm_cpuid_entry2 *b = find(host->entries, host->nent, words[i].leaf,
							 words[i].sub);
		uint32_t want = a ? reg_of(a, words[i].reg) & ~words[i].ignore : 0;
		uint32_t have = b ? reg_of(b, words[i].reg) : 0;

		if (want & ~have)
			name_bits(&words[i], want & ~have, missing, sizeof(missing));
	}
	if (missing[0])
		return hvmctx_host_lacks(err, "the image's guest used CPU features this host's KVM "
					 "does not offer: %s (record %llu, VCPU_CONTEXT CPUID); "
					 "restore it on a host whose CPU has them", missing,
					 (unsigned long long)vcpu0->index);
	return 0;
}

int hvmctx_check_msrs(struct xc_domain *d, const struct sr_record *vcpu0, struct xc_error *err)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + 4096 * 4);
	const struct sr_blk_count *cnt;
	const struct kvm_msr_entry *e;
	struct sr_block blk;
	char missing[512] = "";
	int rc = 0;

	if (!l)
		return xc_set_error(err, ENOMEM, "MSR list");
	l->nmsrs = 4096;
	if (ioctl(xc_domain_kvm_fd(d), KVM_GET_MSR_INDEX_LIST, l)) {
		free(l);
		return xc_set_error(err, errno, "KVM_GET_MSR_INDEX_LIST");
	}
	if (!sr_context_find(vcpu0, SR_BLK_MSRS, &blk)) {
		free(l);
		return xc_set_error(err, 0, "record %llu: no MSRS block", (unsigned long long)vcpu0->index);
	}
	cnt = blk.data;
	e = (const void *)(cnt + 1);
	for (uint32_t i = 0; i < cnt->count; i++) {
		bool known = false;

		for (uint32_t k = 0; k < l->nmsrs && !known; k++)
			known = l->indices[k] == e[i].index;
		for (unsigned k = 0; k < hvmctx_n_pv_msrs && !known; k++)
			known = hvmctx_pv_msrs[k] == e[i].index;
		if (!known) {
			size_t n = strlen(missing);

			snprintf(missing + n, sizeof(missing) - n, "%s0x%x", n ? ", " : "", e[i].index);
		}
	}
	if (missing[0])
		rc = hvmctx_host_lacks(err, "the image carries MSRs this host's KVM does not know: "
				       "%s (record %llu, VCPU_CONTEXT MSRS)", missing,
				       (unsigned long long)vcpu0->index);
	free(l);
	return rc;
}
