/* SPDX-License-Identifier: MIT */
/*
 * sr image wire format: structs and constants only, no logic.
 *
 * docs/format.md is the normative spec; this header must match it byte for
 * byte.  Every struct's size is pinned in libsr/format.c.  All integers are
 * little-endian, every field is aligned to its own size.
 */
#ifndef SR_FORMAT_H
#define SR_FORMAT_H

#include <stdint.h>

#define SR_MAGIC		"SRKVMIMG"	/* 8 bytes, no NUL */
#define SR_VERSION_MAJOR	1
#define SR_VERSION_MINOR	2
#define SR_ENDIAN_MARKER	0x01020304u
#define SR_PAGE_SIZE		4096u
#define SR_PAGE_SHIFT		12

/* Image header flags: bits 0-15 informational, 16-31 must be understood. */
#define SR_IHDR_F_LIVE		(1u << 0)	/* written by a live (pre-copy) save */
#define SR_IHDR_F_INFO_MASK	0x0000ffffu
#define SR_IHDR_F_KNOWN		(SR_IHDR_F_LIVE)

struct sr_ihdr {
	char magic[8];
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t endian;		/* SR_ENDIAN_MARKER as written */
	uint32_t page_size;
	uint32_t flags;
	uint64_t created_ns;		/* CLOCK_REALTIME at save start */
	char creator[24];		/* "tool version", NUL padded */
	uint64_t hash;			/* XXH3-64 of the 56 bytes above */
};

/* Record framing: rhdr, body, zero pad to 8, u64 XXH3-64 of all three. */
struct sr_rhdr {
	uint32_t type;
	uint32_t length;		/* body bytes, padding excluded */
};

#define SR_REC_ALIGN		8u
#define SR_REC_OPTIONAL		0x80000000u
/*
 * Largest legal record is a full PAGE_DATA batch of raw pages,
 * 8 + 1024 * 16 + 1024 * 4096 bytes (just over 4 MiB).  8 MiB leaves room
 * for a future larger block while keeping a reader's buffer small.
 */
#define SR_REC_LENGTH_MAX	(8u << 20)

/*
 * Record types, defined once.  X(NAME, value, minimum body length)
 * The name is what sr-dump prints and every error message names.
 */
#define SR_RECORD_TYPES(X)					\
	X(END,          0x00000000u, 16)			\
	X(DOMAIN,       0x00000001u, 112)			\
	X(PAGE_DATA,    0x00000002u, 8 + 16)			\
	X(HVM_CONTEXT,  0x00000003u, 8)				\
	X(VCPU_CONTEXT, 0x00000004u, 8)				\
	X(DEVICE,       0x00000005u, 40)			\
	X(DISK,         0x00000006u, 120 + 1)			\
	X(ITERATION,    0x80000001u, 40)			\
	X(THROTTLE,     0x80000002u, 8 + 8)

enum sr_rec_type {
#define SR_X_ENUM(name, val, min) SR_REC_##name = val,
	SR_RECORD_TYPES(SR_X_ENUM)
#undef SR_X_ENUM
};

/* END: last record; nothing may follow it. */
struct sr_rec_end {
	uint64_t record_count;		/* records before END */
	uint64_t stream_hash;		/* XXH3-64 chain, see docs/format.md */
};

/* DOMAIN: first record, exactly once. */
enum sr_guest_kind {
	SR_GUEST_TEST = 1,		/* sr's freestanding test guest */
	SR_GUEST_LINUX = 2,		/* Linux via the 64-bit boot protocol */
};

#define SR_MAX_VCPUS		256u
#define SR_MAX_REGIONS		32u
#define SR_MAX_MEMORY		(1ull << 40)	/* 1 TiB of guest RAM */

struct sr_rec_domain {
	uint32_t guest_kind;
	uint32_t vcpu_count;
	uint32_t region_count;
	uint32_t flags;			/* reserved, zero */
	uint64_t boot_entry;		/* informational: where the guest was started */
	uint64_t boot_arg;		/* informational: e.g. boot_params gpa */
	uint8_t uuid[16];
	char name[64];			/* NUL padded, at least one NUL */
	/* struct sr_region regions[region_count]; */
};

#define SR_REGION_F_RAM		(1u << 0)
#define SR_REGION_F_KNOWN	(SR_REGION_F_RAM)

struct sr_region {
	uint64_t gpa;
	uint64_t size;
	uint32_t flags;
	uint32_t slot;
};

/* PAGE_DATA: a batch of pages from one pre-copy iteration. */
#define SR_BATCH_MAX_PAGES	1024u

enum sr_page_enc {
	SR_PAGE_RAW = 0,		/* length == 4096 */
	SR_PAGE_ZERO = 1,		/* length == 0, the page is all zero */
	SR_PAGE_LZ4 = 2,		/* 0 < length < 4096, LZ4 block format */
	SR_PAGE_ZERO_RUN = 3,		/* length = pages from pfn on, all zero; no data */
};

struct sr_rec_page_data {
	uint32_t count;			/* 1..SR_BATCH_MAX_PAGES */
	uint32_t iteration;
	/* struct sr_page_desc desc[count]; then the data, back to back */
};

struct sr_page_desc {
	uint64_t pfn;
	uint8_t enc;			/* enum sr_page_enc */
	uint8_t rsvd[3];		/* zero */
	uint32_t length;		/* encoded bytes of this page (ZERO_RUN: pages) */
};

/* ITERATION (optional): closes one pre-copy round. */
#define SR_ITER_F_FINAL		(1u << 0)	/* the stop-and-copy round */

struct sr_rec_iteration {
	uint32_t iteration;
	uint32_t flags;
	uint64_t pages_sent;
	uint64_t pages_dirtied;		/* dirty pages found at the round's end */
	uint64_t bytes;			/* stream bytes written in this round */
	uint64_t duration_ns;
};

/*
 * THROTTLE (optional): how hard each vCPU was throttled (auto-converge) in a
 * pre-copy round; precedes that round's ITERATION.  Followed by vcpu_count
 * u8 percentages (0..SR_THROTTLE_MAX), zero padded to a multiple of 8.
 */
#define SR_THROTTLE_MAX		99

struct sr_rec_throttle {
	uint32_t iteration;
	uint32_t vcpu_count;		/* DOMAIN's vcpu_count */
};

/*
 * HVM_CONTEXT and VCPU_CONTEXT bodies: a header, then typed blocks, each
 * { u32 kind, u32 length, data, zero pad to 8 }.
 */
struct sr_rec_context {
	uint32_t id;			/* vCPU id; 0 for HVM_CONTEXT */
	uint32_t block_count;
};

struct sr_block_hdr {
	uint32_t kind;
	uint32_t length;
};

#define SR_BLOCK_OPTIONAL	0x80000000u

/* Which record a block may appear in. */
#define SR_SCOPE_HVM		1u
#define SR_SCOPE_VCPU		2u

/*
 * Context block kinds, defined once.
 * X(NAME, value, scope, minimum length, maximum length, granule)
 * A block's length L must satisfy min <= L <= max and (L - min) % granule == 0.
 * The KVM structure each one carries is named in docs/format.md.
 */
#define SR_BLOCK_KINDS(X)						\
	X(PIT,        0x0001u, SR_SCOPE_HVM,  112,  112,    1)		\
	X(PIC_MASTER, 0x0002u, SR_SCOPE_HVM,  16,   16,     1)		\
	X(PIC_SLAVE,  0x0003u, SR_SCOPE_HVM,  16,   16,     1)		\
	X(IOAPIC,     0x0004u, SR_SCOPE_HVM,  216,  216,    1)		\
	X(CLOCK,      0x0005u, SR_SCOPE_HVM,  48,   48,     1)		\
	X(TSC_KHZ,    0x0006u, SR_SCOPE_HVM,  8,    8,      1)		\
	X(CPUID,      0x0101u, SR_SCOPE_VCPU, 8,    8 + 256 * 40, 40)	\
	X(MP_STATE,   0x0102u, SR_SCOPE_VCPU, 4,    4,      1)		\
	X(REGS,       0x0103u, SR_SCOPE_VCPU, 144,  144,    1)		\
	X(SREGS,      0x0104u, SR_SCOPE_VCPU, 312,  312,    1)		\
	X(XSAVE,      0x0105u, SR_SCOPE_VCPU, 4096, 65536,  64)		\
	X(XCRS,       0x0106u, SR_SCOPE_VCPU, 392,  392,    1)		\
	X(DEBUGREGS,  0x0107u, SR_SCOPE_VCPU, 128,  128,    1)		\
	X(LAPIC,      0x0108u, SR_SCOPE_VCPU, 1024, 1024,   1)		\
	X(MSRS,       0x0109u, SR_SCOPE_VCPU, 8,    8 + 1024 * 16, 16)	\
	X(EVENTS,     0x010au, SR_SCOPE_VCPU, 64,   64,     1)		\
	X(TSC_OFFSET, 0x010bu | SR_BLOCK_OPTIONAL, SR_SCOPE_VCPU, 8, 8, 1)	\
	X(SREGS2,     0x010cu | SR_BLOCK_OPTIONAL, SR_SCOPE_VCPU, 320, 320, 1)

enum sr_block_kind {
#define SR_X_ENUM(name, val, scope, min, max, gran) SR_BLK_##name = val,
	SR_BLOCK_KINDS(SR_X_ENUM)
#undef SR_X_ENUM
};

/* TSC_KHZ block */
struct sr_blk_tsc_khz {
	uint32_t tsc_khz;
	uint32_t rsvd;
};

/* CPUID and MSRS blocks start with a count, like KVM's own structs. */
struct sr_blk_count {
	uint32_t count;
	uint32_t rsvd;
};

/* DEVICE: named, versioned device state. */
#define SR_DEVICE_DATA_MAX	(64u << 10)
/* DEVICE "serial8250" version 1: its layout is specified (docs/format.md §6) and checked. */
#define SR_SERIAL8250_LEN	272u

/* At most this many DEVICE records, each (name, instance) once: 4 MiB of state at most. */
#define SR_MAX_DEVICES		64u

struct sr_rec_device {
	char name[32];			/* e.g. "serial8250", NUL padded */
	uint32_t version;
	uint32_t instance;
	/* uint8_t data[]; */
};

/* ------------------------------------------------------------------ DISK */

/* DISK: one per disk a device uses (docs/format.md §3.8). */
#define SR_MAX_DISKS		16u
#define SR_DISK_PATH_MAX	4095u

#define SR_DISK_F_READ_ONLY	(1u << 0)
#define SR_DISK_F_SNAPSHOT	(1u << 1)	/* snap_* fields are valid */
#define SR_DISK_F_KNOWN		(SR_DISK_F_READ_ONLY | SR_DISK_F_SNAPSHOT)

enum sr_disk_cache {
	SR_DISK_CACHE_WRITEBACK = 0,
	SR_DISK_CACHE_NONE = 1,		/* O_DIRECT */
};

enum sr_snap_method {
	SR_SNAP_NONE = 0,
	SR_SNAP_REFLINK = 1,		/* ioctl(FICLONE) */
	SR_SNAP_COPY = 2,		/* SEEK_DATA/SEEK_HOLE + copy_file_range */
};

/* Identity of a disk file (§3.8.1).  hash_blocks 0: hash of the whole file. */
#define SR_DISK_HASH_BLOCKS_MAX	1024u
#define SR_DISK_HASH_BS_MIN	4096u
#define SR_DISK_HASH_BS_MAX	(1u << 20)
#define SR_DISK_SAMPLE_BLOCKS	64u		/* the default sample: 64 x 4 KiB (it is read in the pause) */
#define SR_DISK_SAMPLE_BS	(4u << 10)

struct sr_disk_id {
	uint64_t size;			/* bytes */
	uint64_t dev;			/* st_dev */
	uint64_t ino;			/* st_ino */
	uint64_t mtime_ns;		/* st_mtim */
	uint64_t hash;			/* XXH3-64, sampled or full */
	uint32_t hash_blocks;		/* N sampled blocks; 0: full */
	uint32_t hash_block_size;	/* B; 0 with a full hash */
};

struct sr_rec_disk {
	uint32_t disk;			/* index 0..15, unique */
	uint32_t flags;			/* SR_DISK_F_* */
	uint8_t cache;			/* enum sr_disk_cache */
	uint8_t snap_method;		/* enum sr_snap_method */
	uint16_t path_len;		/* 1..SR_DISK_PATH_MAX */
	uint16_t snap_path_len;		/* 0, or 1..SR_DISK_PATH_MAX with SNAPSHOT */
	uint16_t rsvd;
	uint64_t snap_ns;		/* time the snapshot took (guest paused) */
	struct sr_disk_id id;		/* the disk at the pause */
	struct sr_disk_id snap_id;	/* the snapshot; zero without SNAPSHOT */
	/* char path[path_len]; char snap_path[snap_path_len]; no NULs */
};

/* ------------------------------------------------------- virtio devices */

/*
 * DEVICE "virtio-blk", "virtio-rng" (docs/format.md §6.1): a header, then
 * sections framed as context blocks (struct sr_block_hdr, data, pad to 8).
 * version = major << 16 | minor.
 */
#define SR_VIRTIO_VERSION_MAJOR	1u
#define SR_VIRTIO_VERSION_MINOR	0u
#define SR_VIRTIO_VERSION	(SR_VIRTIO_VERSION_MAJOR << 16 | SR_VIRTIO_VERSION_MINOR)

#define SR_VIRTIO_ID_BLOCK	2u
#define SR_VIRTIO_ID_ENTROPY	4u

#define SR_VIRTIO_MAX_SECTIONS	16u
#define SR_VIRTIO_MAX_QUEUES	16u
#define SR_VIRTIO_QUEUE_SIZE_MAX 32768u
#define SR_VIRTIO_MSIX_MAX	64u
#define SR_VIRTIO_NO_VECTOR	0xffffu

#define SR_VSEC_OPTIONAL	0x80000000u
enum sr_vsec_kind {
	SR_VSEC_TRANSPORT = 0x0001u,
	SR_VSEC_PCI = 0x0002u,
	SR_VSEC_MSIX = 0x0003u,
	SR_VSEC_BLK = 0x0201u,		/* virtio-blk only */
};

struct sr_virtio_hdr {
	uint32_t device_id;		/* SR_VIRTIO_ID_*; matches the name */
	uint32_t section_count;		/* 1..SR_VIRTIO_MAX_SECTIONS */
	uint64_t rsvd;
};

/* Device status bits (virtio 1.x §2.1). */
#define SR_VIRTIO_S_ACKNOWLEDGE	1u
#define SR_VIRTIO_S_DRIVER	2u
#define SR_VIRTIO_S_DRIVER_OK	4u
#define SR_VIRTIO_S_FEATURES_OK	8u
#define SR_VIRTIO_S_NEEDS_RESET	64u
#define SR_VIRTIO_S_FAILED	128u

/* Transport feature bits; the device-specific ones are in device.c's table. */
#define SR_VIRTIO_F_INDIRECT_DESC 28
#define SR_VIRTIO_F_EVENT_IDX	29
#define SR_VIRTIO_F_VERSION_1	32
#define SR_VIRTIO_F_RING_PACKED	34
#define SR_VIRTIO_BLK_F_RO	5
#define SR_VIRTIO_BLK_F_MQ	12

struct sr_virtio_transport {
	uint64_t device_features;	/* offered */
	uint64_t driver_features;	/* accepted, as written */
	uint32_t device_feature_select;
	uint32_t driver_feature_select;
	uint16_t queue_select;
	uint16_t num_queues;		/* queues that follow */
	uint16_t config_msix_vector;	/* SR_VIRTIO_NO_VECTOR or < MSI-X table size */
	uint8_t status;			/* SR_VIRTIO_S_* */
	uint8_t isr;			/* bit 0 queue, bit 1 config */
	uint8_t config_generation;
	uint8_t rsvd[7];
	/* struct sr_virtio_queue queues[num_queues]; */
};

#define SR_VQ_F_SIGNALLED	(1u << 0)	/* signalled_used is valid (EVENT_IDX) */
#define SR_VRING_USED_F_NO_NOTIFY 1u

struct sr_virtio_queue {
	uint64_t desc;			/* descriptor table gpa, 16-aligned */
	uint64_t avail;			/* driver ring gpa, 2-aligned */
	uint64_t used;			/* device ring gpa, 4-aligned */
	uint16_t size;			/* power of two, 1..max_size */
	uint16_t max_size;		/* power of two, 1..32768 */
	uint16_t last_avail_idx;	/* next available entry the device takes */
	uint16_t last_used_idx;		/* used->idx as written */
	uint16_t signalled_used;	/* used idx at the last interrupt */
	uint16_t msix_vector;
	uint16_t used_flags;		/* used->flags as written */
	uint16_t avail_event;		/* as written (EVENT_IDX) */
	uint8_t ready;
	uint8_t flags;			/* SR_VQ_F_* */
	uint16_t notify_off;
	uint32_t rsvd;
};

/* PCI command register bits the guest may have set. */
#define SR_PCI_CMD_KNOWN	0x0547u	/* IO, MEM, MASTER, PARITY, SERR, INTX_DISABLE */

struct sr_virtio_pci {
	uint32_t bar[6];		/* as the guest last wrote them */
	uint16_t command;
	uint8_t bus;			/* 0 */
	uint8_t slot;			/* 1..31, unique */
	uint8_t function;		/* 0 */
	uint8_t interrupt_pin;		/* 0 none, 1..4 INTA..INTD */
	uint8_t interrupt_line;
	uint8_t cache_line_size;
	uint8_t latency_timer;
	uint8_t rsvd[7];
};

#define SR_MSIX_CTRL_ENABLE	(1u << 0)
#define SR_MSIX_CTRL_MASKALL	(1u << 1)

struct sr_virtio_msix {
	uint16_t table_size;		/* 1..SR_VIRTIO_MSIX_MAX */
	uint16_t control;		/* SR_MSIX_CTRL_* */
	uint32_t rsvd;
	/* struct sr_msix_entry table[table_size]; uint64_t pba[(table_size + 63) / 64]; */
};

struct sr_msix_entry {
	uint64_t addr;
	uint32_t data;
	uint32_t vector_control;	/* bit 0 masked */
};

#define SR_VIRTIO_BLK_CONFIG_LEN 64u	/* struct virtio_blk_config (60) + 4 zero bytes */

struct sr_virtio_blk {
	uint64_t capacity;		/* 512-byte sectors */
	uint32_t disk;			/* DISK record index */
	uint32_t rsvd;
	uint8_t serial[20];		/* GET_ID, NUL padded */
	uint32_t rsvd2;
	uint8_t config[SR_VIRTIO_BLK_CONFIG_LEN];
};

#endif /* SR_FORMAT_H */
