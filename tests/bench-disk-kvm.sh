#!/usr/bin/env bash
# bench-disk, on real KVM: the Linux guest's root disk throughput, measured
# inside the guest (sr-workload bench: O_DIRECT sequential 1 MiB and random
# 4 KiB reads and writes on a file of the ext4 root, guest/linux/diskbench.c)
# on QEMU's virtio-blk-pci and, once sr-run has --disk, on sr's virtio-blk,
# each on a fresh copy of the same image in the same directory with the same
# cache mode, one after the other in the same run.  Prints each VMM's rows,
# then the table with sr's fraction of QEMU's figure (issue 18 wants at least
# 0.8), and writes disk.tsv and disk.md in SR_BENCH_OUT ($O/bench).  sr's
# device counters (SR_DEVICE_STATS) follow its rows.
#   SR_BENCH_DISK_MIB   the benchmark file (64)
#   SR_BENCH_DISK_S     seconds a phase (5)
#   SR_BENCH_DISK_JOBS  threads doing synchronous I/O (1)
#   SR_BENCH_DISK_ROUNDS QEMU and sr, this many times (1), the order alternating
#                       by round; the table takes
#                       each figure's median over the rounds and lists every
#                       round's ratios: on a shared, loaded host one pair a
#                       few minutes apart measures the load's drift as much
#                       as the VMMs (QEMU's own seqwrite has read 16 to 183
#                       MB/s in the nested box from one run to the next)
#   SR_BENCH_DISK_CACHE writeback (default: the box's /tmp is tmpfs, which has
#                       no O_DIRECT) or none (host page cache bypassed)
#   SR_BENCH_DISK_DIR   where the image copies live (a fresh temporary directory)
#   SR_BENCH_DISK_ACCEL tcg tries the script where there is no KVM (QEMU only)
# Numbers, not a test: only a broken run fails.
set -u
O=${O:-build}
out=${SR_BENCH_OUT:-$O/bench}
mib=${SR_BENCH_DISK_MIB:-64}
secs=${SR_BENCH_DISK_S:-5}
jobs=${SR_BENCH_DISK_JOBS:-1}
rounds=${SR_BENCH_DISK_ROUNDS:-1}
cache=${SR_BENCH_DISK_CACHE:-writeback}
boot_s=${SR_BENCH_DISK_BOOT_S:-900}
accel=${SR_BENCH_DISK_ACCEL:-kvm}
kernel=build/box/kernel/vmlinuz
initrd=$O/guest/linux-initramfs.cpio.gz
image=$O/guest/linux-root.ext4
wl="bench,$mib,$secs,$jobs"
cmdline="console=ttyS0 reboot=k panic=-1 nomodeset i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd no_timer_check rdinit=/init quiet"
dir=$(mktemp -d "${SR_BENCH_DISK_DIR:-/tmp}/sr-bench-disk.XXXXXX")
export SR_RUN_DIR=$dir/run
mkdir -p "$out"
mkdir -m 700 "$SR_RUN_DIR"		# sr-run refuses a run directory others may enter
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
die() { echo "bench-disk: $*"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -15 "$2" | sed 's/^/  | /'; exit 1; }
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (make deps)"
[ -f "$kernel" ] && [ -f "$initrd" ] && [ -f "$image" ] || die "no $kernel, $initrd or $image (make linux-root)"

# wait_end PID SECONDS: until the VMM ends (the guest's reboot); 124 if it did
# not in time, else the VMM's status.
wait_end() {
	local end=$(( $(date +%s) + $2 ))
	while kill -0 "$1" 2>/dev/null; do
		[ "$(date +%s)" -lt $end ] || { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; return 124; }
		sleep 0.5
	done
	wait "$1"
}
# ended VMM STATUS: why wait_end's status is a failure.
ended() { [ "$2" -eq 124 ] && echo "did not finish in $boot_s s" || echo "exited $2"; }
rows=$out/disk.tsv
printf 'vmm\tphase\tMBps\tIOPS\tround\n' > "$rows"
# collect VMM CONSOLE ROUND: the guest's sr-bench rows into disk.tsv.
collect() {
	grep -q '^sr-workload: PASS: bench' "$2" || die "$1: the benchmark did not pass" "$2"
	tr -d '\r' < "$2" | sed -n 's/^sr-bench: \([a-z]*\) MB\/s \([0-9.]*\) IOPS \([0-9]*\) .*/\1 \2 \3/p' |
		while read -r phase mbs iops; do
			printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$phase" "$mbs" "$iops" "$3" >> "$rows"
		done
	grep '^sr-bench: ' "$2" | sed "s/^/  $1: /"
	# How long the guest took to mount its root: its speed on this VMM apart from the disk.
	tr -d '\r' < "$2" | grep '^sr-linux: root ' | sed "s/^/  $1: /"
}

# A line a minute: the box takes 200 s of console silence for a hang.
t0=$(date +%s)
( while sleep 60; do echo "  bench-disk: $(( $(date +%s) - t0 )) s"; done ) &
echo "bench-disk: ${mib} MiB file, ${secs} s a phase, ${jobs} job(s), cache=$cache, images in $dir"

# run_qemu ROUND, run_sr ROUND: one VMM's boot and benchmark on a fresh copy of the image.
run_qemu() {
	local round=$1
	cp --sparse=always "$image" "$dir/qemu.img"
	qemu-system-x86_64 -accel $accel -cpu $([ $accel = kvm ] && echo host || echo max) -m 256 -smp 1 -nodefaults -display none -no-reboot \
		-serial "file:$dir/qemu.out" -kernel "$kernel" -initrd "$initrd" \
		-append "$cmdline root=/dev/vda sr.workload=$wl" \
		-drive "file=$dir/qemu.img,if=none,id=vda,format=raw,cache=$cache,aio=threads" \
		-device virtio-blk-pci,drive=vda -device virtio-rng-pci </dev/null >"$dir/qemu.err" 2>&1 &
	wait_end $! "$boot_s" || { rc=$?; die "QEMU $(ended QEMU $rc)" "$dir/qemu.out"; }
	collect QEMU "$dir/qemu.out" "$round"
	rm -f "$dir/qemu.img"
}
run_sr() {
	local round=$1
	if [ $accel = kvm ] && $O/sr-run --help 2>&1 | grep -q -- '--disk'; then
		cp --sparse=always "$image" "$dir/sr.img"
		sr_cache=$cache
		[ "$cache" = none ] || sr_cache=writeback
		SR_DEVICE_STATS=1 $O/sr-run --name bench-disk --memory 256 --vcpus 1 --kernel "$kernel" --initrd "$initrd" \
			--disk "$dir/sr.img,cache=$sr_cache" --cmdline "root=/dev/vda sr.workload=$wl" \
			</dev/null >"$dir/sr.out" 2>&1 &
		wait_end $! "$boot_s" || { rc=$?; die "sr-run $(ended sr $rc)" "$dir/sr.out"; }
		collect sr "$dir/sr.out" "$round"
		# What the whole run (boot and fill included) cost: requests, interrupts, exits.
		grep -Eo '(virtio-blk 0: |exits to user space: ).*' "$dir/sr.out" | sed 's/^/  sr: /'
		rm -f "$dir/sr.img"
	else
		echo "  sr: not measured: $O/sr-run has no --disk yet"
	fi
}
# The order alternates by round (QEMU first in odd rounds, sr in even): the box's
# speed drifts with the host's load, and a fixed order would charge the drift to one.
for round in $(seq 1 "$rounds"); do
	[ "$rounds" -eq 1 ] || echo "bench-disk: round $round of $rounds ($([ $((round % 2)) -eq 1 ] && echo "QEMU first" || echo "sr first"))"
	if [ $((round % 2)) -eq 1 ]; then run_qemu "$round"; run_sr "$round"; else run_sr "$round"; run_qemu "$round"; fi
done
echo
echo "bench-disk: ${mib} MiB, ${secs} s a phase, ${jobs} job(s), cache=$cache, $rounds round(s) (medians); $(nproc) CPU(s), $(uname -r), $(qemu-system-x86_64 --version | head -1)"
awk -F'\t' '
	# The median of the values an entry holds, space-separated (mawk has no asort).
	function median(list,   v, n, i, j, t) {
		n = split(list, v, " ")
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
		return n == 0 ? "" : n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	NR == 1 { next }
	{
		mbs[$1, $2] = mbs[$1, $2] " " $3; iops[$1, $2] = iops[$1, $2] " " $4
		one[$1, $2, $5] = $3; if ($5 + 0 > rounds + 0) rounds = $5 + 0
		if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
	}
	END {
		printf "| %-9s | %10s | %9s | %10s | %9s | %9s |%s\n", "phase", "QEMU MB/s", "QEMU IOPS", "sr MB/s", "sr IOPS", "sr / QEMU", (rounds > 1 ? " each round |" : "")
		print "|-----------|-----------:|----------:|-----------:|----------:|----------:|" (rounds > 1 ? "------------|" : "")
		for (i = 1; i <= n; i++) {
			p = order[i]
			q = median(mbs["QEMU", p]); s = median(mbs["sr", p])
			r = (s != "" && q > 0) ? sprintf("%.2f%s", s / q, s / q >= 0.8 ? "" : " (<0.8)") : "-"
			each = ""
			for (k = 1; rounds > 1 && k <= rounds; k++)
				each = each " " ((one["QEMU", p, k] > 0 && one["sr", p, k] != "") ? sprintf("%.2f", one["sr", p, k] / one["QEMU", p, k]) : "-")
			printf "| %-9s | %10s | %9s | %10s | %9s | %9s |%s\n", p, q, median(iops["QEMU", p]),
			       s == "" ? "-" : s, s == "" ? "-" : median(iops["sr", p]), r, (rounds > 1 ? each " |" : "")
		}
	}' "$rows" | tee "$out/disk.md"
echo "table: $out/disk.md, rows: $rows"
