#!/usr/bin/env bash
# The Linux guest's root disk, proved on QEMU (-accel kvm) before sr has a
# disk of its own: Debian's kernel with sr's initramfs and the ext4 image the
# build makes (make linux-root) as a virtio-blk-pci disk, a virtio-rng-pci
# beside it.  Each section boots a copy of the image:
#   boot     root=/dev/vda, the disk writer (sr.workload=disk): the initramfs
#            loads the modules, mounts the disk and switches root; files
#            written with fsync and journalled, read back from the disk: PASS
#   verify   the same disk booted again (sr.workload=verify): every journalled
#            write is there after a power cycle: PASS
#   corrupt  one journalled file removed from the image (debugfs, on the
#            host): verify must say FAIL and name the slot
#   save     QEMU's live migration to a file mid-I/O (the writer running),
#            the source quit, the file restored with -incoming on the same
#            disk: the ticks go on and the writer reads every acknowledged
#            write back from the disk: PASS
# SR_DISK_ONLY="boot verify corrupt save" picks sections (all by default);
# SR_DISK_BOOT_S bounds each boot (600); SR_DISK_ACCEL=tcg tries the script
# where there is no KVM (slow).  Ends "N passed, N failed".
set -u
O=${O:-build}
kernel=build/box/kernel/vmlinuz
initrd=$O/guest/linux-initramfs.cpio.gz
image=$O/guest/linux-root.ext4
boot_s=${SR_DISK_BOOT_S:-600}
accel=${SR_DISK_ACCEL:-kvm}
rngdev="-device virtio-rng-pci"
[ -z "${SR_DISK_NO_RNG:-}" ] || rngdev=	# SR_DISK_NO_RNG=1: the disk alone
only=${SR_DISK_ONLY:-boot verify corrupt save}
cmdline="console=ttyS0 reboot=k panic=-1 nomodeset i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd no_timer_check rdinit=/init quiet root=/dev/vda"
qmp="python3 tests/qmp.py"
dir=$(mktemp -d /tmp/sr-disk.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -15 "$2" | sed 's/^/     | /'; }
section() { [[ " $only " == *" $1 "* ]]; }
die() { echo "disk-qemu: $*"; echo "0 passed, 1 failed"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (make deps)"
[ -f "$kernel" ] && [ -f "$initrd" ] && [ -f "$image" ] || die "no $kernel, $initrd or $image (make linux-root)"
ticks() { [ -f "$1" ] && tr -d '\r' < "$1" | sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p'; }

# qemu_start DISK OUT WORKLOAD [QEMU ARGS...]: QEMU in the background ($qpid), console to OUT.
qemu_start() {
	local disk=$1 out=$2 wl=$3
	shift 3
	rm -f "$dir/q.qmp"
	qemu-system-x86_64 -accel $accel -cpu $([ $accel = kvm ] && echo host || echo max) -m 256 -smp 1 -nodefaults -display none -no-reboot \
		-serial "file:$out" -qmp "unix:$dir/q.qmp,server=on,wait=off" \
		-kernel "$kernel" -initrd "$initrd" -append "$cmdline sr.workload=$wl" \
		-drive "file=$disk,if=none,id=vda,format=raw,cache=writeback" -device virtio-blk-pci,drive=vda \
		$rngdev "$@" </dev/null >"$out.err" 2>&1 &
	qpid=$!
}
# qemu_wait SECONDS: until QEMU ends (the guest's reboot -f with -no-reboot); 1 if it did not.
qemu_wait() {
	local end=$(( $(date +%s) + $1 ))
	while kill -0 $qpid 2>/dev/null; do
		[ "$(date +%s)" -lt $end ] || { kill $qpid 2>/dev/null; wait $qpid 2>/dev/null; return 1; }
		sleep 0.5
	done
	wait $qpid
}
# boot DISK OUT WORKLOAD: one whole boot to the guest's reboot; QEMU's status.
boot() {
	qemu_start "$1" "$2" "$3"
	qemu_wait "$boot_s" || { echo "(no end in $boot_s s)" >> "$2"; return 1; }
}
mounted() { grep -q '^sr-linux: root /dev/vda mounted .* rng virtio_rng' "$1"; }

cp --sparse=always "$image" "$dir/root.img"
# A line a minute: the box takes 200 s of console silence for a hang.
t0=$(date +%s)
( while sleep 60; do echo "     disk-qemu: $(( $(date +%s) - t0 )) s"; done ) &
echo "disk-qemu: $(qemu-system-x86_64 --version | head -1), image $image ($(du -h --apparent-size "$image" | cut -f1), $(sha256sum "$image" | cut -c1-16))"

if section boot; then
	a=$(date +%s)
	boot "$dir/root.img" "$dir/boot.out" disk,8,20; rc=$?
	if [ $rc -eq 0 ] && mounted "$dir/boot.out" && grep -q '^sr-workload: PASS: disk' "$dir/boot.out" &&
	   grep -q '^sr-linux: .* root /dev/vda ext4' "$dir/boot.out"; then
		ok "boot: root on virtio-blk-pci ($(sed -n 's/^sr-linux: root \/dev\/vda mounted //p' "$dir/boot.out")), the writer: $(grep -o '[0-9]* writes acknowledged ([^)]*), [0-9]* slots read back whole' "$dir/boot.out" | tail -1), in $(( $(date +%s) - a )) s"
	else
		bad "boot: QEMU exited $rc" "$dir/boot.out"
	fi
fi

if section verify; then
	section boot || boot "$dir/root.img" "$dir/boot.out" disk,4,20 >/dev/null
	boot "$dir/root.img" "$dir/verify.out" verify; rc=$?
	if [ $rc -eq 0 ] && mounted "$dir/verify.out" && grep -q '^sr-workload: PASS: verify' "$dir/verify.out"; then
		ok "verify: after a power cycle, $(grep -o '[0-9]* journalled writes up to seq [0-9]*, [0-9]* slots whole' "$dir/verify.out")"
	else
		bad "verify: QEMU exited $rc" "$dir/verify.out"
	fi
fi

if section corrupt; then
	cp --sparse=always "$dir/root.img" "$dir/bad.img"
	if [ ! -s "$dir/boot.out" ]; then
		boot "$dir/bad.img" "$dir/boot.out" disk,4,20 >/dev/null
		cp --sparse=always "$dir/bad.img" "$dir/root.img"
	fi
	debugfs -w -R "rm /data/s07" "$dir/bad.img" >"$dir/debugfs.out" 2>&1
	boot "$dir/bad.img" "$dir/corrupt.out" verify
	if mounted "$dir/corrupt.out" && grep -q '^sr-workload: slot s07 .*missing' "$dir/corrupt.out" &&
	   grep -q '^sr-workload: FAIL: verify' "$dir/corrupt.out"; then
		ok "corrupt: a journalled file removed from the disk: $(grep -m1 'slot s07' "$dir/corrupt.out" | sed 's/^sr-workload: //'), FAIL"
	else
		bad "corrupt: verify did not fail on a removed file" "$dir/corrupt.out"
	fi
	rm -f "$dir/bad.img"
fi

if section save; then
	cp --sparse=always "$image" "$dir/save.img"
	# 4 writes a second: in the box, a guest writing flat out starved QEMU's main
	# loop until the QMP socket was never accepted (QEMU 7.2 under nested TCG).
	qemu_start "$dir/save.img" "$dir/save.out" disk,30,${SR_DISK_SAVE_RATE:-4}
	end=$(( $(date +%s) + boot_s ))
	until [ "$(ticks "$dir/save.out" | tail -1)" -ge 5 ] 2>/dev/null || [ "$(date +%s)" -ge $end ]; do
		kill -0 $qpid 2>/dev/null || break
		sleep 0.5
	done
	echo "     save: migrating at tick $(ticks "$dir/save.out" | tail -1)"
	mig=$($qmp "$dir/q.qmp" migrate "exec:cat > $dir/vm.state" 300); mrc=$?
	last=$(ticks "$dir/save.out" | tail -1)
	$qmp "$dir/q.qmp" quit >/dev/null 2>&1; wait $qpid 2>/dev/null
	qemu_start "$dir/save.img" "$dir/restore.out" disk,30,${SR_DISK_SAVE_RATE:-4} -incoming "exec:cat $dir/vm.state"
	$qmp "$dir/q.qmp" wait-loaded 300 >/dev/null && $qmp "$dir/q.qmp" cont >/dev/null
	qemu_wait "$boot_s"; rc=$?
	first=$(ticks "$dir/restore.out" | head -1)
	if [ $mrc -eq 0 ] && [ $rc -eq 0 ] && [ -n "$last" ] && [ -n "$first" ] && [ "$first" -ge "$last" ] &&
	   [ "$first" -le $((last + 1)) ] && ! grep -q '^sr-workload: disk writer' "$dir/restore.out" &&
	   grep -q '^sr-workload: PASS: disk' "$dir/restore.out"; then
		ok "save: QEMU live-migrated to a file at tick $last mid-I/O ($(echo "$mig" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total-time"], "ms,", d["downtime"], "ms downtime")')), restored on the same disk: ticks went on from $first, $(grep -o '[0-9]* writes acknowledged ([^)]*), [0-9]* slots read back whole' "$dir/restore.out")"
	else
		bad "save: migrate $mrc ($mig), restored QEMU $rc, ticks $last then $first" "$dir/restore.out"
		tail -n 5 "$dir/save.out" "$dir/save.out.err" "$dir/restore.out.err" 2>&1 | sed 's/^/     | /'
	fi
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
