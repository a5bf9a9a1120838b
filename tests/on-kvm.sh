#!/usr/bin/env bash
# Runs a command on real KVM: natively when this host's /dev/kvm can run
# sr's guests (the probe of `sr-ctl host`: the module behind /dev/kvm and a
# probe guest), else inside the nested box (tests/box.sh).  It says which
# and why.  O (the build directory) goes along.
#   tests/on-kvm.sh WHAT COMMAND [ARGS...]     WHAT names it in the messages
# SR_KVM=native|box forces one.  SR_KVM_DRY_RUN=1 prints the choice and exits.
# Natively the command is bounded too: after SR_KVM_TIMEOUT seconds (2400)
# its processes are listed with their wait channels and killed.
set -eu
what=$1
shift
export O=${O:-build}

where= why=
case "${SR_KVM:-}" in
native) where=native why="forced by SR_KVM=native" ;;
box) where=box why="forced by SR_KVM=box" ;;
"")
	if out=$("$O/sr-ctl" host 2>&1); then
		where=native
		why=$(sed -n 's/^verdict: *//p' <<<"$out")
	else
		where=box
		why=$(sed -n 's/^verdict: *//p' <<<"$out")
		[ -n "$why" ] || why=$out
	fi ;;
*) echo "$what: SR_KVM must be native or box, not '$SR_KVM'" >&2; exit 2 ;;
esac

if [ "$where" = native ]; then
	echo "$what: running natively: $why"
else
	echo "$what: running inside the nested KVM box (tests/box.sh, ~50x slower than native): $why"
fi
[ -z "${SR_KVM_DRY_RUN:-}" ] || exit 0

# The box emulates one CPU; with SR_KVM_SHARDS=N (auto: one per host CPU, as
# memory allows, at most 4) a command that takes SR_KVM_SHARD (tests/kvm.sh)
# runs as N parts in N boxes side by side, each line marked [I/N], and the
# parts' counts are added up at the end.
shards=${SR_KVM_SHARDS:-1}
if [ "$where" = box ] && [ "$shards" = auto ]; then
	box_gib=$(( (${SR_BOX_MEM:-4096} + 1023) / 1024 + 1 ))
	avail_gib=$(awk '/^MemAvailable:/ { print int($2 / 1048576) }' /proc/meminfo)
	shards=$(nproc)
	[ "$shards" -le $(( avail_gib / box_gib )) ] || shards=$(( avail_gib / box_gib ))
	[ "$shards" -le 4 ] || shards=4
	[ "$shards" -ge 1 ] || shards=1
fi
case $shards in
[1-9]) ;;
*) echo "$what: SR_KVM_SHARDS must be auto or 1-9, not '$shards'" >&2; exit 2 ;;
esac

if [ "$where" = box ] && [ "$shards" -gt 1 ]; then
	echo "$what: $shards boxes side by side, each running part I/$shards of the tests (SR_KVM_SHARDS=1: one box)"
	parts=$(mktemp -d)
	trap 'rm -rf "$parts"' EXIT
	# The kernel and initramfs once, before the boxes race to build them.
	tests/box.sh --prepare || exit $?
	for i in $(seq 1 "$shards"); do
		( SR_KVM_SHARD=$i/$shards SR_BOX_RETRIES_OUT=$parts/retries.$i \
			tests/box.sh -- env O="$O" "$@" 2>&1 | tee "$parts/out.$i" | sed -u "s|^|[$i/$shards] |"
		  echo "${PIPESTATUS[0]}" > "$parts/rc.$i" ) &
	done
	wait
	rc=0 passed=0 failed=0
	for i in $(seq 1 "$shards"); do
		prc=$(cat "$parts/rc.$i" 2>/dev/null || echo 125)
		retries=$(cat "$parts/retries.$i" 2>/dev/null || echo 0)
		counts=$(tr -d '\r' < "$parts/out.$i" | sed -n 's/^kvm: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' | tail -1)
		if [ -z "$counts" ]; then
			echo "$what: part $i/$shards FAILED: it ended (exit $prc) without its count of passed and failed tests"
			counts="0 1"
		fi
		read -r p f <<<"$counts"
		passed=$((passed + p)) failed=$((failed + f))
		echo "$what: part $i/$shards: exit $prc in its box, $p passed, $f failed$([ "${retries:-0}" -eq 0 ] 2>/dev/null || echo ", after $retries box retry(ies): the box hung and the part was repeated")"
		[ "$prc" -eq 0 ] || [ "$rc" -ne 0 ] || rc=$prc
	done
	[ "$failed" -eq 0 ] || [ "$rc" -ne 0 ] || rc=1
	echo "$what: exit $rc from $shards boxes side by side"
	echo "kvm: $passed passed, $failed failed"
	exit "$rc"
fi

if [ "$where" = box ]; then
	# The summary says whether the pass needed a box retry (a hung box re-runs it all).
	retries_file=$(mktemp)
	rc=0
	SR_BOX_RETRIES_OUT=$retries_file tests/box.sh -- env O="$O" "$@" || rc=$?
	retries=$(cat "$retries_file" 2>/dev/null); rm -f "$retries_file"
	if [ "${retries:-0}" -gt 0 ] 2>/dev/null; then
		echo "$what: exit $rc in the box, after $retries box retry(ies): the box hung and the run was repeated"
	else
		echo "$what: exit $rc in the box, no box retries"
	fi
	exit "$rc"
fi

limit=${SR_KVM_TIMEOUT:-2400}
"$@" &
pid=$!
( set +e
  sleep "$limit"
  echo "$what: still running after ${limit} s (SR_KVM_TIMEOUT); its processes:"
  ps -eo pid,ppid,stat,wchan:24,etime,args | grep -E "sr-|kvm-|tests/|$(basename "$1")" | grep -v grep
  pkill -KILL -P "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null ) &
guard=$!
rc=0
wait "$pid" || rc=$?
pkill -P "$guard" 2>/dev/null || true
kill "$guard" 2>/dev/null || true
[ "$rc" -ne 137 ] || echo "$what: killed at its ${limit} s limit (exit 137)"
exit "$rc"
