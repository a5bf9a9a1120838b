#!/usr/bin/env bash
# Demo until sr-save lands: write a synthetic two-vCPU image with three
# pre-copy rounds, dump it, corrupt one byte, and show sr-dump refusing it.
set -u
O=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s O="$O" "$O/tests/mkimage" >/dev/null
echo "== writing a synthetic 16 MiB, 2-vCPU image (3 pre-copy rounds, lz4)"
"$O/tests/mkimage" -m 16 -v 2 -i 2 -d 300 "$tmp/demo.img"
echo "== sr-dump $tmp/demo.img"
"$O/sr-dump" "$tmp/demo.img"
echo "== flipping one byte in the middle and verifying again"
printf '\x55' | dd of="$tmp/demo.img" bs=1 seek=$(( $(stat -c %s "$tmp/demo.img") / 2 )) conv=notrunc status=none
"$O/sr-dump" --verify "$tmp/demo.img"
echo "== sr-dump --verify exited $? (1 = corrupt image)"
