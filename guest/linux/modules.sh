#!/usr/bin/env bash
# The kernel modules the Linux test guest's initramfs loads to reach a root
# on virtio-blk, with everything they depend on, taken from Debian's kernel
# tree that the box unpacked (build/box/kernel) and ordered by kmod itself:
# depmod writes modules.dep (and modules.softdep: ext4 and jbd2 want crc32c
# before them) into a scratch tree, modprobe --show-depends walks it.  No
# list of dependencies is written here, so the next kernel's work too.
#   guest/linux/modules.sh KERNEL_DIR OUT_DIR MODULE...
# Copies each .ko into OUT_DIR and writes OUT_DIR/order, their names in load
# order.  A MODULE the kernel does not have is left out, and said so (the
# initramfs loads what it has).
set -euo pipefail
kdir=$1 out=$2
shift 2
kver=$(cat "$kdir/version")
tree=$kdir/lib/modules/$kver
[ -d "$tree/kernel" ] || { echo "modules.sh: no $tree/kernel" >&2; exit 1; }
command -v depmod >/dev/null || { echo "modules.sh: depmod not found: install Debian package kmod (make deps)" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/lib/modules/$kver"
ln -s "$(cd "$tree" && pwd)/kernel" "$scratch/lib/modules/$kver/kernel"
cp "$tree"/modules.order "$tree"/modules.builtin* "$scratch/lib/modules/$kver/"
depmod -b "$scratch" "$kver"
rm -rf "$out"
mkdir -p "$out"
: > "$out/order"
for m in "$@"; do
	if ! deps=$(modprobe -d "$scratch" -S "$kver" --show-depends "$m" 2>/dev/null); then
		echo "modules.sh: $kver has no module $m: left out" >&2
		continue
	fi
	# builtin lines name no file; insmod lines are in load order, repeated across modules.
	for ko in $(awk '$1 == "insmod" { print $2 }' <<<"$deps"); do
		name=$(basename "$ko"); name=${name%%.ko*}
		grep -qx "$name" "$out/order" && continue
		# Newer Debian kernels compress their modules; busybox insmod wants them plain.
		case $ko in
		*.ko.xz) xz -dc "$ko" > "$out/$name.ko" ;;
		*.ko.zst) zstd -qdc "$ko" > "$out/$name.ko" ;;
		*.ko.gz) gzip -dc "$ko" > "$out/$name.ko" ;;
		*) cp "$ko" "$out/$name.ko" ;;
		esac
		echo "$name" >> "$out/order"
	done
done
