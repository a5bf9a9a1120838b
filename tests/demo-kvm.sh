#!/usr/bin/env bash
# The README demo, on real KVM: boot Debian's kernel on two vCPUs with its
# root file system on sr's virtio disk (a copy of the ext4 image the build
# makes) and sr's workload, live-save it mid-workload, inspect the image,
# restore it (the disk reopened), and watch the workload carry on from the
# next tick until it is told to stop.  SR_DEMO_DISK=0: no disk, the workload
# runs from the initramfs (pci=off), as before the devices existed.
#
# Nothing here depends on luck: the workload runs until told to stop (so it
# outlives any save), every wait has a deadline with a message that says what
# did not happen, and the verdict checks the ticks on both sides.
set -u
O=${O:-build}
kernel=build/box/kernel/vmlinuz
initrd=$O/guest/linux-initramfs.cpio.gz
rootimg=$O/guest/linux-root.ext4
disk=${SR_DEMO_DISK:-1}
boot_s=${SR_DEMO_BOOT_S:-300}		# Linux boot to its first ticks (nested TCG is slow)
save_s=${SR_DEMO_SAVE_S:-600}		# one live save
after_ticks=3				# ticks the restored workload must show before "stop"
export SR_RUN_DIR=$(mktemp -d /tmp/sr-demo.XXXXXX)
img=$SR_RUN_DIR/linux.img
trap 'exec 3>&- 2>/dev/null; kill $(jobs -p) 2>/dev/null; rm -rf "$SR_RUN_DIR"' EXIT
say() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
fail() { echo "demo: FAILED: $*"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -20 "$2" | sed 's/^/  | /'; exit 1; }
ticks() { tr -d '\r' < "$1" | sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p'; }
# Waits up to $2 seconds for $1 to show at least $3 ticks after tick $4.
wait_ticks() {
	local start=$(date +%s) n next=30
	while [ "$(date +%s)" -lt $((start + $2)) ]; do
		n=$(ticks "$1" | awk -v after="$4" '$1 > after' | wc -l)
		[ "$n" -ge "$3" ] && return 0
		grep -q 'sr-workload: FAIL\|sr-workload: PASS' "$1" 2>/dev/null && return 1
		if [ $(( $(date +%s) - start )) -ge $next ]; then
			echo "demo: still waiting for workload ticks after ${next} s; console's last line: $(tr -d '\r' < "$1" | tail -1 | cut -c1-100)"
			next=$((next + 30))
		fi
		sleep 0.2
	done
	return 1
}

devices=() disks=() root= what="Linux"
if [ "$disk" != 0 ]; then
	[ -f "$rootimg" ] || fail "no $rootimg (make linux-root)"
	cp --sparse=always "$rootimg" "$SR_RUN_DIR/root.img" || fail "copying $rootimg"
	devices=(--disk "$SR_RUN_DIR/root.img" --rng) root="root=/dev/vda "
	disks=(--disk "$SR_RUN_DIR/root.img")	# sr-restore opens only the disks it is told
	what="Linux with its root on sr's virtio disk (a copy of $rootimg) and"
fi
say "sr-run --kernel vmlinuz --initrd initramfs ${devices[*]:+--disk root.img --rng }--vcpus 2: $what a workload that rewrites and verifies 32 MiB every second until told to stop"
$O/sr-run --name demo --vcpus 2 --kernel $kernel --initrd $initrd "${devices[@]}" --cmdline "${root}sr.workload=32,0" \
	</dev/null > "$SR_RUN_DIR/before.out" 2>&1 &
wait_ticks "$SR_RUN_DIR/before.out" "$boot_s" 3 0 ||
	fail "Linux showed no 3 workload ticks within ${boot_s} s (SR_DEMO_BOOT_S); its console:" "$SR_RUN_DIR/before.out"
grep -v '^\[ *[0-9]' "$SR_RUN_DIR/before.out" | tr -d '\r'
[ "$disk" = 0 ] || tr -d '\r' < "$SR_RUN_DIR/before.out" | grep -q '^sr-linux: root /dev/vda mounted' ||
	fail "Linux did not mount its root from the virtio disk" "$SR_RUN_DIR/before.out"

say "sr-save --live --stats demo $img   (copied while Linux runs; paused only for the remainder)"
timeout -k 10 "$save_s" $O/sr-save --live --stats demo "$img"; rc=$?
[ $rc -eq 0 ] || fail "sr-save exited $rc$([ $rc -eq 124 ] && echo " (still saving after ${save_s} s: killed)")"
wait
last=$(ticks "$SR_RUN_DIR/before.out" | tail -1)
[ -n "$last" ] || fail "no tick before the save" "$SR_RUN_DIR/before.out"

say "sr-dump $img"
$O/sr-dump "$img" | sed -n '1,4p;/THROTTLE/p;/HVM_CONTEXT/p;/VCPU_CONTEXT/p;/ DISK /p;/ DEVICE /p;/ END /p;/^$/,$p'

say "sr-restore ${disks[*]:+--disk root.img }$img   (a new VM is built from the image and resumed; after $after_ticks more ticks the demo types \"stop\" on its console)"
mkfifo "$SR_RUN_DIR/console-in"
exec 3<>"$SR_RUN_DIR/console-in"
$O/sr-restore -v --name demo "${disks[@]}" "$img" <"$SR_RUN_DIR/console-in" > "$SR_RUN_DIR/after.raw" 2>&1 &
rpid=$!
tail -f -n +1 --pid=$rpid "$SR_RUN_DIR/after.raw" | tr -d '\r' | grep --line-buffered -v '^\[ *[0-9]' &
wait_ticks "$SR_RUN_DIR/after.raw" "$boot_s" "$after_ticks" "$last" ||
	fail "the restored workload showed no $after_ticks ticks after tick $last within ${boot_s} s" "$SR_RUN_DIR/after.raw"
echo stop >&3
for _ in $(seq 1 300); do kill -0 $rpid 2>/dev/null || break; sleep 0.2; done
kill -0 $rpid 2>/dev/null && { kill $rpid; fail "the restored domain did not end within 60 s of \"stop\""; }
wait $rpid; rrc=$?
sleep 0.3	# let tail print the last lines

say "what happened"
first=$(ticks "$SR_RUN_DIR/after.raw" | head -1)
if [ $rrc -eq 0 ] && tr -d '\r' < "$SR_RUN_DIR/after.raw" | grep -q '^sr-workload: PASS' &&
   [ "$first" = "$((last + 1))" ] && ! grep -q 'sr-workload: [0-9]* MiB' "$SR_RUN_DIR/after.raw"; then
	echo "Linux was live-saved after workload tick $last and its VM torn down; a new VM built from the"
	echo "$(( $(stat -c %s "$img") >> 20 )) MiB image resumed it at tick $first with no restart, and the workload found"
	echo "every word of its 32 MiB intact through tick $(ticks "$SR_RUN_DIR/after.raw" | tail -1), then stopped when told (PASS)."
	[ "$disk" = 0 ] || echo "Its root file system stayed on the virtio disk, reopened by the restore (--disk) and checked against the image's DISK record."
else
	fail "the restored workload did not pass (sr-restore exit $rrc, first tick '$first' after $last)" "$SR_RUN_DIR/after.raw"
fi
