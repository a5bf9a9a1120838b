#!/usr/bin/env bash
# Does live save converge on the demo's workload?  Boots the demo's Linux
# guest (2 vCPUs, 256 MiB, 32 MiB rewritten every second), live-saves it
# N times with -c (it runs on between saves), and checks each save against
# the targets: at most 10 rounds, at most 1.5 x the guest's pages sent, the
# downtime target met, an image that verifies (the demo restores one: this
# measures convergence).  One row per save, printed as it ends.
#   SR_CONVERGE_RUNS (10), SR_CONVERGE_ARGS (extra sr-save options)
set -u
O=${O:-build}
runs=${SR_CONVERGE_RUNS:-10}
extra=${SR_CONVERGE_ARGS:-}
kernel=build/box/kernel/vmlinuz
initrd=$O/guest/linux-initramfs.cpio.gz
export SR_RUN_DIR=$(mktemp -d /tmp/sr-conv.XXXXXX)
trap 'exec 3>&- 2>/dev/null; kill $(jobs -p) 2>/dev/null; rm -rf "$SR_RUN_DIR"' EXIT
pass=0 fail=0
ticks() { tr -d '\r' < "$1" | sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p'; }

$O/sr-run --name conv --vcpus 2 --kernel $kernel --initrd $initrd --cmdline "sr.workload=32,0" \
	</dev/null > "$SR_RUN_DIR/run.out" 2>&1 &
for k in $(seq 1 1500); do
	[ "$(ticks "$SR_RUN_DIR/run.out" | wc -l)" -ge 3 ] && break
	[ $((k % 150)) -eq 0 ] && echo "converge: still waiting for the guest's ticks after $((k / 5)) s: $(tr -d '\r' < "$SR_RUN_DIR/run.out" | tail -1 | cut -c1-100)"
	sleep 0.2
done
if [ "$(ticks "$SR_RUN_DIR/run.out" | wc -l)" -lt 3 ]; then
	echo "converge: the guest showed no workload ticks in 300 s"; tail -5 "$SR_RUN_DIR/run.out"
	echo "0 passed, 1 failed"; exit 1
fi
printf '%4s %7s %12s %10s %12s %9s  %s\n' run rounds "pages/RAM" "downtime" "target met" throttle "stop reason"
for i in $(seq 1 "$runs"); do
	img=$SR_RUN_DIR/c$i.img
	timeout -k 5 600 $O/sr-save --json --live -c $extra conv "$img" >"$SR_RUN_DIR/save.json" 2>"$SR_RUN_DIR/save.err"; rc=$?
	if [ $rc -ne 0 ] || ! $O/sr-dump --verify "$img" 2>>"$SR_RUN_DIR/save.err"; then
		fail=$((fail + 1)); echo "FAIL run $i: sr-save exited $rc: $(tail -2 "$SR_RUN_DIR/save.err")"; continue
	fi
	$O/sr-dump --json "$img" > "$SR_RUN_DIR/d.json"
	read -r rounds ratio tmax < <(python3 -c "
import json; d = json.load(open('$SR_RUN_DIR/d.json')); t = d['totals']
print(len(d['iterations']), '%.3f' % (t['pages'] * 4096 / t['memory_bytes']), max(i['throttle_pct'] for i in d['iterations']))")
	# sr-save --json: the summary's numbers (docs/control.md, "schema: save").
	IFS=$'\t' read -r down met why < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print("%.1f\t%s\t%s" % (s["downtime_ns"] / 1e6, "yes" if s["downtime_ns"] <= s["downtime_target_ns"] else "no",
      s["stop_reason"]))' "$SR_RUN_DIR/save.json")
	verdict=ok
	[ "$rounds" -le 10 ] && [ "$met" = yes ] || verdict=FAIL
	awk -v r="$ratio" 'BEGIN { exit !(r <= 1.5) }' || verdict=FAIL
	printf '%4s %7s %12s %8s ms %12s %8s%%  %s: %s\n' "$i" "$rounds" "$ratio" "${down:-?}" "$met" "$tmax" "$verdict" "$why"
	[ $verdict = ok ] && pass=$((pass + 1)) || fail=$((fail + 1))
	rm -f "$img"
	sleep 2
done
echo "converge: $pass passed, $fail failed"
[ $fail -eq 0 ]
