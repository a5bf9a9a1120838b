#!/usr/bin/env bash
# bench-peer, on real KVM: sr against QEMU on the same Linux guest in the same
# run.  Debian's kernel with sr's initramfs, SR_PEER_MEM MiB of RAM (1024), the
# workload filling SR_PEER_DATA MiB (600):
#   dd       that many bytes to the same directory: the write limit
#   cold     the guest paused and saved (sr-save; QEMU: QMP stop, migrate
#            "exec:cat > FILE" with max-bandwidth lifted), then restored until the
#            guest is loaded (sr-restore --paused until its socket answers;
#            QEMU -incoming "exec:cat FILE" until it leaves "inmigrate"); each
#            restored guest is then resumed and must print its next tick
#   live     the workload rewriting SR_PEER_LIVE_MIB (10% of RAM) every second:
#            sr-save --live (50 ms target) against QEMU's live migration with
#            its default 300 ms downtime limit and again with 50 ms, each given
#            SR_PEER_LIVE_S (180) seconds to converge
#   migrate  the same live workload moved over TCP between two network
#            namespaces joined by a veth pair (tests/netns.sh; a link capped by
#            tbf at SR_PEER_LINK_MBIT when set): sr-migrate to an sr-restore
#            --listen against QEMU's migrate "tcp:" to a QEMU -incoming, 50 ms
#            downtime target each: total time, downtime, bytes; each moved
#            guest must print its next tick there; then both again over TLS 1.3
#            with one pre-shared key (sr-migrate --tls-psk, QEMU's
#            tls-creds-psk), and the ratio of sr's encrypted to plaintext rate
# SR_PEER_ONLY="cold live migrate" (all by default) picks the sections to run.
# Prints each row as it is measured, then the table (wall time, bytes, MB/s,
# fraction of dd's rate, ratio to QEMU), and writes peer.tsv and peer.png in
# SR_BENCH_OUT ($O/bench).  Numbers, not a test: only a broken run fails.
set -u
O=${O:-build}
out=${SR_BENCH_OUT:-$O/bench}
mem=${SR_PEER_MEM:-1024}
data=${SR_PEER_DATA:-600}
live_mib=${SR_PEER_LIVE_MIB:-$((mem / 10))}
live_s=${SR_PEER_LIVE_S:-180}
boot_s=${SR_PEER_BOOT_S:-900}
only=${SR_PEER_ONLY:-cold live migrate}
section() { [[ " $only " == *" $1 "* ]]; }
kernel=build/box/kernel/vmlinuz
initrd=$O/guest/linux-initramfs.cpio.gz
cmdline="console=ttyS0 reboot=k panic=-1 pci=off nomodeset i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd no_timer_check rdinit=/init quiet"
qmp="python3 tests/qmp.py"
export SR_RUN_DIR=$(mktemp -d /tmp/sr-peer.XXXXXX)
dir=$SR_RUN_DIR
mkdir -p "$out"
trap 'exec 9>&- 2>/dev/null; kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
die() { echo "bench-peer: $*"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -15 "$2" | sed 's/^/  | /'; exit 1; }
ms() { date +%s%3N; }
ticks() { [ -f "$1" ] && tr -d '\r' < "$1" | sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p'; }
# nap: 10 ms without a fork (a process per poll would take CPU from what is measured).
mkfifo "$SR_RUN_DIR/nap" && exec 9<>"$SR_RUN_DIR/nap"
nap() { read -r -t 0.01 -u 9 _ || true; }
# wait_tick FILE AFTER SECONDS: until FILE shows a tick above AFTER.
wait_tick() {
	local end=$(( $(date +%s) + $3 ))
	while [ "$(date +%s)" -lt $end ]; do
		[ "$(ticks "$1" | tail -1)" -gt "$2" ] 2>/dev/null && return 0
		grep -q 'sr-workload: FAIL' "$1" 2>/dev/null && return 1
		sleep 0.2
	done
	return 1
}
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (make deps)"
[ -f "$kernel" ] && [ -f "$initrd" ] || die "no $kernel or $initrd (make fetches them)"

rows=$out/peer.tsv
printf 'row\twall_ms\tbytes\tdowntime_ms\tnote\n' > "$rows"
row() {	# name wall_ms bytes downtime_ms note
	printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$rows"
	printf '  %-26s %9s ms %12s bytes %10s ms downtime  %s\n' "$@"
}

echo "bench-peer: ${mem} MiB guest, workload ${data} MiB (cold) / ${live_mib} MiB per second (live), files in $dir"

# ------------------------------------------------------------------ the limit
a=$(ms)
dd if=/dev/zero of="$dir/dd" bs=1M count="$data" conv=fsync 2>/dev/null || die "dd failed"
row dd $(( $(ms) - a )) $((data << 20)) - "write limit: ${data} MiB to $dir"
rm -f "$dir/dd"

# ------------------------------------------------------------------ guests
sr_start() {	# workload MiB
	$O/sr-run --name peer --memory "$mem" --vcpus 1 --kernel "$kernel" --initrd "$initrd" \
		--cmdline "sr.workload=$1,0" </dev/null >"$dir/sr.out" 2>&1 &
	wait_tick "$dir/sr.out" 0 "$boot_s" || die "sr's guest showed no workload tick in $boot_s s" "$dir/sr.out"
}
qemu_start() {	# workload MiB [extra args]
	local mib=$1
	shift
	rm -f "$dir/q.qmp"
	qemu-system-x86_64 -accel kvm -cpu host -m "$mem" -smp 1 -nodefaults -display none \
		-no-reboot -serial "file:$dir/q.out" -qmp "unix:$dir/q.qmp,server=on,wait=off" \
		-kernel "$kernel" -initrd "$initrd" -append "$cmdline sr.workload=$mib,0" "$@" \
		</dev/null >"$dir/q.err" 2>&1 &
	qpid=$!
}
qemu_quit() { $qmp "$dir/q.qmp" quit >/dev/null 2>&1; wait $qpid 2>/dev/null; }
# qemu_migrate FILE SECONDS [--stop]: sets mig (query-migrate, with wall_ms); 0 done, 3 timeout.
qemu_migrate() {
	mig=$($qmp "$dir/q.qmp" migrate "exec:cat > $1" "$2" ${3:-})
}
field() { echo "$mig" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ------------------------------------------------------------------ cold: sr
if section cold; then
echo "bench-peer: cold save and restore, sr"
sr_start "$data"
last=$(ticks "$dir/sr.out" | tail -1)
a=$(ms); $O/sr-save -q peer "$dir/sr.img" || die "sr-save failed"; b=$(ms)
wait
row "sr save (cold)" $((b - a)) "$(stat -c %s "$dir/sr.img")" $((b - a)) "sr-save, default options"
a=$(ms)
$O/sr-restore -v --paused --name peer "$dir/sr.img" </dev/null >"$dir/sr2.out" 2>&1 &
rpid=$!
# The runner makes its socket once the image is loaded.
for _ in $(seq 1 360000); do [ -S "$SR_RUN_DIR/peer.sock" ] && break; nap; done
b=$(ms)
$O/sr-ctl resume peer >/dev/null
wait_tick "$dir/sr2.out" "$last" 300 || die "sr's restored guest did not tick" "$dir/sr2.out"
$O/sr-ctl destroy peer >/dev/null 2>&1; wait $rpid 2>/dev/null
row "sr restore (cold)" $((b - a)) "$(stat -c %s "$dir/sr.img")" - "to a loaded, paused guest (its own figures: stream read and verified in $(sed -n 's/.*stream read and verified in \([0-9.]*\) ms.*/\1/p' "$dir/sr2.out") ms, vCPUs ready to run $(sed -n 's/.*vCPUs start \([0-9.]*\) ms after.*/\1/p' "$dir/sr2.out") ms after it started; $(grep -o '[0-9]* of [0-9]* records read straight into guest memory' "$dir/sr2.out")); it then ran on"
rm -f "$dir/sr.img"

# ------------------------------------------------------------------ cold: QEMU
echo "bench-peer: cold save and restore, QEMU"
qemu_start "$data"
wait_tick "$dir/q.out" 0 "$boot_s" || die "QEMU's guest showed no workload tick in $boot_s s" "$dir/q.out"
last=$(ticks "$dir/q.out" | tail -1)
$qmp "$dir/q.qmp" migrate-set-parameters '{"max-bandwidth": 1000000000000}' >/dev/null
qemu_migrate "$dir/q.img" 3600 --stop || die "QEMU's migration failed: $mig" "$dir/q.err"
qemu_quit
wall=$(field 'd["wall_ms"]')
row "QEMU save (cold)" "$wall" "$(stat -c %s "$dir/q.img")" "$wall" "stop, migrate exec:cat"
: > "$dir/q.out"
a=$(ms)
qemu_start "$data" -incoming "exec:cat $dir/q.img"
st=$($qmp "$dir/q.qmp" wait-loaded 3600) || die "QEMU did not load the image" "$dir/q.err"
b=$(ms)
$qmp "$dir/q.qmp" cont >/dev/null
wait_tick "$dir/q.out" "$last" 300 || die "QEMU's restored guest did not tick (state '$st')" "$dir/q.out"
qemu_quit
row "QEMU restore (cold)" $((b - a)) "$(stat -c %s "$dir/q.img")" - "-incoming exec:cat, until loaded ($st); it then ran on"
rm -f "$dir/q.img"
fi

# ------------------------------------------------------------------ live
if section live; then
echo "bench-peer: live, the workload rewriting ${live_mib} MiB a second"
sr_start "$live_mib"
sleep 5
a=$(ms)
save=$(timeout "$live_s" $O/sr-save --live --json peer "$dir/sr.img" 2>"$dir/save.err") || die "sr-save --live failed: $(tail -1 "$dir/save.err")"
b=$(ms)
wait
# sr-save --json (docs/control.md, "schema: save"): downtime, rounds and why pre-copy stopped.
IFS=$'\t' read -r down rounds < <(echo "$save" | python3 -c '
import json, sys
s = json.load(sys.stdin)["summary"]
print("%.1f\t%d rounds (%s)" % (s["downtime_ns"] / 1e6, s["rounds"], s["stop_reason"]))')
row "sr live (50 ms)" $((b - a)) "$(stat -c %s "$dir/sr.img")" "$down" "$rounds"
rm -f "$dir/sr.img"
for limit in 300 50; do
	: > "$dir/q.out"
	qemu_start "$live_mib"
	wait_tick "$dir/q.out" 0 "$boot_s" || die "QEMU's guest showed no workload tick" "$dir/q.out"
	sleep 5
	$qmp "$dir/q.qmp" migrate-set-parameters "{\"max-bandwidth\": 1000000000000, \"downtime-limit\": $limit}" >/dev/null
	qemu_migrate "$dir/q.img" "$live_s"; rc=$?
	if [ $rc -eq 0 ]; then
		row "QEMU live ($limit ms)" "$(field 'd["total-time"]')" "$(stat -c %s "$dir/q.img")" \
			"$(field 'd["downtime"]')" "$(field 'str(d["ram"]["dirty-sync-count"]) + " dirty syncs"')"
	else
		row "QEMU live ($limit ms)" "$(field 'd["wall_ms"]' 2>/dev/null)" - - "did not converge in ${live_s} s (cancelled)"
	fi
	qemu_quit
	rm -f "$dir/q.img"
done
fi

# ------------------------------------------------------------------ migrate
if section migrate; then
echo "bench-peer: migration over a veth pair between two network namespaces${SR_PEER_LINK_MBIT:+, ${SR_PEER_LINK_MBIT} Mbit/s}"
. tests/netns.sh
netns_up "$dir" || die "two network namespaces joined by a veth pair" "$dir/net.out"
if [ -n "${SR_PEER_LINK_MBIT:-}" ]; then
	tc qdisc add dev sr-near root tbf rate "${SR_PEER_LINK_MBIT}mbit" burst 256kb latency 100ms ||
		die "tc could not cap the link"
fi
# Both speak TLS 1.3 with the same pre-shared key file (psktool's format, keys.psk).
mkdir -p "$dir/psk"
echo "peer:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$dir/psk/keys.psk"
# sr_migrate_row NAME PORT [sr-migrate/sr-restore TLS options]: the live workload moved by sr.
sr_migrate_row() {
	local name=$1 port=$2 tlsopt
	shift 2
	tlsopt=${*:---insecure-plaintext}
	sr_start "$live_mib"
	sleep 5
	far $O/sr-restore -v --listen $port $tlsopt --name peer --accept-timeout 600 </dev/null >"$dir/sr-far.out" 2>&1 &
	fpid=$!
	for _ in $(seq 1 400); do grep -q 'listening on' "$dir/sr-far.out" && break; nap; done
	last=$(ticks "$dir/sr.out" | tail -1)
	a=$(ms)
	mig=$(timeout "$live_s" $O/sr-migrate --stats --json "$@" peer tcp:10.77.0.2:$port 2>"$dir/mig.err") || die "sr-migrate failed: $(tail -1 "$dir/mig.err")" "$dir/sr-far.out"
	b=$(ms)
	wait_tick "$dir/sr-far.out" "$last" 300 || die "the migrated guest did not tick there" "$dir/sr-far.out"
	SR_RUN_DIR=$dir/far $O/sr-ctl destroy peer >/dev/null 2>&1; wait $fpid 2>/dev/null
	# The guest's whole pause: from the final round to the receiver's "running".
	# sr-migrate --json: the numbers; --stats still says the transport (on stderr).
	IFS=$'\t' read -r down bytes rounds stream < <(echo "$mig" | python3 -c '
import json, sys
s = json.load(sys.stdin)["summary"]
print("%.1f\t%d\t%d rounds (%s)\t%.1f" % (s["paused_ns"] / 1e6, s["bytes"], s["rounds"], s["stop_reason"],
                                        s["downtime_ns"] / 1e6))')
	row "$name" $((b - a)) "${bytes:--}" "$down" "sr-migrate tcp:, $(sed -n 's/^transport: \([^;]*\).*/\1/p' "$dir/mig.err"), $rounds, downtime from the pause to the receiver's running (stream part $stream ms); it ticked on there"
	wait
}
# qemu_migrate_row NAME PORT [tls]: the same with QEMU (TLS: tls-creds-psk, the same key file).
qemu_migrate_row() {
	local name=$1 port=$2 tls=${3:-} note="migrate tcp:"
	: > "$dir/q.out"
	if [ -n "$tls" ]; then
		qemu_start "$live_mib" -object tls-creds-psk,id=tls0,endpoint=client,dir="$dir/psk",username=peer
		note="migrate tcp: with tls-creds-psk"
	else
		qemu_start "$live_mib"
	fi
	wait_tick "$dir/q.out" 0 "$boot_s" || die "QEMU's guest showed no workload tick" "$dir/q.out"
	sleep 5
	spid=$qpid
	: > "$dir/qf.out"
	rm -f "$dir/qf.qmp"
	far qemu-system-x86_64 -accel kvm -cpu host -m "$mem" -smp 1 -nodefaults -display none \
		-no-reboot -serial "file:$dir/qf.out" -qmp "unix:$dir/qf.qmp,server=on,wait=off" \
		-kernel "$kernel" -initrd "$initrd" -append "$cmdline sr.workload=$live_mib,0" \
		${tls:+-object tls-creds-psk,id=tls0,endpoint=server,dir=$dir/psk} \
		-incoming defer </dev/null >"$dir/qf.err" 2>&1 &
	fpid=$!
	for _ in $(seq 1 100); do $qmp "$dir/qf.qmp" query-status >/dev/null 2>&1 && break; sleep 0.2; done
	[ -n "$tls" ] && $qmp "$dir/qf.qmp" migrate-set-parameters '{"tls-creds": "tls0"}' >/dev/null
	$qmp "$dir/qf.qmp" migrate-incoming "{\"uri\": \"tcp:10.77.0.2:$port\"}" >/dev/null
	last=$(ticks "$dir/q.out" | tail -1)
	$qmp "$dir/q.qmp" migrate-set-parameters "{\"max-bandwidth\": 1000000000000, \"downtime-limit\": 50${tls:+, \"tls-creds\": \"tls0\"}}" >/dev/null
	mig=$($qmp "$dir/q.qmp" migrate tcp:10.77.0.2:$port "$live_s"); rc=$?
	if [ $rc -eq 0 ]; then
		$qmp "$dir/qf.qmp" wait-loaded 60 >/dev/null && $qmp "$dir/qf.qmp" cont >/dev/null 2>&1
		wait_tick "$dir/qf.out" "$last" 300 || die "QEMU's migrated guest did not tick there" "$dir/qf.out"
		row "$name" "$(field 'd["total-time"]')" "$(field 'd["ram"]["transferred"]')" \
			"$(field 'd["downtime"]')" "$note, $(field 'str(d["ram"]["dirty-sync-count"])') dirty syncs; it ticked on there"
	else
		row "$name" "$(field 'd["wall_ms"]' 2>/dev/null)" - - "did not converge in ${live_s} s (cancelled): $mig"
	fi
	qemu_quit
	$qmp "$dir/qf.qmp" quit >/dev/null 2>&1; wait $fpid 2>/dev/null
}
sr_migrate_row "sr migrate (50 ms)" 7801
sr_migrate_row "sr migrate TLS (50 ms)" 7803 --tls-psk "$dir/psk/keys.psk"
qemu_migrate_row "QEMU migrate (50 ms)" 7802
qemu_migrate_row "QEMU migrate TLS (50 ms)" 7804 tls
netns_down
fi

# ------------------------------------------------------------------ table
echo
echo "bench-peer: ${mem} MiB guest, ${data} MiB of data; $(nproc) CPU(s), $(uname -r), $(qemu-system-x86_64 --version | head -1)"
awk -F'\t' '
	NR == 1 { next }
	{ name[NR] = $1; wall[NR] = $2; bytes[NR] = $3; down[NR] = $4; note[NR] = $5; n = NR; key[$1] = NR }
	END {
		dd = bytes[key["dd"]] / 1e6 / (wall[key["dd"]] / 1000)
		printf "| %-20s | %9s | %11s | %7s | %8s | %8s | %11s |\n", "", "wall ms", "bytes", "MB/s", "of dd", "vs QEMU", "downtime ms"
		printf "|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------", "----------:", "------------:", "--------:", "---------:", "---------:", "------------:"
		for (i = 2; i <= n; i++) {
			mbs = (bytes[i] != "-" && wall[i] > 0) ? bytes[i] / 1e6 / (wall[i] / 1000) : 0
			peer = name[i]; sub(/^sr /, "QEMU ", peer)
			vs = "-"
			if (name[i] ~ /^sr / && (peer in key) && bytes[key[peer]] == "-")
				vs = "QEMU n/c"
			else if (name[i] ~ /^sr / && (peer in key) && wall[key[peer]] > 0)
				vs = sprintf("%.2fx", wall[i] / wall[key[peer]])
			printf "| %-20s | %9s | %11s | %7s | %8s | %8s | %11s |\n", name[i], wall[i], bytes[i],
			       mbs ? sprintf("%.0f", mbs) : "-", mbs ? sprintf("%.2f", mbs / dd) : "-", vs, down[i]
		}
		print ""
		for (i = 2; i <= n; i++)
			print "- " name[i] ": " note[i]
		if (("sr migrate TLS (50 ms)" in key) && ("sr migrate (50 ms)" in key)) {
			p = key["sr migrate (50 ms)"]; t = key["sr migrate TLS (50 ms)"]
			if (wall[p] > 0 && wall[t] > 0 && bytes[p] != "-" && bytes[t] != "-")
				printf "\nsr migrate: encrypted %.2f of plaintext throughput (MB/s, same run)\n", (bytes[t] / wall[t]) / (bytes[p] / wall[p])
		}
	}' "$rows" | tee "$out/peer.md"
if command -v gnuplot >/dev/null; then
	awk -F'\t' 'NR > 1 { printf "%d \"%s\" %s\n", NR - 2, $1, $2 }' "$rows" > "$out/peer.dat"
	gnuplot <<-EOF
	set terminal png size 1000,480
	set output "$out/peer.png"
	set title "sr vs QEMU, ${mem} MiB guest, ${data} MiB of data (wall time, ms)"
	set style fill solid 0.6
	set boxwidth 0.6
	set xtics rotate by -30
	set ylabel "ms"
	plot "$out/peer.dat" using 1:3:xtic(2) with boxes notitle
	EOF
	echo "plot: $out/peer.png"
fi
echo "table: $out/peer.md, rows: $rows"
