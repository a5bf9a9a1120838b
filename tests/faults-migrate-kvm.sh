#!/usr/bin/env bash
# Migration fault campaign on real KVM, between two network namespaces
# (tests/netns.sh): N migrations of a test guest, each hit by one fault at a
# random moment: sr-migrate or the receiver SIGKILLed, sr-ctl cancel, or the
# link cut (netem loss 100% until sr-migrate has given up).  The moment is
# mid-stream (a random delay into a rate-capped stream) or one of the
# handshake's steps, held open by the test hooks (SR_TEST_PAUSE_AT): "ready"
# heard, the runner "held", "go" heard by the receiver, "running" heard.
# After each trial the domain must run on exactly one side, or be paused at
# the source with exit 3 (or, sr-migrate killed, the runner's message) that
# says how to settle it; never on both, never on neither.  The guest that
# runs at the end is told to finish and must verify its memory: PASS.
#   SR_FAULTS_MIG (100), SR_FAULTS_MIG_SEED (the time); SR_FAULTS_MIG_COVER=1
#   takes kind and moment round-robin instead of at random (the sample).
set -u
O=${O:-build}
n=${SR_FAULTS_MIG:-100}
seed=${SR_FAULTS_MIG_SEED:-$(date +%s)}
cover=${SR_FAULTS_MIG_COVER:-0}
guest=$O/guest/sr-test-guest.bin
export SR_RUN_DIR=$(mktemp -d /tmp/sr-fm.XXXXXX)
chmod 700 "$SR_RUN_DIR"
tmp=$(mktemp -d /tmp/sr-fm-tmp.XXXXXX)
. tests/netns.sh
trap 'tc qdisc del dev sr-near root 2>/dev/null; kill $(jobs -p) 2>/dev/null; netns_down; rm -rf "$SR_RUN_DIR" "$tmp"' EXIT
RANDOM=$seed
pass=0 fail=0
kinds=(kill-migrate kill-receiver cancel link)
moments=(stream ready held go running)
declare -A count

far_sr() { SR_RUN_DIR=$tmp/far $O/sr-ctl "$@"; }
up() { for _ in $(seq 1 400); do $O/sr-ctl "$1" status >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
# Waits up to $3 tenths of a second for a line matching $1 in file $2.
wait_line() { for _ in $(seq 1 "$3"); do grep -q "$1" "$2" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# Waits up to $2 tenths of a second for pid $1 to end.
wait_gone() { for _ in $(seq 1 "$2"); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
descendants() {
	local kids
	kids=$(ps -eo pid=,ppid= | awk -v p="$1" '$2 == p { print $1 }')
	for k in $kids; do echo "$k"; descendants "$k"; done
}
state_of() { sed -n 's/.*state=\([a-z]*\).*/\1/p'; }

netns_up "$tmp" || { echo "faults-migrate: no second network namespace:"; cat "$tmp/net.out"; echo "0 passed, 1 failed"; exit 1; }
echo "faults-migrate: $n trials, seed $seed (SR_FAULTS_MIG_SEED=$seed repeats them)"

for i in $(seq 1 "$n"); do
	if [ "$cover" = 1 ]; then
		kind=${kinds[$(( (i - 1) % 4 ))]}
		moment=${moments[$(( ((i - 1) + 3 * ((i - 1) / 4)) % 5 ))]}
	else
		kind=${kinds[$((RANDOM % 4))]}
		moment=${moments[$((RANDOM % 5))]}
	fi
	# A receiver killed once it runs the domain kills the domain: that is no migration fault.
	[ "$kind/$moment" = kill-receiver/running ] && moment=go
	# A step is held open 6 s (the box is slow to notice): the fault comes 0..2 s into it.
	delay_ms=$((RANDOM % 2000))
	t0=$(date +%s)
	port=$((7800 + i % 100))
	dom=fm$i
	rm -f "$tmp"/*.log
	$O/sr-run --name $dom --memory 32 --vcpus 2 --rounds 0 --pages 64 --prefill --delay-us 5000 --quiet-guest \
		"$guest" >"$tmp/src.log" 2>&1 &
	spid=$!
	up $dom || { fail=$((fail + 1)); echo "FAIL trial $i: the guest did not start"; kill $spid; continue; }
	# The stream's length comes from the prefilled pages (zero pages cost nothing): wait for them.
	for _ in $(seq 1 300); do
		[ "$(awk '/^RssShmem:/ { print $2 }' /proc/$spid/status 2>/dev/null)" -ge 20480 ] 2>/dev/null && break
		sleep 0.1
	done
	renv=() menv=()
	case $moment in
	go) renv=(SR_TEST_PAUSE_AT=go SR_TEST_PAUSE_MS=6000) ;;
	ready|held|running) menv=(SR_TEST_PAUSE_AT=$moment SR_TEST_PAUSE_MS=6000) ;;
	esac
	far env "${renv[@]}" $O/sr-restore --listen $port --insecure-plaintext --name $dom --accept-timeout 60 --idle-timeout 5 \
		</dev/null >"$tmp/far.log" 2>&1 &
	fpid=$!
	wait_line 'listening on' "$tmp/far.log" 100
	# Mid-stream: uncompressed at 5 MB/s, some 5 s for the 24 MiB the guest prefilled.
	env "${menv[@]}" $O/sr-migrate --cold --compress none --bandwidth 5 --idle-timeout 3 \
		--connect-timeout 5 -q $dom tcp:10.77.0.2:$port 2>"$tmp/mig.log" &
	mpid=$!
	case $moment in
	stream) wait_line 'receiving a domain' "$tmp/far.log" 600 ;;
	go) wait_line 'sr test hook: at go' "$tmp/far.log" 600 ;;
	*) wait_line "sr test hook: at $moment" "$tmp/mig.log" 600 ;;
	esac || echo "     trial $i: the moment ($moment) was not seen within 60 s"
	sleep "$(awk -v m=$delay_ms 'BEGIN { print m / 1000 }')"
	fired=yes
	kill -0 $mpid 2>/dev/null || fired="no (sr-migrate had ended)"
	if [ "$fired" = yes ]; then
		case $kind in
		kill-migrate) kill -KILL $mpid ;;
		kill-receiver) kill -KILL $(descendants $fpid) $fpid 2>/dev/null ;;
		cancel) $O/sr-ctl $dom cancel >"$tmp/cancel.log" 2>&1 ;;
		link) tc qdisc add dev sr-near root netem loss 100% ;;
		esac
	fi
	wait_gone $mpid 600
	wait $mpid 2>/dev/null; rc=$?
	[ $kind = link ] && tc qdisc del dev sr-near root 2>/dev/null
	# The receiver either runs the domain or gives up (its go wait: 30 s at most).
	for _ in $(seq 1 450); do
		kill -0 $fpid 2>/dev/null || break
		far_sr $dom status 2>/dev/null | grep -q state=running && break
		sleep 0.1
	done
	here=$($O/sr-ctl $dom status 2>/dev/null | state_of); here=${here:-gone}
	there=$(far_sr $dom status 2>/dev/null | state_of); there=${there:-gone}
	runner_said=$(grep -o 'not committed.*' "$tmp/src.log" | tail -1)
	verdict=FAIL outcome=
	if [ "$here" = running ] && [ "$there" != running ]; then
		outcome="runs here"
	elif [ "$there" = running ] && [ "$here" = gone ]; then
		outcome="runs there"
	elif [ "$here" = paused ] && [ $rc -eq 3 ] && grep -q "sr-ctl $dom destroy" "$tmp/mig.log"; then
		outcome="paused here, exit 3"
	elif [ "$here" = paused ] && [ $rc -eq 137 ] && [[ "$runner_said" == *"sr-ctl $dom resume"* ]]; then
		outcome="paused here, sr-migrate killed"
	fi
	[ -n "$outcome" ] && [ "$here" != running -o "$there" != running ] && verdict=ok
	# A fault that never landed tested nothing: every moment is held open (or the stream
	# rate-capped) long enough for it, so a trial that missed is a broken trial.
	[ "$fired" = yes ] || verdict=FAIL
	[ -n "$outcome" ] || outcome="here $here, there $there"
	# Whichever copy runs must be the guest, whole: it verifies its memory to the end.
	if [ $verdict = ok ]; then
		if [ "$there" = running ]; then
			far_sr $dom finish >/dev/null 2>&1
			$O/sr-ctl $dom destroy >/dev/null 2>&1	# a paused copy: settled by hand
			wait_gone $fpid 300; wait $fpid; grc=$?
			grep -q '^PASS' "$tmp/far.log" && [ $grc -eq 0 ] || { verdict=FAIL; outcome="$outcome, but the guest there exited $grc"; }
		elif [ "$here" = running ]; then
			$O/sr-ctl $dom finish >/dev/null 2>&1
			wait_gone $spid 300; wait $spid; grc=$?
			grep -q '^PASS' "$tmp/src.log" && [ $grc -eq 0 ] || { verdict=FAIL; outcome="$outcome, but the guest here exited $grc"; }
		fi
	fi
	$O/sr-ctl $dom destroy >/dev/null 2>&1
	far_sr $dom destroy >/dev/null 2>&1
	kill -KILL $(descendants $fpid) $fpid $spid 2>/dev/null
	wait $spid $fpid 2>/dev/null
	key="$kind $moment"
	[ "$fired" = yes ] || outcome="$outcome (not fired)"
	count["$key|$outcome"]=$(( ${count["$key|$outcome"]:-0} + 1 ))
	line="trial $i: $kind at $moment (+${delay_ms} ms, fired: $fired): sr-migrate $rc, $outcome [$(( $(date +%s) - t0 )) s]"
	if [ $verdict = ok ]; then pass=$((pass + 1)); echo "ok   $line"
	else
		fail=$((fail + 1)); echo "FAIL $line"
		sed 's/^/     | mig: /' "$tmp/mig.log" | tail -4; sed 's/^/     | far: /' "$tmp/far.log" | tail -4
		sed 's/^/     | src: /' "$tmp/src.log" | tail -3
	fi
done

printf '\n%-14s %-8s %-34s %s\n' "fault" "moment" "outcome" "trials"
for k in $(printf '%s\n' "${!count[@]}" | sort | tr ' ' '\001'); do
	k=$(tr '\001' ' ' <<<"$k")
	IFS='|' read -r km ko <<<"$k"
	printf '%-14s %-8s %-34s %s\n' "${km% *}" "${km#* }" "$ko" "${count[$k]}"
done
echo "faults-migrate: $pass passed, $fail failed"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
