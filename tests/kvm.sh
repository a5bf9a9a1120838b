#!/usr/bin/env bash
# KVM tests: real guests on real KVM.  make check runs this natively when
# /dev/kvm exists and inside tests/box.sh otherwise.  Nothing here skips: a
# missing /dev/kvm is a failure.
set -u
O=${O:-build}
guest=$O/guest/sr-test-guest.bin
export SR_RUN_DIR=$(mktemp -d /tmp/sr-kvm.XXXXXX)
chmod 700 "$SR_RUN_DIR"
tmp=$(mktemp -d /tmp/sr-kvm-tmp.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$SR_RUN_DIR" "$tmp"' EXIT
pass=0 fail=0
only=${SR_KVM_TESTS:-}

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     | /' "$2" | tail -15; }
want() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }

# Waits until domain $1 answers on its control socket.
wait_domain() {
	for _ in $(seq 1 600); do
		$O/sr-ctl "$1" status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

if [ ! -c /dev/kvm ]; then
	echo "FAIL kvm: /dev/kvm is missing; these tests need real KVM (make check runs them in tests/box.sh)"
	echo "0 passed, 1 failed"
	exit 1
fi

t_guest() {	# name vcpus
	$O/sr-run --vcpus "$2" --rounds 4 --quiet-guest "$guest" >"$tmp/$1.out" 2>&1
	local rc=$?
	if [ $rc -eq 0 ] && grep -q '^PASS: ' "$tmp/$1.out"; then ok "$1: guest reached PASS on $2 vCPU(s)"
	else bad "$1: guest on $2 vCPU(s) exited $rc" "$tmp/$1.out"; fi
}
want guest-1 && t_guest guest-1 1
want guest-2 && t_guest guest-2 2

if want pause-resume; then
	$O/sr-run --name pr --vcpus 2 --rounds 0 --pages 64 --delay-us 5000 --quiet-guest \
		"$guest" >"$tmp/pr.out" 2>&1 &
	pid=$!
	cycles=0
	if wait_domain pr; then
		for i in $(seq 1 100); do
			$O/sr-ctl pr pause >/dev/null 2>>"$tmp/pr.ctl" || break
			$O/sr-ctl pr status 2>>"$tmp/pr.ctl" | grep -q 'state=paused' || break
			$O/sr-ctl pr resume >/dev/null 2>>"$tmp/pr.ctl" || break
			cycles=$i
		done
		$O/sr-ctl pr finish >/dev/null 2>>"$tmp/pr.ctl"
	fi
	wait $pid; rc=$?
	cat "$tmp/pr.ctl" >>"$tmp/pr.out" 2>/dev/null
	if [ $cycles -eq 100 ] && [ $rc -eq 0 ] && grep -q '^PASS: ' "$tmp/pr.out"; then
		ok "pause-resume: 100 pause/resume cycles during the workload, then PASS"
	else
		bad "pause-resume: $cycles of 100 cycles, sr-run exited $rc" "$tmp/pr.out"
	fi
fi

if want dirty-log; then
	for mode in bitmap clear; do
		if $O/tests/kvm-dirty-log "$guest" $mode 30 >"$tmp/dl.out" 2>&1; then
			ok "dirty-log ($mode): $(grep '^ok: [0-9]' "$tmp/dl.out" | cut -c5-)"
		else
			bad "dirty-log ($mode)" "$tmp/dl.out"
		fi
	done
fi

if want poke; then
	# The guest must notice a host that corrupts its memory: its checks can fail.
	$O/sr-run --name poke --rounds 40 --pages 64 --working-set 256 --delay-us 20000 \
		--quiet-guest "$guest" >"$tmp/poke.out" 2>&1 &
	pid=$!
	wait_domain poke && sleep 0.5 && $O/sr-ctl poke poke $((0x800000 + 5 * 4096 + 808)) >/dev/null
	wait $pid; rc=$?
	if [ $rc -eq 1 ] && grep -q 'pfn 0x805' "$tmp/poke.out"; then
		ok "poke: the guest caught one flipped bit: $(grep -o 'pfn 0x805.*' "$tmp/poke.out" | head -1)"
	else
		bad "poke: sr-run exited $rc after a bit flip in guest memory" "$tmp/poke.out"
	fi
fi

if want bad-image; then
	$O/sr-run "$tmp/nonexistent.bin" >"$tmp/bi.out" 2>&1; rc=$?
	if [ $rc -eq 2 ] && grep -q 'nonexistent.bin' "$tmp/bi.out"; then ok "bad-image: missing file: $(cat "$tmp/bi.out")"
	else bad "bad-image: missing file exited $rc" "$tmp/bi.out"; fi
	: > "$tmp/empty.bin"
	$O/sr-run "$tmp/empty.bin" >"$tmp/bi.out" 2>&1; rc=$?
	if [ $rc -eq 2 ] && grep -q 'bytes' "$tmp/bi.out"; then ok "bad-image: empty file: $(cat "$tmp/bi.out")"
	else bad "bad-image: empty file exited $rc" "$tmp/bi.out"; fi
	head -c 4096 /dev/zero | tr '\0' '\377' > "$tmp/ff.bin"
	timeout 60 $O/sr-run "$tmp/ff.bin" >"$tmp/bi.out" 2>&1; rc=$?
	if [ $rc -eq 3 ] && grep -q 'shutdown' "$tmp/bi.out"; then ok "bad-image: garbage code: $(cat "$tmp/bi.out")"
	else bad "bad-image: garbage image exited $rc" "$tmp/bi.out"; fi
fi

if want no-kvm; then
	unshare -m sh -c "mount -t tmpfs none /dev && exec $O/sr-run '$guest'" >"$tmp/nk.out" 2>&1; rc=$?
	if [ $rc -eq 2 ] && grep -q '/dev/kvm' "$tmp/nk.out"; then ok "no-kvm: $(cat "$tmp/nk.out")"
	else bad "no-kvm: sr-run without /dev/kvm exited $rc" "$tmp/nk.out"; fi
fi

echo "kvm: $pass passed, $fail failed"
[ $fail -eq 0 ]
