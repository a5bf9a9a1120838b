#!/usr/bin/env bash
# Makes the Linux test guest's root disk, an ext4 image, without root
# privileges: a directory is filled with busybox-static (Debian's
# /bin/busybox and a link per applet), the workload and the disk's init
# (guest/rootfs/init), and mke2fs -d copies it in.  The same inputs make the
# same bytes: a fixed UUID and hash seed, every time set to SOURCE_DATE_EPOCH
# (mke2fs's E2FSPROGS_FAKE_TIME for its own; debugfs for the inodes' ctimes,
# which mke2fs -d takes from the staging files and no user can set), every
# file owned by root whoever built it (mke2fs -d copies the builder's uid).
#   guest/rootfs/mkroot.sh IMAGE MiB STAGING_DIR WORKLOAD_BINARY
set -euo pipefail
img=$1 mib=$2 stage=$3 workload=$4
epoch=${SOURCE_DATE_EPOCH:-1700000000}
uuid=5352d15c-0000-4000-8000-000000000001
top=$(cd "$(dirname "$0")/../.." && pwd)
for t in mke2fs debugfs; do
	command -v $t >/dev/null || PATH=$PATH:/sbin:/usr/sbin
	command -v $t >/dev/null || { echo "mkroot.sh: $t not found: install Debian package e2fsprogs (make deps)" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "mkroot.sh: /bin/busybox not found: install Debian package busybox-static (make deps)" >&2; exit 1; }

rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,data}
cp /bin/busybox "$workload" "$stage/bin/"
for a in $(/bin/busybox --list); do
	[ -e "$stage/bin/$a" ] || ln -s busybox "$stage/bin/$a"
done
cp "$top/guest/rootfs/init" "$stage/sbin/init"
find "$stage" -exec touch -h -d "@$epoch" {} +

export E2FSPROGS_FAKE_TIME=$epoch
rm -f "$img.tmp"
# Inode tables and journal zeroed here, not by the guest's ext4lazyinit
# thread in its first minutes (16 MiB of writes the demo's save met).
mke2fs -q -F -t ext4 -L sr-root -U "$uuid" -E "hash_seed=$uuid,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0" \
	-d "$stage" "$img.tmp" "${mib}M" >/dev/null
(cd "$stage" && find . | LC_ALL=C sort | sed 's|^\.||; s|^$|/|') |
	while read -r f; do printf 'sif "%s" ctime @%s\nsif "%s" uid 0\nsif "%s" gid 0\n' "$f" "$epoch" "$f" "$f"; done > "$stage.ctime"
debugfs -w -f "$stage.ctime" "$img.tmp" >/dev/null 2>"$stage.ctime.err" ||
	{ cat "$stage.ctime.err" >&2; exit 1; }
rm -f "$stage.ctime" "$stage.ctime.err"
mv "$img.tmp" "$img"
