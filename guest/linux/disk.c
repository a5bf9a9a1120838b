/* SPDX-License-Identifier: MIT */
/*
 * sr-workload's disk modes: a writer whose every acknowledged write must
 * survive a save and restore, and a verifier for a later boot.
 *
 * The writer replaces SLOTS files in /data in turn, one generation after
 * another: write seq into slot seq % SLOTS as "sNN.new", fsync it, rename it
 * over "sNN", fsync the directory, then append "seq len sum" to /data/journal
 * and fdatasync that.  Only then is the write acknowledged.  Each file is a
 * header (magic, seq, length, sum) and a payload drawn from seq, its sum
 * FNV-1a 64.  At the end (its seconds, or "stop" on the console) the page
 * cache is dropped and every slot is read back with O_DIRECT, so what is
 * checked is the disk, not memory that a restore carried along: PASS only if
 * every acknowledged write is there, whole, and the journal on disk holds
 * every acknowledgement.
 *
 * verify (a fresh boot on the same disk) replays the journal: each slot must
 * hold its last journalled generation, or the next one whole (written and
 * renamed, its journal line not yet synced when the disk was copied).
 * disk on a disk that already has a journal verifies it the same way first,
 * then goes on from the last sequence number.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workload.h"

#define DATA_DIR "/data"
#define JOURNAL DATA_DIR "/journal"
#define SLOTS 64
#define MAGIC "srdisk1"
#define ALIGN 4096
#define MAX_BLOCKS 16		/* a file is 1..16 blocks of ALIGN bytes */

struct fhdr {
	char magic[8];
	uint64_t seq, len, sum;	/* len and sum: the payload after this header */
};

struct slot {
	uint64_t seq, len, sum;
	int used;
};

static struct slot slots[SLOTS];
static unsigned char *iobuf;	/* ALIGN-aligned, MAX_BLOCKS * ALIGN bytes */

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

/* The file of generation seq, header and payload, into iobuf; returns its size. */
static size_t fill(uint64_t seq, struct slot *s)
{
	size_t size = ALIGN * (1 + seq * 7 % MAX_BLOCKS);
	struct fhdr h = { MAGIC, seq, size - sizeof(h), 0 };
	uint64_t x = seq * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = sizeof(h); i < size; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		iobuf[i] = (unsigned char)x;
	}
	h.sum = fnv1a(iobuf + sizeof(h), h.len);
	memcpy(iobuf, &h, sizeof(h));
	*s = (struct slot){ seq, h.len, h.sum, 1 };
	return size;
}

static void slot_path(char *p, size_t n, unsigned k, const char *suffix)
{
	snprintf(p, n, DATA_DIR "/s%02u%s", k, suffix);
}

static int write_all(int fd, const void *p, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, (const char *)p + done, n - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		done += w;
	}
	return 0;
}

/* One acknowledged write of generation seq; 0 or -1 (printed). */
static int write_one(uint64_t seq, int dirfd, int jfd)
{
	unsigned k = seq % SLOTS;
	char tmp[64], path[64], line[80];
	struct slot s;
	size_t size = fill(seq, &s);
	int fd, n;

	slot_path(tmp, sizeof(tmp), k, ".new");
	slot_path(path, sizeof(path), k, "");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write_all(fd, iobuf, size) || fsync(fd) || close(fd) || rename(tmp, path) ||
	    fsync(dirfd)) {
		printf("sr-workload: FAIL: writing %s (seq %llu): %s\n", path, (unsigned long long)seq,
		       strerror(errno));
		return -1;
	}
	n = snprintf(line, sizeof(line), "%llu %llu %016llx\n", (unsigned long long)seq,
		     (unsigned long long)s.len, (unsigned long long)s.sum);
	if (write_all(jfd, line, n) || fdatasync(jfd)) {
		printf("sr-workload: FAIL: journal (seq %llu): %s\n", (unsigned long long)seq, strerror(errno));
		return -1;
	}
	slots[k] = s;
	return 0;
}

/* Reads slot k with O_DIRECT into iobuf; its size, or -1 (missing or unreadable). */
static ssize_t read_slot(unsigned k)
{
	char path[64];
	ssize_t got;
	int fd;

	slot_path(path, sizeof(path), k, "");
	fd = open(path, O_RDONLY | O_DIRECT);
	if (fd < 0)
		return -1;
	got = read(fd, iobuf, MAX_BLOCKS * ALIGN);
	close(fd);
	return got;
}

/* Whether iobuf (got bytes) holds a whole file of generation seq; with want, exactly that one. */
static const char *check_file(ssize_t got, uint64_t seq, const struct slot *want)
{
	struct fhdr h;

	if (got < (ssize_t)sizeof(h))
		return "missing or short";
	memcpy(&h, iobuf, sizeof(h));
	if (memcmp(h.magic, MAGIC, sizeof(h.magic)))
		return "no header";
	if (h.seq != seq)
		return "another generation";
	if (h.len != (uint64_t)got - sizeof(h) || fnv1a(iobuf + sizeof(h), h.len) != h.sum)
		return "torn or corrupt (length or checksum)";
	if (want && (h.len != want->len || h.sum != want->sum))
		return "not the journalled content";
	return NULL;
}

/* Drops clean pages so that reads come from the disk (best effort; O_DIRECT reads do anyway). */
static void drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	sync();
	if (fd >= 0) {
		if (write(fd, "3\n", 2) != 2)
			printf("sr-workload: drop_caches: %s\n", strerror(errno));
		close(fd);
	}
}

/*
 * Reads the journal into slots (the last generation of each); a torn last
 * line (no newline) is not an acknowledgement and is ignored.  Returns the
 * number of entries, -1 when unreadable or malformed.
 */
static long load_journal(uint64_t *last)
{
	FILE *f = fopen(JOURNAL, "r");
	unsigned long long seq, len, sum;
	char line[128];
	long n = 0;

	*last = 0;
	memset(slots, 0, sizeof(slots));
	if (!f)
		return errno == ENOENT ? 0 : -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strchr(line, '\n'))
			break;
		if (sscanf(line, "%llu %llu %llx", &seq, &len, &sum) != 3 || (n && seq != *last + 1)) {
			printf("sr-workload: journal line %ld malformed or out of order: %s", n + 1, line);
			fclose(f);
			return -1;
		}
		slots[seq % SLOTS] = (struct slot){ seq, len, sum, 1 };
		*last = seq;
		n++;
	}
	fclose(f);
	return n;
}

/*
 * Checks every slot against slots[]; with next_ok, a slot may instead hold
 * the next generation whole (seq + SLOTS: renamed, not yet journalled), and
 * an unjournalled slot may hold one.  Returns the number of bad slots.
 */
static unsigned verify_slots(int next_ok, unsigned *checked)
{
	unsigned bad = 0;

	*checked = 0;
	for (unsigned k = 0; k < SLOTS; k++) {
		ssize_t got = read_slot(k);
		const char *why;

		if (!slots[k].used && got < 0)
			continue;
		if (!slots[k].used) {
			struct fhdr h;

			memcpy(&h, iobuf, sizeof(h));
			why = next_ok ? check_file(got, h.seq, NULL) : "a file no journal line covers";
			if (!why && h.seq % SLOTS != k)
				why = "a file in the wrong slot";
		} else {
			why = check_file(got, slots[k].seq, &slots[k]);
			if (why && next_ok && !check_file(got, slots[k].seq + SLOTS, NULL))
				why = NULL;
		}
		if (why) {
			if (bad++ < 8)
				printf("sr-workload: slot s%02u (journalled seq %llu): %s\n", k,
				       (unsigned long long)slots[k].seq, why);
		} else {
			++*checked;
		}
	}
	return bad;
}

static int setup(void)
{
	if (posix_memalign((void **)&iobuf, ALIGN, MAX_BLOCKS * ALIGN)) {
		printf("sr-workload: FAIL: no memory\n");
		return -1;
	}
	if (mkdir(DATA_DIR, 0755) && errno != EEXIST) {
		printf("sr-workload: FAIL: mkdir " DATA_DIR ": %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

int verify_main(int argc, char **argv)
{
	unsigned checked, bad;
	uint64_t last;
	long n;

	(void)argc, (void)argv;
	if (setup())
		return 1;
	drop_caches();
	n = load_journal(&last);
	if (n <= 0) {
		printf("sr-workload: FAIL: verify: %s\n", n ? "the journal is unreadable" : "no journal (nothing written)");
		return 1;
	}
	bad = verify_slots(1, &checked);
	printf("sr-workload: %s: verify: %ld journalled writes up to seq %llu, %u slots whole, %u bad\n",
	       bad ? "FAIL" : "PASS", n, (unsigned long long)last, checked, bad);
	return bad ? 1 : 0;
}

/* Counts the journal's complete lines on disk (after drop_caches). */
static long journal_lines(void)
{
	FILE *f = fopen(JOURNAL, "r");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

int disk_main(int argc, char **argv)
{
	unsigned seconds = argc > 1 ? strtoul(argv[1], NULL, 0) : 30;
	unsigned rate = argc > 2 ? strtoul(argv[2], NULL, 0) : 50;
	unsigned long long tick = 0, acked = 0, in_tick = 0;
	unsigned checked, bad = 0;
	double next;
	uint64_t seq;
	long before, lines;
	int dirfd, jfd;

	if (setup())
		return 1;
	before = load_journal(&seq);
	if (before < 0)
		return printf("sr-workload: FAIL: the journal is unreadable\n"), 1;
	if (before) {
		bad = verify_slots(1, &checked);
		printf("sr-workload: disk: %ld journalled writes from before, up to seq %llu: %u slots whole, %u bad\n",
		       before, (unsigned long long)seq, checked, bad);
		/* Generations written and renamed but never journalled are rewritten. */
	}
	dirfd = open(DATA_DIR, O_RDONLY | O_DIRECTORY);
	jfd = open(JOURNAL, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (dirfd < 0 || jfd < 0 || fsync(dirfd))
		return printf("sr-workload: FAIL: opening " JOURNAL ": %s\n", strerror(errno)), 1;
	if (seconds)
		printf("sr-workload: disk writer, %u seconds, %u writes a second, %u slots in " DATA_DIR "\n",
		       seconds, rate, SLOTS);
	else
		printf("sr-workload: disk writer, until \"stop\" on the console, %u writes a second, %u slots in " DATA_DIR "\n",
		       rate, SLOTS);
	next = now(CLOCK_MONOTONIC) + 1;
	while (!bad && (seconds ? tick < seconds : !told_to_stop())) {
		if (now(CLOCK_MONOTONIC) >= next) {
			next += 1;
			in_tick = 0;
			print_tick(++tick, "");
			printf("sr-workload: disk: %llu writes acknowledged, seq %llu\n", acked,
			       (unsigned long long)seq);
			continue;
		}
		/* rate writes a tick, then wait for the next (0: as fast as the disk goes). */
		if (rate && in_tick >= rate) {
			usleep(5000);
			continue;
		}
		if (write_one(++seq, dirfd, jfd)) {
			bad++;
		} else {
			acked++;
			in_tick++;
		}
	}
	close(jfd);
	close(dirfd);
	drop_caches();
	bad += verify_slots(0, &checked);
	lines = journal_lines();
	if (lines != before + (long)acked) {
		printf("sr-workload: the journal on disk holds %ld lines, want %ld\n", lines, before + (long)acked);
		bad++;
	}
	printf("sr-workload: %s: disk: %llu ticks, %llu writes acknowledged (seq %llu), %u slots read back whole from the disk, %u bad\n",
	       bad ? "FAIL" : "PASS", tick, acked, (unsigned long long)seq, checked, bad);
	return bad ? 1 : 0;
}
