/* SPDX-License-Identifier: MIT */
/* Names of records, blocks and errors; wire struct sizes pinned. */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <linux/kvm.h>

#include "sr.h"
#include "internal.h"

static_assert(sizeof(struct sr_ihdr) == 64, "sr_ihdr");
static_assert(sizeof(struct sr_rhdr) == 8, "sr_rhdr");
static_assert(sizeof(struct sr_rec_end) == 16, "sr_rec_end");
static_assert(sizeof(struct sr_rec_domain) == 112, "sr_rec_domain");
static_assert(sizeof(struct sr_region) == 24, "sr_region");
static_assert(sizeof(struct sr_rec_page_data) == 8, "sr_rec_page_data");
static_assert(sizeof(struct sr_page_desc) == 16, "sr_page_desc");
static_assert(sizeof(struct sr_rec_iteration) == 40, "sr_rec_iteration");
static_assert(sizeof(struct sr_rec_throttle) == 8, "sr_rec_throttle");
static_assert(sizeof(struct sr_rec_context) == 8, "sr_rec_context");
static_assert(sizeof(struct sr_block_hdr) == 8, "sr_block_hdr");
static_assert(sizeof(struct sr_blk_tsc_khz) == 8, "sr_blk_tsc_khz");
static_assert(sizeof(struct sr_blk_count) == 8, "sr_blk_count");
static_assert(sizeof(struct sr_rec_device) == 40, "sr_rec_device");
static_assert(sizeof(struct sr_disk_id) == 48, "sr_disk_id");
static_assert(sizeof(struct sr_rec_disk) == 120, "sr_rec_disk");
static_assert(sizeof(struct sr_virtio_hdr) == 16, "sr_virtio_hdr");
static_assert(sizeof(struct sr_virtio_transport) == 40, "sr_virtio_transport");
static_assert(sizeof(struct sr_virtio_queue) == 48, "sr_virtio_queue");
static_assert(sizeof(struct sr_virtio_pci) == 40, "sr_virtio_pci");
static_assert(sizeof(struct sr_virtio_msix) == 8, "sr_virtio_msix");
static_assert(sizeof(struct sr_msix_entry) == 16, "sr_msix_entry");
static_assert(sizeof(struct sr_virtio_blk) == 104, "sr_virtio_blk");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "wire structs are little-endian");

/* The blocks carry these KVM structures unchanged; their sizes are ABI. */
static_assert(sizeof(struct kvm_pit_state2) == 112, "PIT");
static_assert(sizeof(struct kvm_pic_state) == 16, "PIC");
static_assert(sizeof(struct kvm_ioapic_state) == 216, "IOAPIC");
static_assert(sizeof(struct kvm_clock_data) == 48, "CLOCK");
static_assert(sizeof(struct kvm_cpuid2) == 8, "CPUID header");
static_assert(sizeof(struct kvm_cpuid_entry2) == 40, "CPUID entry");
static_assert(sizeof(struct kvm_mp_state) == 4, "MP_STATE");
static_assert(sizeof(struct kvm_regs) == 144, "REGS");
static_assert(sizeof(struct kvm_sregs) == 312, "SREGS");
static_assert(sizeof(struct kvm_sregs2) == 320, "SREGS2");
static_assert(sizeof(struct kvm_xsave) == 4096, "XSAVE");
static_assert(sizeof(struct kvm_xcrs) == 392, "XCRS");
static_assert(sizeof(struct kvm_debugregs) == 128, "DEBUGREGS");
static_assert(sizeof(struct kvm_lapic_state) == 1024, "LAPIC");
static_assert(sizeof(struct kvm_msrs) == 8, "MSRS header");
static_assert(sizeof(struct kvm_msr_entry) == 16, "MSRS entry");
static_assert(sizeof(struct kvm_vcpu_events) == 64, "EVENTS");

static const struct {
	uint32_t type;
	const char *name;
	uint32_t min_len;
} rec_types[] = {
#define SR_X_ROW(name, val, min) { val, #name, min },
	SR_RECORD_TYPES(SR_X_ROW)
#undef SR_X_ROW
};

const struct sr_block_spec sr_block_specs[] = {
#define SR_X_ROW(name, val, scope, min, max, gran) { val, #name, scope, min, max, gran },
	SR_BLOCK_KINDS(SR_X_ROW)
#undef SR_X_ROW
};
const unsigned sr_block_spec_count = sizeof(sr_block_specs) / sizeof(sr_block_specs[0]);

static const char *const err_names[] = {
#define SR_X_ROW(name, text) [SR_E_##name] = text,
	SR_ERROR_CODES(SR_X_ROW)
#undef SR_X_ROW
};

const char *sr_rec_type_name(uint32_t type)
{
	for (size_t i = 0; i < sizeof(rec_types) / sizeof(rec_types[0]); i++)
		if (rec_types[i].type == type)
			return rec_types[i].name;
	return NULL;
}

uint32_t sr_rec_min_length(uint32_t type)
{
	for (size_t i = 0; i < sizeof(rec_types) / sizeof(rec_types[0]); i++)
		if (rec_types[i].type == type)
			return rec_types[i].min_len;
	return 0;
}

int sr_rec_type_from_name(const char *name, uint32_t *type)
{
	for (size_t i = 0; i < sizeof(rec_types) / sizeof(rec_types[0]); i++)
		if (!strcasecmp(rec_types[i].name, name)) {
			*type = rec_types[i].type;
			return 0;
		}
	return -1;
}

const struct sr_block_spec *sr_block_spec_find(uint32_t kind)
{
	for (unsigned i = 0; i < sr_block_spec_count; i++)
		if (sr_block_specs[i].kind == kind)
			return &sr_block_specs[i];
	return NULL;
}

const char *sr_block_kind_name(uint32_t kind)
{
	const struct sr_block_spec *s = sr_block_spec_find(kind);

	return s ? s->name : NULL;
}

const char *sr_page_enc_name(unsigned enc)
{
	switch (enc) {
	case SR_PAGE_RAW: return "raw";
	case SR_PAGE_ZERO: return "zero";
	case SR_PAGE_LZ4: return "lz4";
	case SR_PAGE_ZERO_RUN: return "zero-run";
	}
	return "?";
}

bool sr_name_valid(const char *name)
{
	size_t n = 0;

	if (!name || name[0] == '.')
		return false;
	for (; name[n]; n++)
		if (n == SR_NAME_MAX ||
		    !((name[n] >= 'a' && name[n] <= 'z') || (name[n] >= 'A' && name[n] <= 'Z') ||
		      (name[n] >= '0' && name[n] <= '9') || name[n] == '.' || name[n] == '_' ||
		      name[n] == '-'))
			return false;
	return n > 0;
}

const char *sr_strerror(enum sr_err_code code)
{
	if ((unsigned)code < sizeof(err_names) / sizeof(err_names[0]) && err_names[code])
		return err_names[code];
	return "unknown error";
}

char *sr_error_format(const struct sr_error *err, char *buf, size_t len)
{
	char where[96];

	if (err->index == SR_NO_INDEX)
		snprintf(where, sizeof(where), "image header at offset %llu",
			 (unsigned long long)err->offset);
	else if (err->rec_name)
		snprintf(where, sizeof(where), "record %llu (%s) at offset %llu",
			 (unsigned long long)err->index, err->rec_name,
			 (unsigned long long)err->offset);
	else
		snprintf(where, sizeof(where), "record %llu at offset %llu",
			 (unsigned long long)err->index,
			 (unsigned long long)err->offset);
	snprintf(buf, len, "%s: %s: %s", where, sr_strerror(err->code), err->msg);
	return buf;
}

int sr_set_error(struct sr_error *err, enum sr_err_code code, uint64_t index,
		 uint64_t offset, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	err->code = code;
	err->sys_errno = 0;
	err->index = index;
	err->offset = offset;
	err->rec_name = NULL;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}
