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
trap 'kill $(jobs -p) $(cat "$tmp/.watchdog" 2>/dev/null) 2>/dev/null; rm -rf "$SR_RUN_DIR" "$tmp"' EXIT
pass=0 fail=0
only=${SR_KVM_TESTS:-}

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     | /' "$2" | tail -15; }

# Every test has a time limit (SR_KVM_TEST_LIMIT seconds, 180; below the
# box's 200 s idle watchdog): past it the watchdog prints the test's
# processes with their wait channels, kills them, and the test fails; the
# run goes on with the next one.
limit=${SR_KVM_TEST_LIMIT:-180}
# Counts a test the watchdog killed as failed, unless it already failed.
reap_timeout() {
	[ -s "$tmp/.timedout" ] || return 0
	local name; read -r name < "$tmp/.timedout"; : > "$tmp/.timedout"
	if [ "$fail" -eq "${fail_at_start:-0}" ]; then
		bad "$name: killed at its ${limit} s time limit"
	else
		echo "     (the failure above: $name was killed at its ${limit} s time limit)"
	fi
}
exclude=${SR_KVM_EXCLUDE:-}
[ -z "$exclude" ] || echo "kvm: NOT run in this pass, by SR_KVM_EXCLUDE (they run in the other): $exclude"
want() {
	[ -z "$only" ] || [[ " $only " == *" $1 "* ]] || return 1
	[[ " $exclude " != *" $1 "* ]] || return 1
	reap_timeout
	fail_at_start=$fail
	echo "$1 $(date +%s) ${2:-$limit}" > "$tmp/.current"
}

# Prints the pids of every descendant of pid $1.
descendants() {
	local kids
	kids=$(ps -eo pid=,ppid= | awk -v p="$1" '$2 == p { print $1 }')
	for k in $kids; do echo "$k"; descendants "$k"; done
}

# Double-forked so that it is no descendant of this shell (the kill below
# spares it) and the tests' bare "wait"s do not wait for it.
main_pid=$$
( ( echo $BASHPID > "$tmp/.watchdog"
    while sleep 5; do
	read -r name start lim < "$tmp/.current" 2>/dev/null || continue
	if [ $(( $(date +%s) - start )) -ge "${lim:-$limit}" ] && [ "$name" != "${killed:-}" ]; then
		killed=$name
		echo "kvm.sh: test '$name' ran past its ${lim:-$limit} s limit; its processes:"
		pids=$(descendants "$main_pid")
		[ -n "$pids" ] && ps -o pid,stat,wchan:24,etime,args -p "$(echo $pids | tr ' ' ,)" 2>/dev/null
		echo "$name" > "$tmp/.timedout"
		[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
		echo "kvm.sh: killed them; '$name' fails, the run goes on"
	fi
    done ) & )

# Waits until domain $1 answers on its control socket.
wait_domain() {
	for _ in $(seq 1 600); do
		$O/sr-ctl "$1" status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

# The watchdog's own test, run only when named (tests/tools.sh does): a test
# that hangs must be killed at the limit, counted failed, and the run go on.
if [[ " $only " == *" hang-selftest "* ]]; then
	want hang-selftest && sleep 100000 && ok "hang-selftest: the sleep ended by itself"
	want after-hang && ok "after-hang: the run went on after a killed test"
	reap_timeout
	echo "kvm: $pass passed, $fail failed"
	exit 0
fi

if ! $O/sr-ctl host >"$tmp/host.out" 2>&1; then
	echo "FAIL kvm: this host cannot run sr's guests; make check runs these tests in tests/box.sh:"
	sed 's/^/     | /' "$tmp/host.out"
	echo "0 passed, 1 failed"
	exit 1
fi
echo "kvm: $(grep '^verdict:' "$tmp/host.out" | sed 's/^verdict: *//')"

t_guest() {	# name vcpus
	$O/sr-run --vcpus "$2" --rounds 4 --quiet-guest "$guest" >"$tmp/$1.out" 2>&1
	local rc=$?
	if [ $rc -eq 0 ] && grep -q '^PASS: ' "$tmp/$1.out"; then ok "$1: guest reached PASS on $2 vCPU(s)"
	else bad "$1: guest on $2 vCPU(s) exited $rc" "$tmp/$1.out"; fi
}
want guest-1 && t_guest guest-1 1
want guest-2 && t_guest guest-2 2
if want guest-elf; then
	$O/sr-run --vcpus 2 --rounds 3 --quiet-guest "${guest%.bin}.elf" >"$tmp/elf.out" 2>&1; rc=$?
	if [ $rc -eq 0 ] && grep -q '^PASS: ' "$tmp/elf.out"; then ok "guest-elf: the ELF test guest (PT_LOAD segments, entry) reached PASS on 2 vCPUs"
	else bad "guest-elf: sr-run of the ELF file exited $rc" "$tmp/elf.out"; fi
	# Hostile ELF files: one line, exit 2, nothing run.
	elf=${guest%.bin}.elf
	head -c 100 "$elf" > "$tmp/short.elf"
	cp "$elf" "$tmp/far.elf"; printf '\x00\x00\x00\x40' | dd of="$tmp/far.elf" bs=1 seek=24 conv=notrunc status=none
	for f in short far; do
		$O/sr-run "$tmp/$f.elf" >"$tmp/elf.out" 2>&1; rc=$?
		if [ $rc -eq 2 ] && [ "$(wc -l < "$tmp/elf.out")" -eq 1 ] && grep -q "$f.elf: ELF" "$tmp/elf.out"; then ok "guest-elf: $f ELF refused: $(cat "$tmp/elf.out")"
		else bad "guest-elf: $f ELF exited $rc" "$tmp/elf.out"; fi
	done
fi

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
	for mode in bitmap clear ring; do
		if $O/tests/kvm-dirty-log "$guest" $mode 30 >"$tmp/dl.out" 2>&1; then
			ok "dirty-log ($mode): $(grep '^ok: [0-9]' "$tmp/dl.out" | cut -c5-)"
		else
			bad "dirty-log ($mode)" "$tmp/dl.out"
		fi
	done
fi

if want poke; then
	# The guest must notice a host that corrupts its memory: its checks can fail.
	$O/sr-run --name poke --rounds 0 --pages 64 --working-set 256 --delay-us 20000 \
		--quiet-guest "$guest" >"$tmp/poke.out" 2>&1 &
	pid=$!
	wait_domain poke && sleep 0.5 && $O/sr-ctl poke poke $((0x800000 + 5 * 4096 + 808)) >/dev/null
	sleep 0.5
	$O/sr-ctl poke finish >/dev/null 2>&1
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
	if [ $rc -eq 3 ] && grep -q "/dev/kvm" "$tmp/nk.out"; then ok "no-kvm: $(cat "$tmp/nk.out")"
	else bad "no-kvm: sr-run without /dev/kvm exited $rc (want 3)" "$tmp/nk.out"; fi
fi

# ------------------------------------------------------------ save / restore
# Restores an image in the background as domain $2; output to $tmp/$2.out.
restore_bg() { $O/sr-restore --name "$2" "${@:3}" "$1" >"$tmp/$2.out" 2>&1 & }

if want save-points; then
	# Guest-requested saves at different rounds, 1 and 2 vCPUs; then restore.
	for spec in "1 2" "1 5" "2 3" "2 6"; do
		set -- $spec
		name="sp-$1-$2"
		$O/sr-run --name $name --memory 32 --vcpus $1 --rounds 7 --save-round $2 \
			--save-to "$tmp/$name.img" --quiet-guest "$guest" >"$tmp/$name.run" 2>&1; rc=$?
		if [ $rc -ne 0 ] || [ ! -s "$tmp/$name.img" ]; then bad "save-points: $1 vCPU(s) round $2: sr-run exited $rc" "$tmp/$name.run"; continue; fi
		if ! $O/sr-dump --verify "$tmp/$name.img" 2>"$tmp/$name.dump"; then bad "save-points: image fails sr-dump --verify" "$tmp/$name.dump"; continue; fi
		$O/sr-restore --name $name "$tmp/$name.img" >"$tmp/$name.out" 2>&1; rc=$?
		if [ $rc -eq 0 ] && grep -q "^round $2: after the save point: restores 0 -> 1" "$tmp/$name.out" && grep -q '^PASS: ' "$tmp/$name.out"; then
			ok "save-points: $1 vCPU(s), saved by the guest after round $2, restored: PASS"
		else
			bad "save-points: $1 vCPU(s) round $2: sr-restore exited $rc" "$tmp/$name.out"
		fi
	done
fi

if want external-save; then
	# sr-save from outside at an arbitrary moment of the workload, on 2 vCPUs.
	$O/sr-run --name ext --memory 32 --vcpus 2 --rounds 0 --pages 128 --delay-us 2000 \
		--quiet-guest "$guest" >"$tmp/ext.run" 2>&1 &
	pid=$!
	wait_domain ext && sleep 1.5
	$O/sr-save -q ext "$tmp/ext.img" 2>"$tmp/ext.save"; rc=$?
	wait $pid; rrc=$?
	if [ $rc -ne 0 ] || [ $rrc -ne 0 ]; then
		bad "external-save: sr-save exited $rc, the runner $rrc" "$tmp/ext.save"
	else
		restore_bg "$tmp/ext.img" ext2
		rpid=$!
		wait_domain ext2 && sleep 2 && $O/sr-ctl ext2 finish >/dev/null
		wait $rpid; rc=$?
		if [ $rc -eq 0 ] && grep -q '^PASS: .*finished on request' "$tmp/ext2.out"; then
			ok "external-save: saved mid-workload by sr-save, restored on 2 vCPUs: PASS"
		else
			bad "external-save: restored guest exited $rc" "$tmp/ext2.out"
		fi
	fi
fi

if want restore-twice; then
	$O/sr-run --name tw --memory 32 --vcpus 2 --rounds 5 --save-round 2 --save-to "$tmp/tw.img" \
		--quiet-guest "$guest" >/dev/null 2>&1
	$O/sr-restore --name tw1 "$tmp/tw.img" >"$tmp/tw1.out" 2>&1; rc1=$?
	$O/sr-restore --name tw2 "$tmp/tw.img" >"$tmp/tw2.out" 2>&1; rc2=$?
	if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && grep -q '^PASS' "$tmp/tw1.out" && cmp -s "$tmp/tw1.out" "$tmp/tw2.out"; then
		ok "restore-twice: two restores of one image both PASS with identical console output"
	else
		diff "$tmp/tw1.out" "$tmp/tw2.out" > "$tmp/tw.diff"
		bad "restore-twice: exits $rc1/$rc2" "$tmp/tw.diff"
	fi
fi

if want chain; then
	# save -> restore -> run -> save, 20 times, then let the guest finish.
	$O/sr-run --name ch --memory 24 --vcpus 2 --rounds 0 --pages 64 --delay-us 2000 \
		--quiet-guest "$guest" >"$tmp/ch.out" 2>&1 &
	wait_domain ch && sleep 0.5
	cycles=0
	img=$tmp/ch.img
	for i in $(seq 1 20); do
		$O/sr-save -q ch "$img" 2>>"$tmp/ch.out" || break
		wait
		$O/sr-dump --verify "$img" 2>>"$tmp/ch.out" || break
		$O/sr-restore --name ch "$img" >>"$tmp/ch.out" 2>&1 &
		wait_domain ch || break
		sleep 0.3
		cycles=$i
	done
	$O/sr-ctl ch finish >/dev/null 2>&1
	wait; rc=$?
	if [ $cycles -eq 20 ] && [ $rc -eq 0 ] && grep -q '^PASS' "$tmp/ch.out"; then
		ok "chain: 20 save -> restore -> run cycles on 2 vCPUs, then PASS"
	else
		bad "chain: $cycles of 20 cycles, last exit $rc" "$tmp/ch.out"
	fi
fi

if want corrupt-image; then
	$O/sr-run --name ci --memory 24 --rounds 4 --save-round 2 --save-to "$tmp/ci.img" \
		--quiet-guest "$guest" >/dev/null 2>&1
	size=$(stat -c %s "$tmp/ci.img")
	for what in flip-early flip-late flip-end truncate; do
		cp "$tmp/ci.img" "$tmp/cx.img"
		case $what in
		flip-early) off=200 ;;
		flip-late) off=$((size * 3 / 4)) ;;
		flip-end) off=$((size - 20)) ;;
		esac
		if [ $what = truncate ]; then
			head -c $((size - 5000)) "$tmp/ci.img" > "$tmp/cx.img"
		else
			b=$(od -An -tu1 -j $off -N1 "$tmp/cx.img" | tr -d ' ')
			printf "\\$(printf %o $((b ^ 16)))" | dd of="$tmp/cx.img" bs=1 seek=$off conv=notrunc status=none
		fi
		$O/sr-restore --name cx "$tmp/cx.img" >"$tmp/cx.out" 2>&1; rc=$?
		if [ $rc -eq 5 ] && [ $(wc -l < "$tmp/cx.out") -eq 1 ] && grep -Eq 'record [0-9]+ (\([A-Z_]+\) )?at offset [0-9]+' "$tmp/cx.out"; then
			ok "corrupt-image ($what): refused before any guest code ran: $(cat "$tmp/cx.out")"
		else
			bad "corrupt-image ($what): sr-restore exited $rc" "$tmp/cx.out"
		fi
	done
fi

if want placed-restore; then
	# Page data goes straight into guest memory, verified where it lands, with
	# and without worker threads; a batch corrupted in its page data is still
	# refused before any vCPU exists.  The guest checks every page it wrote.
	$O/sr-run --name pr --memory 64 --vcpus 2 --rounds 4 --save-round 2 --pages 2048 \
		--save-to "$tmp/pr.img" --quiet-guest "$guest" >"$tmp/pr.run" 2>&1; rc=$?
	[ $rc -eq 0 ] || bad "placed-restore: saving the guest exited $rc" "$tmp/pr.run"
	rec=$($O/sr-dump --json "$tmp/pr.img" | python3 -c '
import json, sys
recs = [r for r in json.load(sys.stdin)["records"] if r["type"] == "PAGE_DATA" and r["raw"] + r["lz4"] > 100]
r = recs[len(recs) // 2]
print(r["index"], r["offset"] + 8 + 8 + 16 * r["pages"] + r["length"] // 2)' 2>/dev/null)
	for threads in 0 2; do
		$O/sr-restore --name pr$threads -v --threads $threads "$tmp/pr.img" >"$tmp/pr$threads.out" 2>&1; rc=$?
		line=$(grep -o 'page data: [0-9]* of [0-9]* records read straight into guest memory, [0-9]* threads\?' "$tmp/pr$threads.out")
		n=$(echo "$line" | awk '{ print $3 }'); of=$(echo "$line" | awk '{ print $5 }')
		if [ $rc -eq 0 ] && grep -q '^PASS' "$tmp/pr$threads.out" && [ -n "$n" ] && [ "$n" -gt 0 ] && [ "$n" = "$of" ]; then
			ok "placed-restore: --threads $threads: $line; the guest verified its memory: PASS"
		else
			bad "placed-restore: --threads $threads exited $rc ($line)" "$tmp/pr$threads.out"
		fi
	done
	read -r ri ro <<< "$rec"
	if [ -n "$rec" ]; then
		cp "$tmp/pr.img" "$tmp/prx.img"
		b=$(od -An -tu1 -j $ro -N1 "$tmp/prx.img" | tr -d ' ')
		printf "\\$(printf %o $((b ^ 64)))" | dd of="$tmp/prx.img" bs=1 seek=$ro conv=notrunc status=none
		for threads in 0 2; do
			$O/sr-restore --name prx --threads $threads "$tmp/prx.img" >"$tmp/prx.out" 2>&1; rc=$?
			if [ $rc -eq 5 ] && [ $(wc -l < "$tmp/prx.out") -eq 1 ] &&
			   grep -q "record $ri (PAGE_DATA) at offset [0-9]*: checksum mismatch" "$tmp/prx.out"; then
				ok "placed-restore: a flipped byte in record $ri's page data (offset $ro), --threads $threads: refused before any vCPU existed: $(cat "$tmp/prx.out")"
			else
				bad "placed-restore: corrupt page data, --threads $threads: sr-restore exited $rc" "$tmp/prx.out"
			fi
		done
	else
		bad "placed-restore: no PAGE_DATA record with data found in the image" /dev/null
	fi
fi

if want clock; then
	# The guest measures kvmclock and its TSC across the save gap (3 s of sleep):
	# with --clock advance both move on by the gap, with --clock freeze neither;
	# where sr-restore carried the saved TSC offsets, the two must agree.
	$O/sr-run --name ck --memory 24 --rounds 3 --save-round 1 --save-to "$tmp/ck.img" \
		"$guest" >/dev/null 2>&1
	sleep 3
	$O/sr-restore -v --name ck1 --clock advance "$tmp/ck.img" >"$tmp/ck1.out" 2>&1; rc1=$?
	sleep 3
	$O/sr-restore -v --name ck2 --clock freeze "$tmp/ck.img" >"$tmp/ck2.out" 2>&1; rc2=$?
	j1=$(sed -n 's/.*kvmclock jump \([0-9]*\) ms.*/\1/p' "$tmp/ck1.out")
	j2=$(sed -n 's/.*kvmclock jump \([0-9]*\) ms.*/\1/p' "$tmp/ck2.out")
	t1=$(sed -n 's/.*tsc jump \([0-9]*\) ms.*/\1/p' "$tmp/ck1.out")
	t2=$(sed -n 's/.*tsc jump \([0-9]*\) ms.*/\1/p' "$tmp/ck2.out")
	how=$(sed -n 's/.*; TSC \(.*\)$/\1/p' "$tmp/ck1.out" | head -1)
	cat "$tmp/ck1.out" "$tmp/ck2.out" > "$tmp/ck.out"
	if ! { [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && [ -n "$j1" ] && [ -n "$j2" ] &&
	       [ "$j1" -ge 3000 ] && [ "$j2" -lt 1000 ]; }; then
		bad "clock: advance '${j1}' ms (want >= 3000), freeze '${j2}' ms (want < 1000), exits $rc1/$rc2" "$tmp/ck.out"
	elif [ "$how" != "offsets carried" ]; then
		bad "clock: kvmclock advance ${j1} ms, freeze ${j2} ms, but the TSC offsets were not carried: '${how}'" "$tmp/ck.out"
	elif [ -z "$t1" ] || [ -z "$t2" ] || [ $((t1 > j1 ? t1 - j1 : j1 - t1)) -gt 50 ] ||
	     [ $((t2 > j2 ? t2 - j2 : j2 - t2)) -gt 50 ]; then
		bad "clock: the TSC and kvmclock disagree across the gap: advance tsc '${t1}' / kvmclock ${j1} ms, freeze tsc '${t2}' / kvmclock ${j2} ms (want within 50 ms)" "$tmp/ck.out"
	else
		ok "clock: advance jumped ${j1} ms over a >= 3 s gap (TSC ${t1} ms), freeze ${j2} ms (TSC ${t2} ms); TSC offsets carried"
	fi
	# Without the host TSC stamp (KVM_CLOCK_HOST_TSC cleared) vCPU 0's saved
	# TSC stands in: the TSC still moves on with kvmclock and never goes back.
	$O/tests/imgedit clock-flags 8 "$tmp/ck.img" "$tmp/ck-nostamp.img"
	sleep 1
	$O/sr-restore -v --name ck3 --clock advance "$tmp/ck-nostamp.img" >"$tmp/ck3.out" 2>&1; rc3=$?
	j3=$(sed -n 's/.*kvmclock jump \([0-9]*\) ms.*/\1/p' "$tmp/ck3.out")
	t3=$(sed -n 's/.*tsc jump \([0-9]*\) ms.*/\1/p' "$tmp/ck3.out")
	how=$(sed -n 's/.*; TSC \(.*\)$/\1/p' "$tmp/ck3.out" | head -1)
	if [ $rc3 -eq 0 ] && [ -n "$j3" ] && [ -n "$t3" ] && [ "$j3" -ge 4000 ] &&
	   [ "${how%%:*}" = "from vCPU 0's saved TSC" ] && [ $((t3 > j3 ? t3 - j3 : j3 - t3)) -le 50 ]; then
		ok "clock: without the host TSC stamp: kvmclock ${j3} ms, TSC ${t3} ms ($how)"
	else
		bad "clock: without the host TSC stamp: kvmclock '${j3}' ms, TSC '${t3}' ms (want within 50 ms), '$how', exit $rc3" "$tmp/ck3.out"
	fi
fi

if want disk-full; then
	mkdir -p "$tmp/full"
	mount -t tmpfs -o size=2m tmpfs "$tmp/full"
	$O/sr-run --name df --memory 32 --rounds 0 --pages 64 --delay-us 2000 --quiet-guest \
		"$guest" >"$tmp/df.out" 2>&1 &
	pid=$!
	wait_domain df && sleep 0.5
	$O/sr-save df "$tmp/full/df.img" 2>"$tmp/df.save"; rc=$?
	sleep 0.5
	$O/sr-ctl df finish >/dev/null 2>&1
	wait $pid; rrc=$?
	left=$(ls "$tmp/full")
	umount "$tmp/full"
	if [ $rc -eq 1 ] && grep -q 'No space left' "$tmp/df.save" && [ -z "$left" ] && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/df.out"; then
		ok "disk-full: $(cat "$tmp/df.save"); the guest ran on to PASS, nothing left behind"
	else
		cat "$tmp/df.save" >> "$tmp/df.out"; echo "left: $left" >> "$tmp/df.out"
		bad "disk-full: sr-save exited $rc, runner $rrc" "$tmp/df.out"
	fi
fi

if want reader-gone; then
	# sr-save to a pipe whose reader quits early: the domain must live on.
	$O/sr-run --name rg --memory 32 --rounds 0 --pages 64 --delay-us 2000 --quiet-guest \
		"$guest" >"$tmp/rg.out" 2>&1 &
	pid=$!
	wait_domain rg && sleep 0.5
	$O/sr-save rg - 2>"$tmp/rg.save" | head -c 100000 >/dev/null
	sleep 0.5
	$O/sr-ctl rg finish >/dev/null 2>&1
	wait $pid; rrc=$?
	if grep -q 'the domain runs on' "$tmp/rg.save" && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/rg.out"; then
		ok "reader-gone: $(cat "$tmp/rg.save"); the guest ran on to PASS"
	else
		cat "$tmp/rg.save" >> "$tmp/rg.out"
		bad "reader-gone: runner exited $rrc" "$tmp/rg.out"
	fi
fi

if want signal; then
	# SIGINT to sr-save in the middle of a save: the domain lives on, no file.
	# The guest has written all its memory (--prefill), so the save has pages
	# to send; the signal comes once the runner says the save is running.
	$O/sr-run --name sg --memory 256 --rounds 0 --pages 64 --delay-us 2000 --prefill --quiet-guest \
		"$guest" >"$tmp/sg.out" 2>&1 &
	pid=$!
	wait_domain sg && sleep 2
	$O/sr-save sg "$tmp/sg.img" 2>"$tmp/sg.save" &
	spid=$!
	for _ in $(seq 1 400); do grep -q 'save=running' <($O/sr-ctl sg status 2>/dev/null) && break; sleep 0.01; done
	kill -INT $spid; wait $spid; src=$?
	sleep 1
	$O/sr-ctl sg status >"$tmp/sg.status" 2>&1; strc=$?
	$O/sr-ctl sg finish >/dev/null 2>&1
	wait $pid; rrc=$?
	if [ $src -ne 0 ] && [ $strc -eq 0 ] && grep -q 'state=running' "$tmp/sg.status" && [ ! -e "$tmp/sg.img" ] && [ ! -e "$tmp/sg.img.tmp" ] && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/sg.out"; then
		ok "signal: SIGINT mid-save left the domain running (then PASS) and no file"
	else
		cat "$tmp/sg.save" "$tmp/sg.status" >> "$tmp/sg.out"; ls -la "$tmp" >> "$tmp/sg.out"
		bad "signal: sr-save $src, status $strc, runner $rrc" "$tmp/sg.out"
	fi
fi

if want console-stall; then
	# A console reader that stops must not stop the guest: output is dropped
	# (and said so), pause and resume still answer at once.
	mkfifo "$tmp/con.fifo"
	( exec cat "$tmp/con.fifo" > "$tmp/con.out" ) & cpid=$!
	SR_CONSOLE_BYTES=4096 $O/sr-run --name cs --rounds 0 --pages 4 --delay-us 0 "$guest" \
		>"$tmp/con.fifo" 2>"$tmp/con.err" &
	pid=$!
	wait_domain cs && sleep 0.5
	kill -STOP $cpid
	sleep 10		# the guest prints far more than the pipe (64 KiB) and 4 KiB hold
	t0=$(date +%s%N)
	$O/sr-ctl cs pause >/dev/null 2>&1; prc=$?
	t1=$(date +%s%N)
	$O/sr-ctl cs resume >/dev/null 2>&1
	kill -CONT $cpid
	sleep 1
	$O/sr-ctl cs finish >/dev/null 2>&1
	wait $pid; rrc=$?
	wait $cpid 2>/dev/null
	ms=$(( (t1 - t0) / 1000000 ))
	if [ $prc -eq 0 ] && [ $ms -lt 2000 ] && [ $rrc -eq 0 ] && grep -q 'console bytes dropped' "$tmp/con.out" && grep -q '^PASS' "$tmp/con.out"; then
		ok "console-stall: with the console reader stopped, pause answered in $ms ms, $(grep -o '[0-9]* console bytes dropped' "$tmp/con.out" | head -1), then PASS"
	else
		cat "$tmp/con.err" >> "$tmp/con.out"; bad "console-stall: pause $prc in $ms ms, runner $rrc" "$tmp/con.out"
	fi
fi

if want save-control; then
	# The runner answers during a save: status shows progress, other requests
	# are refused as busy, cancel aborts it, and a stalled reader times out.
	$O/sr-run --name sc --memory 256 --rounds 0 --pages 64 --delay-us 2000 --quiet-guest \
		"$guest" >"$tmp/sc.out" 2>&1 &
	pid=$!
	wait_domain sc && sleep 0.3
	# A reader that takes nothing: the save stalls on a full pipe.
	( $O/sr-save sc - 2>"$tmp/sc.save" | sleep 30 ) & spid=$!
	sleep 1.5
	$O/sr-ctl sc status >"$tmp/sc.status" 2>&1
	$O/sr-ctl sc pause >"$tmp/sc.busy" 2>&1; brc=$?
	$O/sr-ctl sc cancel >"$tmp/sc.cancel" 2>&1; crc=$?
	for _ in $(seq 1 100); do grep -q 'cancel' "$tmp/sc.save" 2>/dev/null && break; sleep 0.1; done
	$O/sr-ctl sc status >"$tmp/sc.after" 2>&1
	pkill -P $spid sleep 2>/dev/null; wait $spid 2>/dev/null
	if grep -q 'save=running pages=[0-9]*/65536' "$tmp/sc.status" && [ $brc -eq 1 ] && grep -q busy "$tmp/sc.busy" &&
	   [ $crc -eq 0 ] && grep -q 'save cancelled' "$tmp/sc.save" && grep -q 'state=running' "$tmp/sc.after" &&
	   ! grep -q 'save=' "$tmp/sc.after"; then
		ok "save-control: status during a save ($(grep -o 'save=[^ ]* pages=[^ ]*' "$tmp/sc.status")), pause refused as busy, cancel aborted it, domain running"
	else
		cat "$tmp/sc.status" "$tmp/sc.busy" "$tmp/sc.cancel" "$tmp/sc.save" "$tmp/sc.after" >> "$tmp/sc.out"
		bad "save-control: cancel (busy $brc, cancel $crc)" "$tmp/sc.out"
	fi
	# Stall timeout: nobody cancels; the runner gives up after 3 s without progress.
	start=$(date +%s)
	( $O/sr-save --stall-timeout 3 sc - 2>"$tmp/sc.stall" | sleep 30 ) & spid=$!
	for _ in $(seq 1 200); do grep -q 'cancel' "$tmp/sc.stall" 2>/dev/null && break; sleep 0.1; done
	took=$(( $(date +%s) - start ))
	pkill -P $spid sleep 2>/dev/null; wait $spid 2>/dev/null
	$O/sr-ctl sc status >"$tmp/sc.after2" 2>&1
	$O/sr-ctl sc finish >/dev/null 2>&1
	wait $pid; rrc=$?
	if grep -q 'save cancelled' "$tmp/sc.stall" && [ $took -lt 15 ] && grep -q 'state=running' "$tmp/sc.after2" &&
	   grep -q 'made no progress for 3 s' "$tmp/sc.out" && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/sc.out"; then
		ok "save-control: a stalled reader timed the save out after ${took} s: $(grep -o 'save of .*' "$tmp/sc.out" | head -1); then PASS"
	else
		cat "$tmp/sc.stall" "$tmp/sc.after2" >> "$tmp/sc.out"; bad "save-control: stall timeout (${took} s, runner $rrc)" "$tmp/sc.out"
	fi
fi

if want cpu-compat; then
	# An image from a host with features this one lacks: refused before any
	# vCPU exists, naming them (the image itself is sound and verifies).
	$O/sr-run --name cc --memory 32 --rounds 3 --save-round 1 --save-to "$tmp/cc.img" \
		--quiet-guest "$guest" >/dev/null 2>&1
	$O/tests/imgedit cpuid 7 0 3 24 "$tmp/cc.img" "$tmp/cc-amx.img"
	$O/tests/imgedit msr 0xc0011fff "$tmp/cc.img" "$tmp/cc-msr.img"
	for k in amx msr; do
		$O/sr-dump --verify "$tmp/cc-$k.img" || bad "cpu-compat: the $k image does not verify"
		$O/sr-restore --name cc$k "$tmp/cc-$k.img" >"$tmp/cc-$k.out" 2>&1; rc=$?
		case $k in amx) want_msg='does not offer: amx-tile' ;; msr) want_msg='does not know: 0xc0011fff' ;; esac
		if [ $rc -eq 2 ] && grep -q "$want_msg" "$tmp/cc-$k.out" && [ "$(wc -l < "$tmp/cc-$k.out")" -eq 1 ]; then
			ok "cpu-compat: $(cut -c1-160 "$tmp/cc-$k.out")"
		else
			bad "cpu-compat ($k): sr-restore exited $rc" "$tmp/cc-$k.out"
		fi
	done
	$O/sr-restore --name ccok "$tmp/cc.img" >"$tmp/cc-ok.out" 2>&1; rc=$?
	if [ $rc -eq 0 ] && grep -q '^PASS' "$tmp/cc-ok.out"; then ok "cpu-compat: the unedited image restores: PASS"
	else bad "cpu-compat: the unedited image exited $rc" "$tmp/cc-ok.out"; fi
fi

if want zero-pages; then
	# A 1 GiB guest that touched ~10 MiB: its image is mostly ZERO pages, which
	# a restore must not turn into committed memory.
	$O/sr-run --name zp --memory 1024 --vcpus 1 --rounds 3 --save-round 1 --pages 64 --working-set 256 \
		--save-to "$tmp/zp.img" --quiet-guest "$guest" >"$tmp/zp.run" 2>&1; rc=$?
	$O/sr-restore --name zp --paused "$tmp/zp.img" >"$tmp/zp.out" 2>&1 &
	pid=$!
	wait_domain zp
	rss=$(awk '/^VmRSS:/ { print int($2 / 1024) }' /proc/$pid/status 2>/dev/null)
	$O/sr-ctl zp resume >/dev/null 2>&1; $O/sr-ctl zp finish >/dev/null 2>&1
	wait $pid; rrc=$?
	zero=$($O/sr-dump --json "$tmp/zp.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["zero"])')
	if [ $rc -eq 0 ] && [ $rrc -eq 0 ] && [ -n "$rss" ] && [ "$rss" -lt 96 ] && grep -q '^PASS' "$tmp/zp.out"; then
		ok "zero-pages: 1 GiB guest with $zero ZERO pages restored with ${rss} MiB resident (under 96), then PASS"
	else
		bad "zero-pages: save $rc, restore $rrc, resident '${rss}' MiB" "$tmp/zp.out"
	fi
	$O/sr-restore --name zq --max-memory 512 "$tmp/zp.img" >"$tmp/zq.out" 2>&1; rc=$?
	if [ $rc -eq 2 ] && grep -q 'more than the 512 MiB allowed' "$tmp/zq.out"; then
		ok "zero-pages: --max-memory 512 refuses the 1 GiB guest before allocating: $(cat "$tmp/zq.out")"
	else
		bad "zero-pages: --max-memory exited $rc" "$tmp/zq.out"
	fi
fi

if want untouched-memory; then
	# A running 1 GiB guest that touched a few MiB: a checkpoint must not read
	# (and so allocate) the memory it never touched; the image describes it
	# in a few zero runs.  Guest memory is the runner's shared memory
	# (RssShmem); it must stay within 5%, and all of the runner within 4 MiB
	# (its save threads and buffers come and go).
	# Under AddressSanitizer its allocator, shadow and thread bookkeeping add to
	# the runner's own memory (7 MiB for the save pipe's batches and worker
	# here): 16 MiB there.  Guest memory gets no such allowance.
	um_limit=4096
	grep -q __asan_init "$O/sr-run" 2>/dev/null && um_limit=16384
	$O/sr-run --name um --memory 1024 --vcpus 1 --rounds 0 --pages 64 --working-set 256 \
		--quiet-guest "$guest" >"$tmp/um.out" 2>&1 &
	pid=$!
	wait_domain um && sleep 1
	shm0=$(awk '/^RssShmem:/ { print $2 }' /proc/$pid/status 2>/dev/null)
	rss0=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status 2>/dev/null)
	$O/sr-save -c um "$tmp/um.img" 2>"$tmp/um.save"; rc=$?
	shm1=$(awk '/^RssShmem:/ { print $2 }' /proc/$pid/status 2>/dev/null)
	rss1=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status 2>/dev/null)
	$O/sr-ctl um finish >/dev/null 2>&1
	wait $pid; rrc=$?
	runs=$($O/sr-dump --json "$tmp/um.img" 2>/dev/null | python3 -c 'import json,sys
d = json.load(sys.stdin); print(sum(r.get("zero_runs", 0) for r in d["records"]))' 2>/dev/null)
	size=$(stat -c %s "$tmp/um.img" 2>/dev/null || echo 0)
	if [ $rc -eq 0 ] && [ $rrc -eq 0 ] && [ -n "$shm0" ] && [ -n "$shm1" ] && [ -n "$rss1" ] &&
	   [ $((shm1 * 100)) -le $((shm0 * 105)) ] && [ $((rss1 - rss0)) -lt $um_limit ] &&
	   [ -n "$runs" ] && [ "$runs" -ge 1 ] && [ "$size" -lt $((64 << 20)) ] &&
	   grep -q '^PASS' "$tmp/um.out"; then
		ok "untouched-memory: sr-save -c of a 1 GiB guest: guest memory resident ${shm0} -> ${shm1} KiB (within 5%), runner $((rss0 / 1024)) -> $((rss1 / 1024)) MiB (limit +$((um_limit / 1024))), image $((size >> 10)) KiB with $runs zero runs, then PASS"
	else
		cat "$tmp/um.save" >> "$tmp/um.out"
		bad "untouched-memory: save $rc, guest $rrc, guest memory resident '$shm0' -> '$shm1' KiB (want within 5%), runner '$rss0' -> '$rss1' KiB, $runs zero runs, image $size bytes" "$tmp/um.out"
	fi
fi

if want two-phase; then
	# The commit protocol: the domain ends only once FILE is in place, and a
	# save that never commits leaves the domain running.
	tp_run() {	# name: a guest that runs until finished
		$O/sr-run --name "$1" --memory 64 --rounds 0 --pages 64 --delay-us 5000 --quiet-guest \
			"$guest" >"$tmp/$1.out" 2>&1 &
		tp_pid=$!
		wait_domain "$1" && sleep 0.3
	}
	tp_finish() { $O/sr-ctl "$1" finish >/dev/null 2>&1; wait $tp_pid; tp_rc=$?; grep -q '^PASS' "$tmp/$1.out" || tp_rc=1; }

	# SIGKILL mid-save: the domain runs on, nothing at FILE or FILE.tmp, and the
	# next save to the same FILE works (no stale FILE.tmp to refuse it).  The
	# guest has written all of its 256 MiB (--prefill), so the save has pages
	# to send, and the kill comes once the runner says the save is running.
	$O/sr-run --name tpk --memory 256 --rounds 0 --pages 64 --delay-us 5000 --prefill \
		--quiet-guest "$guest" >"$tmp/tpk.out" 2>&1 &
	tp_pid=$!
	wait_domain tpk && sleep 2
	$O/sr-save tpk "$tmp/tpk.img" 2>"$tmp/tpk.save" & spid=$!
	for _ in $(seq 1 400); do grep -q 'save=running' <($O/sr-ctl tpk status 2>/dev/null) && break; sleep 0.01; done
	kill -KILL $spid; wait $spid 2>/dev/null
	sleep 0.5
	$O/sr-ctl tpk status >"$tmp/tpk.status" 2>&1
	left=$(ls "$tmp" | grep -c '^tpk.img')
	$O/sr-save -c tpk "$tmp/tpk.img" 2>>"$tmp/tpk.save"; rc=$?
	tp_finish tpk
	if grep -q 'state=running' "$tmp/tpk.status" && [ "$left" -eq 0 ] && [ $rc -eq 0 ] &&
	   $O/sr-dump --verify "$tmp/tpk.img" && [ $tp_rc -eq 0 ]; then
		ok "two-phase: SIGKILL mid-save: domain ran on, nothing left behind, the next save to the same FILE worked, then PASS"
	else
		cat "$tmp/tpk.save" "$tmp/tpk.status" >> "$tmp/tpk.out"; bad "two-phase: SIGKILL mid-save: left $left, resave $rc, runner $tp_rc" "$tmp/tpk.out"
	fi

	# SIGINT and SIGTERM inside the commit window are held back: the save
	# completes, FILE verifies, the domain ends as asked.
	for sig in INT TERM; do
		tp_run tps$sig
		SR_SAVE_COMMIT_DELAY_MS=1500 $O/sr-save tps$sig "$tmp/tps$sig.img" 2>"$tmp/tps$sig.save" & spid=$!
		for _ in $(seq 1 100); do [ -e "$tmp/tps$sig.img" ] && break; sleep 0.05; done
		kill -$sig $spid; wait $spid; rc=$?
		wait $tp_pid; rrc=$?
		if [ $rc -eq 0 ] && [ $rrc -eq 0 ] && $O/sr-dump --verify "$tmp/tps$sig.img"; then
			ok "two-phase: SIG$sig inside the commit window was held back: saved, image verifies, domain ended as asked"
		else
			cat "$tmp/tps$sig.save" >> "$tmp/tps$sig.out"; bad "two-phase: SIG$sig in the commit window: sr-save $rc, runner $rrc" "$tmp/tps$sig.out"
		fi
	done

	# SIGKILL inside the commit window (FILE placed, "commit" never sent): the
	# runner resumes the domain; FILE is a complete image.
	tp_run tpw
	SR_SAVE_COMMIT_DELAY_MS=3000 $O/sr-save tpw "$tmp/tpw.img" 2>"$tmp/tpw.save" & spid=$!
	for _ in $(seq 1 100); do [ -e "$tmp/tpw.img" ] && break; sleep 0.05; done
	kill -KILL $spid; wait $spid 2>/dev/null
	sleep 0.5
	$O/sr-ctl tpw status >"$tmp/tpw.status" 2>&1
	tp_finish tpw
	if grep -q 'state=running' "$tmp/tpw.status" && [ $tp_rc -eq 0 ] && grep -q 'not committed' "$tmp/tpw.out" &&
	   $O/sr-dump --verify "$tmp/tpw.img"; then
		ok "two-phase: sr-save killed before commit: the domain resumed and said so ($(grep -o 'not committed: [^;]*' "$tmp/tpw.out")), FILE complete"
	else
		cat "$tmp/tpw.save" "$tmp/tpw.status" >> "$tmp/tpw.out"; bad "two-phase: killed in the commit window: runner $tp_rc" "$tmp/tpw.out"
	fi

	# FILE cannot be put in place (it is a directory): sr-save aborts, the
	# domain runs on, nothing is left beside it.
	tp_run tpa
	mkdir "$tmp/tpa.img"
	$O/sr-save tpa "$tmp/tpa.img" 2>"$tmp/tpa.save"; rc=$?
	$O/sr-ctl tpa status >"$tmp/tpa.status" 2>&1
	tp_finish tpa
	side=$(ls "$tmp" | grep -c 'tpa.img.')
	if [ $rc -eq 1 ] && grep -q 'putting the image in place' "$tmp/tpa.save" && grep -q 'state=running' "$tmp/tpa.status" &&
	   [ "$side" -eq 0 ] && [ $tp_rc -eq 0 ]; then
		ok "two-phase: FILE could not be placed: aborted, domain ran on to PASS: $(head -1 "$tmp/tpa.save")"
	else
		cat "$tmp/tpa.save" "$tmp/tpa.status" >> "$tmp/tpa.out"; bad "two-phase: abort: sr-save $rc, runner $tp_rc, side files $side" "$tmp/tpa.out"
	fi
fi

# ------------------------------------------------------------------- live save
# live_run NAME MODE "SR-RUN KNOBS" "SR-SAVE OPTIONS": live-save a guest that
# writes on both vCPUs throughout, restore it, let it finish; sets lv_rc.
live_run() {
	local name=$1 mode=$2
	$O/sr-run --name $name --memory 32 --vcpus 2 --rounds 0 $3 --quiet-guest "$guest" \
		>"$tmp/$name.out" 2>&1 &
	wait_domain $name && sleep 2
	$O/sr-save --live --stats --dirty-track=$mode $4 $name "$tmp/$name.img" 2>"$tmp/$name.save"
	lv_save=$?
	wait
	lv_rc=1
	[ $lv_save -eq 0 ] || return
	$O/sr-dump --verify "$tmp/$name.img" 2>>"$tmp/$name.save" || return
	$O/sr-restore --name $name ${5:-} "$tmp/$name.img" >>"$tmp/$name.out" 2>&1 &
	wait_domain $name && sleep 1.5
	$O/sr-ctl $name finish >/dev/null 2>&1
	wait; lv_rc=$?
	grep -q '^PASS' "$tmp/$name.out" || lv_rc=1
}
live_summary() { grep -o 'live: .*' "$tmp/$1.save" | sed 's/; the domain exits//'; }

if want live; then
	for mode in bitmap clear ring; do
		ring=; [ $mode = ring ] && ring=--dirty-ring
		live_run lv-$mode $mode "--dirty-rate 2000 $ring" "" "$ring"
		if [ $lv_rc -eq 0 ]; then ok "live ($mode): written on 2 vCPUs throughout, restored: PASS; $(live_summary lv-$mode)"
		else cat "$tmp/lv-$mode.save" >> "$tmp/lv-$mode.out"; bad "live ($mode): save $lv_save, restore $lv_rc" "$tmp/lv-$mode.out"; fi
	done
fi

if want live-converge; then
	live_run lvc auto "--dirty-rate 100" "--max-iters 20 --downtime-ms 200"
	rounds=$(sed -n 's/.*live: \([0-9]*\) rounds.*/\1/p' "$tmp/lvc.save")
	if [ $lv_rc -eq 0 ] && grep -q 'fits the downtime target' "$tmp/lvc.save" && [ -n "$rounds" ] && [ "$rounds" -lt 20 ]; then
		ok "live-converge: stopped after $rounds rounds (< 20); $(live_summary lvc)"
	else
		cat "$tmp/lvc.save" >> "$tmp/lvc.out"; bad "live-converge: save $lv_save, restore $lv_rc, rounds '$rounds'" "$tmp/lvc.out"
	fi
fi

if want live-noconverge; then
	# Throttling off: this is the stop rule for a guest that never converges.
	live_run lvn auto "--dirty-rate 40000" "--max-iters 4 --throttle off"
	if [ $lv_rc -eq 0 ] && grep -Eq 'max-iters reached|stopped shrinking|byte cap' "$tmp/lvn.save"; then
		ok "live-noconverge: a workload that never converges still finished, contents correct: $(live_summary lvn)"
	else
		cat "$tmp/lvn.save" >> "$tmp/lvn.out"; bad "live-noconverge: save $lv_save, restore $lv_rc" "$tmp/lvn.out"
	fi
fi

if want live-throttle; then
	# Faster than the save can send: auto-converge slows the guest, and every
	# throttled round is on record; with --throttle off none is.
	live_run lvt auto "--dirty-rate 40000" ""
	nthr=$($O/sr-dump --type THROTTLE "$tmp/lvt.img" 2>/dev/null | grep -c ' THROTTLE ')
	if [ $lv_rc -eq 0 ] && grep -q 'throttle up to [1-9]' "$tmp/lvt.save" && [ "$nthr" -ge 1 ]; then
		ok "live-throttle: $nthr throttled rounds in the image, restored: PASS; $(live_summary lvt)"
	else
		cat "$tmp/lvt.save" >> "$tmp/lvt.out"; bad "live-throttle: save $lv_save, restore $lv_rc, $nthr THROTTLE records" "$tmp/lvt.out"
	fi
	live_run lvo auto "--dirty-rate 40000" "--throttle off"
	nthr=$($O/sr-dump --type THROTTLE "$tmp/lvo.img" 2>/dev/null | grep -c ' THROTTLE ')
	if [ $lv_rc -eq 0 ] && grep -q 'throttle up to 0%' "$tmp/lvo.save" && [ "$nthr" -eq 0 ]; then
		ok "live-throttle: --throttle off: no THROTTLE record, restored: PASS; $(live_summary lvo)"
	else
		cat "$tmp/lvo.save" >> "$tmp/lvo.out"; bad "live-throttle off: save $lv_save, restore $lv_rc, $nthr THROTTLE records" "$tmp/lvo.out"
	fi
	# A checkpoint leaves the guest unthrottled.
	$O/sr-run --name lvk --memory 32 --vcpus 2 --rounds 0 --dirty-rate 40000 --quiet-guest "$guest" >"$tmp/lvk.out" 2>&1 &
	pid=$!
	wait_domain lvk && sleep 2
	$O/sr-save --live -c lvk "$tmp/lvk.img" 2>"$tmp/lvk.save"; rc=$?
	$O/sr-ctl lvk status >"$tmp/lvk.status" 2>&1
	$O/sr-ctl lvk finish >/dev/null 2>&1
	wait $pid; rrc=$?
	if [ $rc -eq 0 ] && grep -q 'throttle up to [1-9]' "$tmp/lvk.save" && grep -q 'state=running.*throttle=0' "$tmp/lvk.status" && [ $rrc -eq 0 ]; then
		ok "live-throttle: after a throttled checkpoint the domain runs unthrottled ($(grep -o 'throttle=[0-9]*' "$tmp/lvk.status")), then PASS"
	else
		cat "$tmp/lvk.save" "$tmp/lvk.status" >> "$tmp/lvk.out"; bad "live-throttle checkpoint: save $rc, runner $rrc" "$tmp/lvk.out"
	fi
fi

if want live-pipe; then
	# The issue's case: 128 MiB, dirtying fast, saved live into a pipe and
	# restored on the other end.  Pre-copy must end in bounded bytes.
	$O/sr-run --name lp --memory 128 --vcpus 2 --rounds 0 --pages 256 --delay-us 20000 --quiet-guest \
		"$guest" >"$tmp/lp.out" 2>&1 &
	wait_domain lp && sleep 2
	( $O/sr-save --live --stats lp - 2>"$tmp/lp.save" | $O/sr-restore --name lp2 - >"$tmp/lp2.out" 2>&1 ) &
	pp=$!
	for _ in $(seq 1 1200); do grep -q 'live: ' "$tmp/lp.save" 2>/dev/null && break; sleep 0.1; done
	wait_domain lp2 && sleep 1.5
	$O/sr-ctl lp2 finish >/dev/null 2>&1
	wait $pp
	sent=$(sed -n 's/.*saved \([0-9]*\) pages.*/\1/p' "$tmp/lp.save")
	bytes=$(sed -n 's/.*: \([0-9]*\) bytes for .*/\1/p' "$tmp/lp.save")
	ratio=$(awk -v s="${sent:-0}" 'BEGIN { printf "%.2f", s / 32768 }')
	bratio=$(awk -v b="${bytes:-0}" 'BEGIN { printf "%.2f", b / (128 * 1048576) }')
	# Bounded: the stream stays within the 3 x RAM byte cap plus one final round.
	if grep -q '^PASS' "$tmp/lp2.out" && [ -n "$bytes" ] && awk -v r="$bratio" 'BEGIN { exit !(r <= 3.5) }'; then
		ok "live-pipe: 128 MiB dirtying guest saved live into a pipe and restored: PASS; $ratio x its pages, $bratio x its RAM in bytes; $(live_summary lp)"
	else
		cat "$tmp/lp.save" >> "$tmp/lp2.out"; bad "live-pipe: pages sent '$sent' ($ratio x), bytes $bratio x RAM" "$tmp/lp2.out"
	fi
fi

if want live-failure; then
	# An I/O error in the middle of a live save: the domain runs on, dirty logging off.
	mkdir -p "$tmp/lfull"
	mount -t tmpfs -o size=1m tmpfs "$tmp/lfull"
	$O/sr-run --name lf --memory 32 --vcpus 2 --rounds 0 --dirty-rate 2000 --quiet-guest \
		"$guest" >"$tmp/lf.out" 2>&1 &
	pid=$!
	wait_domain lf && sleep 2
	$O/sr-save --live lf "$tmp/lfull/lf.img" 2>"$tmp/lf.save"; rc=$?
	$O/sr-ctl lf status >"$tmp/lf.status" 2>&1
	$O/sr-ctl lf finish >/dev/null 2>&1
	wait $pid; rrc=$?
	left=$(ls "$tmp/lfull"); umount "$tmp/lfull"
	if [ $rc -eq 1 ] && grep -q 'No space' "$tmp/lf.save" && grep -q 'state=running.*dirty_log=off' "$tmp/lf.status" && [ -z "$left" ] && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/lf.out"; then
		ok "live-failure: disk full mid live save: domain running, dirty logging off, no file, then PASS"
	else
		cat "$tmp/lf.save" "$tmp/lf.status" >> "$tmp/lf.out"; bad "live-failure: sr-save $rc, runner $rrc, left '$left'" "$tmp/lf.out"
	fi
fi

# Samples of the long campaigns (make soak: 1,000 cycles; make faults: 100 trials).
# These run longer than most (more so under ASan): their own limits, and a
# progress line on the console so the box's idle watchdog sees them alive.
if want soak-sample 600; then
	if SR_SOAK_CYCLES=50 SR_SOAK_EVERY=10 O=$O tests/soak-kvm.sh 2>&1 | tee "$tmp/soak.out" | grep --line-buffered '^soak: [0-9]*/'; [ "${PIPESTATUS[0]}" -eq 0 ]; then
		ok "soak-sample: $(grep '^soak: [0-9]* save' "$tmp/soak.out"); $(grep '^soak: cycles' "$tmp/soak.out" | cut -c7-)"
	else bad "soak-sample" "$tmp/soak.out"; fi
fi
if want faults-sample 600; then
	if SR_FAULTS=12 O=$O tests/faults-kvm.sh 2>&1 | tee "$tmp/faults.out" | grep --line-buffered '^ok   trial\|^FAIL' | sed 's/^/     faults-sample /'; [ "${PIPESTATUS[0]}" -eq 0 ]; then
		ok "faults-sample: 12 saves hit by kills and ENOSPC: domain ran on every time, every FILE absent or complete and restorable; $(head -1 "$tmp/faults.out" | cut -c9-)"
	else bad "faults-sample" "$tmp/faults.out"; fi
fi

# ------------------------------------------------------------------ Linux guest
kernel=build/box/kernel/vmlinuz
initrd=$O/guest/linux-initramfs.cpio.gz
linux_warnings='soft lockup|rcu.*stall|hung task|blocked for more than|clocksource.*(unstable|watchdog)|Call Trace'
# Fails a Linux test at once, naming what is missing, instead of waiting for a domain.
linux_ready() {
	[ -f "$kernel" ] && [ -f "$initrd" ] && return 0
	echo "missing: $kernel or $initrd (make fetches the kernel and builds the initramfs)" > "$tmp/$1.missing"
	bad "$1: no Linux kernel or initramfs to boot" "$tmp/$1.missing"
	return 1
}

if want linux-boot && linux_ready linux-boot; then
	for n in 1 2; do
		$O/sr-run --name lb$n --vcpus $n --kernel $kernel --initrd $initrd \
			--cmdline "sr.workload=8,3" </dev/null >"$tmp/lb$n.out" 2>&1; rc=$?
		if [ $rc -eq 0 ] && grep -q "^sr-linux: $n cpu(s), clocksource kvm-clock" "$tmp/lb$n.out" && grep -q '^sr-workload: PASS' "$tmp/lb$n.out" && ! grep -Eq "$linux_warnings" "$tmp/lb$n.out"; then
			ok "linux-boot: Debian's kernel booted to the workload on $n vCPU(s) with kvm-clock, PASS, reset ended the domain"
		else
			bad "linux-boot: $n vCPU(s), sr-run exited $rc" "$tmp/lb$n.out"
		fi
	done
fi

# Host-timestamps every line: "HOST_REALTIME line".
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "${l%$'\r'}"; done; }

# Checks a restored Linux run ($1) against the source's last tick ($2).
linux_restored_ok() {
	local first realtime host
	first=$(sed -n 's/^[0-9.]* sr-workload: tick \([0-9]*\) .*/\1/p' "$1" | head -1)
	set -- "$1" "$2" $(sed -n 's/^\([0-9.]*\) sr-workload: tick [0-9]* .* realtime \([0-9.]*\)$/\1 \2/p' "$1" | head -1)
	host=${3:-0} realtime=${4:-999}
	[ -n "$first" ] && [ "$first" -ge "$2" ] && [ "$first" -le $(($2 + 1)) ] || { echo "first tick after restore '$first', last before $2" >> "$1"; return 1; }
	! grep -q 'sr-workload: [0-9]* MiB' "$1" || { echo "the workload restarted" >> "$1"; return 1; }
	grep -q 'sr-workload: PASS' "$1" || return 1
	! grep -Eq "$linux_warnings" "$1" || return 1
	awk -v h="$host" -v r="$realtime" 'BEGIN { d = h - r; if (d < 0) d = -d; exit !(d < 2) }' || { echo "guest realtime $realtime vs host $host" >> "$1"; return 1; }
	linux_skew=$(awk -v h="$host" -v r="$realtime" 'BEGIN { printf "%.2f", h - r }')
}

if want linux-save && linux_ready linux-save; then
	$O/sr-run --name lx --vcpus 2 --kernel $kernel --initrd $initrd --cmdline "sr.workload=16,25" \
		</dev/null >"$tmp/lx.out" 2>&1 &
	wait_domain lx
	for _ in $(seq 1 600); do grep -q "tick 6 " "$tmp/lx.out" && break; sleep 0.2; done
	$O/sr-save --live lx "$tmp/lx.img" 2>"$tmp/lx.save"; rc=$?
	wait
	last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/lx.out" | tail -1)
	if [ $rc -ne 0 ] || ! $O/sr-dump --verify "$tmp/lx.img" 2>>"$tmp/lx.save"; then
		bad "linux-save: sr-save exited $rc or the image does not verify" "$tmp/lx.save"
	else
		for k in 1 2; do
			$O/sr-restore --name lx$k "$tmp/lx.img" </dev/null 2>&1 | stamp >"$tmp/lx$k.out"
			if linux_restored_ok "$tmp/lx$k.out" "$last"; then
				ok "linux-save: restore $k of a live save taken at tick $last: the workload went on from tick $((last + 1)) to PASS, no lockup or stall warnings, guest realtime ${linux_skew}s from the host's; $(grep -o 'live: .*met)' "$tmp/lx.save")"
			else
				bad "linux-save: restore $k" "$tmp/lx$k.out"
			fi
		done
	fi
fi

# ------------------------------------------------------------------ sandbox
# sr-restore's seccomp filters (tools/sandbox.c): every thread of a restored
# domain runs under its kind's filter, and the ordinary paths still work
# under them; tests/sandbox-test (check-tools) sees each kind refuse a call.
# Prints "comm seccomp-mode filters" for every thread of pid $1.
sb_threads() {
	local t
	for t in /proc/$1/task/*; do
		echo "$(cat $t/comm 2>/dev/null) $(awk '/^Seccomp:/ { m = $2 } /^Seccomp_filters:/ { f = $2 } END { print m, f }' $t/status 2>/dev/null)"
	done | sort
}
# True when every thread of $1 is filtered (mode 2) under two filters or more
# (the reader's, then its own kind's), and threads named $2... exist.
sb_all_filtered() {
	local pid=$1 want; shift
	sb_threads $pid > "$tmp/sb.threads"
	[ -s "$tmp/sb.threads" ] && ! awk '$2 != 2 || $3 < 2 { bad = 1 } END { exit !bad }' "$tmp/sb.threads" || return 1
	for want in "$@"; do grep -q "^$want " "$tmp/sb.threads" || return 1; done
}

if want sandbox 400; then
	$O/sr-run --name sbsrc --memory 32 --vcpus 2 --rounds 0 --pages 64 --delay-us 2000 \
		--quiet-guest "$guest" >"$tmp/sbsrc.out" 2>&1 &
	wait_domain sbsrc && sleep 1
	$O/sr-save -q sbsrc "$tmp/sb.img" 2>"$tmp/sbsrc.save"; rc=$?
	wait
	[ $rc -eq 0 ] || bad "sandbox: saving the source guest exited $rc" "$tmp/sbsrc.save"
	# A file, 2 threads: every thread filtered; pause, resume; then a save of
	# the restored domain (a save thread and its workers) ends it.
	$O/sr-restore --name sb1 -v --threads 2 "$tmp/sb.img" >"$tmp/sb1.out" 2>&1 &
	pid=$!
	wait_domain sb1 && sb_all_filtered $pid sr-restore sr-vcpu sr-console; filtered=$?
	cp "$tmp/sb.threads" "$tmp/sb1.threads"
	$O/sr-ctl sb1 pause >>"$tmp/sb1.ctl" 2>&1 && $O/sr-ctl sb1 status 2>>"$tmp/sb1.ctl" | grep -q state=paused &&
		$O/sr-ctl sb1 resume >>"$tmp/sb1.ctl" 2>&1; prc=$?
	sleep 0.5
	$O/sr-save -q sb1 "$tmp/sb1.img" 2>"$tmp/sb1.save"; src=$?
	wait $pid; rc=$?
	cat "$tmp/sb1.threads" "$tmp/sb1.ctl" "$tmp/sb1.save" >> "$tmp/sb1.out" 2>/dev/null
	if [ $filtered -eq 0 ] && [ $prc -eq 0 ] && [ $src -eq 0 ] && [ $rc -eq 0 ] &&
	   grep -q 'sandbox: on' "$tmp/sb1.out" && ! grep -q 'sandbox: the' "$tmp/sb1.out"; then
		ok "sandbox: file, --threads 2: every thread filtered ($(awk '{ print $1 }' "$tmp/sb1.threads" | uniq -c | awk '{ printf "%s%s x%s", s, $2, $1; s = ", " }')); pause, resume, then saved by sr-save"
	else
		bad "sandbox: file restore (filtered $filtered, pause/resume $prc, save $src, exit $rc)" "$tmp/sb1.out"
	fi
	# That image from a pipe, no threads: a live save of it, which is restored and finishes.
	cat "$tmp/sb1.img" | $O/sr-restore --name sb2 --threads 0 - >"$tmp/sb2.out" 2>&1 &
	pid=$!
	wait_domain sb2 && sb_all_filtered $(pgrep -n -f 'sr-restore --name sb2') sr-vcpu; filtered=$?
	sleep 1
	$O/sr-save --live -q sb2 "$tmp/sb2.img" 2>"$tmp/sb2.save"; src=$?
	wait $pid; rc=$?
	$O/sr-restore --name sb3 --threads 2 "$tmp/sb2.img" >"$tmp/sb3.out" 2>&1 &
	pid=$!
	wait_domain sb3 && sleep 1 && $O/sr-ctl sb3 finish >/dev/null 2>&1
	wait $pid; rrc=$?
	cat "$tmp/sb.threads" "$tmp/sb2.save" "$tmp/sb3.out" >> "$tmp/sb2.out" 2>/dev/null
	if [ $filtered -eq 0 ] && [ $src -eq 0 ] && [ $rc -eq 0 ] && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/sb3.out"; then
		ok "sandbox: a pipe, --threads 0, saved live, restored again (--threads 2): PASS"
	else
		bad "sandbox: pipe restore (filtered $filtered), live save $src, exits $rc/$rrc" "$tmp/sb2.out"
	fi
	# destroy ends it with 4; --no-sandbox leaves every thread unfiltered.
	$O/sr-restore --name sb4 -v --no-sandbox "$tmp/sb.img" >"$tmp/sb4.out" 2>&1 &
	pid=$!
	wait_domain sb4 && sb_threads $pid > "$tmp/sb4.threads"
	$O/sr-ctl sb4 destroy >/dev/null 2>&1
	wait $pid; rc=$?
	cat "$tmp/sb4.threads" >> "$tmp/sb4.out"
	if [ $rc -eq 4 ] && grep -q 'sandbox: off' "$tmp/sb4.out" && ! awk '$2 != 0 { bad = 1 } END { exit !bad }' "$tmp/sb4.threads"; then
		ok "sandbox: --no-sandbox: no thread filtered; sr-ctl destroy: exit 4"
	else
		bad "sandbox: --no-sandbox run, exit $rc" "$tmp/sb4.out"
	fi
fi

if want sandbox-linux 400 && linux_ready sandbox-linux; then
	# A Linux guest (UART: console and input threads) saved live, restored under the sandbox.
	$O/sr-run --name sbl --vcpus 2 --kernel $kernel --initrd $initrd --cmdline "sr.workload=16,25" \
		</dev/null >"$tmp/sbl.out" 2>&1 &
	wait_domain sbl
	for _ in $(seq 1 1500); do grep -q "tick 4 " "$tmp/sbl.out" && break; sleep 0.2; done
	$O/sr-save --live sbl "$tmp/sbl.img" 2>"$tmp/sbl.save"; rc=$?
	wait
	last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/sbl.out" | tail -1)
	# stdin stays open (a fifo with a sleeping writer): the input thread waits in read, filtered.
	mkfifo "$tmp/sbl.in"
	sleep 600 > "$tmp/sbl.in" & hold=$!
	$O/sr-restore --name sbl2 "$tmp/sbl.img" < "$tmp/sbl.in" >"$tmp/sbl2.out" 2>&1 &
	lp=$!
	wait_domain sbl2 && sb_all_filtered $lp sr-vcpu sr-console sr-input; filtered=$?
	cp "$tmp/sb.threads" "$tmp/sbl.threads"
	wait $lp; lrc=$?
	kill $hold 2>/dev/null; wait $hold 2>/dev/null
	cat "$tmp/sbl.threads" >> "$tmp/sbl2.out"
	# The workload goes on from where it was saved (the clock's agreement is linux-save's to check).
	first=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/sbl2.out" | head -1)
	if [ $rc -eq 0 ] && [ $filtered -eq 0 ] && [ $lrc -eq 0 ] && [ -n "$first" ] && [ -n "$last" ] &&
	   [ "$first" -ge "$last" ] && [ "$first" -le $((last + 1)) ] && grep -q 'sr-workload: PASS' "$tmp/sbl2.out" &&
	   ! grep -q 'sr-workload: [0-9]* MiB' "$tmp/sbl2.out" && ! grep -Eq "$linux_warnings" "$tmp/sbl2.out" &&
	   ! grep -q 'sandbox: the' "$tmp/sbl2.out"; then
		ok "sandbox-linux: a Linux guest saved live at tick $last, restored under the sandbox (vCPU, console, input threads filtered): the workload went on from tick $first to PASS, reset ended it"
	else
		bad "sandbox-linux: save $rc, filtered $filtered, restore exited $lrc, first tick '$first' after $last" "$tmp/sbl2.out"
	fi
fi

# ------------------------------------------------------------------ migration
# Two hosts: this network namespace ("near": 10.77.0.1, fd77::1) and "far"
# (10.77.0.2, fd77::2), joined by a veth pair, each with its own SR_RUN_DIR.
. tests/netns.sh
mig_net() {
	netns_up "$tmp" || { bad "migration: two network namespaces joined by a veth pair" "$tmp/net.out"; return 1; }
}
# Starts a receiver on far, port $1, name $2, output to $tmp/$2.far; waits until it listens.
far_listen() {
	far $O/sr-restore --listen "$1" --name "$2" --accept-timeout 120 </dev/null >"$tmp/$2.far" 2>&1 &
	fpid=$!
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/$2.far" && return 0; sleep 0.05; done
	return 1
}
# Once the domain $1 runs on far, a second later tells it to finish (its verdict follows).
far_finish() {
	SR_RUN_DIR=$tmp/far wait_domain "$1" && sleep 1 && SR_RUN_DIR=$tmp/far $O/sr-ctl "$1" finish >/dev/null
}
# Test guest that writes and verifies memory until told to finish: name $1, extra args.
mig_guest() {
	local n=$1; shift
	$O/sr-run --name "$n" --vcpus 2 --rounds 0 --delay-us 2000 "$@" --quiet-guest "$guest" \
		>"$tmp/$n.src" 2>&1 &
	spid=$!
	wait_domain "$n"
}
# A cold migration of 256 MiB of written memory, uncompressed at 20 MB/s (some
# 13 s), from guest $1 to a receiver on port $2: returns a second into the
# stream (mpid: sr-migrate).
mig_midstream() {
	mig_guest "$1" --memory 256 --prefill --pages 64
	# Until the guest has written its memory (the memfd's resident pages show it).
	for _ in $(seq 1 600); do
		[ "$(awk '/^RssShmem:/ { print $2 }' /proc/$spid/status 2>/dev/null)" -ge 200000 ] 2>/dev/null && break
		sleep 0.1
	done
	far_listen "$2" "$1"
	$O/sr-migrate --cold -q --compress none --bandwidth 20 "$1" "tcp:10.77.0.2:$2" 2>"$tmp/$1.mig" &
	mpid=$!
	for _ in $(seq 1 400); do grep -q 'receiving a domain' "$tmp/$1.far" && break; sleep 0.05; done
	sleep 1
}

if want migrate-linux 400 && linux_ready migrate-linux && mig_net; then
	# The Linux guest, live, mid-workload, over IPv4: it goes on there to PASS and is gone here.
	$O/sr-run --name ml --vcpus 2 --kernel $kernel --initrd $initrd --cmdline "sr.workload=16,25" \
		</dev/null >"$tmp/ml.out" 2>&1 &
	spid=$!
	wait_domain ml
	far $O/sr-restore --listen 7701 --accept-timeout 120 </dev/null 2>&1 | stamp >"$tmp/ml.far" &
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/ml.far" && break; sleep 0.05; done
	for _ in $(seq 1 600); do grep -q "tick 6 " "$tmp/ml.out" && break; sleep 0.2; done
	$O/sr-migrate --stats ml tcp:10.77.0.2:7701 2>"$tmp/ml.mig"; rc=$?
	wait $spid; src=$?
	last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/ml.out" | tail -1)
	wait
	if [ $rc -eq 0 ] && [ $src -eq 0 ] && ! $O/sr-ctl ml status >/dev/null 2>&1 &&
	   linux_restored_ok "$tmp/ml.far" "$last"; then
		ok "migrate-linux: live-migrated at tick $last over veth: the workload went on there from tick $((last + 1)) to PASS, the source is gone; $(grep -o 'live: [^;]*' "$tmp/ml.mig"); $(grep -o 'paused [0-9.]* ms until the commit' "$tmp/ml.mig") (the receiver running)"
	else
		cat "$tmp/ml.mig" "$tmp/ml.far" > "$tmp/ml.all" 2>/dev/null
		bad "migrate-linux: sr-migrate exited $rc, the source $src" "$tmp/ml.all"
	fi
fi

if want migrate-ipv6 && mig_net; then
	# Cold, over IPv6, under the domain's own name there; the guest verifies its memory there.
	mig_guest m6 --memory 64 --pages 256 && far_listen 7702 m6
	$O/sr-migrate --cold -q m6 "tcp:[fd77::2]:7702" 2>"$tmp/m6.mig"; rc=$?
	wait $spid; src=$?
	far_finish m6
	wait $fpid; dst=$?
	if [ $rc -eq 0 ] && [ $src -eq 0 ] && [ $dst -eq 0 ] && grep -q '^PASS: .*finished on request' "$tmp/m6.far"; then
		ok "migrate-ipv6: cold over [fd77::2]: the guest verified its memory there: PASS; the source is gone"
	else
		cat "$tmp/m6.mig" "$tmp/m6.far" > "$tmp/m6.all"
		bad "migrate-ipv6: sr-migrate $rc, source $src, receiver $dst" "$tmp/m6.all"
	fi
fi

if want migrate-receiver-dies && mig_net; then
	# The receiver killed mid-stream: the source runs on and passes.
	mig_midstream mr 7703
	kill -KILL $(descendants $fpid) $fpid; wait $fpid 2>/dev/null	# fpid: the shell around nsenter
	wait $mpid; rc=$?
	sleep 1; $O/sr-ctl mr finish >/dev/null 2>&1
	SR_RUN_DIR=$tmp/far $O/sr-ctl mr destroy >/dev/null 2>&1	# had it got there after all
	wait $spid; src=$?
	if [ $rc -eq 1 ] && [ $src -eq 0 ] && grep -q '^PASS: .*finished on request' "$tmp/mr.src" && grep -q 'runs on' "$tmp/mr.mig"; then
		ok "migrate-receiver-dies: receiver SIGKILLed mid-stream: the source ran on to PASS: $(cat "$tmp/mr.mig")"
	else
		cat "$tmp/mr.mig" "$tmp/mr.far" > "$tmp/mr.all"
		bad "migrate-receiver-dies: sr-migrate $rc, source $src" "$tmp/mr.all"
	fi
fi

if want migrate-source-dies && mig_net; then
	# The source's runner killed mid-stream: the receiver says so and leaves no VM.
	mig_midstream ms 7704
	kill -KILL $spid; wait $spid 2>/dev/null
	wait $fpid; dst=$?
	wait $mpid
	left=$(ls "$tmp/far" 2>/dev/null | grep -c '^ms\.sock$')
	if [ $dst -eq 5 ] && [ "$left" -eq 0 ] && grep -q 'truncated\|stream ends' "$tmp/ms.far"; then
		ok "migrate-source-dies: source SIGKILLed mid-stream: the receiver exited 5, no VM left: $(tail -1 "$tmp/ms.far")"
	else
		bad "migrate-source-dies: receiver exited $dst, $left sockets left" "$tmp/ms.far"
	fi
fi

if want migrate-receiver-dies-after-ready && mig_net; then
	# The receiver dies right after "ready": the source resumes its domain.
	mig_guest mq --memory 64 --pages 256
	far env SR_MIGRATE_TEST_DIE_AFTER_READY=1 $O/sr-restore --listen 7705 --accept-timeout 120 </dev/null >"$tmp/mq.far" 2>&1 &
	fpid=$!
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/mq.far" && break; sleep 0.05; done
	SR_MIGRATE_TEST_GO_DELAY_MS=500 $O/sr-migrate --cold -q mq tcp:10.77.0.2:7705 2>"$tmp/mq.mig"; rc=$?
	st=$($O/sr-ctl mq status 2>&1)
	sleep 1; $O/sr-ctl mq finish >/dev/null 2>&1
	wait $spid; src=$?
	wait $fpid
	if [ $rc -eq 1 ] && [ $src -eq 0 ] && grep -q 'running' <<<"$st" && grep -q '^PASS: .*finished on request' "$tmp/mq.src"; then
		ok "migrate-receiver-dies-after-ready: the source resumed its domain, then PASS: $(cat "$tmp/mq.mig")"
	else
		echo "status: $st" >> "$tmp/mq.mig"
		bad "migrate-receiver-dies-after-ready: sr-migrate $rc, source $src" "$tmp/mq.mig"
	fi
fi

if want migrate-unknown && mig_net; then
	# The link dies between "go" and "running": the source holds its domain paused, says
	# the outcome is unknown and how to settle it; the receiver runs it.  Never both.
	mig_guest mu --memory 64 --pages 256 && far_listen 7706 mu
	SR_MIGRATE_TEST_DROP_AFTER_GO=1 $O/sr-migrate --cold -q mu tcp:10.77.0.2:7706 2>"$tmp/mu.mig"; rc=$?
	st=$($O/sr-ctl mu status 2>&1)
	far_finish mu
	wait $fpid; dst=$?
	$O/sr-ctl mu destroy >/dev/null 2>&1
	wait $spid
	if [ $rc -eq 3 ] && grep -q 'paused' <<<"$st" && grep -q 'unknown' "$tmp/mu.mig" &&
	   grep -q 'sr-ctl mu destroy' "$tmp/mu.mig" && [ $dst -eq 0 ] && grep -q '^PASS' "$tmp/mu.far"; then
		ok "migrate-unknown: link dropped after go: source paused (exit 3), receiver ran to PASS: $(cat "$tmp/mu.mig")"
	else
		echo "status: $st" >> "$tmp/mu.mig"
		bad "migrate-unknown: sr-migrate $rc, receiver $dst" "$tmp/mu.mig"
	fi
fi

if want migrate-100mbit 300 && mig_net; then
	# A link limited to 100 Mbit/s (tbf, 2 ms netem delay): a live migration of a dirtying
	# guest converges (throttling where it must) and reports its downtime.
	tc qdisc add dev sr-near root handle 1: netem delay 2ms >"$tmp/tc.out" 2>&1 &&
	tc qdisc add dev sr-near parent 1:1 handle 10: tbf rate 100mbit burst 64kb latency 100ms >>"$tmp/tc.out" 2>&1 ||
		bad "migrate-100mbit: tc" "$tmp/tc.out"
	mig_guest mt --memory 128 --dirty-rate 500 && far_listen 7707 mt
	a=$(date +%s%N)
	$O/sr-migrate --stats mt tcp:10.77.0.2:7707 2>"$tmp/mt.mig"; rc=$?
	b=$(date +%s%N)
	wait $spid; src=$?
	far_finish mt
	wait $fpid; dst=$?
	tc qdisc del dev sr-near root 2>/dev/null
	if [ $rc -eq 0 ] && [ $src -eq 0 ] && [ $dst -eq 0 ] && grep -q '^PASS' "$tmp/mt.far" && grep -q 'downtime' "$tmp/mt.mig"; then
		ok "migrate-100mbit: converged over 100 Mbit/s in $(( (b - a) / 1000000 )) ms, then PASS there; $(grep -o 'live: [^;]*' "$tmp/mt.mig"); $(grep -o 'paused [0-9.]* ms until the commit' "$tmp/mt.mig") (the receiver running)"
	else
		bad "migrate-100mbit: sr-migrate $rc, source $src, receiver $dst" "$tmp/mt.mig"
	fi
fi

if want migrate-timeouts && mig_net; then
	# A receiver that hears nothing for --idle-timeout gives up, and tells the source why;
	# a source whose SYNs are lost gives up after --connect-timeout, the domain untouched.
	far $O/sr-restore --listen 7708 --idle-timeout 2 </dev/null >"$tmp/it.far" 2>&1 &
	fpid=$!
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/it.far" && break; sleep 0.05; done
	exec 3<>/dev/tcp/10.77.0.2/7708
	a=$(date +%s%N)
	read -r -t 20 said <&3
	wait $fpid; dst=$?
	b=$(date +%s%N)
	exec 3<&-
	if [ $dst -eq 2 ] && grep -q 'no data for the idle timeout' "$tmp/it.far" && [[ "$said" == "error "*"idle timeout"* ]]; then
		ok "migrate-timeouts: a silent source: the receiver gave up after $(( (b - a) / 1000000 )) ms (--idle-timeout 2) and told it: $said"
	else
		echo "the source heard: $said" >> "$tmp/it.far"
		bad "migrate-timeouts: idle receiver exited $dst" "$tmp/it.far"
	fi
	tc qdisc add dev sr-near root netem loss 100% 2>"$tmp/ct.out"
	a=$(date +%s%N)
	$O/sr-migrate --connect-timeout 2 nodomain tcp:10.77.0.2:7709 >>"$tmp/ct.out" 2>&1; rc=$?
	b=$(date +%s%N)
	tc qdisc del dev sr-near root 2>/dev/null
	if [ $rc -eq 1 ] && grep -q 'no answer (connect timeout); the domain was not touched' "$tmp/ct.out" &&
	   [ $(( (b - a) / 1000000 )) -lt 5000 ]; then
		ok "migrate-timeouts: every SYN lost: sr-migrate gave up after $(( (b - a) / 1000000 )) ms (--connect-timeout 2): $(cat "$tmp/ct.out")"
	else
		bad "migrate-timeouts: connect timeout: exit $rc after $(( (b - a) / 1000000 )) ms" "$tmp/ct.out"
	fi
fi

if want migrate-ssh && mig_net; then
	# ssh: to an sshd on far; sr-restore --migrate-receive there detaches once it runs.
	mkdir -p "$tmp/ssh" && chmod 700 "$tmp/ssh"
	ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh/host" && ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh/id" &&
	cp "$tmp/ssh/id.pub" "$tmp/ssh/authorized_keys" && mkdir -p /run/sshd && chmod 755 /run/sshd
	printf '%s\n' "Port 2222" "ListenAddress 10.77.0.2" "HostKey $tmp/ssh/host" \
		"AuthorizedKeysFile $tmp/ssh/authorized_keys" "PermitRootLogin prohibit-password" \
		"StrictModes no" "UsePAM no" "PidFile $tmp/ssh/sshd.pid" > "$tmp/ssh/sshd_config"
	sshd=$(command -v sshd || echo /usr/sbin/sshd)
	far $sshd -f "$tmp/ssh/sshd_config" -D -e >"$tmp/ssh/sshd.log" 2>&1 &
	sshpid=$!
	sshcmd="ssh -p 2222 -i $tmp/ssh/id -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
	for _ in $(seq 1 100); do $sshcmd root@10.77.0.2 true 2>/dev/null && break; sleep 0.1; done
	mig_guest mh --memory 64 --dirty-rate 50
	$O/sr-migrate -q --ssh "$sshcmd" --remote "env SR_RUN_DIR=$tmp/far $PWD/$O/sr-restore" --name mh2 \
		mh ssh:root@10.77.0.2 2>"$tmp/mh.mig"; rc=$?
	[ $rc -eq 0 ] || $O/sr-ctl mh destroy >/dev/null 2>&1	# it is still here: end it
	wait $spid; src=$?
	far_finish mh2
	for _ in $(seq 1 100); do grep -q '^PASS' "$tmp/far/mh2.log" 2>/dev/null && break; sleep 0.1; done
	kill $sshpid 2>/dev/null; wait $sshpid 2>/dev/null
	if [ $rc -eq 0 ] && [ $src -eq 0 ] && grep -q '^PASS: .*finished on request' "$tmp/far/mh2.log"; then
		ok "migrate-ssh: live over ssh to an sshd on far: the receiver detached, the guest verified its memory there: PASS"
	else
		cat "$tmp/mh.mig" "$tmp/far/mh2.log" "$tmp/ssh/sshd.log" > "$tmp/mh.all" 2>/dev/null
		bad "migrate-ssh: sr-migrate $rc, source $src" "$tmp/mh.all"
	fi
fi
netns_down

reap_timeout
echo "kvm: $pass passed, $fail failed"
[ $fail -eq 0 ]
