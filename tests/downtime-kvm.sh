#!/usr/bin/env bash
# The live save's downtime phase by phase, with the demo's devices and
# without (issue 18 item 6: the disk's downtime within 10 ms of none).
# Boots the demo's Linux guest (2 vCPUs, 256 MiB, 32 MiB rewritten every
# second) once per configuration, all in one box, and keeps every guest but
# the one being saved paused; then live-saves each in turn with -c (it runs
# on), the order rotating from run to run, so each configuration is measured
# under the same load at nearly the same time.  One row per save (the
# numbers of sr-save --stats's downtime line), then each configuration's
# medians and its gap to the configuration without devices of the same
# build (none, none@DIR; else the first configuration).
#   SR_DOWNTIME_RUNS (7): saves per configuration
#   SR_DOWNTIME_CONFIGS ("none disk"): none (no devices: pci=off), rng
#     (--rng), blk (--disk), disk (--disk --rng: the demo's); KIND@DIR runs
#     that guest and its saves with DIR's binaries instead of $O's (another
#     build, its guest images too: a change measured against the build it
#     changes, in one box)
#   SR_DOWNTIME_GAP_MS (10): the largest median gap allowed
set -u
O=${O:-build}
runs=${SR_DOWNTIME_RUNS:-7}
read -ra configs <<<"${SR_DOWNTIME_CONFIGS:-none disk}"
gap_ms=${SR_DOWNTIME_GAP_MS:-10}
kernel=build/box/kernel/vmlinuz
export SR_RUN_DIR=$(mktemp -d /tmp/sr-down.XXXXXX)
dir=$SR_RUN_DIR
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
n=${#configs[@]}
bin=()
for k in $(seq 0 $((n - 1))); do
	c=${configs[$k]}
	bin[$k]=$O
	[ "$c" = "${c#*@}" ] || bin[$k]=${c#*@}
done
pass=0 fail=0
cols="downtime stopped drained state vm vcpus devices disk_id pages records"
ticks() { tr -d '\r' < "$1" | sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p'; }
# Waits up to $2 s for guest $1's console to show a tick after tick $3.
tick_after() {
	local end=$(( $(date +%s) + $2 ))
	while [ "$(date +%s)" -lt "$end" ]; do
		[ "$(ticks "$dir/$1.out" | tail -1)" -gt "$3" ] 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}
bad() { fail=$((fail + 1)); echo "FAIL $*"; [ -f "${2:-}" ] && tail -5 "$2" | sed 's/^/  | /'; }

for k in $(seq 0 $((n - 1))); do
	c=g$k b=${bin[$k]}
	dev=() cmdline="sr.workload=32,0"
	case ${configs[$k]%@*} in
	none) ;;
	rng) dev=(--rng) ;;
	blk|disk)
		cp --sparse=always "$b/guest/linux-root.ext4" "$dir/$c.root" || { bad "copying $b's root image"; exit 1; }
		dev=(--disk "$dir/$c.root") cmdline="root=/dev/vda $cmdline"
		[ "${configs[$k]%@*}" = disk ] && dev+=(--rng) ;;
	*) echo "downtime: unknown configuration '${configs[$k]}' (none, rng, blk, disk)"; exit 2 ;;
	esac
	$b/sr-run --name "$c" --vcpus 2 --kernel $kernel --initrd "$b/guest/linux-initramfs.cpio.gz" "${dev[@]}" \
		--cmdline "$cmdline" </dev/null >"$dir/$c.out" 2>&1 &
	if tick_after "$c" 400 2 && $b/sr-ctl pause "$c" >/dev/null; then
		echo "downtime: ${configs[$k]} booted ($(tr -d '\r' < "$dir/$c.out" | grep -m1 '^sr-linux: [0-9] cpu' || echo '?')); paused"
	else
		bad "${configs[$k]}: no 3 workload ticks within 400 s, or no pause" "$dir/$c.out"
		exit 1
	fi
done

echo "downtime: box load $(cut -d' ' -f1-3 /proc/loadavg); $runs saves each of ${configs[*]}, the order rotating"
w=5
for c in "${configs[@]}"; do [ ${#c} -le $w ] || w=${#c}; done
printf "%3s %-${w}s %s\n" run cfg "$(printf '%9s' $cols)"
for i in $(seq 1 "$runs"); do
	for j in $(seq 0 $((n - 1))); do
		k=$(( (i + j) % n )) c=g$(( (i + j) % n ))
		b=${bin[$k]} name=${configs[$k]}
		last=$(ticks "$dir/$c.out" | tail -1)
		$b/sr-ctl resume "$c" >/dev/null || { bad "$name: resume"; continue; }
		if ! tick_after "$c" 60 "$((last + 1))"; then
			bad "$name run $i: no 2 ticks within 60 s of the resume" "$dir/$c.out"; continue
		fi
		timeout -k 5 600 $b/sr-save --live -c --stats "$c" "$dir/img" 2>"$dir/save.err"; rc=$?
		$b/sr-ctl pause "$c" >/dev/null
		rm -f "$dir/img"
		line=$(grep '^downtime ' "$dir/save.err")
		if [ $rc -ne 0 ] || [ -z "$line" ]; then
			bad "$name run $i: sr-save exited $rc" "$dir/save.err"; continue
		fi
		v=$(grep -o '[0-9][0-9]*\.[0-9]*' <<<"$line" | tr '\n' ' ')
		echo "$v" >>"$dir/$c.rows"
		printf "%3s %-${w}s %s\n" "$i" "$name" "$(printf '%9s' $v)"
		pass=$((pass + 1))
	done
done

# Each column's median (of an even count: the mean of the middle two).
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.2f", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "downtime: medians (ms), box load $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-$((2 * w + 3))s %s\n" "" "$(printf '%9s' $cols)"
for k in $(seq 0 $((n - 1))); do
	c=g$k
	[ -s "$dir/$c.rows" ] || continue
	m=()
	for col in $(seq 1 10); do
		m+=("$(awk -v k=$col '{ print $k }' "$dir/$c.rows" | median)")
	done
	echo "${m[*]}" >"$dir/$c.med"
	printf "%-$((2 * w + 3))s %s\n" "${configs[$k]} ($(wc -l <"$dir/$c.rows"))" "$(printf '%9s' "${m[@]}")"
done
# The least of each: a phase's cost when nothing took the CPU from it (in
# the box, the host's load stretches any phase it lands in tenfold).
echo "downtime: least (ms)"
for k in $(seq 0 $((n - 1))); do
	[ -s "$dir/g$k.rows" ] || continue
	printf "%-$((2 * w + 3))s %s\n" "${configs[$k]}" "$(printf '%9s' $(awk '{ for (i = 1; i <= NF; i++) if (NR == 1 || $i < m[i]) m[i] = $i }
		END { for (i = 1; i <= NF; i++) printf "%.2f ", m[i] }' "$dir/g$k.rows"))"
done
for k in $(seq 0 $((n - 1))); do
	c=g$k name=${configs[$k]} r=0
	[ "${name%@*}" != none ] || continue
	for j in $(seq 0 $((n - 1))); do
		[ "${configs[$j]%@*}" = none ] && [ "${bin[$j]}" = "${bin[$k]}" ] && r=$j
	done
	base=${configs[$r]}
	[ -s "$dir/g$r.med" ] && [ -s "$dir/$c.med" ] || continue
	read -ra a <"$dir/g$r.med"
	read -ra m <"$dir/$c.med"
	d=()
	for col in $(seq 0 9); do d+=("$(awk -v x="${m[$col]}" -v y="${a[$col]}" 'BEGIN { printf "%+.2f", x - y }')"); done
	printf "%-$((2 * w + 3))s %s\n" "$name - $base" "$(printf '%9s' "${d[@]}")"
	if awk -v g="${d[0]}" -v t="$gap_ms" 'BEGIN { exit !(g <= t) }'; then
		pass=$((pass + 1)); echo "ok   $name's median downtime is ${d[0]} ms from $base's (at most $gap_ms)"
	else
		bad "$name's median downtime is ${d[0]} ms from $base's (more than $gap_ms)"
	fi
done
echo "downtime: $pass passed, $fail failed"
[ $fail -eq 0 ]
