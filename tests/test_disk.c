/* SPDX-License-Identifier: MIT */
/*
 * Disk identity and snapshots (libsr/disk.c), on real files in a tmpfs
 * directory: tmpfs has holes (SEEK_DATA/SEEK_HOLE) and no reflink, so a
 * snapshot there takes the sparse copy path.  And how sr-save's snapshots
 * take their names (tools/snapshots.c): all of them or none.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include "snapshots.h"
#include "sr_disk.h"

#define MiB (1ull << 20)

static char dir[64];

static void make_dir(void)
{
	struct statfs fs;

	snprintf(dir, sizeof(dir), "/dev/shm/sr-test-disk.XXXXXX");
	cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	cr_assert_eq(statfs(dir, &fs), 0);
	cr_assert_eq(fs.f_type, TMPFS_MAGIC, "%s is not on tmpfs", dir);
}

static void remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(disk, .init = make_dir, .fini = remove_dir);

static char *path_of(const char *name)
{
	static char p[4][128];
	static unsigned k;
	char *s = p[k++ % 4];

	snprintf(s, sizeof(p[0]), "%s/%s", dir, name);
	return s;
}

static void pattern(uint8_t *b, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		b[i] = (uint8_t)(seed >> 56);
	}
}

/* A disk of size bytes: data in [0, 1 MiB) and [size - 1 MiB, size), a hole between. */
static int make_disk(const char *name, uint64_t size)
{
	static uint8_t buf[MiB];
	int fd = open(path_of(name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);

	cr_assert_geq(fd, 0, "%s: %s", name, strerror(errno));
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	pattern(buf, sizeof(buf), 1);
	cr_assert_eq(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	pattern(buf, sizeof(buf), 2);
	cr_assert_eq(pwrite(fd, buf, sizeof(buf), (off_t)(size - MiB)), (ssize_t)sizeof(buf));
	return fd;
}

static void set_mtime(int fd, uint64_t ns)
{
	struct timespec ts[2] = { { (time_t)(ns / 1000000000), (long)(ns % 1000000000) },
				  { (time_t)(ns / 1000000000), (long)(ns % 1000000000) } };

	cr_assert_eq(futimens(fd, ts), 0);
}

static void poke(int fd, uint64_t off, uint8_t v)
{
	cr_assert_eq(pwrite(fd, &v, 1, (off_t)off), 1);
}

static uint8_t peek(int fd, uint64_t off)
{
	uint8_t v;

	cr_assert_eq(pread(fd, &v, 1, (off_t)off), 1);
	return v;
}

Test(disk, identity_of_a_sparse_file_sampled_and_full)
{
	int fd = make_disk("a.img", 256 * MiB);
	struct sr_disk_id s, f, again;
	struct sr_error err;
	struct stat st;

	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_SAMPLE, &s, &err), 0, "%s", err.msg);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(s.size, 256 * MiB);
	cr_assert_eq(s.ino, (uint64_t)st.st_ino);
	cr_assert_eq(s.dev, (uint64_t)st.st_dev);
	cr_assert_eq(s.hash_blocks, SR_DISK_SAMPLE_BLOCKS);
	cr_assert_eq(s.hash_block_size, SR_DISK_SAMPLE_BS);
	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_FULL, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(f.hash_blocks, 0);
	cr_assert_eq(f.hash_block_size, 0);
	cr_assert_neq(f.hash, s.hash);
	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_SAMPLE, &again, &err), 0);
	cr_assert_eq(sr_disk_id_compare(&s, &again, 0, NULL, 0), SR_DISK_SAME, "not repeatable");
	close(fd);
}

Test(disk, a_small_file_is_hashed_whole)
{
	int fd = make_disk("small.img", MiB);
	struct sr_disk_id s, f;
	struct sr_error err;

	cr_assert_eq(ftruncate(fd, 128 << 10), 0);	/* below 64 x 4 KiB */

	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_SAMPLE, &s, &err), 0);
	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_FULL, &f, &err), 0);
	cr_assert_eq(s.hash_blocks, 0);
	cr_assert_eq(s.hash, f.hash);
	close(fd);
}

Test(disk, one_byte_changed_in_a_sampled_block_is_found_even_with_mtime_put_back)
{
	int fd = make_disk("b.img", 256 * MiB);
	struct sr_disk_id saved;
	struct sr_error err;
	char why[256];
	/* Block 1 of 64 starts at (256 MiB - 4 KiB) / 63; the byte 100 into it. */
	uint64_t off = (256 * MiB - SR_DISK_SAMPLE_BS) / 63 + 100;
	uint8_t old = peek(fd, off);

	set_mtime(fd, 1700000000123456789ull);
	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_SAMPLE, &saved, &err), 0);
	poke(fd, off, old ^ 0x01);
	set_mtime(fd, 1700000000123456789ull);
	cr_assert_eq(sr_disk_check(fd, &saved, 0, why, sizeof(why), &err), SR_DISK_DIFF_HASH,
		     "%s", why);
	cr_assert(strstr(why, "content: sampled hash"), "%s", why);
	/* Back as it was: the same again. */
	poke(fd, off, old);
	set_mtime(fd, 1700000000123456789ull);
	cr_assert_eq(sr_disk_check(fd, &saved, 0, why, sizeof(why), &err), SR_DISK_SAME, "%s", why);
	/*
	 * A byte between samples is what the sample cannot see (the spec says so);
	 * the full hash sees it.
	 */
	{
		uint64_t gap = (256 * MiB - SR_DISK_SAMPLE_BS) / 63 * 2 - 4096;
		struct sr_disk_id full;

		cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_FULL, &full, &err), 0);
		poke(fd, gap, 0xff);
		set_mtime(fd, 1700000000123456789ull);
		cr_assert_eq(sr_disk_check(fd, &saved, 0, why, sizeof(why), &err), SR_DISK_SAME);
		cr_assert_eq(sr_disk_check(fd, &full, 0, why, sizeof(why), &err), SR_DISK_DIFF_HASH,
			     "%s", why);
		cr_assert(strstr(why, "content: full hash"), "%s", why);
	}
	close(fd);
}

Test(disk, mtime_size_and_another_file_are_named)
{
	int fd = make_disk("c.img", 128 * MiB), cp;
	struct sr_disk_id saved;
	struct sr_snap_result res;
	struct sr_error err;
	char why[256];

	set_mtime(fd, 1700000000000000000ull);
	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_SAMPLE, &saved, &err), 0);
	set_mtime(fd, 1700000001500000000ull);		/* touched, content the same */
	cr_assert_eq(sr_disk_check(fd, &saved, 0, why, sizeof(why), &err), SR_DISK_DIFF_MTIME);
	cr_assert_str_eq(why, "mtime 2023-11-14 22:13:20.000000000 UTC -> "
			 "2023-11-14 22:13:21.500000000 UTC");
	/* Content only (another host): a touch is no change. */
	cr_assert_eq(sr_disk_check(fd, &saved, SR_DISK_CMP_CONTENT, why, sizeof(why), &err),
		     SR_DISK_SAME, "%s", why);
	/* A copy: another file with the same content. */
	cr_assert_eq(sr_disk_snapshot(fd, path_of("c.copy"), 0, &res, &err), 0, "%s", err.msg);
	cp = open(path_of("c.copy"), O_RDONLY | O_CLOEXEC);
	cr_assert_eq(sr_disk_check(cp, &saved, 0, why, sizeof(why), &err), SR_DISK_DIFF_FILE);
	cr_assert(strstr(why, "another file"), "%s", why);
	cr_assert_eq(sr_disk_check(cp, &saved, SR_DISK_CMP_CONTENT, why, sizeof(why), &err),
		     SR_DISK_SAME, "%s", why);
	close(cp);
	/* Grown by a sector. */
	cr_assert_eq(ftruncate(fd, 128 * MiB + 512), 0);
	cr_assert_eq(sr_disk_check(fd, &saved, 0, why, sizeof(why), &err), SR_DISK_DIFF_SIZE);
	cr_assert_str_eq(why, "size 134217728 -> 134218240 bytes");
	close(fd);
}

Test(disk, snapshot_on_tmpfs_is_a_sparse_copy)
{
	uint64_t size = 512 * MiB;
	int fd = make_disk("d.img", size), snap;
	struct sr_disk_id a, b;
	struct sr_snap_result res;
	struct sr_error err;
	struct stat st_src, st_dst;
	char why[256];

	cr_assert_eq(sr_disk_snapshot(fd, path_of("d.snap"), 0, &res, &err), 0, "%s", err.msg);
	cr_assert_eq(res.method, SR_SNAP_COPY);
	cr_assert_eq(res.reflink_errno, EOPNOTSUPP, "FICLONE on tmpfs: %s",
		     strerror(res.reflink_errno));
	cr_assert_eq(res.bytes, 2 * MiB, "copied %llu bytes, the data is 2 MiB",
		     (unsigned long long)res.bytes);
	cr_assert_eq(res.size, size);
	cr_assert_gt(res.ns, 0);
	cr_assert_str_eq(sr_snap_method_name(res.method), "copy");
	snap = open(path_of("d.snap"), O_RDONLY | O_CLOEXEC);
	cr_assert_geq(snap, 0);
	cr_assert_eq(fstat(fd, &st_src), 0);
	cr_assert_eq(fstat(snap, &st_dst), 0);
	cr_assert_eq(st_dst.st_size, (off_t)size);
	cr_assert_leq(st_dst.st_blocks * 512, 4 * MiB, "the hole was filled: %lld bytes allocated",
		      (long long)st_dst.st_blocks * 512);
	cr_assert_eq(st_dst.st_mode & 0777, 0640);
	cr_assert_eq(lseek(snap, 0, SEEK_HOLE), (off_t)MiB, "the hole starts after 1 MiB");
	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_FULL, &a, &err), 0);
	cr_assert_eq(sr_disk_identity(snap, SR_DISK_HASH_FULL, &b, &err), 0);
	cr_assert_eq(sr_disk_id_compare(&a, &b, SR_DISK_CMP_CONTENT, why, sizeof(why)),
		     SR_DISK_SAME, "%s", why);
	close(snap);
	/* The snapshot is not overwritten unless asked; then replaced whole. */
	cr_assert_eq(sr_disk_snapshot(fd, path_of("d.snap"), 0, &res, &err), -1);
	cr_assert_eq(err.sys_errno, EEXIST, "%s", err.msg);
	poke(fd, 5, peek(fd, 5) ^ 0xff);
	cr_assert_eq(sr_disk_snapshot(fd, path_of("d.snap"), SR_SNAP_REPLACE | SR_SNAP_NO_REFLINK,
				      &res, &err), 0, "%s", err.msg);
	cr_assert_eq(res.reflink_errno, 0, "not tried");
	snap = open(path_of("d.snap"), O_RDONLY | O_CLOEXEC);
	cr_assert_eq(peek(snap, 5), peek(fd, 5));
	close(snap);
	/* Nothing left behind by the temporary files. */
	{
		char cmd[160];

		snprintf(cmd, sizeof(cmd), "test $(ls -a '%s' | wc -l) -eq 4", dir);	/* . .. d.img d.snap */
		cr_assert_eq(system(cmd), 0, "stray files in %s", dir);
	}
	close(fd);
}

Test(disk, snapshot_into_an_unnamed_file_then_named)
{
	uint64_t size = 64 * MiB;
	int fd = make_disk("u.img", size), tmp, snap;
	struct sr_snap_result res;
	struct sr_disk_id a, b;
	struct sr_error err;
	char proc[64], why[256], cmd[160];
	struct stat st;

	/* As sr-save -c --disk-snapshot: O_TMPFILE beside the image, named once committed. */
	tmp = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(tmp, 0, "O_TMPFILE: %s", strerror(errno));
	cr_assert_eq(sr_disk_snapshot_fd(fd, tmp, 0, &res, &err), 0, "%s", err.msg);
	cr_assert_eq(res.method, SR_SNAP_COPY);
	cr_assert_eq(res.bytes, 2 * MiB);
	cr_assert_gt(res.ns, 0);
	snprintf(cmd, sizeof(cmd), "test $(ls -a '%s' | wc -l) -eq 3", dir);	/* . .. u.img */
	cr_assert_eq(system(cmd), 0, "the unnamed snapshot has a name in %s", dir);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", tmp);
	cr_assert_eq(linkat(AT_FDCWD, proc, AT_FDCWD, path_of("u.img.disk0"), AT_SYMLINK_FOLLOW), 0,
		     "linkat: %s", strerror(errno));
	close(tmp);
	snap = open(path_of("u.img.disk0"), O_RDONLY | O_CLOEXEC);
	cr_assert_geq(snap, 0);
	cr_assert_eq(fstat(snap, &st), 0);
	cr_assert_eq(st.st_size, (off_t)size);
	cr_assert_leq(st.st_blocks * 512, 4 * MiB, "the hole was filled");
	/* Its identity, hashed as the disk's, is the disk's content. */
	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_SAMPLE, &a, &err), 0);
	cr_assert_eq(sr_disk_identity_like(snap, &a, &b, &err), 0);
	cr_assert_eq(sr_disk_id_compare(&a, &b, SR_DISK_CMP_CONTENT, why, sizeof(why)),
		     SR_DISK_SAME, "%s", why);
	close(snap);
	/* A copy that cannot be made fails with the reason: here the file size limit. */
	tmp = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(tmp, 0);
	{
		struct rlimit old, lim = { 1 * MiB, 1 * MiB };

		cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
		signal(SIGXFSZ, SIG_IGN);
		cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
		cr_assert_eq(sr_disk_snapshot_fd(fd, tmp, SR_SNAP_NO_REFLINK, &res, &err), -1);
		setrlimit(RLIMIT_FSIZE, &old);
	}
	cr_assert_eq(err.code, SR_E_IO);
	cr_assert_eq(err.sys_errno, EFBIG, "%s", err.msg);
	close(tmp);
	close(fd);
}

Test(disk, errors_are_returned_not_printed)
{
	struct sr_disk_id id;
	struct sr_snap_result res;
	struct sr_error err;
	int fd = make_disk("e.img", 2 * MiB);

	cr_assert_eq(sr_disk_identity(-1, SR_DISK_HASH_SAMPLE, &id, &err), -1);
	cr_assert_eq(err.code, SR_E_IO);
	cr_assert_eq(err.sys_errno, EBADF);
	cr_assert_eq(sr_disk_snapshot(fd, "/nonexistent-dir/x.snap", 0, &res, &err), -1);
	cr_assert_eq(err.sys_errno, ENOENT, "%s", err.msg);
	close(fd);
}

/*
 * A file that cannot be read (open for writing only: every pread fails
 * EBADF) is still refused for what fstat says: size, file, mtime are
 * compared before a byte is hashed, so a wrong 100 GB disk with a full
 * hash is refused at once, not after reading it all.
 */
Test(disk, size_file_and_mtime_are_refused_without_reading)
{
	int fd = make_disk("w.img", 2 * MiB), wo;
	struct sr_disk_id saved, other;
	struct sr_error err;
	char why[256];

	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_FULL, &saved, &err), 0, "%s", err.msg);
	cr_assert_eq(saved.hash_blocks, 0);
	wo = open(path_of("w.img"), O_WRONLY | O_CLOEXEC);
	cr_assert_geq(wo, 0);
	/* Unreadable and unchanged: the hash is needed, and its read fails. */
	cr_assert_eq(sr_disk_check(wo, &saved, 0, why, sizeof(why), &err), -1);
	cr_assert_eq(err.sys_errno, EBADF, "%s", err.msg);
	other = saved;
	other.size += 512;
	cr_assert_eq(sr_disk_check(wo, &other, 0, why, sizeof(why), &err), SR_DISK_DIFF_SIZE,
		     "%s", why);
	other = saved;
	other.ino++;
	cr_assert_eq(sr_disk_check(wo, &other, 0, why, sizeof(why), &err), SR_DISK_DIFF_FILE,
		     "%s", why);
	other = saved;
	other.mtime_ns--;
	cr_assert_eq(sr_disk_check(wo, &other, 0, why, sizeof(why), &err), SR_DISK_DIFF_MTIME,
		     "%s", why);
	/* A sampled record against this file of 2 MiB (hashed whole now): the layout differs, unread. */
	other = saved;
	other.hash_blocks = 64;
	other.hash_block_size = 65536;
	cr_assert_eq(sr_disk_check(wo, &other, 0, why, sizeof(why), &err), SR_DISK_DIFF_HASH,
		     "%s", why);
	cr_assert(strstr(why, "hashed differently"), "%s", why);
	close(wo);
	close(fd);
}

/* A sample's block size must be a power of two here too, not only in the reader (audit7). */
Test(disk, identity_like_refuses_a_block_size_not_a_power_of_two)
{
	struct sr_disk_id like = { .hash_blocks = 64, .hash_block_size = 12288 }, id;
	struct sr_error err;
	int fd = open("/dev/null", O_RDONLY);

	cr_assert_eq(sr_disk_identity_like(fd, &like, &id, &err), -1);
	cr_assert(strstr(err.msg, "64 x 12288"), "%s", err.msg);
	close(fd);
}

/* Whether dir holds exactly the names in want (space-separated, sorted as ls sorts them). */
static bool dir_holds(const char *want)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "test \"$(cd '%s' && echo $(LC_ALL=C ls -A))\" = '%s'", dir, want);
	return system(cmd) == 0;
}

static void snapshot_files(struct snapshots *sn, const char *image)
{
	char why[600];

	cr_assert_eq(snapshots_init(sn, path_of(image)), 0, "%s", strerror(errno));
	for (unsigned k = 0; k < 2; k++) {
		cr_assert_eq(snapshots_open(sn, k, "/srv/d.img", why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(write(sn->f[k].fd, "snap", 4), 4);
	}
}

/*
 * sr-save -c --disk-snapshot with two disks: the second's snapshot cannot
 * take its name (a directory appeared there during the commit): the first,
 * already renamed, is taken back, and nothing is left, no side file either.
 */
Test(disk, snapshots_are_all_placed_or_none)
{
	struct snapshots sn;
	char why[600], side[128];
	struct stat st;

	snapshot_files(&sn, "c.sr");
	cr_assert(dir_holds(""), "an unnamed snapshot has a name before the image is complete");
	cr_assert_eq(snapshots_stage(&sn, why, sizeof(why)), 0, "%s", why);
	snprintf(side, sizeof(side), "c.sr.disk0.sr-tmp-%d c.sr.disk1.sr-tmp-%d", (int)getpid(),
		 (int)getpid());
	cr_assert(dir_holds(side), "staged: only the side names");
	cr_assert_eq(mkdir(path_of("c.sr.disk1"), 0700), 0);
	cr_assert_eq(snapshots_place(&sn, why, sizeof(why)), -1);
	cr_assert(strstr(why, "disk 1: its snapshot ") && strstr(why, "c.sr.disk1: Is a directory"),
		  "%s", why);
	snapshots_discard(&sn);
	cr_assert(dir_holds("c.sr.disk1"), "disk 0's snapshot or a side file was left");
	/* Refused up front when the directory is there before the save. */
	cr_assert_eq(snapshots_init(&sn, path_of("c.sr")), 0);
	cr_assert_eq(snapshots_open(&sn, 1, "/srv/d.img", why, sizeof(why)), -1);
	cr_assert(strstr(why, "disk 1 /srv/d.img: its snapshot ") && strstr(why, "Is a directory"),
		  "%s", why);
	snapshots_discard(&sn);
	cr_assert_eq(rmdir(path_of("c.sr.disk1")), 0);
	/* Both placed, an older snapshot replaced, no side file left. */
	cr_assert_eq(close(open(path_of("c.sr.disk0"), O_CREAT | O_WRONLY, 0600)), 0);
	snapshot_files(&sn, "c.sr");
	cr_assert_eq(snapshots_stage(&sn, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(snapshots_place(&sn, why, sizeof(why)), 0, "%s", why);
	snapshots_discard(&sn);
	cr_assert(dir_holds("c.sr.disk0 c.sr.disk1"));
	for (unsigned k = 0; k < 2; k++) {
		cr_assert_eq(stat(path_of(k ? "c.sr.disk1" : "c.sr.disk0"), &st), 0);
		cr_assert_eq(st.st_size, 4);
	}
}

/* A save that fails before the commit (the image never placed): its snapshots go, side files too. */
Test(disk, snapshots_of_a_failed_save_leave_nothing)
{
	struct snapshots sn;
	char why[600];

	snapshot_files(&sn, "f.sr");
	cr_assert_eq(snapshots_stage(&sn, why, sizeof(why)), 0, "%s", why);
	snapshots_discard(&sn);
	cr_assert(dir_holds(""));
}

/* The identity sr_disk_identity(SR_DISK_HASH_SAMPLE) gives now, for fd. */
static struct sr_disk_id fresh(int fd)
{
	struct sr_disk_id id;
	struct sr_error err;

	cr_assert_eq(sr_disk_identity(fd, SR_DISK_HASH_SAMPLE, &id, &err), 0, "%s", err.msg);
	return id;
}

static void same_id(const struct sr_disk_id *a, const struct sr_disk_id *b, const char *what)
{
	char why[256] = "";

	cr_assert_eq(sr_disk_id_compare(a, b, 0, why, sizeof(why)), SR_DISK_SAME, "%s: %s", what, why);
	cr_assert_eq(a->hash, b->hash, "%s", what);
}

/*
 * A save's sample taken ahead of the pause (sr_disk_sample): brought up to
 * date in the pause, it is the identity a sample taken there would give,
 * whether the writer touched sampled blocks, other blocks, or someone else
 * wrote (mtime moved, no write reported: all read again).
 */
Test(disk, a_sample_taken_ahead_is_the_identity_at_the_refresh)
{
	uint64_t size = 64 * MiB;
	int fd = make_disk("a.img", size);
	struct sr_disk_sample s = { 0 };
	struct sr_disk_id id, before;
	struct sr_error err;

	cr_assert_eq(sr_disk_sample_plan(fd, &s, &err), 0, "%s", err.msg);
	cr_assert_eq(s.id.hash_blocks, 64);
	cr_assert_eq(s.off[0], 0);
	cr_assert_eq(s.off[63], size - 4096);
	cr_assert_eq(sr_disk_sample_read(fd, &s, &err), 0, "%s", err.msg);
	before = fresh(fd);
	same_id(&s.id, &before, "as taken");
	/* The writer wrote block 5 and reports it: only it is read again. */
	uint64_t taken = s.id.hash;

	poke(fd, s.off[5] + 100, 0x5a);
	cr_assert_eq(sr_disk_sample_refresh(fd, &s, 1ull << 5, 1, &id, &err), 0, "%s", err.msg);
	before = fresh(fd);
	same_id(&id, &before, "block 5 written");
	cr_assert_neq(id.hash, taken, "block 5's change is not in the hash");
	/* A write between the sampled blocks: no block to read, the hash kept, mtime new. */
	poke(fd, s.off[7] + 4096 + 10, 0x77);
	cr_assert_eq(sr_disk_sample_refresh(fd, &s, 0, 1, &id, &err), 0, "%s", err.msg);
	before = fresh(fd);
	same_id(&id, &before, "a block between the samples written");
	/* Someone else wrote a sampled block (no write reported), mtime moved: all read again. */
	set_mtime(fd, 1000000000ull);
	cr_assert_eq(sr_disk_sample_refresh(fd, &s, 0, 0, &id, &err), 0, "%s", err.msg);
	poke(fd, s.off[9], 0x99);
	set_mtime(fd, 2000000000ull);
	cr_assert_eq(sr_disk_sample_refresh(fd, &s, 0, 0, &id, &err), 0, "%s", err.msg);
	before = fresh(fd);
	same_id(&id, &before, "another writer");
	/* A new size lays the blocks out anew. */
	cr_assert_eq(ftruncate(fd, (off_t)(size + MiB)), 0);
	cr_assert_eq(sr_disk_sample_refresh(fd, &s, 0, 1, &id, &err), 0, "%s", err.msg);
	before = fresh(fd);
	same_id(&id, &before, "resized");
	cr_assert_eq(s.off[63], size + MiB - 4096);
	sr_disk_sample_free(&s);
	close(fd);
}
