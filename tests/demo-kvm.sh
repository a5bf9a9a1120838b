#!/usr/bin/env bash
# The README demo, on real KVM: boot Debian's kernel with sr's workload on two
# vCPUs, live-save it mid-workload, inspect the image, restore it, and watch
# the workload carry on to its verdict.
set -u
O=${O:-build}
kernel=build/box/kernel/vmlinuz
initrd=$O/guest/linux-initramfs.cpio.gz
export SR_RUN_DIR=$(mktemp -d /tmp/sr-demo.XXXXXX)
img=$SR_RUN_DIR/linux.img
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$SR_RUN_DIR"' EXIT
say() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
up() { for _ in $(seq 1 600); do $O/sr-ctl "$1" status >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

say "sr-run --kernel vmlinuz --initrd initramfs --vcpus 2: Linux with a workload that rewrites and verifies 32 MiB every second"
$O/sr-run --name demo --vcpus 2 --kernel $kernel --initrd $initrd --cmdline "sr.workload=32,20" \
	</dev/null > "$SR_RUN_DIR/before.out" 2>&1 &
up demo || { echo "demo: the guest did not come up"; exit 1; }
for _ in $(seq 1 600); do grep -q "tick 4 " "$SR_RUN_DIR/before.out" && break; sleep 0.2; done
grep -v '^\[ *[0-9]' "$SR_RUN_DIR/before.out" | tr -d '\r'

say "sr-save --live --stats demo $img   (copied while Linux runs; paused only for the remainder)"
$O/sr-save --live --stats demo "$img" || exit 1
wait
last=$(tr -d '\r' < "$SR_RUN_DIR/before.out" | sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' | tail -1)

say "sr-dump $img"
$O/sr-dump "$img" | sed -n '1,4p;/HVM_CONTEXT/p;/VCPU_CONTEXT/p;/ DEVICE /p;/ END /p;/^$/,$p'

say "sr-restore $img   (a new VM is built from the image and resumed)"
$O/sr-restore -v --name demo "$img" </dev/null 2>&1 | tr -d '\r' | grep -v '^\[ *[0-9]' | tee "$SR_RUN_DIR/after.out"

say "what happened"
if grep -q '^sr-workload: PASS' "$SR_RUN_DIR/after.out"; then
	echo "Linux was live-saved at workload tick $last and its VM torn down; a new VM built from the"
	echo "$(( $(stat -c %s "$img") >> 20 )) MiB image resumed it at tick $((last + 1)) with no restart, and the workload found"
	echo "every word of its 32 MiB intact through its last tick (PASS)."
else
	echo "The restored workload did NOT pass: see its output above."
	exit 1
fi
