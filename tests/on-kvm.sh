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
