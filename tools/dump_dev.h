/* SPDX-License-Identifier: MIT */
/* sr-dump: DEVICE (virtio) and DISK records, as text and JSON. */
#ifndef DUMP_DEV_H
#define DUMP_DEV_H

#include <stdbool.h>
#include <stddef.h>

#include "sr.h"

/*
 * One line for the record's summary column, for a virtio DEVICE or a DISK;
 * false for any other record (the caller summarizes it).
 */
bool dev_summary(const struct sr_record *rec, char *s, size_t len);

/* The details after the summary: indented lines (text) or ,"virtio":{...} / ,"disk":{...} (JSON). */
void dev_details(const struct sr_record *rec, bool json);

#endif
