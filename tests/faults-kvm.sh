#!/usr/bin/env bash
# Fault injection on real KVM: N saves of one running test guest, cold and
# live, to a file and to a pipe, each hit by a fault at a random moment:
# sr-save or the pipe's reader killed (SIGKILL, SIGINT, SIGTERM), or the
# file's filesystem full at a random size.  After every trial the domain must
# be running and FILE either absent or a complete image that verifies; every
# complete image is restored as a second domain and must reach PASS.  At the
# end the guest, which has verified its memory all along, must PASS too.
# The fault kinds take turns, and each must have interrupted at least one save
# (FILE absent, or a cut stream): trials that all completed prove nothing.
#   SR_FAULTS (100), SR_FAULTS_SEED (the time)
set -u
O=${O:-build}
n=${SR_FAULTS:-100}
seed=${SR_FAULTS_SEED:-$(date +%s)}
guest=$O/guest/sr-test-guest.bin
export SR_RUN_DIR=$(mktemp -d /tmp/sr-faults.XXXXXX)
tmp=$(mktemp -d /tmp/sr-faults-tmp.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; umount "$tmp/fs" 2>/dev/null; rm -rf "$SR_RUN_DIR" "$tmp"' EXIT
RANDOM=$seed
pass=0 fail=0
declare -A trials ran_on absent complete restored interrupted kind_trials
up() { for _ in $(seq 1 400); do $O/sr-ctl status "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

echo "faults: $n trials, seed $seed (SR_FAULTS_SEED=$seed repeats them)"
$O/sr-run --name fv --memory 32 --vcpus 2 --rounds 0 --pages 64 --delay-us 5000 --quiet-guest \
	"$guest" >"$tmp/fv.out" 2>&1 &
gpid=$!
up fv || { echo "faults: the guest did not start"; echo "0 passed, 1 failed"; exit 1; }
mkdir -p "$tmp/fs"
# The first trial of each fault waits for the runner to say its save is running,
# so that every kind lands at least once; the others come at a random moment
# (0..1500 ms: all 3 INT trials of a sample once came after quick saves had ended).
saving() { $O/sr-ctl status fv 2>/dev/null | grep -q ' save=running '; }
fault_wait() {
	if [ "${kind_trials[$fault]}" -eq 1 ]; then
		when="once save=running"
		for _ in $(seq 1 400); do saving && return; sleep 0.01; done
	else
		sleep "$(awk -v m=$delay_ms 'BEGIN { print m / 1000 }')"
	fi
}

for i in $(seq 1 "$n"); do
	mode=$([ $((RANDOM % 2)) -eq 0 ] && echo cold || echo live)
	faults=(KILL INT TERM ENOSPC)
	fault=${faults[$(( (i - 1) % 4 ))]}
	kind_trials[$fault]=$(( ${kind_trials[$fault]:-0} + 1 ))
	target=file
	[ "$fault" != ENOSPC ] && [ $((RANDOM % 3)) -eq 0 ] && target=pipe
	delay_ms=$((RANDOM % 1500)) when="after $delay_ms ms"
	live=; [ $mode = live ] && live=--live
	img=$tmp/fs/t$i.img
	key="$mode/$target/$fault"
	trials[$key]=$(( ${trials[$key]:-0} + 1 ))
	if [ "$fault" = ENOSPC ]; then
		size=$(( (RANDOM % 12 + 1) * 1024 ))k	# 1..12 MiB: most saves do not fit (1..40 MiB let all 3 of a sample's fit)
		mount -t tmpfs -o size=$size tmpfs "$tmp/fs"
		$O/sr-save -c -q $live fv "$img" 2>"$tmp/save.err"
	elif [ $target = file ]; then
		$O/sr-save -c -q $live fv "$img" 2>"$tmp/save.err" & spid=$!
		fault_wait
		kill -$fault $spid 2>/dev/null; wait $spid 2>/dev/null
	else
		# The pipe: the reader is the one killed; it keeps what it got.
		rm -f "$tmp/reader.pid"
		( $O/sr-save -c -q $live fv - 2>"$tmp/save.err" |
		  { echo $BASHPID > "$tmp/reader.pid"; exec cat > "$img"; } ) &
		ppid=$!
		fault_wait
		# Only our reader: the box relays its console through processes of its own.
		[ -s "$tmp/reader.pid" ] && kill -$fault "$(cat "$tmp/reader.pid")" 2>/dev/null
		wait $ppid
	fi
	# The domain must be running again (a save that did not commit resumes it).
	state=
	for _ in $(seq 1 100); do
		state=$($O/sr-ctl status fv 2>/dev/null | grep -o 'state=[a-z]*')
		[ "$state" = state=running ] && break
		sleep 0.05
	done
	verdict=ok why=
	if [ "$state" = state=running ]; then ran_on[$key]=$(( ${ran_on[$key]:-0} + 1 ))
	else verdict=FAIL why="domain $state"; fi
	if [ ! -e "$img" ]; then
		absent[$key]=$(( ${absent[$key]:-0} + 1 ))
		interrupted[$fault]=$(( ${interrupted[$fault]:-0} + 1 ))
	elif [ $target = pipe ] && ! $O/sr-dump --verify "$img" 2>/dev/null; then
		absent[$key]=$(( ${absent[$key]:-0} + 1 ))	# a cut stream is the reader's, not FILE
		interrupted[$fault]=$(( ${interrupted[$fault]:-0} + 1 ))
	elif $O/sr-dump --verify "$img" 2>"$tmp/verify.err"; then
		complete[$key]=$(( ${complete[$key]:-0} + 1 ))
		touch "$tmp/ok.mark"
		$O/sr-restore --name fr "$img" >"$tmp/fr.out" 2>&1 & rpid=$!
		up fr && sleep 0.3
		$O/sr-ctl finish fr >/dev/null 2>&1
		wait $rpid; rrc=$?
		if [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/fr.out"; then restored[$key]=$(( ${restored[$key]:-0} + 1 ))
		else verdict=FAIL why="complete image restored with exit $rrc: $(grep -m1 -E 'FAIL|ASSERT|error' "$tmp/fr.out")"; fi
	else
		verdict=FAIL why="FILE is there but does not verify: $(cat "$tmp/verify.err")"
	fi
	outcome=absent; [ -e "$tmp/ok.mark" ] && outcome="complete, restored to PASS"; rm -f "$tmp/ok.mark"
	ls "$(dirname "$img")" | grep -v "^t$i.img$" | grep -q . && { verdict=FAIL; why="left behind: $(ls "$(dirname "$img")")"; }
	[ "$fault" = ENOSPC ] && umount "$tmp/fs"
	rm -f "$tmp/fs"/* 2>/dev/null
	if [ $verdict = ok ]; then pass=$((pass + 1)); echo "ok   trial $i: $key $when${size:+, fs $size}: domain ran on, FILE $outcome"
	else fail=$((fail + 1)); echo "FAIL trial $i ($key, $when${size:+, fs $size}): $why"; fi
	unset size
done

$O/sr-ctl finish fv >/dev/null 2>&1
wait $gpid; grc=$?
if [ $grc -eq 0 ] && grep -q '^PASS' "$tmp/fv.out"; then
	echo "faults: after $n trials the guest verified its memory to the end: PASS"
else
	fail=$((fail + 1)); echo "FAIL the guest after the trials: exit $grc"; tail -5 "$tmp/fv.out"
fi
for f in KILL INT TERM ENOSPC; do
	[ "${kind_trials[$f]:-0}" -gt 0 ] || continue
	if [ "${interrupted[$f]:-0}" -gt 0 ]; then
		echo "faults: $f interrupted ${interrupted[$f]} of ${kind_trials[$f]} saves"
	else
		fail=$((fail + 1)); echo "FAIL faults: $f interrupted none of its ${kind_trials[$f]} saves: the fault never landed"
	fi
done
[ "$n" -lt 4 ] || [ "${#kind_trials[@]}" -eq 4 ] || { fail=$((fail + 1)); echo "FAIL faults: only ${!kind_trials[*]} were tried"; }
printf '\n%-22s %7s %14s %12s %15s %14s\n' "mode/target/fault" trials "domain ran on" "FILE absent" "FILE complete" "restored PASS"
for k in $(printf '%s\n' "${!trials[@]}" | sort); do
	printf '%-22s %7s %14s %12s %15s %14s\n' "$k" "${trials[$k]}" "${ran_on[$k]:-0}" "${absent[$k]:-0}" \
		"${complete[$k]:-0}" "${restored[$k]:-0}"
done
echo "faults: $pass passed, $fail failed"
[ $fail -eq 0 ]
