/* SPDX-License-Identifier: MIT */
/* sr-dump: DEVICE (virtio) and DISK records, as text and JSON. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dump_dev.h"
#include "util.h"

static bool virtio_of(const struct sr_record *rec, struct sr_virtio_state *s)
{
	const void *data;
	size_t len;
	const struct sr_rec_device *d;
	struct sr_error err;

	if (rec->type != SR_REC_DEVICE)
		return false;
	d = sr_device_view(rec, &data, &len);
	if (strncmp(d->name, "virtio-", 7))
		return false;
	return sr_virtio_view(rec, s, &err) == 0;	/* validated by the reader: never fails */
}

static void fmt_mtime(char *s, size_t len, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(s, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(s + strlen(s), len - strlen(s), ".%09lluZ", (unsigned long long)(ns % 1000000000ull));
}

bool dev_summary(const struct sr_record *rec, char *s, size_t len)
{
	static struct sr_virtio_state v;
	struct sr_disk_info *k;
	static struct sr_disk_info disk;
	char esc[4 * 256 + 1];

	if (rec->type == SR_REC_DISK) {
		k = &disk;
		sr_disk_view(rec, k);
		snprintf(s, len, "disk %u \"%s\", %llu bytes, %s, cache %s, %s hash 0x%016llx%s%s",
			 k->disk, str_escape(esc, sizeof(esc), k->path, sizeof(k->path)),
			 (unsigned long long)k->id.size,
			 k->flags & SR_DISK_F_READ_ONLY ? "read-only" : "writable",
			 k->cache == SR_DISK_CACHE_NONE ? "none" : "writeback",
			 k->id.hash_blocks ? "sampled" : "full", (unsigned long long)k->id.hash,
			 k->flags & SR_DISK_F_SNAPSHOT ? ", snapshot by " : "",
			 k->flags & SR_DISK_F_SNAPSHOT ?
			 (k->snap_method == SR_SNAP_REFLINK ? "reflink" : "copy") : "");
		return true;
	}
	if (!virtio_of(rec, &v))
		return false;
	snprintf(s, len, "%s v%u.%u instance %u, %u bytes: PCI slot %u, status 0x%02x, %u queue%s%s",
		 sr_virtio_name(v.device_id), v.major, v.minor, v.instance, rec->length - 40,
		 v.pci.slot, v.tr.status, v.tr.num_queues, v.tr.num_queues == 1 ? "" : "s",
		 v.device_id == SR_VIRTIO_ID_BLOCK ? ", blk" : "");
	return true;
}

static void disk_id_json(const struct sr_disk_id *id)
{
	printf("{\"size\":%llu,\"dev\":%llu,\"ino\":%llu,\"mtime_ns\":%llu,\"hash\":\"0x%016llx\","
	       "\"hash_blocks\":%u,\"hash_block_size\":%u}", (unsigned long long)id->size,
	       (unsigned long long)id->dev, (unsigned long long)id->ino,
	       (unsigned long long)id->mtime_ns, (unsigned long long)id->hash, id->hash_blocks,
	       id->hash_block_size);
}

static void disk_details(const struct sr_record *rec, bool json)
{
	static struct sr_disk_info k;
	char esc[4 * 256 + 1], when[64];

	sr_disk_view(rec, &k);
	if (json) {
		printf(",\"disk\":{\"index\":%u,\"path\":", k.disk);
		json_str(k.path, sizeof(k.path));
		printf(",\"read_only\":%s,\"cache\":\"%s\",\"id\":",
		       k.flags & SR_DISK_F_READ_ONLY ? "true" : "false",
		       k.cache == SR_DISK_CACHE_NONE ? "none" : "writeback");
		disk_id_json(&k.id);
		if (k.flags & SR_DISK_F_SNAPSHOT) {
			printf(",\"snapshot\":{\"path\":");
			json_str(k.snap_path, sizeof(k.snap_path));
			printf(",\"method\":\"%s\",\"ns\":%llu,\"id\":",
			       k.snap_method == SR_SNAP_REFLINK ? "reflink" : "copy",
			       (unsigned long long)k.snap_ns);
			disk_id_json(&k.snap_id);
			printf("}");
		} else {
			printf(",\"snapshot\":null");
		}
		printf("}");
		return;
	}
	fmt_mtime(when, sizeof(when), k.id.mtime_ns);
	printf("%44s device 0x%llx inode %llu, mtime %s, hash of %s\n", "",
	       (unsigned long long)k.id.dev, (unsigned long long)k.id.ino, when,
	       k.id.hash_blocks ? "sampled blocks" : "the whole file");
	if (k.id.hash_blocks)
		printf("%44s sample: %u blocks of %u bytes\n", "", k.id.hash_blocks,
		       k.id.hash_block_size);
	if (k.flags & SR_DISK_F_SNAPSHOT)
		printf("%44s snapshot \"%s\" by %s in %.3f ms, inode %llu\n", "",
		       str_escape(esc, sizeof(esc), k.snap_path, sizeof(k.snap_path)),
		       k.snap_method == SR_SNAP_REFLINK ? "reflink" : "copy", k.snap_ns / 1e6,
		       (unsigned long long)k.snap_id.ino);
}

static void queue_json(const struct sr_virtio_queue *q, unsigned i)
{
	printf("%s{\"index\":%u,\"size\":%u,\"max_size\":%u,\"ready\":%s,\"desc\":%llu,"
	       "\"avail\":%llu,\"used\":%llu,\"last_avail_idx\":%u,\"last_used_idx\":%u,"
	       "\"signalled_used\":%u,\"signalled_valid\":%s,\"msix_vector\":%u,"
	       "\"used_flags\":%u,\"avail_event\":%u,\"notify_off\":%u}", i ? "," : "", i, q->size,
	       q->max_size, q->ready ? "true" : "false", (unsigned long long)q->desc,
	       (unsigned long long)q->avail, (unsigned long long)q->used, q->last_avail_idx,
	       q->last_used_idx, q->signalled_used, q->flags & SR_VQ_F_SIGNALLED ? "true" : "false",
	       q->msix_vector, q->used_flags, q->avail_event, q->notify_off);
}

static void virtio_json(const struct sr_virtio_state *v)
{
	const struct sr_virtio_transport *t = &v->tr;
	char serial[sizeof(v->blk.serial) + 1] = "";

	printf(",\"virtio\":{\"device_id\":%u,\"version\":\"%u.%u\",\"status\":%u,\"isr\":%u,"
	       "\"config_generation\":%u,\"device_features\":%llu,\"driver_features\":%llu,"
	       "\"device_feature_select\":%u,\"driver_feature_select\":%u,\"queue_select\":%u,"
	       "\"config_msix_vector\":%u,\"skipped_sections\":%u,\"pci\":{\"slot\":%u,"
	       "\"command\":%u,\"interrupt_pin\":%u,\"interrupt_line\":%u,\"bars\":[",
	       v->device_id, v->major, v->minor, t->status, t->isr, t->config_generation,
	       (unsigned long long)t->device_features, (unsigned long long)t->driver_features,
	       t->device_feature_select, t->driver_feature_select, t->queue_select,
	       t->config_msix_vector, v->skipped, v->pci.slot, v->pci.command,
	       v->pci.interrupt_pin, v->pci.interrupt_line);
	for (unsigned i = 0; i < 6; i++)
		printf("%s%u", i ? "," : "", v->pci.bar[i]);
	printf("]},\"msix\":");
	if (v->has_msix)
		printf("{\"table_size\":%u,\"enabled\":%s,\"masked\":%s,\"pending\":%llu}",
		       v->msix.table_size, v->msix.control & SR_MSIX_CTRL_ENABLE ? "true" : "false",
		       v->msix.control & SR_MSIX_CTRL_MASKALL ? "true" : "false",
		       (unsigned long long)v->msix_pba);
	else
		printf("null");
	printf(",\"queues\":[");
	for (unsigned i = 0; i < t->num_queues; i++)
		queue_json(&v->q[i], i);
	printf("]");
	if (v->device_id == SR_VIRTIO_ID_BLOCK) {
		memcpy(serial, v->blk.serial, sizeof(v->blk.serial));
		printf(",\"blk\":{\"capacity\":%llu,\"disk\":%u,\"serial\":",
		       (unsigned long long)v->blk.capacity, v->blk.disk);
		json_str(serial, sizeof(serial));
		printf(",\"writeback\":%u}", v->blk.config[32]);
	}
	printf("}");
}

static void virtio_text(const struct sr_virtio_state *v)
{
	const struct sr_virtio_transport *t = &v->tr;
	char serial[4 * sizeof(v->blk.serial) + 1];

	printf("%44s features 0x%016llx offered, 0x%016llx accepted; isr 0x%x, config "
	       "generation %u, queue_select %u, MSI-X %s\n", "",
	       (unsigned long long)t->device_features, (unsigned long long)t->driver_features,
	       t->isr, t->config_generation, t->queue_select,
	       !v->has_msix ? "absent" : v->msix.control & SR_MSIX_CTRL_ENABLE ? "enabled" :
	       "disabled");
	printf("%44s PCI %02x:%02x.%x command 0x%04x, INT%c line %u, BAR0 0x%08x BAR1 0x%08x "
	       "BAR4 0x%08x\n", "", v->pci.bus, v->pci.slot, v->pci.function, v->pci.command,
	       v->pci.interrupt_pin ? 'A' + v->pci.interrupt_pin - 1 : '-', v->pci.interrupt_line,
	       v->pci.bar[0], v->pci.bar[1], v->pci.bar[4]);
	for (unsigned i = 0; i < t->num_queues; i++) {
		const struct sr_virtio_queue *q = &v->q[i];

		printf("%44s queue %u: size %u/%u%s, desc 0x%llx avail 0x%llx used 0x%llx, "
		       "avail idx %u, used idx %u", "", i, q->size, q->max_size,
		       q->ready ? " ready" : " not ready", (unsigned long long)q->desc,
		       (unsigned long long)q->avail, (unsigned long long)q->used,
		       q->last_avail_idx, q->last_used_idx);
		if (q->flags & SR_VQ_F_SIGNALLED)
			printf(", signalled %u", q->signalled_used);
		if (q->used_flags & SR_VRING_USED_F_NO_NOTIFY)
			printf(", no notify");
		printf("\n");
	}
	if (v->device_id == SR_VIRTIO_ID_BLOCK)
		printf("%44s blk: %llu sectors on disk %u, serial \"%s\"\n", "",
		       (unsigned long long)v->blk.capacity, v->blk.disk,
		       str_escape(serial, sizeof(serial), (const char *)v->blk.serial,
				  sizeof(v->blk.serial)));
	if (v->skipped)
		printf("%44s %u optional section%s skipped (newer writer)\n", "", v->skipped,
		       v->skipped == 1 ? "" : "s");
}

void dev_details(const struct sr_record *rec, bool json)
{
	static struct sr_virtio_state v;

	if (rec->type == SR_REC_DISK) {
		disk_details(rec, json);
		return;
	}
	if (!virtio_of(rec, &v))
		return;
	if (json)
		virtio_json(&v);
	else
		virtio_text(&v);
}
