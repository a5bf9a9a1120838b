#!/usr/bin/env bash
# sr-bench, on real KVM: live saves over a matrix of guest memory x dirty rate x
# dirty-track backend x compression, with a cold save of each guest size as the
# baseline in the same run, and a guest that dirties faster than the save can
# send, with auto-converge on and off.  Prints each row as it is measured (and
# a progress line before each run), then the whole table; writes PNG plots.
# Numbers, not a test: nothing here passes or fails except a broken run.
set -u
O=${O:-build}
out=${SR_BENCH_OUT:-$O/bench}
guest=$O/guest/sr-test-guest.bin
mems=${SR_BENCH_MEMS:-"32 64"}
rates=${SR_BENCH_RATES:-"100 410 4000"}	# pages/s per vCPU; 410 x 2 vCPUs ~ 10% of 32 MiB per s
tracks=${SR_BENCH_TRACKS:-"bitmap clear ring"}
comps=${SR_BENCH_COMPRESS:-"lz4 none"}
target=${SR_BENCH_DOWNTIME_MS:-50}
fast=${SR_BENCH_FAST_RATE:-20000}	# pages/s per vCPU: ~160 MB/s from 2 vCPUs, above any box save rate
export SR_RUN_DIR=$(mktemp -d /tmp/sr-bench.XXXXXX)
mkdir -p "$out"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$SR_RUN_DIR"' EXIT
up() { for _ in $(seq 1 400); do $O/sr-ctl status "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

rows=$out/bench.tsv
rounds_dat=$out/rounds.dat
: > "$rounds_dat"
printf 'mem_MiB\tpages/s/vCPU\ttrack\tcompress\tthrottle\trounds\tpages_sent/RAM\tbytes/RAM\tdowntime_ms\ttarget_ms\tmet\tMB/s\tmax_throttle\tstop\n' > "$rows"
fmt='%7s %12s %6s %8s %8s %6s %14s %9s %11s %9s %4s %7s %12s  %s\n'

run() {	# mem rate track compress [throttle] -> one row
	local mem=$1 rate=$2 track=$3 comp=$4 thr=${5:-auto} name=b$$ save rc
	local ring=
	[ "$track" = ring ] && ring=--dirty-ring
	# --prefill: the guest has written all its memory before the save starts.
	$O/sr-run --name $name --memory "$mem" --vcpus 2 --rounds 0 --dirty-rate "$rate" --prefill \
		$ring --quiet-guest "$guest" >/dev/null 2>&1 &
	up $name || { echo "bench: guest did not start"; return 1; }
	sleep 3
	# --json: the summary and the rounds as one document (docs/control.md, "schema: save").
	if [ "$track" = cold ]; then
		save=$($O/sr-save --json --compress "$comp" $name "$SR_RUN_DIR/b.img" 2>"$SR_RUN_DIR/b.err"); rc=$?
	else
		save=$($O/sr-save --json --live --dirty-track "$track" --downtime-ms "$target" \
			--throttle "$thr" --compress "$comp" $name "$SR_RUN_DIR/b.img" 2>"$SR_RUN_DIR/b.err"); rc=$?
	fi
	wait
	[ $rc -eq 0 ] || { echo "bench: save failed: $(tail -1 "$SR_RUN_DIR/b.err")"; return 1; }
	local bytes ms rounds down stop pages tmax=0
	IFS=$'\t' read -r bytes pages ms rounds down stop tmax < <(echo "$save" | python3 -c '
import json, sys
s = json.load(sys.stdin)["summary"]
live = s["stop_reason"] is not None
ms = s["duration_ns"] / 1e6
print("\t".join(str(v) for v in (s["bytes"], s["pages"], "%.1f" % ms, s["rounds"] if live else 1,
      "%.1f" % (s["downtime_ns"] / 1e6 if live else ms),
      s["stop_reason"] if live else "cold save: paused throughout", s["max_throttle_pct"])))')
	if [ "$track" != cold ]; then
		echo "$save" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["rounds"]:
    print(sys.argv[1], r["iteration"], r["dirtied"])' "${mem}M/${rate}/${track}/${comp}" >> "$rounds_dat"
	fi
	awk -v m="$mem" -v r="$rate" -v t="$track" -v c="$comp" -v ro="$rounds" -v b="$bytes" \
	    -v ms="$ms" -v d="$down" -v tg="$target" -v s="$stop" -v p="$pages" -v th="$thr" \
	    -v tm="${tmax:-0}" 'BEGIN {
		ram = m * 1048576; met = (t == "cold") ? "-" : (d <= tg ? "yes" : "no");
		printf "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.1f\t%s\t%s\t%.1f\t%s%%\t%s\n", m, r, t, c,
		       (t == "cold" ? "-" : th), ro, p * 4096 / ram, b / ram, d, (t == "cold" ? "-" : tg),
		       met, b / (ms / 1000) / 1e6, tm, s
	}' >> "$rows"
	# The row as soon as it is measured: a long run shows progress, and a
	# watchdog that ends it early still leaves every row so far.
	tail -1 "$rows" | awk -F'\t' -v fmt="$fmt" '{ printf fmt, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 }'
}

total=0
for mem in $mems; do for comp in $comps; do
	total=$((total + 1 + $(echo $rates | wc -w) * $(echo $tracks | wc -w))); done; done
total=$((total + 2))
k=0
step() { k=$((k + 1)); echo "sr-bench: [$k/$total] $*" >&2; }
echo "sr-bench: live saves of the 2-vCPU test guest, downtime target $target ms (pause to END written)"
printf "$fmt" MiB "pages/s/vCPU" track compress throttle rounds "pages_sent/RAM" bytes/RAM downtime_ms target met MB/s max_thr stop

for mem in $mems; do
	for comp in $comps; do
		step "$mem MiB, cold save, $comp"
		run "$mem" 100 cold "$comp"
		for rate in $rates; do
			for track in $tracks; do
				step "$mem MiB, $rate pages/s/vCPU, $track, $comp"
				run "$mem" "$rate" "$track" "$comp"
			done
		done
	done
done
# A guest that dirties faster than the save can send: auto-converge on and off.
mem=$(echo $mems | awk '{ print $NF }')
for thr in auto off; do
	step "$mem MiB, $fast pages/s/vCPU (faster than the link), clear, lz4, throttle $thr"
	run "$mem" "$fast" clear lz4 "$thr"
done

echo
echo "sr-bench: all rows"
column -t -s "$(printf '\t')" "$rows"

if command -v gnuplot >/dev/null; then
	awk -F'\t' 'NR > 1 { printf "%d \"%sM %s %s %s %s\" %s\n", NR - 2, $1, $2, $3, $4, $5, $9 }' "$rows" > "$out/downtime.dat"
	gnuplot <<GP
set terminal png size 1400,600
set output "$out/downtime.png"
set title "Downtime per configuration (mem, dirty pages/s per vCPU, backend, compression); target $target ms"
set ylabel "downtime (ms)"
set logscale y
set style fill solid
set boxwidth 0.7
set xtics rotate by -60 font ",8"
plot "$out/downtime.dat" using 1:3:xtic(2) with boxes notitle, $target with lines title "target"
GP
	gnuplot <<GP
set terminal png size 1000,600
set output "$out/rounds.png"
set title "Dirty pages left at the end of each pre-copy round"
set xlabel "round"
set ylabel "pages dirtied"
set logscale y
set key outside right font ",8"
plot for [t in system("awk '{print \$1}' $rounds_dat | sort -u | tr '\n' ' '")] \
	"< grep '^".t." ' $rounds_dat" using 2:(\$3 > 0 ? \$3 : 1) with linespoints title t
GP
	echo "plots: $out/downtime.png $out/rounds.png"
else
	echo "sr-bench: gnuplot not installed (apt-get install gnuplot-nox): no plots"
fi
