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
	local name lim; read -r name lim < "$tmp/.timedout"; : > "$tmp/.timedout"
	if [ "$fail" -eq "${fail_at_start:-0}" ]; then
		bad "$name: killed at its ${lim:-$limit} s time limit"
	else
		echo "     (the failure above: $name was killed at its ${lim:-$limit} s time limit)"
	fi
}
exclude=${SR_KVM_EXCLUDE:-}
# The longer virtio device sections (a Linux boot or two, a live save and
# restores: 1.5-4 minutes each in the box) stay out of the whole suite, whose
# CI budget is spent; they run when named (SR_KVM_TESTS, make check-devices).
# The whole suite keeps virtio-disk (about 20 s).
devices_only="virtio-disk-save linux-disk linux-disk-save disk-snapshot"
if [ -z "$only" ] && [ -z "${SR_KVM_DEVICES:-}" ]; then
	exclude="$exclude $devices_only"
	echo "kvm: NOT run in this pass: $devices_only: the longer virtio device tests (minutes each in the box); make check-devices runs them"
fi
[ -z "$exclude" ] || echo "kvm: NOT run in this pass, by SR_KVM_EXCLUDE (they run in the other): $exclude"
# SR_KVM_SHARD=I/N runs the I-th of N disjoint parts of the pass (tests/on-kvm.sh
# runs N boxes side by side, one per host CPU: the box emulates one).  The
# sections are dealt longest first to the part with the least time so far, by
# the seconds below (two boxes side by side on 2 CPUs; unlisted ones count 9).
shard_weights="linux-6g 128 faults-migrate-sample 93 soak-sample 91 chain 75 linux-pause 74
linux-save 62 sandbox-linux 57 migrate-linux 52 migrate-bounds 48 two-phase 47 faults-sample 44
linux-boot 40 corrupt-threads 39 detach 36 live-throttle 32 detach-linux 32 live-pipe 31 signal 30
migrate-handshake 30 migrate-ssh 28 live 27 save-points 24 migrate-source-dies 24 virtio-disk 23
sandbox 22 save-control 19 live-cap-round0 19 migrate-receiver-dies 17 pause-resume 14
migrate-tls-mixed 14 clock 14 migrate-ipv6 13 live-noconverge 13 tsc-deadline 12 save-options 12
migrate-tls-user 12 migrate-100mbit 12 placed-restore 11 control-socket 11 throttle-exits 10
migrate-tls 10 migrate-start-fails 10 corrupt-image 10"
mine=
if [ -n "${SR_KVM_SHARD:-}" ]; then
	IFS=/ read -r shard_i shard_n <<<"$SR_KVM_SHARD"
	[ "$shard_i" -ge 1 ] 2>/dev/null && [ "$shard_i" -le "${shard_n:-0}" ] ||
		{ echo "kvm: SR_KVM_SHARD must be I/N with 1 <= I <= N, not '$SR_KVM_SHARD'"; echo "0 passed, 1 failed"; exit 1; }
	mine=$(sed -nE 's/^[[:space:]]*(if[[:space:]]+)?want ([a-z][a-z0-9-]*).*/\2/p' "$0" | awk '!seen[$0]++' |
		grep -vxE 'hang-selftest|after-hang' |
		while read -r sec; do
			[ -z "$only" ] || [[ " $only " == *" $sec "* ]] || continue
			[[ " $exclude " != *" $sec "* ]] || continue
			echo "$sec"
		done | awk -v w="$shard_weights" -v n="$shard_n" -v me="$shard_i" '
		BEGIN { k = split(w, a, /[ \n]+/); for (j = 1; j < k; j += 2) sec[a[j]] = a[j + 1] }
		{ name[NR] = $1; t[NR] = ($1 in sec) ? sec[$1] : 9 }
		END {
			# longest first (ties in script order), each to the least loaded part
			for (i = 1; i <= NR; i++) order[i] = i
			for (i = 2; i <= NR; i++) for (j = i; j > 1 && t[order[j]] > t[order[j - 1]]; j--) {
				x = order[j]; order[j] = order[j - 1]; order[j - 1] = x }
			for (i = 1; i <= NR; i++) {
				best = 1; for (p = 2; p <= n; p++) if (load[p] < load[best]) best = p
				load[best] += t[order[i]]; if (best == me) printf "%s ", name[order[i]]
			}
		}')
	echo "kvm: part $SR_KVM_SHARD of this pass: $mine"
	[ -z "${SR_KVM_LIST:-}" ] || exit 0	# tests/host.sh checks the parts
fi
want() {
	[ -z "$only" ] || [[ " $only " == *" $1 "* ]] || return 1
	[[ " $exclude " != *" $1 "* ]] || return 1
	[ -z "${SR_KVM_SHARD:-}" ] || [[ " $mine " == *" $1 "* ]] || return 1
	reap_timeout
	fail_at_start=$fail
	section_time
	echo "$1 $(date +%s) ${2:-$limit}" > "$tmp/.current"
}
# Appends the section that just ended and its seconds to $tmp/.times (CI's
# budget is spent here: the run ends with the slowest sections).
section_time() {
	local name start lim
	[ -s "$tmp/.current" ] || return 0
	read -r name start lim < "$tmp/.current"
	echo "$(( $(date +%s) - start )) $name" >> "$tmp/.times"
	: > "$tmp/.current"
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
	[ -s "$tmp/.current" ] || continue
	read -r name start lim < "$tmp/.current" || continue
	if [ $(( $(date +%s) - start )) -ge "${lim:-$limit}" ] && [ "$name" != "${killed:-}" ]; then
		killed=$name
		echo "kvm.sh: test '$name' ran past its ${lim:-$limit} s limit; its processes:"
		pids=$(descendants "$main_pid")
		[ -n "$pids" ] && ps -o pid,stat,wchan:24,etime,args -p "$(echo $pids | tr ' ' ,)" 2>/dev/null
		echo "$name ${lim:-$limit}" > "$tmp/.timedout"
		[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
		echo "kvm.sh: killed them; '$name' fails, the run goes on"
	fi
    done ) & )

# Waits until domain $1 answers on its control socket.
wait_domain() {
	for _ in $(seq 1 600); do
		$O/sr-ctl status "$1" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

# Runs "$@" every 20 ms until it succeeds (0) or $1 ms have passed (1).
poll_ms() {
	local end=$(( $(date +%s%N) + $1 * 1000000 )); shift
	until "$@"; do
		[ "$(date +%s%N)" -lt $end ] || return 1
		sleep 0.02
	done
}
# True while domain $1's runner reports a save in progress.
save_running() { $O/sr-ctl status "$1" 2>/dev/null | grep -q ' save=running '; }
# File $2 has a line matching $1.
file_has() { grep -q "$1" "$2" 2>/dev/null; }
# Runner $1's guest memory (its memfd's resident pages, RssShmem) is at least $2 KiB.
# (kB; --prefill writes the slices, all RAM above 8 MiB: a 32 MiB guest reaches some 24600.)
guest_written() { [ "$(awk '/^RssShmem:/ { print $2 }' /proc/$1/status 2>/dev/null)" -ge "$2" ] 2>/dev/null; }

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
	# 30 cycles in make check (SR_PAUSE_CYCLES: more by hand); each is three sr-ctl runs.
	pcycles=${SR_PAUSE_CYCLES:-30}
	if wait_domain pr; then
		for i in $(seq 1 "$pcycles"); do
			$O/sr-ctl pause pr >/dev/null 2>>"$tmp/pr.ctl" || break
			$O/sr-ctl status pr 2>>"$tmp/pr.ctl" | grep -q 'state=paused' || break
			$O/sr-ctl resume pr >/dev/null 2>>"$tmp/pr.ctl" || break
			cycles=$i
		done
		$O/sr-ctl finish pr >/dev/null 2>>"$tmp/pr.ctl"
	fi
	wait $pid; rc=$?
	cat "$tmp/pr.ctl" >>"$tmp/pr.out" 2>/dev/null
	if [ $cycles -eq "$pcycles" ] && [ $rc -eq 0 ] && grep -q '^PASS: ' "$tmp/pr.out"; then
		ok "pause-resume: $pcycles pause/resume cycles during the workload, then PASS"
	else
		bad "pause-resume: $cycles of $pcycles cycles, sr-run exited $rc" "$tmp/pr.out"
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
	$O/sr-ctl finish poke >/dev/null 2>&1
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

# Image $1 names every page of its domain's memory (one region from gpa 0, as
# sr-run lays out a test guest) exactly once in round 0, as data, zero page or
# in a zero run (sr-dump --pfns); says what it found either way.
pfns_cover() {
	$O/sr-dump --pfns "$1" 2>&1 | python3 -c '
import re, sys
mib = regions = it = None
seen, twice = set(), 0
for line in sys.stdin:
    m = re.search(r" DOMAIN .*, (\d+) regions?, (\d+) MiB$", line)
    if m:
        regions, mib = int(m.group(1)), int(m.group(2))
    m = re.search(r" PAGE_DATA .* iter (\d+)", line)
    if m:
        it = int(m.group(1))
        continue
    m = re.match(r"\s+pfn 0x([0-9a-f]+) (\S+)\s+(\d+)", line)
    if m and it == 0:
        first = int(m.group(1), 16)
        n = int(m.group(3)) if m.group(2) == "zero-run" else 1
        for p in range(first, first + n):
            twice += p in seen
            seen.add(p)
want = set(range((mib or 0) * 256))
ok = regions == 1 and seen == want and not twice
print("%s: %d of %d pfns in round 0, %d named twice, %d missing, %d outside" % (
    "covered" if ok else "NOT covered", len(seen & want), len(want), twice, len(want - seen), len(seen - want)))
sys.exit(0 if ok else 1)'
}

if want save-points; then
	# Guest-requested saves at different rounds, 1 and 2 vCPUs; then restore.
	for spec in "1 2" "1 5" "2 3" "2 6"; do
		set -- $spec
		name="sp-$1-$2"
		$O/sr-run --name $name --memory 32 --vcpus $1 --rounds 7 --save-round $2 \
			--save-to "$tmp/$name.img" --quiet-guest "$guest" >"$tmp/$name.run" 2>&1; rc=$?
		if [ $rc -ne 0 ] || [ ! -s "$tmp/$name.img" ]; then bad "save-points: $1 vCPU(s) round $2: sr-run exited $rc" "$tmp/$name.run"; continue; fi
		if ! $O/sr-dump --verify "$tmp/$name.img" 2>"$tmp/$name.dump"; then bad "save-points: image fails sr-dump --verify" "$tmp/$name.dump"; continue; fi
		if ! pfns_cover "$tmp/$name.img" >"$tmp/$name.pfns"; then bad "save-points: $name's image does not name every page once" "$tmp/$name.pfns"; continue; fi
		$O/sr-restore --name $name "$tmp/$name.img" >"$tmp/$name.out" 2>&1; rc=$?
		if [ $rc -eq 0 ] && grep -q "^round $2: after the save point: restores 0 -> 1" "$tmp/$name.out" && grep -q '^PASS: ' "$tmp/$name.out"; then
			ok "save-points: $1 vCPU(s), saved by the guest after round $2 (sr-dump --pfns: $(cat "$tmp/$name.pfns")), restored: PASS"
		else
			bad "save-points: $1 vCPU(s) round $2: sr-restore exited $rc" "$tmp/$name.out"
		fi
	done
fi

if want save-to-symlink; then
	# A guest-requested save goes through an unnamed file, never through FILE.tmp: a
	# symlink planted there (root writes the image) leaves its target untouched.
	echo "precious" > "$tmp/victim"
	ln -sf "$tmp/victim" "$tmp/st.img.tmp"
	$O/sr-run --name st --memory 32 --rounds 4 --save-round 2 --save-to "$tmp/st.img" \
		--quiet-guest "$guest" >"$tmp/st.run" 2>&1; rc=$?
	if [ $rc -eq 0 ] && [ "$(cat "$tmp/victim")" = precious ] && [ -f "$tmp/st.img" ] && [ ! -L "$tmp/st.img" ] &&
	   $O/sr-dump --verify "$tmp/st.img" 2>>"$tmp/st.run"; then
		ok "save-to-symlink: --save-to wrote its image unnamed and linked it in; the symlink at st.img.tmp was not followed"
	else
		ls -l "$tmp/victim" "$tmp"/st.img* >> "$tmp/st.run" 2>&1
		bad "save-to-symlink: sr-run exited $rc, victim '$(head -c 20 "$tmp/victim" | tr -dc '[:print:]')'" "$tmp/st.run"
	fi
fi

if want control-socket; then
	# The runner serves a client only once its request is there: idle connections cost the
	# others nothing; NAME.lock owns the name: a second runner of that name is refused even
	# while the first has every slot and its backlog full (it never takes the socket).
	$O/sr-run --name cs --memory 32 --rounds 0 --pages 64 --delay-us 5000 --quiet-guest "$guest" >"$tmp/cs.out" 2>&1 &
	pid=$!
	wait_domain cs
	python3 -c 'import socket, sys, time
s = [socket.socket(socket.AF_UNIX) for _ in range(16)]
for x in s: x.setblocking(False); x.connect_ex(sys.argv[1])
time.sleep(8)' "$SR_RUN_DIR/cs.sock" &
	idle=$!
	sleep 0.5
	a=$(date +%s%N); st=$($O/sr-ctl status cs 2>&1); b=$(date +%s%N)
	$O/sr-run --name cs --memory 32 --rounds 1 --quiet-guest "$guest" >"$tmp/cs2.out" 2>&1; rc2=$?
	kill $idle 2>/dev/null; wait $idle
	st2=$($O/sr-ctl status cs 2>&1)
	$O/sr-ctl finish cs >/dev/null 2>&1; wait $pid; rc=$?
	ms=$(( (b - a) / 1000000 ))
	# Before, each idle client ahead held the loop 5 s: 8 of them, 40 s.
	if [[ "$st" == *"pid=$pid "* ]] && [ $ms -lt 5000 ] && [ $rc2 -eq 2 ] && grep -q 'already running' "$tmp/cs2.out" &&
	   [[ "$st2" == *"pid=$pid "* ]] && [ $rc -eq 0 ] && grep -q '^PASS' "$tmp/cs.out"; then
		ok "control-socket: status answered in $ms ms past 16 idle connections; a second \"cs\" was refused ($(tail -1 "$tmp/cs2.out")); the first kept its name and passed"
	else
		echo "status after ${ms} ms: $st; second runner $rc2; status after: $st2" >> "$tmp/cs.out"; cat "$tmp/cs2.out" >> "$tmp/cs.out"
		bad "control-socket: the runner exited $rc" "$tmp/cs.out"
	fi
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
		wait_domain ext2 && sleep 2 && $O/sr-ctl finish ext2 >/dev/null
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

if want chain 300; then
	# save -> restore -> run -> save, 20 times (SR_CHAIN_CYCLES), then let the guest finish.
	n=${SR_CHAIN_CYCLES:-20}
	$O/sr-run --name ch --memory 24 --vcpus 2 --rounds 0 --pages 64 --delay-us 2000 \
		--quiet-guest "$guest" >"$tmp/ch.out" 2>&1 &
	chpid=$!
	wait_domain ch && sleep 0.5
	cycles=0
	img=$tmp/ch.img
	for i in $(seq 1 "$n"); do
		$O/sr-save -q ch "$img" 2>>"$tmp/ch.out" || break
		# The saved domain's runner (sr-run, then each sr-restore) ends with 0.
		wait $chpid; rc=$?
		[ $rc -eq 0 ] || { echo "cycle $i: the saved runner exited $rc" >> "$tmp/ch.out"; break; }
		$O/sr-dump --verify "$img" 2>>"$tmp/ch.out" || break
		$O/sr-restore --name ch "$img" >>"$tmp/ch.out" 2>&1 &
		chpid=$!
		wait_domain ch || break
		sleep 0.3
		cycles=$i
	done
	$O/sr-ctl finish ch >/dev/null 2>&1
	wait $chpid; rc=$?
	if [ "$cycles" -eq "$n" ] && [ $rc -eq 0 ] && grep -q '^PASS' "$tmp/ch.out"; then
		ok "chain: $n save -> restore -> run cycles on 2 vCPUs, then PASS"
	else
		bad "chain: $cycles of $n cycles, last exit $rc" "$tmp/ch.out"
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

if want virtio-event-images; then
	# EVENT_IDX state a restore must refuse (docs/format.md §6.1.3), in a virtio-rng DEVICE
	# (tests/imgedit virtio): exit 5 and one line naming the record, its offset and the field,
	# before any guest code runs.
	$O/tests/mkimage -m 1 -v 1 -i 0 -g 1 "$tmp/ve.img" >/dev/null || bad "virtio-event-images: mkimage"
	noev=$((0x100000000))			# VERSION_1 only: EVENT_IDX (bit 29) taken back
	while IFS='|' read -r what fields msg; do
		# shellcheck disable=SC2086
		$O/tests/imgedit virtio $fields "$tmp/ve.img" "$tmp/vx.img" 2>"$tmp/vx.ed" ||
			{ bad "virtio-event-images ($what): imgedit failed" "$tmp/vx.ed"; continue; }
		$O/sr-restore --name vx "$tmp/vx.img" </dev/null >"$tmp/vx.out" 2>&1; rc=$?
		if [ $rc -eq 5 ] && [ "$(wc -l < "$tmp/vx.out")" -eq 1 ] &&
		   grep -Eq 'record [0-9]+ \(DEVICE\) at offset [0-9]+: .*virtio-rng 0: body byte [0-9]+: ' "$tmp/vx.out" &&
		   grep -qF -- "$msg" "$tmp/vx.out"; then
			ok "virtio-event-images ($what): refused: $(cat "$tmp/vx.out")"
		else
			bad "virtio-event-images ($what): sr-restore exited $rc, want 5 and one line with '$msg'" "$tmp/vx.out"
		fi
	done <<CASES
signalled-without-event-idx|driver_features $noev|queue 0: SIGNALLED without EVENT_IDX negotiated
avail-event-without-event-idx|driver_features $noev flags 0|queue 0 avail_event 1000 without EVENT_IDX negotiated
event-idx-not-offered|device_features $noev|driver_features bit 29 was not offered
unknown-queue-flag|flags 3|queue 0 flags 0x3
CASES
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

if want corrupt-threads 900; then
	# A byte flipped in the page data of a random record of a many-record
	# image, restored with 0, 1 and 2 threads, 10 times each in make check
	# (SR_CORRUPT_RUNS=30 for the issue's count; CI's time is the limit):
	# always refused (exit 5, naming that record), never a signal.  The
	# reader's workers were once still decoding into guest memory that the
	# failure path had unmapped (SIGSEGV in 19 of 30 runs with -j 2).  A
	# restore takes ~5 s in the box (its host probe and VM included): a line
	# every 10 runs keeps the box's idle watchdog quiet.
	runs=${SR_CORRUPT_RUNS:-10}
	$O/tests/mkimage -m 64 -v 1 -i 1 -d 10 "$tmp/ct.img"; rc=$?
	# Each PAGE_DATA record with page data: index, where its data starts, its length.
	$O/sr-dump --json "$tmp/ct.img" 2>"$tmp/ct.out" | python3 -c '
import json, struct, sys
img = open(sys.argv[1], "rb")
for r in json.load(sys.stdin)["records"]:
    if r["type"] == "PAGE_DATA" and r["raw"] + r["lz4"]:
        img.seek(r["offset"] + 8)
        data = r["offset"] + 8 + 8 + 16 * struct.unpack("<I", img.read(4))[0]
        print(r["index"], data, r["offset"] + 8 + r["length"] - data)' "$tmp/ct.img" > "$tmp/ct.recs"
	nrec=$(wc -l < "$tmp/ct.recs")
	if [ $rc -ne 0 ] || [ "$nrec" -lt 8 ]; then
		bad "corrupt-threads: mkimage exited $rc, $nrec PAGE_DATA records with data (want >= 8)" "$tmp/ct.out"
	else
		for threads in 0 1 2; do
			n5=0 other=
			for i in $(seq 1 $runs); do
				[ $((i % 10)) -ne 1 ] || [ $i -eq 1 ] || echo "     corrupt-threads: --threads $threads: run $i of $runs"
				read -r ri off len < <(sed -n "$((RANDOM % nrec + 1))p" "$tmp/ct.recs")
				off=$((off + (RANDOM * 32768 + RANDOM) % len))
				b=$(od -An -tu1 -j $off -N1 "$tmp/ct.img" | tr -d ' ')
				printf "\\$(printf %o $((b ^ 0x40)))" | dd of="$tmp/ct.img" bs=1 seek=$off conv=notrunc status=none
				$O/sr-restore --name ct --threads $threads "$tmp/ct.img" >"$tmp/ct.out" 2>&1; rc=$?
				printf "\\$(printf %o $b)" | dd of="$tmp/ct.img" bs=1 seek=$off conv=notrunc status=none
				if [ $rc -eq 5 ] && grep -q "record $ri (PAGE_DATA) at offset [0-9]*: checksum mismatch" "$tmp/ct.out"; then
					n5=$((n5 + 1))
				else
					other="$other run $i: record $ri byte $off exit $rc$([ $rc -gt 128 ] && echo " (signal $((rc - 128)))");"
					cp "$tmp/ct.out" "$tmp/ct.bad"
				fi
			done
			if [ $n5 -eq $runs ]; then
				ok "corrupt-threads: --threads $threads: $runs of $runs restores of an image with a flipped byte in a random record's page data refused (exit 5, the record named)"
			else
				bad "corrupt-threads: --threads $threads: $n5 of $runs refused with exit 5;$other" "$tmp/ct.bad"
			fi
		done
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
	$O/sr-ctl finish df >/dev/null 2>&1
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
	$O/sr-ctl finish rg >/dev/null 2>&1
	wait $pid; rrc=$?
	if grep -q 'the domain runs on' "$tmp/rg.save" && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/rg.out"; then
		ok "reader-gone: $(cat "$tmp/rg.save"); the guest ran on to PASS"
	else
		cat "$tmp/rg.save" >> "$tmp/rg.out"
		bad "reader-gone: runner exited $rrc" "$tmp/rg.out"
	fi
fi

if want signal 300; then
	# SIGINT to sr-save in the middle of a save: the domain lives on, no file.
	# The guest has written all its memory (--prefill), so the save has pages
	# to send; the signal comes once the runner says the save is running.
	$O/sr-run --name sg --memory 256 --rounds 0 --pages 64 --delay-us 2000 --prefill --quiet-guest \
		"$guest" >"$tmp/sg.out" 2>&1 &
	pid=$!
	# Until the guest has written its memory (else the save is over at once).
	wait_domain sg && poll_ms 120000 guest_written $pid 240000
	$O/sr-save sg "$tmp/sg.img" 2>"$tmp/sg.save" &
	spid=$!
	# The fault must land inside the save: no save=running seen, the test fails.
	seen=0; poll_ms 20000 save_running sg && seen=1
	kill -INT $spid; wait $spid; src=$?
	sleep 1
	$O/sr-ctl status sg >"$tmp/sg.status" 2>&1; strc=$?
	$O/sr-ctl finish sg >/dev/null 2>&1
	wait $pid; rrc=$?
	if [ $seen -eq 1 ] && [ $src -ne 0 ] && [ $strc -eq 0 ] && grep -q 'state=running' "$tmp/sg.status" && [ ! -e "$tmp/sg.img" ] && [ ! -e "$tmp/sg.img.tmp" ] && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/sg.out"; then
		ok "signal: SIGINT mid-save left the domain running (then PASS) and no file"
	else
		cat "$tmp/sg.save" "$tmp/sg.status" >> "$tmp/sg.out"; ls -la "$tmp" >> "$tmp/sg.out"
		bad "signal: save seen running before the signal: $seen (want 1), sr-save $src, status $strc, runner $rrc" "$tmp/sg.out"
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
	# Until the pipe to the stopped reader is full (64 KiB: the runner now holds
	# its 4 KiB and drops the rest); the guest prints far more than that.
	pipe_full() { python3 -c 'import fcntl, os, struct, sys, termios
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
n = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
sys.exit(0 if n >= 61440 else 1)' "/proc/$pid/fd/1" 2>/dev/null; }	# small writes leave slack per page
	full=0; poll_ms 60000 pipe_full && full=1
	sleep 0.5		# the runner's 4 KiB fill and it starts dropping
	t0=$(date +%s%N)
	$O/sr-ctl pause cs >/dev/null 2>&1; prc=$?
	t1=$(date +%s%N)
	$O/sr-ctl resume cs >/dev/null 2>&1
	kill -CONT $cpid
	sleep 1
	$O/sr-ctl finish cs >/dev/null 2>&1
	wait $pid; rrc=$?
	wait $cpid 2>/dev/null
	ms=$(( (t1 - t0) / 1000000 ))
	if [ $full -eq 1 ] && [ $prc -eq 0 ] && [ $ms -lt 2000 ] && [ $rrc -eq 0 ] && grep -q 'console bytes dropped' "$tmp/con.out" && grep -q '^PASS' "$tmp/con.out"; then
		ok "console-stall: with the console reader stopped, pause answered in $ms ms, $(grep -o '[0-9]* console bytes dropped' "$tmp/con.out" | head -1), then PASS"
	else
		cat "$tmp/con.err" >> "$tmp/con.out"; bad "console-stall: pipe seen full $full (want 1), pause $prc in $ms ms, runner $rrc" "$tmp/con.out"
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
	poll_ms 20000 save_running sc
	$O/sr-ctl status sc >"$tmp/sc.status" 2>&1
	$O/sr-ctl pause sc >"$tmp/sc.busy" 2>&1; brc=$?
	$O/sr-ctl cancel sc >"$tmp/sc.cancel" 2>&1; crc=$?
	for _ in $(seq 1 100); do grep -q 'cancel' "$tmp/sc.save" 2>/dev/null && break; sleep 0.1; done
	$O/sr-ctl status sc >"$tmp/sc.after" 2>&1
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
	start=$(date +%s%N)
	( $O/sr-save --stall-timeout 3 sc - 2>"$tmp/sc.stall" | sleep 30 ) & spid=$!
	poll_ms 20000 file_has 'cancel' "$tmp/sc.stall"
	took_ms=$(( ($(date +%s%N) - start) / 1000000 )); took=$((took_ms / 1000))
	pkill -P $spid sleep 2>/dev/null; wait $spid 2>/dev/null
	$O/sr-ctl status sc >"$tmp/sc.after2" 2>&1
	$O/sr-ctl finish sc >/dev/null 2>&1
	wait $pid; rrc=$?
	# Not before the timeout (3 s without progress), nor long after it.
	if grep -q 'save cancelled' "$tmp/sc.stall" && [ $took_ms -ge 3000 ] && [ $took -lt 15 ] && grep -q 'state=running' "$tmp/sc.after2" &&
	   grep -q 'made no progress for 3 s' "$tmp/sc.out" && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/sc.out"; then
		ok "save-control: a stalled reader timed the save out after ${took_ms} ms (>= 3 s): $(grep -o 'save of .*' "$tmp/sc.out" | head -1); then PASS"
	else
		cat "$tmp/sc.stall" "$tmp/sc.after2" >> "$tmp/sc.out"; bad "save-control: stall timeout after ${took_ms} ms (want 3000..15000), runner $rrc" "$tmp/sc.out"
	fi
fi

if want control-socket 300; then
	# The control socket's promises: its directory 0700 and sockets 0600, peer
	# credentials checked, a silent client does not hold up another's status,
	# one save at a time, destroy refused during a save, and SIGTERM to the
	# runner mid-save ends it (exit 4) with the save abandoned and no FILE.
	$O/sr-run --name cx --memory 32 --rounds 0 --pages 64 --delay-us 2000 --prefill --quiet-guest \
		"$guest" >"$tmp/cx.out" 2>&1 &
	pid=$!
	wait_domain cx && poll_ms 120000 guest_written $pid 24000
	modes="$(stat -c %a "$SR_RUN_DIR") $(stat -c %a "$SR_RUN_DIR/cx.sock")"
	if [ "$modes" = "700 600" ]; then ok "control-socket: \$SR_RUN_DIR 0700, cx.sock 0600"
	else bad "control-socket: modes '$modes' (want '700 600')" /dev/null; fi

	# Another uid: the modes keep it out; opened up (as only root can), SO_PEERCRED does.
	setpriv --reuid=nobody --regid=nogroup --clear-groups $O/sr-ctl status cx >"$tmp/cx.nobody" 2>&1; nrc=$?
	chmod 0711 "$SR_RUN_DIR"; chmod 0666 "$SR_RUN_DIR/cx.sock"
	setpriv --reuid=nobody --regid=nogroup --clear-groups $O/sr-ctl status cx >"$tmp/cx.cred" 2>&1; crc=$?
	chmod 0700 "$SR_RUN_DIR"; chmod 0600 "$SR_RUN_DIR/cx.sock"
	# The runner answers "error permission denied" and hangs up at once: a client
	# still sending its request then sees EPIPE instead of the answer.
	if [ $nrc -ne 0 ] && grep -q 'Permission denied' "$tmp/cx.nobody" && [ $crc -ne 0 ] &&
	   grep -Eq 'permission denied|Broken pipe' "$tmp/cx.cred" && ! grep -q 'state=' "$tmp/cx.cred"; then
		ok "control-socket: uid nobody: kept out by the modes ($(cat "$tmp/cx.nobody")); with the socket opened up, refused by its peer credentials ($(cat "$tmp/cx.cred"))"
	else
		cat "$tmp/cx.nobody" "$tmp/cx.cred" > "$tmp/cx.uid"
		bad "control-socket: another uid: sr-ctl exited $nrc (modes), $crc (credentials; want refused, no status)" "$tmp/cx.uid"
	fi

	# A client that connects and says nothing; another's status must not wait for it.
	python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); open(sys.argv[2], "w").write("connected\n")
time.sleep(30)' "$SR_RUN_DIR/cx.sock" "$tmp/cx.quiet" &
	quiet=$!
	# Connected, it is ahead of the status client in the listen backlog.
	poll_ms 20000 file_has connected "$tmp/cx.quiet"
	a=$(date +%s%N)
	$O/sr-ctl status cx >"$tmp/cx.st" 2>&1; src=$?
	ms=$(( ($(date +%s%N) - a) / 1000000 ))
	kill $quiet 2>/dev/null; wait $quiet 2>/dev/null
	# A silent client ahead used to hold the loop for its whole 5 s timeout: under
	# 4 s is quick even in a loaded box (2.6 s seen there at a load of 10).
	if [ $src -eq 0 ] && grep -q 'state=running' "$tmp/cx.st" && [ $ms -lt 4000 ]; then
		ok "control-socket: with a silent client connected, status answered in $ms ms"
	else
		bad "control-socket: with a silent client connected, status took $ms ms (want < 4000), exit $src" "$tmp/cx.st"
	fi

	# One save at a time: a second save, and destroy, are refused as busy; the first goes on.
	( $O/sr-save cx - 2>"$tmp/cx.save1" | sleep 60 ) & s1=$!
	poll_ms 20000 save_running cx; seen=$?
	$O/sr-save cx "$tmp/cx2.img" >"$tmp/cx.save2" 2>&1; s2=$?
	$O/sr-ctl destroy cx >"$tmp/cx.destroy" 2>&1; drc=$?
	save_running cx; still=$?
	$O/sr-ctl cancel cx >/dev/null 2>&1
	poll_ms 20000 file_has 'cancel' "$tmp/cx.save1"
	pkill -P $s1 sleep 2>/dev/null; wait $s1 2>/dev/null
	if [ $seen -eq 0 ] && [ $s2 -ne 0 ] && grep -q 'busy' "$tmp/cx.save2" && [ ! -e "$tmp/cx2.img" ] &&
	   [ $drc -eq 1 ] && grep -q 'busy' "$tmp/cx.destroy" && [ $still -eq 0 ]; then
		ok "control-socket: during a save a second save was refused ($(head -1 "$tmp/cx.save2" | cut -c1-100)) and so was destroy; the first save ran on"
	else
		cat "$tmp/cx.save1" "$tmp/cx.save2" "$tmp/cx.destroy" > "$tmp/cx.busy"
		bad "control-socket: two saves: first seen running $seen (want 0), second $s2 (want refused), destroy $drc (want 1, busy), first still running $still" "$tmp/cx.busy"
	fi

	# SIGTERM to the runner mid-save (a slow save: --bandwidth 1).
	$O/sr-save --compress none --bandwidth 1 cx "$tmp/cx3.img" >"$tmp/cx.save3" 2>&1 & s3=$!
	poll_ms 20000 save_running cx; seen=$?
	kill -TERM $pid
	wait $pid; rrc=$?
	wait $s3; s3rc=$?
	left=$(ls "$tmp" | grep -c '^cx3.img')
	if [ $seen -eq 0 ] && [ $rrc -eq 4 ] && [ $s3rc -ne 0 ] && [ "$left" -eq 0 ]; then
		ok "control-socket: SIGTERM to the runner mid-save: it exited 4, sr-save $s3rc ($(tail -1 "$tmp/cx.save3" | cut -c1-100)), no FILE"
	else
		cat "$tmp/cx.save3" >> "$tmp/cx.out"
		bad "control-socket: SIGTERM mid-save: save seen running $seen (want 0), runner $rrc (want 4), sr-save $s3rc, $left files left" "$tmp/cx.out"
	fi
fi

if want save-options 300; then
	# --bandwidth is a rate: a save of B bytes at R MB/s takes at least B/R.
	# -p leaves the domain paused.  Where the filesystem has no O_TMPFILE, FILE.tmp
	# holds the image until it is complete.
	$O/sr-run --name so --memory 32 --rounds 0 --pages 64 --delay-us 2000 --prefill --quiet-guest \
		"$guest" >"$tmp/so.out" 2>&1 &
	pid=$!
	wait_domain so && poll_ms 120000 guest_written $pid 24000
	a=$(date +%s%N)
	# 2 MB/s: well below what the box writes unthrottled (25 MB in some 4 s at
	# load 5), so a --bandwidth that never waits is caught (make mutants, S04).
	$O/sr-save -c --compress none --bandwidth 2 so "$tmp/so-bw.img" 2>"$tmp/so.bw"; rc=$?
	ms=$(( ($(date +%s%N) - a) / 1000000 ))
	bytes=$(stat -c %s "$tmp/so-bw.img" 2>/dev/null || echo 0)
	floor=$(( bytes / 2000 ))		# ms at 2 MB/s
	if [ $rc -eq 0 ] && [ "$bytes" -gt $((16 << 20)) ] && [ $ms -ge $floor ] && [ $ms -lt $((floor * 3 + 20000)) ]; then
		ok "save-options: --bandwidth 2: $bytes bytes in $ms ms (at least $floor ms at 2 MB/s)"
	else
		bad "save-options: --bandwidth 2: sr-save $rc, $bytes bytes in $ms ms (want >= $floor ms, a save of > 16 MiB)" "$tmp/so.bw"
	fi

	$O/sr-save -p so "$tmp/so-p.img" 2>"$tmp/so.p"; rc=$?
	$O/sr-ctl status so >"$tmp/so.pst" 2>&1
	$O/sr-ctl resume so >/dev/null 2>&1
	$O/sr-ctl status so >"$tmp/so.rst" 2>&1
	if [ $rc -eq 0 ] && grep -q 'state=paused' "$tmp/so.pst" && grep -q 'state=running' "$tmp/so.rst" &&
	   $O/sr-dump --verify "$tmp/so-p.img"; then
		ok "save-options: -p: saved, the domain left paused, then resumed"
	else
		cat "$tmp/so.p" "$tmp/so.pst" "$tmp/so.rst" > "$tmp/so.pall"
		bad "save-options: -p: sr-save $rc" "$tmp/so.pall"
	fi

	# A directory without O_TMPFILE: the checkout in the box (9p); natively a vfat image.
	notmp=
	tmpfile_ok() { python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_TMPFILE | os.O_WRONLY, 0o600))' "$1" 2>/dev/null; }
	mkdir -p "$O/no-tmpfile" && ! tmpfile_ok "$O/no-tmpfile" && notmp=$O/no-tmpfile
	if [ -z "$notmp" ] && command -v mkfs.vfat >/dev/null; then
		truncate -s 128M "$tmp/vfat.img" && mkfs.vfat -q "$tmp/vfat.img" && mkdir -p "$tmp/vfat" &&
		mount -o loop "$tmp/vfat.img" "$tmp/vfat" && ! tmpfile_ok "$tmp/vfat" && notmp=$tmp/vfat
	fi
	if [ -z "$notmp" ]; then
		bad "save-options: no filesystem without O_TMPFILE here for the FILE.tmp fallback ($O is one with it, mkfs.vfat $(command -v mkfs.vfat || echo missing))" /dev/null
	else
		rm -f "$notmp/so.img" "$notmp/so.img.tmp"
		$O/sr-save -c --compress none --bandwidth 16 so "$notmp/so.img" 2>"$tmp/so.tmp" & s=$!
		seen=0; poll_ms 30000 test -e "$notmp/so.img.tmp" && [ ! -e "$notmp/so.img" ] && seen=1
		wait $s; rc=$?
		if [ $seen -eq 1 ] && [ $rc -eq 0 ] && [ ! -e "$notmp/so.img.tmp" ] && $O/sr-dump --verify "$notmp/so.img"; then
			ok "save-options: without O_TMPFILE ($notmp): FILE.tmp while saving, then FILE, which verifies"
		else
			ls -la "$notmp" >> "$tmp/so.tmp"
			bad "save-options: FILE.tmp fallback in $notmp: FILE.tmp seen $seen (want 1), sr-save $rc" "$tmp/so.tmp"
		fi
		rm -f "$notmp/so.img" "$notmp/so.img.tmp"
		mountpoint -q "$tmp/vfat" 2>/dev/null && umount "$tmp/vfat"
	fi
	$O/sr-ctl finish so >/dev/null 2>&1
	wait $pid; rrc=$?
	if [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/so.out"; then ok "save-options: the guest ran on to PASS after the three saves"
	else bad "save-options: the guest exited $rrc" "$tmp/so.out"; fi
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
	$O/sr-ctl resume zp >/dev/null 2>&1; $O/sr-ctl finish zp >/dev/null 2>&1
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
	$O/sr-ctl finish um >/dev/null 2>&1
	wait $pid; rrc=$?
	runs=$($O/sr-dump --json "$tmp/um.img" 2>/dev/null | python3 -c 'import json,sys
d = json.load(sys.stdin); print(sum(r.get("zero_runs", 0) for r in d["records"]))' 2>/dev/null)
	size=$(stat -c %s "$tmp/um.img" 2>/dev/null || echo 0)
	cover=$(pfns_cover "$tmp/um.img"); crc=$?
	if [ $rc -eq 0 ] && [ $rrc -eq 0 ] && [ $crc -eq 0 ] && [ -n "$shm0" ] && [ -n "$shm1" ] && [ -n "$rss1" ] &&
	   [ $((shm1 * 100)) -le $((shm0 * 105)) ] && [ $((rss1 - rss0)) -lt $um_limit ] &&
	   [ -n "$runs" ] && [ "$runs" -ge 1 ] && [ "$size" -lt $((64 << 20)) ] &&
	   grep -q '^PASS' "$tmp/um.out"; then
		ok "untouched-memory: sr-save -c of a 1 GiB guest: guest memory resident ${shm0} -> ${shm1} KiB (within 5%), runner $((rss0 / 1024)) -> $((rss1 / 1024)) MiB (limit +$((um_limit / 1024))), image $((size >> 10)) KiB with $runs zero runs ($cover), then PASS"
	else
		cat "$tmp/um.save" >> "$tmp/um.out"
		bad "untouched-memory: save $rc, guest $rrc, guest memory resident '$shm0' -> '$shm1' KiB (want within 5%), runner '$rss0' -> '$rss1' KiB, $runs zero runs, image $size bytes, sr-dump --pfns: $cover" "$tmp/um.out"
	fi
fi

if want big-guest; then
	# 6 GiB: RAM below the hole (3 GiB) and from 4 GiB, two regions.  The guest
	# writes 512 pages at both ends of the RAM above 4 GiB every round and
	# checks them after each save; it touches only a few MiB in all (the box
	# has 4 GiB).  On the old layout (one region from 0 over the APICs) its
	# timers never tick.  A guest-requested save, then a live save mid-run.
	bg_knobs="--memory 6144 --max-memory 8192 --vcpus 2 --working-set 256 --pages 64 --high-pages 512 --quiet-guest"
	$O/sr-run --name bgc $bg_knobs --rounds 4 --save-round 2 --save-to "$tmp/bgc.img" "$guest" >"$tmp/bgc.run" 2>&1; rc=$?
	nreg=$($O/sr-dump "$tmp/bgc.img" 2>/dev/null | grep -o '2 regions, 6144 MiB')
	$O/sr-restore --name bgc --max-memory 8192 "$tmp/bgc.img" >"$tmp/bgc.out" 2>&1; rrc=$?
	if [ $rc -eq 0 ] && [ -n "$nreg" ] && [ $rrc -eq 0 ] &&
	   grep -q '^round 2: after the save point: restores 0 -> 1, registers and 256 pages intact, and 512 pages above 4 GiB$' "$tmp/bgc.out" &&
	   grep -q '^PASS: .*, and 512 pages above 4 GiB$' "$tmp/bgc.out"; then
		ok "big-guest: 6 GiB test guest ($nreg), saved by the guest after round 2, restored: 512 pages above 4 GiB intact, PASS"
	else
		cat "$tmp/bgc.run" >> "$tmp/bgc.out"
		bad "big-guest: guest-requested save: sr-run $rc, regions '$nreg', sr-restore $rrc" "$tmp/bgc.out"
	fi
	$O/sr-run --name bgl $bg_knobs --rounds 0 --delay-us 2000 "$guest" >"$tmp/bgl.out" 2>&1 &
	bg_src=$!
	wait_domain bgl && sleep 2
	shm=$(awk '/^RssShmem:/ { print $2 }' /proc/$bg_src/status 2>/dev/null)
	$O/sr-save --live --stats bgl "$tmp/bgl.img" 2>"$tmp/bgl.save"; rc=$?
	wait $bg_src
	$O/sr-dump --verify "$tmp/bgl.img" 2>>"$tmp/bgl.save"; vrc=$?
	$O/sr-restore --name bgl --max-memory 8192 "$tmp/bgl.img" >>"$tmp/bgl.out" 2>&1 &
	bg_rst=$!
	wait_domain bgl && sleep 1.5
	$O/sr-ctl finish bgl >/dev/null 2>&1
	wait $bg_rst; rrc=$?
	if [ $rc -eq 0 ] && [ $vrc -eq 0 ] && [ $rrc -eq 0 ] && grep -q '^PASS: .*, and 512 pages above 4 GiB$' "$tmp/bgl.out"; then
		ok "big-guest: live save of the 6 GiB guest writing above 4 GiB (guest memory resident ${shm:-?} KiB), restored: PASS; $(grep -o "live: .*" "$tmp/bgl.save" | sed "s/; the domain exits//")"
	else
		cat "$tmp/bgl.save" >> "$tmp/bgl.out"
		bad "big-guest: live save $rc, verify $vrc, restore $rrc" "$tmp/bgl.out"
	fi
fi

if want old-layout; then
	# Images from before the hole had one region from 0.  Up to 4076 MiB it
	# stays clear of the APICs and KVM's pages and still restores (the guest
	# lives in its first 32 MiB); past that it covered them, never ran, and
	# is refused in one line before anything is allocated.
	$O/sr-run --name ol --memory 32 --rounds 4 --save-round 2 --save-to "$tmp/ol.img" --quiet-guest "$guest" >"$tmp/ol.run" 2>&1; rc=$?
	$O/tests/imgedit region-size 3584 "$tmp/ol.img" "$tmp/ol-3584.img" && $O/tests/imgedit region-size 4200 "$tmp/ol.img" "$tmp/ol-4200.img"; erc=$?
	$O/sr-restore --name ol --max-memory 8192 "$tmp/ol-3584.img" >"$tmp/ol.out" 2>&1; rrc=$?
	$O/sr-restore --name ol2 --max-memory 8192 "$tmp/ol-4200.img" >"$tmp/ol2.out" 2>&1; rrc2=$?
	if [ $rc -eq 0 ] && [ $erc -eq 0 ] && [ $rrc -eq 0 ] && grep -q '^PASS: ' "$tmp/ol.out" &&
	   [ $rrc2 -eq 2 ] && [ "$(wc -l < "$tmp/ol2.out")" -eq 1 ] &&
	   grep -q "region 0 (RAM at 0x0, 4200 MiB) covers the IOAPIC, LAPIC and KVM's TSS at 0xfec00000..0xffffffff" "$tmp/ol2.out"; then
		ok "old-layout: a one-region image of 3584 MiB restores to PASS; of 4200 MiB refused: $(cut -c1-60 "$tmp/ol2.out")..."
	else
		cat "$tmp/ol.run" "$tmp/ol2.out" >> "$tmp/ol.out"
		bad "old-layout: sr-run $rc, imgedit $erc, 3584 MiB restore $rrc (want 0), 4200 MiB restore $rrc2 (want 2, one line)" "$tmp/ol.out"
	fi
fi

if want two-phase 420; then
	# The commit protocol: the domain ends only once FILE is in place, and a
	# save that never commits leaves the domain running.
	tp_run() {	# name: a guest that runs until finished
		$O/sr-run --name "$1" --memory 64 --rounds 0 --pages 64 --delay-us 5000 --quiet-guest \
			"$guest" >"$tmp/$1.out" 2>&1 &
		tp_pid=$!
		wait_domain "$1" && sleep 0.3
	}
	tp_finish() { $O/sr-ctl finish "$1" >/dev/null 2>&1; wait $tp_pid; tp_rc=$?; grep -q '^PASS' "$tmp/$1.out" || tp_rc=1; }

	# SIGKILL mid-save: the domain runs on, nothing at FILE or FILE.tmp, and the
	# next save to the same FILE works (no stale FILE.tmp to refuse it).  The
	# guest has written all of its 256 MiB (--prefill), so the save has pages
	# to send, and the kill comes once the runner says the save is running.
	$O/sr-run --name tpk --memory 256 --rounds 0 --pages 64 --delay-us 5000 --prefill \
		--quiet-guest "$guest" >"$tmp/tpk.out" 2>&1 &
	tp_pid=$!
	wait_domain tpk && poll_ms 120000 guest_written $tp_pid 240000
	$O/sr-save tpk "$tmp/tpk.img" 2>"$tmp/tpk.save" & spid=$!
	seen=0; poll_ms 20000 save_running tpk && seen=1
	kill -KILL $spid; wait $spid 2>/dev/null
	# The runner notices the vanished client and resumes the domain.
	tp_resumed() { $O/sr-ctl status tpk 2>/dev/null | grep -q 'state=running' &&
		! $O/sr-ctl status tpk 2>/dev/null | grep -q ' save='; }
	poll_ms 10000 tp_resumed
	$O/sr-ctl status tpk >"$tmp/tpk.status" 2>&1
	left=$(ls "$tmp" | grep -c '^tpk.img')
	$O/sr-save -c tpk "$tmp/tpk.img" 2>>"$tmp/tpk.save"; rc=$?
	tp_finish tpk
	if [ $seen -eq 1 ] && grep -q 'state=running' "$tmp/tpk.status" && [ "$left" -eq 0 ] && [ $rc -eq 0 ] &&
	   $O/sr-dump --verify "$tmp/tpk.img" && [ $tp_rc -eq 0 ]; then
		ok "two-phase: SIGKILL mid-save: domain ran on, nothing left behind, the next save to the same FILE worked, then PASS"
	else
		cat "$tmp/tpk.save" "$tmp/tpk.status" >> "$tmp/tpk.out"; bad "two-phase: SIGKILL mid-save: save seen running first $seen (want 1), left $left, resave $rc, runner $tp_rc" "$tmp/tpk.out"
	fi

	# SIGINT and SIGTERM inside the commit window are held back: the save
	# completes, FILE verifies, the domain ends as asked.
	for sig in INT TERM; do
		tp_run tps$sig
		SR_SAVE_COMMIT_DELAY_MS=1500 $O/sr-save tps$sig "$tmp/tps$sig.img" 2>"$tmp/tps$sig.save" & spid=$!
		# In the window: FILE is in place, sr-save has not exited yet.
		seen=0; poll_ms 30000 test -e "$tmp/tps$sig.img" && kill -0 $spid 2>/dev/null && seen=1
		kill -$sig $spid; wait $spid; rc=$?
		wait $tp_pid; rrc=$?
		if [ $seen -eq 1 ] && [ $rc -eq 0 ] && [ $rrc -eq 0 ] && $O/sr-dump --verify "$tmp/tps$sig.img"; then
			ok "two-phase: SIG$sig inside the commit window was held back: saved, image verifies, domain ended as asked"
		else
			cat "$tmp/tps$sig.save" >> "$tmp/tps$sig.out"; bad "two-phase: SIG$sig in the commit window: window reached $seen (want 1), sr-save $rc, runner $rrc" "$tmp/tps$sig.out"
		fi
	done

	# SIGKILL inside the commit window (FILE placed, "commit" never sent): the
	# runner resumes the domain; FILE is a complete image.
	tp_run tpw
	SR_SAVE_COMMIT_DELAY_MS=3000 $O/sr-save tpw "$tmp/tpw.img" 2>"$tmp/tpw.save" & spid=$!
	seen=0; poll_ms 30000 test -e "$tmp/tpw.img" && kill -0 $spid 2>/dev/null && seen=1
	kill -KILL $spid; wait $spid 2>/dev/null
	poll_ms 10000 file_has 'not committed' "$tmp/tpw.out"
	$O/sr-ctl status tpw >"$tmp/tpw.status" 2>&1
	tp_finish tpw
	if [ $seen -eq 1 ] && grep -q 'state=running' "$tmp/tpw.status" && [ $tp_rc -eq 0 ] && grep -q 'not committed' "$tmp/tpw.out" &&
	   $O/sr-dump --verify "$tmp/tpw.img"; then
		ok "two-phase: sr-save killed before commit: the domain resumed and said so ($(grep -o 'not committed: [^;]*' "$tmp/tpw.out")), FILE complete"
	else
		cat "$tmp/tpw.save" "$tmp/tpw.status" >> "$tmp/tpw.out"; bad "two-phase: killed in the commit window: window reached $seen (want 1), runner $tp_rc" "$tmp/tpw.out"
	fi

	# FILE cannot be put in place (a directory took its name while the image was
	# written; one there before is refused up front): sr-save aborts, the domain
	# runs on, nothing is left beside it.
	tp_run tpa
	SR_TEST_PAUSE_AT=placing SR_TEST_PAUSE_MS=2000 $O/sr-save tpa "$tmp/tpa.img" 2>"$tmp/tpa.save" & spid=$!
	poll_ms 30000 file_has 'at placing' "$tmp/tpa.save" && mkdir "$tmp/tpa.img"
	wait $spid; rc=$?
	$O/sr-ctl status tpa >"$tmp/tpa.status" 2>&1
	tp_finish tpa
	side=$(ls "$tmp" | grep -c 'tpa.img.')
	if [ $rc -eq 1 ] && grep -q 'putting the image in place' "$tmp/tpa.save" && grep -q 'state=running' "$tmp/tpa.status" &&
	   [ "$side" -eq 0 ] && [ $tp_rc -eq 0 ]; then
		ok "two-phase: FILE could not be placed: aborted, domain ran on to PASS: $(grep -m1 'putting the image in place' "$tmp/tpa.save")"
	else
		cat "$tmp/tpa.save" "$tmp/tpa.status" >> "$tmp/tpa.out"; bad "two-phase: abort: sr-save $rc, runner $tp_rc, side files $side" "$tmp/tpa.out"
	fi
fi

# ------------------------------------------------------------------- live save
# live_run NAME MODE "SR-RUN KNOBS" "SR-SAVE OPTIONS": live-save a guest that
# writes on both vCPUs throughout, restore it, let it finish; sets lv_rc.
live_run() {
	local name=$1 mode=$2
	local pid
	$O/sr-run --name $name --memory 32 --vcpus 2 --rounds 0 $3 --quiet-guest "$guest" \
		>"$tmp/$name.out" 2>&1 &
	pid=$!
	wait_domain $name && sleep 2
	$O/sr-save --live --stats --dirty-track=$mode $4 $name "$tmp/$name.img" 2>"$tmp/$name.save"
	lv_save=$?
	wait $pid; lv_src=$?
	lv_rc=1
	[ $lv_save -eq 0 ] || return
	# Saved, the source's runner ends with 0.
	[ $lv_src -eq 0 ] || { echo "the saved source runner exited $lv_src" >> "$tmp/$name.save"; return; }
	$O/sr-dump --verify "$tmp/$name.img" 2>>"$tmp/$name.save" || return
	$O/sr-restore --name $name ${5:-} "$tmp/$name.img" >>"$tmp/$name.out" 2>&1 &
	pid=$!
	wait_domain $name && sleep 1.5
	$O/sr-ctl finish $name >/dev/null 2>&1
	wait $pid; lv_rc=$?
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
	$O/sr-ctl status lvk >"$tmp/lvk.status" 2>&1
	$O/sr-ctl finish lvk >/dev/null 2>&1
	wait $pid; rrc=$?
	if [ $rc -eq 0 ] && grep -q 'throttle up to [1-9]' "$tmp/lvk.save" && grep -q 'state=running.*throttle=0' "$tmp/lvk.status" && [ $rrc -eq 0 ]; then
		ok "live-throttle: after a throttled checkpoint the domain runs unthrottled ($(grep -o 'throttle=[0-9]*' "$tmp/lvk.status")), then PASS"
	else
		cat "$tmp/lvk.save" "$tmp/lvk.status" >> "$tmp/lvk.out"; bad "live-throttle checkpoint: save $rc, runner $rrc" "$tmp/lvk.out"
	fi
fi

if want live-cap-round0; then
	# A live save whose byte cap trips in round 0: the pages round 0 never
	# reached go into the final round, so the image covers every page (the
	# audit's 2 GiB case, at 64 MiB: the runner's test hook sets the cap to
	# 24 MiB, below the 56 MiB the guest prefilled; --compress none keeps
	# every page its full size).
	env SR_TEST_MAX_BYTES=25165824 $O/sr-run --name lcr --memory 64 --vcpus 1 --rounds 0 --prefill \
		--pages 64 --delay-us 200000 "$guest" >"$tmp/lcr.out" 2>&1 &
	pid=$!
	r0= rlast= total= verified= rrc2=
	if wait_domain lcr && poll_ms 60000 file_has '^round 2:' "$tmp/lcr.out"; then
		$O/sr-save --live --stats --compress none --throttle off lcr "$tmp/lcr.img" 2>"$tmp/lcr.save"; rc=$?
		wait $pid; rrc=$?
		$O/sr-dump --json "$tmp/lcr.img" 2>>"$tmp/lcr.save" | python3 -c '
import json, sys
d = json.load(sys.stdin)
it, total = d["iterations"], d["totals"]["memory_bytes"] // 4096
print(d["verified"], it[0]["pages"], it[-1]["pages"], total)' > "$tmp/lcr.json"
		read -r verified r0 rlast total < "$tmp/lcr.json"
		restore_bg "$tmp/lcr.img" lcr2
		rpid=$!
		wait_domain lcr2 && sleep 1 && $O/sr-ctl finish lcr2 >/dev/null 2>&1
		wait $rpid; rrc2=$?
	else
		kill $pid; wait $pid; rc=- rrc=-
	fi
	if [ "$rc" = 0 ] && grep -q 'live: 2 rounds (the byte cap was reached)' "$tmp/lcr.save" &&
	   [ "$verified" = True ] && [ -n "$r0" ] && [ "$r0" -lt 14336 ] && [ "$rlast" -ge $((14336 - r0)) ] &&
	   [ "$rrc2" = 0 ] && grep -q '^PASS' "$tmp/lcr2.out"; then
		ok "live-cap-round0: the cap stopped round 0 after $r0 of the 14336 prefilled pages ($total in all), the final round sent $rlast; the image verifies (every page covered), restored: PASS"
	else
		cat "$tmp/lcr.save" "$tmp/lcr.json" "$tmp/lcr2.out" >> "$tmp/lcr.out" 2>/dev/null
		bad "live-cap-round0: save $rc (runner $rrc), verified '$verified', round 0 '$r0' of 14336 prefilled, final '$rlast', restore $rrc2" "$tmp/lcr.out"
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
	$O/sr-ctl finish lp2 >/dev/null 2>&1
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
	$O/sr-ctl status lf >"$tmp/lf.status" 2>&1
	$O/sr-ctl finish lf >/dev/null 2>&1
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
# progress line on the console so the box's idle watchdog sees them alive
# (every 2 soak cycles: on a loaded host a cycle took up to 34 s in the box,
# and 10 of them outlasted the watchdog's 200 s).
if want soak-sample 600; then
	if SR_SOAK_CYCLES=20 SR_SOAK_EVERY=2 O=$O tests/soak-kvm.sh 2>&1 | tee "$tmp/soak.out" | grep --line-buffered '^soak: [0-9]*/'; [ "${PIPESTATUS[0]}" -eq 0 ]; then
		ok "soak-sample: $(grep '^soak: [0-9]* save' "$tmp/soak.out"); $(grep '^soak: cycles' "$tmp/soak.out" | cut -c7-)"
	else bad "soak-sample" "$tmp/soak.out"; fi
fi
if want faults-sample 600; then
	if SR_FAULTS=12 O=$O tests/faults-kvm.sh 2>&1 | tee "$tmp/faults.out" | grep --line-buffered '^ok   trial\|^FAIL' | sed 's/^/     faults-sample /'; [ "${PIPESTATUS[0]}" -eq 0 ]; then
		ok "faults-sample: 12 saves hit by kills and ENOSPC: domain ran on every time, every FILE absent or complete and restorable; $(head -1 "$tmp/faults.out" | cut -c9-)"
	else bad "faults-sample" "$tmp/faults.out"; fi
fi
# Waits up to $3 tenths of a second until file $1 has a line matching $2.
wait_line() {
	for _ in $(seq 1 "$3"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

if want tsc-deadline; then
	# The guest arms its TSC deadline 2 s ahead and asks for a save; restored
	# 10 s later with --clock advance, its TSC is past the deadline, so the
	# interrupt is due the moment it runs (the restorer re-arms the deadline
	# after moving the TSC offsets; armed against the old offset it comes ~2 s late).
	$O/sr-run --name td --memory 16 --guest-mode tsc-deadline --save-to "$tmp/td.img" \
		"$guest" >"$tmp/td.run" 2>&1; rc=$?
	sleep 10
	$O/sr-restore --name td --clock advance "$tmp/td.img" >"$tmp/td.out" 2>&1; rrc=$?
	moved=$(sed -n 's/.*TSC moved \([0-9]*\) ms.*/\1/p' "$tmp/td.out")
	late=$(sed -n 's/.*interrupt \([0-9]*\) ms after it was due.*/\1/p' "$tmp/td.out")
	cat "$tmp/td.run" >> "$tmp/td.out"
	if [ $rc -eq 0 ] && [ $rrc -eq 0 ] && [ -n "$late" ] && [ "${moved:-0}" -ge 10000 ] && [ "$late" -le 250 ]; then
		ok "tsc-deadline: restored 10 s after the save, TSC moved ${moved} ms, the deadline interrupt came ${late} ms after it was due"
	else
		bad "tsc-deadline: save $rc, restore $rrc, TSC moved '${moved}' ms, interrupt '${late}' ms after it was due (want <= 250)" "$tmp/td.out"
	fi
fi

if want pause-clock; then
	# A pause of 5 s: the PIT ticks KVM counted as missed meanwhile must not
	# come in a burst after the resume (the PIT is re-put, as QEMU does): the
	# guest counts the ticks in the gap and in the second after it.
	$O/sr-run --name pc --memory 16 --guest-mode pit-pause "$guest" >"$tmp/pc.out" 2>&1 &
	pid=$!
	if wait_domain pc && wait_line "$tmp/pc.out" 'waiting for a pause' 600; then
		sleep 0.5
		$O/sr-ctl pause pc >/dev/null 2>>"$tmp/pc.ctl"
		sleep 5
		$O/sr-ctl resume pc >/dev/null 2>>"$tmp/pc.ctl"
	fi
	wait $pid; rc=$?
	cat "$tmp/pc.ctl" >> "$tmp/pc.out" 2>/dev/null
	set -- $(sed -n 's/.*a gap of \([0-9]*\) ms: \([0-9]*\) PIT ticks in it, \([0-9]*\) in the 1000 ms.*/\1 \2 \3/p' "$tmp/pc.out")
	gap=${1:-0} in=${2:-999} after=${3:-999}
	if [ $rc -eq 0 ] && [ "$gap" -ge 4000 ] && [ "$in" -le 5 ] && [ "$after" -ge 95 ] && [ "$after" -le 105 ]; then
		ok "pause-clock: paused ${gap} ms: ${in} PIT ticks in the gap, ${after} in the second after it (100 Hz): no burst"
	else
		bad "pause-clock: sr-run $rc; gap ${gap} ms, ${in} ticks in it (want <= 5), ${after} in the second after (want 95..105)" "$tmp/pc.out"
	fi
fi

if want throttle-exits; then
	# An exit-heavy guest (port 0x80 in a loop, dirtying pages) held at an 80%
	# throttle must be kept out for its share, within 10% of it: a kick that
	# lands while its thread handles an exit still knocks out the next entry
	# (at least 72%), and no kick costs more than one share (at most 88%).
	# The runner says how long the vCPU has been kept out and how much of
	# that its sleeps overran (late wake-ups on a loaded host: the upper
	# bound is on the share without them); measured over some 6 s after 2 s
	# of settling (sr-ctl throttle NAME 999 only asks).
	# The runner's late_ms is its own account of its own sleeps (one made too
	# long by the code that times it counts as late), so the guest times them
	# too: each gap of 20 ms or more between two of its port writes is one
	# keeping-out, and the shortest tenth of those while held must end near
	# the 40 ms a period's share is: at most 52 ms (the box's nested exit and
	# entry add some 4 ms to each, and a starved box lengthens many of them,
	# which moves a mean but hardly the shortest tenth; the lower side is the
	# runner's kept-out share).  The throttle goes back to 0 before the guest
	# is finished.
	$O/sr-run --name te --memory 16 --guest-mode port-loop "$guest" >"$tmp/te.out" 2>&1 &
	pid=$!
	kept= share= n1=0 n2=0
	# Kept out so far, of which late, and the runner's clock then (ms).
	te_read() { $O/sr-ctl throttle te 999 2>>"$tmp/te.ctl" | tee -a "$tmp/te.ctl" |
		sed -n 's/.*kept_out_ms \([0-9]*\) late_ms \([0-9]*\) at_ms \([0-9]*\).*/\1 \2 \3/p'; }
	# The guest's lines so far, one a second of its clock, each on the time
	# since the one before: line k lies wholly after a moment that saw k - 2
	# lines and wholly before one that saw k.
	te_lines() { grep -c '^port-loop: ran' "$tmp/te.out"; }
	if wait_domain te && wait_line "$tmp/te.out" '^port-loop: ran' 600; then
		$O/sr-ctl throttle te 80 >>"$tmp/te.ctl" 2>&1
		sleep 2
		set -- $(te_read); o0=${1:-} l0=${2:-} t0=${3:-}
		n1=$(te_lines)
		sleep 6
		set -- $(te_read); o1=${1:-} l1=${2:-} t1=${3:-}
		n2=$(te_lines)
		if [ -n "$o0" ] && [ -n "$o1" ] && [ "$t1" -gt "$t0" ]; then
			kept=$(( (o1 - o0) * 100 / (t1 - t0) ))
			share=$(( (o1 - o0 - (l1 - l0)) * 100 / (t1 - t0) ))
		fi
		$O/sr-ctl throttle te 0 >>"$tmp/te.ctl" 2>&1
		$O/sr-ctl finish te >/dev/null 2>>"$tmp/te.ctl"
	fi
	wait $pid; rc=$?
	# The guest's lines while held: how many, their gaps in all, the median
	# of the lines' 10th percentiles and of their medians (ms), and the share
	# of the time the guest did not run (%).
	set -- $(sed -n 's/^port-loop: ran \([0-9]*\) of \([0-9]*\) ms, [0-9]* port writes, \([0-9]*\) gaps of 20 ms or more (10th\/50th\/90th percentile \([0-9]*\)\/\([0-9]*\)\/[0-9]* ms)$/\1 \2 \3 \4 \5/p' "$tmp/te.out" |
		awk -v n1=$n1 -v n2=$n2 'NR >= n1 + 2 && NR <= n2 && $3' |
		awk 'function mid(a, n,   i, j, t) {	# the median of a[1..n]
			for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j] < a[j - 1]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
			return n ? a[int((n + 1) / 2)] : 0
		}
		{ p10[NR] = $4; p50[NR] = $5; ran += $1; all += $2; gaps += $3 }
		END { printf "%d %d %d %d %d\n", NR, gaps, mid(p10, NR), mid(p50, NR), all ? (all - ran) * 100 / all : 0 }')
	held=${1:-0} gaps=${2:-0} gap_p10=${3:-0} gap_med=${4:-0} gkept=${5:-0}
	cat "$tmp/te.ctl" >> "$tmp/te.out" 2>/dev/null
	if [ $rc -eq 0 ] && [ -n "$kept" ] && [ "$kept" -ge 72 ] && [ "$share" -le 88 ] &&
	   [ "$held" -ge 2 ] && [ "$gap_p10" -le 52 ]; then
		ok "throttle-exits: held at 80%, the port-writing vCPU was kept out ${kept}% of $((t1 - t0)) ms, ${share}% without its sleeps' late wake-ups ($((l1 - l0)) ms); by the guest's clock $gaps times in $held s, 10th percentile ${gap_p10} ms, median ${gap_med} ms (a 40 ms share), ${gkept}% of the time"
	else
		bad "throttle-exits: sr-run $rc; held at 80%, kept out '${kept}'% (want >= 72), '${share}'% without late wake-ups (want <= 88); by the guest's clock: $held lines while held (want >= 2), $gaps times kept out, 10th percentile ${gap_p10} ms (want <= 52), median ${gap_med} ms" "$tmp/te.out"
	fi
fi

# Whether process $1 has ended (a detached runner is no child of this shell: no wait).
gone() { ! kill -0 "$1" 2>/dev/null; }
# The pid in $SR_RUN_DIR/$1.pid, or nothing.
pidof_dom() { cat "$SR_RUN_DIR/$1.pid" 2>/dev/null; }
# Field $2 of the JSON document in file $1.
json_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null; }

if want detach; then
	# A domain in the background: sr-run --detach returns once it runs (NAME.pid,
	# console in NAME.log); the control protocol driven by tests/ctl_client.py;
	# saved; restored with --detach; sr-ctl console shows the restored guest's
	# output live and leaves on Ctrl-] with the domain running; destroyed, its
	# files gone.  A runner killed by SIGKILL leaves a socket sr-ctl list calls
	# stale, and the next runner of that name replaces it.
	dt=$tmp/dt; : > "$dt.why"; : > "$dt.out"
	why() { echo "$*" >> "$dt.why"; }
	$O/sr-run --detach --name dt --rounds 0 --delay-us 50000 "$guest" >"$dt.run" 2>&1 ||
		why "sr-run --detach exited $?: $(tail -1 "$dt.run")"
	p1=$(pidof_dom dt)
	[ -n "$p1" ] && ! gone "$p1" || why "dt.pid: no live runner ('$p1')"
	grep -q "\"dt\" runs detached, pid $p1; console in $SR_RUN_DIR/dt.log" "$dt.run" || why "sr-run did not say where the console went"
	$O/sr-ctl status dt --json >"$dt.st.json" 2>>"$dt.out" && python3 tests/ctl_client.py check status "$dt.st.json" 2>>"$dt.out" ||
		why "status --json does not match docs/control.md"
	[ "$(json_field "$dt.st.json" pid)" = "$p1" ] || why "status says pid $(json_field "$dt.st.json" pid), dt.pid $p1"
	poll_ms 30000 file_has '^round 3: ' "$SR_RUN_DIR/dt.log" || why "no round 3 in dt.log"
	python3 tests/ctl_client.py drive dt >>"$dt.out" 2>&1 || why "ctl_client.py drive dt failed"
	# sr-save --json and --progress json: every line against docs/control.md's tables.
	$O/sr-save --live --checkpoint --json --progress json dt "$dt.ck.img" >"$dt.ck.json" 2>>"$dt.out" ||
		why "sr-save --live --checkpoint --json exited $?"
	python3 tests/ctl_client.py check-lines "$dt.ck.json" 2>>"$dt.out" || why "sr-save --progress json lines do not match docs/control.md"
	python3 -c 'import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
ev = [json.loads(l)["event"] for l in open(sys.argv[1]).read().splitlines()[:-1]]
sys.exit(not (d["ok"] and d["live"] and d["summary"]["outcome"] == "runs" and len(d["rounds"]) == d["summary"]["rounds"] >= 2
              and d["rounds"][-1]["final"] and ev.count("round") == len(d["rounds"]) and "prepared" in ev and "commit" in ev))' "$dt.ck.json" ||
		why "sr-save --json of a live checkpoint: $(tail -1 "$dt.ck.json")"
	$O/sr-save --json dt "$dt.img" >"$dt.save.json" 2>>"$dt.out" || why "sr-save exited $?"
	python3 tests/ctl_client.py check save "$dt.save.json" 2>>"$dt.out" &&
		[ "$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["summary"]["outcome"], len(d["rounds"]), d["rounds"][0]["final"], d["summary"]["stop_reason"])' "$dt.save.json")" = "exits 1 True None" ] ||
		why "sr-save --json: $(cat "$dt.save.json")"
	poll_ms 20000 gone "$p1" || why "the saved domain's runner $p1 did not end"
	[ ! -e "$SR_RUN_DIR/dt.pid" ] && [ ! -e "$SR_RUN_DIR/dt.sock" ] || why "dt.pid or dt.sock left after the runner ended"
	last=$(sed -n 's/^round \([0-9]*\): .*/\1/p' "$SR_RUN_DIR/dt.log" | tail -1)
	$O/sr-restore --detach --name dt2 "$dt.img" >"$dt.restore" 2>&1 || why "sr-restore --detach exited $?: $(tail -1 "$dt.restore")"
	p2=$(pidof_dom dt2)
	[ -n "$p2" ] && ! gone "$p2" || why "dt2.pid: no live runner ('$p2')"
	rm -f "$dt.in"; mkfifo "$dt.in"
	$O/sr-ctl console dt2 <"$dt.in" >"$dt.con" 2>"$dt.conerr" &
	cpid=$!
	exec 3>"$dt.in"
	# Live output of the restored guest: rounds past the last one before the save.
	poll_ms 30000 file_has "^round $((${last:-0} + 3)): " "$dt.con" || why "the console did not show round $((${last:-0} + 3)) (last before the save: '$last')"
	printf 'x\035' >&3
	poll_ms 10000 gone $cpid || why "sr-ctl console did not leave on Ctrl-]"
	wait $cpid; crc=$?
	exec 3>&-
	[ $crc -eq 0 ] && grep -q 'detached from dt2' "$dt.conerr" || why "sr-ctl console exited $crc: $(tail -1 "$dt.conerr")"
	$O/sr-ctl status dt2 2>>"$dt.out" | grep -q ' state=running ' || why "dt2 not running after the console left"
	$O/sr-ctl destroy dt2 >>"$dt.out" 2>&1 || why "destroy dt2 exited $?"
	poll_ms 20000 gone "${p2:-0}" || why "dt2's runner did not end on destroy"
	[ ! -e "$SR_RUN_DIR/dt2.pid" ] && [ ! -e "$SR_RUN_DIR/dt2.sock" ] || why "dt2.pid or dt2.sock left after destroy"
	file_has "^round $((${last:-0} + 3)): " "$SR_RUN_DIR/dt2.log" || why "dt2.log lacks the restored guest's rounds"
	# SIGKILL: nothing is cleaned up; sr-ctl list says stale, a new dt3 replaces it.
	$O/sr-run --detach --name dt3 --rounds 0 --delay-us 50000 "$guest" >"$dt.run3" 2>&1 || why "sr-run dt3 exited $?"
	p3=$(pidof_dom dt3)
	kill -KILL "${p3:-0}" 2>/dev/null
	poll_ms 10000 gone "${p3:-0}" || why "dt3 did not die"
	$O/sr-ctl list >"$dt.list" 2>&1; $O/sr-ctl list --json >"$dt.list.json" 2>>"$dt.out"
	grep -q '^name=dt3 state=stale ' "$dt.list" || why "sr-ctl list: $(grep dt3 "$dt.list")"
	python3 tests/ctl_client.py check list "$dt.list.json" 2>>"$dt.out" || why "list --json does not match docs/control.md"
	$O/sr-run --detach --name dt3 --rounds 0 --delay-us 50000 "$guest" >"$dt.run3" 2>&1 || why "a new dt3 over the stale socket: exit $?: $(tail -1 "$dt.run3")"
	p3=$(pidof_dom dt3)
	python3 tests/ctl_client.py drive dt3 --finish >>"$dt.out" 2>&1 || why "ctl_client.py drive dt3 --finish failed"
	poll_ms 20000 gone "${p3:-0}" || why "dt3 did not end after finish"
	grep -q '^PASS: ' "$SR_RUN_DIR/dt3.log" || why "dt3.log has no PASS after finish"
	for p in $p1 $p2 $p3; do kill -KILL "$p" 2>/dev/null; done	# whatever a failure left running
	if ! grep -q . "$dt.why"; then
		ok "detach: sr-run --detach (pid file, console log), ctl_client.py (version, status, pause, resume, finish), saved (--json, --progress json checked against docs/control.md), restored --detach, sr-ctl console showed live rounds past $last and left on Ctrl-], destroyed; a SIGKILLed runner listed as stale and replaced"
	else
		cat "$dt.out" "$dt.run" "$dt.restore" "$dt.conerr" 2>/dev/null | tail -20 >> "$dt.why"
		bad "detach: $(head -1 "$dt.why")" "$dt.why"
	fi
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

# A raw disk file for the virtio tests: 64 MiB, sparse, "SR-DISK-MARKER" at byte 0.
make_disk() {
	rm -f "$1" && truncate -s 64M "$1" && printf SR-DISK-MARKER | dd of="$1" conv=notrunc 2>/dev/null
}
# Console file $1's complete lines without the serial's carriage returns
# (Linux's console ends each line CR LF: a pattern ending in $ never matched
# one); a last line that a save's pause cut (no newline yet) is left out.
console_lines() {
	if [ -n "$(tail -c1 "$1")" ]; then sed '$d' "$1"; else cat "$1"; fi | tr -d '\r'
}
# The N of each complete "sr-disk: wrote N" line of console file $1.
disk_writes() { console_lines "$1" | sed -n 's/^sr-disk: wrote \([0-9]*\)$/\1/p'; }
# Whether "sr-disk: wrote $3" began on source console $1 (cut by the pause)
# and ended on restored console $2.
split_write() {
	[ -n "$(tail -c1 "$1")" ] || return 1
	awk -v p="$(tail -n1 "$1")" -v t="sr-disk: wrote $3" \
		'NR <= 40 { l = p $0; gsub(/\r/, "", l); if (l == t) f = 1 } END { exit !f }' "$2"
}
# Block $2 of disk file $1 holds generation 1 of the guest's disktest pattern.
disk_block_ok() {
	[ "$(dd if="$1" bs=65536 skip=$((16 + $2)) count=1 2>/dev/null | md5sum)" = \
	  "$(yes "sr-block $2 gen 1" | head -c 65536 | md5sum)" ]
}

if want virtio-disk && linux_ready virtio-disk; then
	# Debian's stock kernel finds two virtio-blk disks and a virtio-rng on sr's
	# PCI bus (conf1, MP-table INTx), discards, writes (O_DIRECT, fsync) and
	# reads them: vda through the host's page cache, vdb O_DIRECT (cache=none,
	# on the checkout: the box's /tmp is tmpfs, which refuses O_DIRECT); the
	# blocks are in the files afterwards.  A failure names each check that failed.
	make_disk "$tmp/dk.raw"
	make_disk "$O/dk-none.raw"
	SR_DEVICE_STATS=1 $O/sr-run --name dk --kernel $kernel --initrd $initrd --disk "$tmp/dk.raw" \
		--disk "$O/dk-none.raw,cache=none" --rng --cmdline "sr.disk=8,0" </dev/null >"$tmp/dk.out" 2>&1; rc=$?
	console_lines "$tmp/dk.out" > "$tmp/dk.txt"
	why=
	grep -q '^sr-disk: PASS 8 blocks verified on vda vdb$' "$tmp/dk.txt" || why="$why no PASS on vda vdb;"
	grep -q '^sr-disk: vda 131072 sectors' "$tmp/dk.txt" || why="$why vda not 64 MiB;"
	grep -q '^sr-disk: discard and write-zeroes read back as zeros$' "$tmp/dk.txt" || why="$why discard;"
	grep -Eq '^sr-disk: rng virtio_rng.0, 32 bytes [0-9a-f]{64}$' "$tmp/dk.txt" ||
		why="$why rng: '$(grep '^sr-disk: rng' "$tmp/dk.txt")';"
	{ disk_block_ok "$tmp/dk.raw" 1 && disk_block_ok "$tmp/dk.raw" 8; } || why="$why vda's blocks not in its file;"
	{ disk_block_ok "$O/dk-none.raw" 1 && disk_block_ok "$O/dk-none.raw" 8; } || why="$why vdb's blocks not in its file;"
	! grep -Eq "$linux_warnings" "$tmp/dk.txt" || why="$why kernel warnings: $(grep -Ec "$linux_warnings" "$tmp/dk.txt");"
	if [ $rc -eq 0 ] && [ -z "$why" ]; then
		ok "virtio-disk: Linux found vda, vdb (cache=none) and the rng on PCI, discarded, wrote 8 blocks each (O_DIRECT, fsync), read them back; they are in the files; $(grep -o 'virtio-blk 0: .*' "$tmp/dk.out" | head -1)"
	else
		bad "virtio-disk: sr-run exited $rc;$why" "$tmp/dk.out"
	fi
	rm -f "$O/dk-none.raw"
fi

if want virtio-disk-save 600 && linux_ready virtio-disk-save; then
	# Live save while the guest writes a block every 200 ms (O_DIRECT, fsync):
	# the image has the disk's DISK record and both virtio devices; the
	# restore reopens the disk, the guest writes on from the block after the
	# source's last and verifies all 30.  A second restore of the same image
	# meets a disk written since: refused, naming it, unless --disk-changed ok.
	# About 100 s in an idle box; 600 s, since a box sharing 2 CPUs with three
	# others ran it 4-7 times slower (killed at 300 s while its first restore,
	# not hung, was still reading the image).
	make_disk "$tmp/ds.raw"
	$O/sr-run --name ds --kernel $kernel --initrd $initrd --disk "$tmp/ds.raw" --rng \
		--cmdline "sr.disk=30,200" </dev/null >"$tmp/ds.out" 2>&1 &
	pid=$!
	if ! wait_line "$tmp/ds.out" '^sr-disk: wrote 4[[:space:]]*$' 1800; then
		kill $pid 2>/dev/null; wait $pid
		bad "virtio-disk-save: the guest did not write its fourth block in 180 s" "$tmp/ds.out"
	else
		echo "     virtio-disk-save: booted, block $(disk_writes "$tmp/ds.out" | tail -1) written: saving"
		$O/sr-save --live ds "$tmp/ds.img" 2>"$tmp/ds.save"; rc=$?
		wait $pid; src=$?
		last=$(disk_writes "$tmp/ds.out" | tail -1)
		$O/sr-dump "$tmp/ds.img" >"$tmp/ds.dump" 2>&1
		if [ $rc -ne 0 ] || [ $src -ne 0 ] || ! $O/sr-dump --verify "$tmp/ds.img" >>"$tmp/ds.save" 2>&1 ||
		   ! grep -q 'DISK' "$tmp/ds.dump" || ! grep -q 'virtio-blk' "$tmp/ds.dump" || ! grep -q 'virtio-rng' "$tmp/ds.dump"; then
			cat "$tmp/ds.out" "$tmp/ds.dump" >> "$tmp/ds.save"
			bad "virtio-disk-save: sr-save exited $rc, the source $src, or the image lacks DISK/virtio records or does not verify" "$tmp/ds.save"
		else
			echo "     virtio-disk-save: saved after block $last; restoring"
			# Linux accepts EVENT_IDX (bit 29) on both devices; the disk's queue has interrupted, so its
			# signalled_used is saved valid, and the restores below run on that state.
			ev=$($O/sr-dump --json "$tmp/ds.img" 2>/dev/null | python3 -c '
import json, sys
out = []
for r in json.load(sys.stdin)["records"]:
    v = r.get("virtio")
    if not v:
        continue
    q = v["queues"][0]
    out.append("%s:%d:%s:%d:%d" % (r["summary"].split()[0], v["driver_features"] >> 29 & 1,
               "s" if q["signalled_valid"] else "-", q["signalled_used"], q["avail_event"]))
print(" ".join(out))' 2>&1)
			if grep -q 'virtio-blk:1:s:' <<<"$ev" && grep -q 'virtio-rng:1:' <<<"$ev"; then
				ok "virtio-disk-save: the guest accepted EVENT_IDX on both devices; saved queue 0 (name:event_idx:signalled:signalled_used:avail_event): $ev"
			else
				bad "virtio-disk-save: EVENT_IDX not accepted or the disk's queue never signalled: '$ev'" "$tmp/ds.dump"
			fi
			# The image only names its disk: without --disk the restore opens nothing it names.
			strace -f -e trace=openat -o "$tmp/ds0.trace" $O/sr-restore --name ds0 "$tmp/ds.img" </dev/null >"$tmp/ds0.out" 2>&1; rc=$?
			if [ $rc -eq 2 ] && grep -q "disk 0: the image names $tmp/ds.raw; sr-restore opens only the files its operator names" "$tmp/ds0.out" &&
			   ! grep -q "ds.raw" "$tmp/ds0.trace"; then
				ok "virtio-disk-save: without --disk, refused, the disk the image names never opened: $(head -1 "$tmp/ds0.out" | cut -c1-160)"
			else
				bad "virtio-disk-save: a restore without --disk exited $rc ($(grep -c 'ds.raw' "$tmp/ds0.trace") opens of ds.raw)" "$tmp/ds0.out"
			fi
			# The device takes the descriptor check_disk checked and never opens the name
			# again: --disk names a hard link to ds.raw (the same file, so it checks out);
			# held just after the check, the link is replaced by another file of the same
			# size.  Restored paused, the runner holds ds.raw's inode and not the new
			# file's; destroyed before it runs, so ds.raw is as saved.
			ln -f "$tmp/ds.raw" "$tmp/dsl.raw"
			SR_TEST_PAUSE_AT=disk-checked SR_TEST_PAUSE_MS=10000 $O/sr-restore --name dsw --paused \
				--disk "$tmp/dsl.raw" "$tmp/ds.img" </dev/null >"$tmp/dsw.out" 2>&1 &
			pid=$!
			held=no
			if wait_line "$tmp/dsw.out" '^sr test hook: at disk-checked$' 3000; then
				truncate -s "$(stat -c %s "$tmp/ds.raw")" "$tmp/dsl.new" && mv "$tmp/dsl.new" "$tmp/dsl.raw" && held=yes
			fi
			wait_domain dsw || wait_domain dsw
			holds=$(for f in /proc/$pid/fd/*; do stat -L -c %i "$f" 2>/dev/null; done | sort -u)
			ds_ino=$(stat -c %i "$tmp/ds.raw") new_ino=$(stat -c %i "$tmp/dsl.raw")
			$O/sr-ctl destroy dsw >/dev/null 2>&1
			wait $pid; rc=$?
			if [ $held = yes ] && [ $rc -eq 4 ] && grep -qx "$ds_ino" <<<"$holds" && ! grep -qx "$new_ino" <<<"$holds"; then
				ok "virtio-disk-save: a file put at --disk's name after its check is never opened: the device holds the checked file (inode $ds_ino), not the new one ($new_ino)"
			else
				bad "virtio-disk-save: --disk replaced after its check: held $held, exited $rc (want 4, destroyed), the runner held inodes '$(echo $holds)', checked $ds_ino, new $new_ino" "$tmp/dsw.out"
			fi
			$O/sr-restore --name ds1 --disk "$tmp/ds.raw" "$tmp/ds.img" </dev/null >"$tmp/ds1.out" 2>&1; rc=$?
			first=$(disk_writes "$tmp/ds1.out" | head -1)
			# The pause may cut a line: "wrote N" begun on the source, ended here.
			if [ "${first:-0}" = $((last + 2)) ] && split_write "$tmp/ds.out" "$tmp/ds1.out" $((last + 1)); then
				echo "block $((last + 1)): its line began on the source's console and ended here" >> "$tmp/ds1.out"
				first=$((last + 1))
			fi
			if [ $rc -eq 0 ] && console_lines "$tmp/ds1.out" | grep -q '^sr-disk: PASS 30 blocks verified on vda$' &&
			   [ "${first:-0}" = $((last + 1)) ] && disk_block_ok "$tmp/ds.raw" 1 && disk_block_ok "$tmp/ds.raw" 30 &&
			   ! grep -Eq "$linux_warnings" "$tmp/ds1.out"; then
				ok "virtio-disk-save: saved live after block $last, restored: the guest wrote on from block $first and verified all 30 on the reopened disk"
			else
				bad "virtio-disk-save: restore exited $rc, first block after it '$first' (saved after $last)" "$tmp/ds1.out"
			fi
			$O/sr-restore --name ds2 --disk "$tmp/ds.raw" "$tmp/ds.img" </dev/null >"$tmp/ds2.out" 2>&1; rc=$?
			if [ $rc -eq 2 ] && grep -q "disk 0 $tmp/ds.raw changed since the save" "$tmp/ds2.out"; then
				ok "virtio-disk-save: a second restore, the disk written since, is refused naming it ($(grep -o 'changed since the save: [^(]*' "$tmp/ds2.out"))"
			else
				bad "virtio-disk-save: a restore onto a changed disk exited $rc" "$tmp/ds2.out"
			fi
			# The same, told the change is known, and without the sandbox: the guest runs to PASS.
			echo "     virtio-disk-save: restoring again with --disk-changed ok --no-sandbox"
			$O/sr-restore --name ds3 --disk "$tmp/ds.raw" --disk-changed ok --no-sandbox "$tmp/ds.img" </dev/null >"$tmp/ds3.out" 2>&1; rc=$?
			if [ $rc -eq 0 ] && grep -q 'used anyway (--disk-changed ok)' "$tmp/ds3.out" &&
			   console_lines "$tmp/ds3.out" | grep -q '^sr-disk: PASS 30 blocks verified on vda$'; then
				ok "virtio-disk-save: --disk-changed ok --no-sandbox: warned, restored, the guest verified its 30 blocks"
			else
				bad "virtio-disk-save: --disk-changed ok --no-sandbox exited $rc" "$tmp/ds3.out"
			fi
		fi
	fi
fi

if want host-threads; then
	# A host that cannot give sr-restore its reader's thread (pthread_create's
	# EAGAIN: nobody, RLIMIT_NPROC 1) is a host failure, said as one: never "no
	# data for the idle timeout", which a migration source would be told as its
	# own stream's fault (audit9).  No domain is left behind.
	ht=$(mktemp -d /tmp/sr-ht.XXXXXX); mkdir -p "$ht/run"; chmod 755 "$ht"; chmod 700 "$ht/run"	# $tmp is 700
	$O/tests/mkimage -m 1 -v 1 -i 0 "$ht/ht.img" && chmod 644 "$ht/ht.img" && chown -R 65534 "$ht/run" ||
		bad "host-threads: mkimage or chown failed"
	# Not root (uid 0 is exempt from RLIMIT_NPROC); CAP_DAC_OVERRIDE kept to open /dev/kvm.
	SR_RUN_DIR=$ht/run setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+dac_override \
		--ambient-caps=+dac_override prlimit --nproc=1:1 \
		$O/sr-restore --name ht "$ht/ht.img" </dev/null >"$ht/ht.out" 2>&1; rc=$?
	if [ $rc -eq 2 ] && [ "$(wc -l < "$ht/ht.out")" -eq 1 ] &&
	   grep -q "starting the reader's thread: Resource temporarily unavailable" "$ht/ht.out" &&
	   ! grep -q 'idle timeout' "$ht/ht.out" && [ -z "$(ls -A "$ht/run" | grep -v '\.lock$')" ]; then
		ok "host-threads: no thread for the reader: exit 2, said as the host's ($(cat "$ht/ht.out")), no domain left"
	else
		bad "host-threads: sr-restore without a thread exited $rc (want 2), run dir '$(ls -A "$ht/run")'" "$ht/ht.out"
	fi
	rm -rf "$ht"
fi
if want disk-refusals; then
	# sr-restore's --disk, refused before any vCPU runs, on small generated images
	# (mkimage -b 1: a test guest whose DISK 0 is a writable 64 MiB file).
	$O/tests/mkimage -m 1 -v 1 -i 0 -b 1 "$tmp/dr1.img" && $O/tests/mkimage -m 1 -v 1 -i 0 "$tmp/dr0.img" ||
		bad "disk-refusals: mkimage failed"
	truncate -s 64M "$tmp/dr.raw" "$tmp/dr2.raw"
	# The operator's ro is authoritative: a disk the guest has writable cannot become read-only.
	$O/sr-restore --name dr1 --disk "$tmp/dr.raw,ro" "$tmp/dr1.img" </dev/null >"$tmp/dr1.out" 2>&1; rc=$?
	if [ $rc -eq 2 ] && grep -q "disk 0 $tmp/dr.raw: --disk ...,ro, but the saved guest has disk 0 writable" "$tmp/dr1.out"; then
		ok "disk-refusals: --disk FILE,ro for a writable disk: refused, naming it"
	else
		bad "disk-refusals: --disk FILE,ro for a writable disk exited $rc" "$tmp/dr1.out"
	fi
	# A --disk beyond the image's disks was ignored; now refused, and for an image with none.
	$O/sr-restore --name dr2 --disk "$tmp/dr.raw" --disk "$tmp/dr2.raw" --disk-changed ok "$tmp/dr1.img" </dev/null >"$tmp/dr2.out" 2>&1; rc=$?
	$O/sr-restore --name dr3 --disk "$tmp/dr.raw" "$tmp/dr0.img" </dev/null >"$tmp/dr3.out" 2>&1; rc3=$?
	if [ $rc -eq 2 ] && grep -q -- "--disk given 2 times, the image has 1 disk ($tmp/dr2.raw is disk 1" "$tmp/dr2.out" &&
	   [ $rc3 -eq 2 ] && grep -q -- "--disk given 1 time, the image has 0 disks" "$tmp/dr3.out"; then
		ok "disk-refusals: a --disk the image has no disk for is refused ($(grep -o -- '--disk given 2 times, the image has 1 disk' "$tmp/dr2.out"); and with none)"
	else
		cat "$tmp/dr3.out" >>"$tmp/dr2.out"
		bad "disk-refusals: an extra --disk exited $rc, $rc3 with an image of no disk" "$tmp/dr2.out"
	fi
	# A migration's receiver tells its source which disk and the kind of reason only;
	# its own stderr has the path and what differs.
	$O/sr-restore --migrate-receive --name dr4 --disk "$tmp/dr.raw" - <"$tmp/dr1.img" >"$tmp/dr4.ans" 2>"$tmp/dr4.out"; rc=$?
	if [ $rc -eq 2 ] && [ "$(cat "$tmp/dr4.ans")" = "error disk 0: refused by the receiver: it has no file for it, or not this disk (the receiver's log says why)" ] &&
	   grep -q "disk 0 $tmp/dr.raw changed since the save: another file (device 0x[0-9a-f]* inode" "$tmp/dr4.out"; then
		ok "disk-refusals: the migration source hears '$(cut -c7- "$tmp/dr4.ans")'; the receiver's log names the file and the inodes"
	else
		bad "disk-refusals: --migrate-receive with a changed disk exited $rc, answered '$(cat "$tmp/dr4.ans")'" "$tmp/dr4.out"
	fi
	# sr-run's --disk: a FIFO is refused, not waited on for a writer.
	if [ -f "$kernel" ] && [ -f "$initrd" ]; then
		rm -f "$tmp/dr.fifo"; mkfifo "$tmp/dr.fifo"
		timeout 60 $O/sr-run --name drf --kernel $kernel --initrd $initrd --disk "$tmp/dr.fifo,ro" </dev/null >"$tmp/drf.out" 2>&1; rc=$?
		if [ $rc -eq 2 ] && grep -q "disk $tmp/dr.fifo is not a regular file" "$tmp/drf.out"; then
			ok "disk-refusals: sr-run --disk FIFO,ro: refused at once, not blocked in open"
		else
			bad "disk-refusals: sr-run --disk FIFO,ro exited $rc (124: blocked)" "$tmp/drf.out"
		fi
	fi
fi

if want peer-refusals; then
	# What a migration's source hears when the receiver refuses (audit7): a class of
	# cause, never the receiver's own facts (its free memory, the domains it runs and
	# its run directory, the MSRs its KVM lacks); those go to the receiver's log.
	# Only a fault in the stream itself is told as it is.  Generated images, seconds.
	$O/tests/mkimage -m 1 -v 1 -i 0 "$tmp/pr.img" >/dev/null && $O/tests/imgedit region-size 4000 "$tmp/pr.img" "$tmp/pr-big.img" ||
		bad "peer-refusals: mkimage or imgedit failed"
	avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
	mx=; [ "$avail" -ge 4000 ] && mx="--max-memory 64"	# a host with room for it: the same refusal, a smaller limit
	pr_case() {	# NAME ANSWER-WANTED LOG-PATTERN LEAK-PATTERN IMAGE SR-RESTORE-ARGS...
		local name=$1 want=$2 logpat=$3 leak=$4 img=$5 rc said
		shift 5
		timeout 120 $O/sr-restore --migrate-receive "$@" - <"$img" >"$tmp/pr-$name.ans" 2>"$tmp/pr-$name.log"; rc=$?
		said=$(head -1 "$tmp/pr-$name.ans")
		if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [[ "$said" == "error $want"* ]] && ! grep -q -- "$leak" "$tmp/pr-$name.ans" &&
		   grep -q -- "$logpat" "$tmp/pr-$name.log"; then
			ok "peer-refusals: $name: the source hears '${said#error }'; the receiver's log has the details"
		else
			bad "peer-refusals: $name: exited $rc, the source heard '$said' (wanted 'error $want...', nothing matching '$leak'; the log matching '$logpat')" "$tmp/pr-$name.log"
		fi
	}
	pr_case memory "refused by the receiver: the guest's 4000 MiB of RAM is more than it accepts now" \
		"more than the [0-9]* MiB allowed" "$avail\|MemAvailable\|allowed" "$tmp/pr-big.img" $mx
	exec 9>"$SR_RUN_DIR/pr-taken.lock"; flock 9
	pr_case name "refused by the receiver: the domain's name is in use there" \
		"a domain named \"pr-taken\" is already running" "already running\|$SR_RUN_DIR\|lock" "$tmp/pr.img" --name pr-taken
	exec 9>&-
	# mkimage's vCPU carries MSR indices no KVM knows: which ones this host lacks stays here.
	pr_case msrs "refused by the receiver: its KVM cannot run this guest's CPU state" \
		"MSRs this host's KVM does not know: 0x" "0x\|MSR" "$tmp/pr.img" --name pr-msrs
	# A byte of the stream flipped: that is the source's own bytes, told as they are.
	cp "$tmp/pr.img" "$tmp/pr-bad.img"
	printf '\x5a' | dd of="$tmp/pr-bad.img" bs=1 seek=$(( $(stat -c %s "$tmp/pr.img") / 2 )) conv=notrunc status=none
	pr_case stream "the receiver refused the stream: record " "record [0-9]* .*at offset [0-9]*" "MemAvailable" "$tmp/pr-bad.img" --name pr-bad
	# --listen --insecure-plaintext: any peer may connect, so it hears not even the
	# class (audit8: that would let it probe which names run here, how much memory is
	# free); a fault in its own stream is still told as it is.
	pr_listen() {	# NAME IMAGE ANSWER-WANTED LOG-PATTERN
		local name=$1 img=$2 want=$3 logpat=$4 port lp rc said=
		port=$((20000 + RANDOM % 20000))
		$O/sr-restore --listen 127.0.0.1:$port --insecure-plaintext --accept-timeout 60 >"$tmp/pr-l-$name.log" 2>&1 & lp=$!
		for _ in $(seq 300); do grep -q 'listening on' "$tmp/pr-l-$name.log" && break; kill -0 $lp 2>/dev/null || break; sleep 0.1; done
		grep -q 'listening on' "$tmp/pr-l-$name.log" && said=$(timeout 60 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
try:
    s.sendall(open(sys.argv[2], "rb").read())
except OSError:
    pass
out = b""
try:
    while not out.endswith(b"\n"):
        b = s.recv(4096)
        if not b:
            break
        out += b
except OSError:
    pass
print(out.decode(errors="replace").strip())' "$port" "$img")
		wait $lp; rc=$?
		if [ $rc -ne 0 ] && [[ "$said" == "error $want"* ]] && grep -q -- "$logpat" "$tmp/pr-l-$name.log"; then
			ok "peer-refusals: --listen --insecure-plaintext: $name: the peer hears '${said#error }'"
		else
			bad "peer-refusals: --listen --insecure-plaintext: $name: exited $rc on port $port, the peer heard '$said' (wanted 'error $want...')" "$tmp/pr-l-$name.log"
		fi
	}
	# (the name is the image's, "synthetic": claimed once the stream is in, as a source's would be)
	exec 9>"$SR_RUN_DIR/synthetic.lock"; flock 9
	pr_listen name "$tmp/pr.img" "refused by the receiver (an unauthenticated source is told no more; the receiver's log says why)" \
		'a domain named "synthetic" is already running'
	exec 9>&-
	pr_listen stream "$tmp/pr-bad.img" "the receiver refused the stream: record " "record [0-9]* .*at offset [0-9]*"
fi

if want linux-pause 300 && linux_ready linux-pause; then
	# Paused 30 s (sr-ctl pause) and resumed: kvmclock moved on 30 s, but the
	# pause was told to the guest (KVM_KVMCLOCK_CTRL), so its soft-lockup and
	# RCU-stall watchdogs forgive the gap.  The workload runs until "stop".
	# nohz=off: a guest idle with its tick stopped touches its soft-lockup
	# watchdog on the first interrupt after any long sleep, pause or not, so
	# with the dynamic tick the pause went unnoticed without KVMCLOCK_CTRL too
	# (this test passed with it taken out); with a periodic tick the guest
	# says "BUG: soft lockup - CPU#0 stuck for 30s!" unless it was told.
	rm -f "$tmp/lz.in"; mkfifo "$tmp/lz.in"
	$O/sr-run --name lz --kernel $kernel --initrd $initrd --cmdline "sr.workload=8,0 nohz=off" \
		<"$tmp/lz.in" >"$tmp/lz.out" 2>&1 &
	pid=$!
	exec 3>"$tmp/lz.in"
	last=
	booted=false
	if wait_domain lz; then
		for _ in 1 2 3 4; do	# a line a minute for the box's idle watchdog
			wait_line "$tmp/lz.out" '^sr-workload: tick 3 ' 600 && { booted=true; break; }
			echo "     linux-pause: still booting"
		done
	fi
	if $booted; then
		$O/sr-ctl pause lz >/dev/null 2>>"$tmp/lz.ctl"
		last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/lz.out" | tail -1)
		echo "     linux-pause: booted, paused at tick $last for 30 s"	# the box's idle watchdog sees it alive
		sleep 30
		$O/sr-ctl resume lz >/dev/null 2>>"$tmp/lz.ctl"
		# The ticks catch up on the 30 s at once; 5 more are 5 s of running after it.
		wait_line "$tmp/lz.out" "^sr-workload: tick $((last + 35)) " 600
	fi
	echo stop >&3
	exec 3>&-
	wait $pid; rc=$?
	cat "$tmp/lz.ctl" >> "$tmp/lz.out" 2>/dev/null
	if [ $rc -eq 0 ] && [ -n "$last" ] && grep -q '^sr-workload: PASS' "$tmp/lz.out" && ! grep -Eq "$linux_warnings" "$tmp/lz.out"; then
		ok "linux-pause: paused 30 s at tick $last, resumed: the workload went on to PASS, no soft-lockup or RCU-stall line"
	else
		bad "linux-pause: sr-run exited $rc, paused at tick '${last}'$(grep -Em1 "$linux_warnings" "$tmp/lz.out" | sed 's/^/; first warning: /')" "$tmp/lz.out"
	fi
fi

if want detach-linux 300 && linux_ready detach-linux; then
	# A detached Linux guest's console: sr-ctl console shows its output, and a
	# line typed into it reaches the guest's UART: the workload reads "stop"
	# from its console and ends with PASS; the domain then ends and the
	# console says so.
	dl=$tmp/dl; : > "$dl.why"
	$O/sr-run --detach --name dl --kernel $kernel --initrd $initrd --cmdline "sr.workload=8,0" \
		>"$dl.run" 2>&1 || echo "sr-run --detach exited $?: $(tail -1 "$dl.run")" >> "$dl.why"
	pl=$(pidof_dom dl)
	wait_line "$SR_RUN_DIR/dl.log" '^sr-workload: tick 2 ' 1500 || echo "no tick 2 in dl.log" >> "$dl.why"
	rm -f "$dl.in"; mkfifo "$dl.in"
	$O/sr-ctl console dl <"$dl.in" >"$dl.con" 2>"$dl.conerr" &
	cpid=$!
	exec 3>"$dl.in"
	wait_line "$dl.con" '^sr-workload: tick ' 300 || echo "the console showed no tick" >> "$dl.why"
	printf 'stop\n' >&3
	wait_line "$dl.con" 'sr-workload: PASS' 600 || echo "no PASS on the console after \"stop\"" >> "$dl.why"
	poll_ms 30000 gone $cpid || echo "sr-ctl console did not end with the domain" >> "$dl.why"
	exec 3>&-
	wait $cpid; crc=$?
	poll_ms 20000 gone "${pl:-0}" || echo "the runner did not end" >> "$dl.why"
	kill -KILL "${pl:-0}" 2>/dev/null
	if [ $crc -eq 0 ] && grep -q "console closed" "$dl.conerr" && ! grep -q . "$dl.why"; then
		ok "detach-linux: sr-ctl console showed the detached guest's ticks; \"stop\" typed into it reached the workload (PASS), the console closed with the domain"
	else
		cat "$dl.conerr" "$dl.con" >> "$dl.why"
		bad "detach-linux: sr-ctl console exited $crc; $(head -1 "$dl.why")" "$dl.why"
	fi
fi

# Host-timestamps every line: "HOST_REALTIME line" ($EPOCHREALTIME: no fork per line).
stamp() { while IFS= read -r l; do printf '%s %s\n' "${EPOCHREALTIME/,/.}" "${l%$'\r'}"; done; }

# A console line reaches the host long after the guest read its clock for it (in
# the box, seconds: exits for every UART byte), so a restored guest's clock is
# judged against the source's: follow_stamp stamps a runner's growing console
# $1 into $1.st (tail -F: inotify), console_skew gives a stamped console's
# median host-minus-guest realtime over its tick lines.
follow_stamp() { (tail -n +1 -F "$1" 2>/dev/null | stamp >"$1.st") & follow_pid=$!; }
unfollow() { pkill -P "$follow_pid" 2>/dev/null; wait "$follow_pid" 2>/dev/null; }
console_skew() {
	sed -n 's/^\([0-9.]*\) sr-workload: tick [0-9]* .* realtime \([0-9.]*\)$/\1 \2/p' "$1" |
		awk '{ printf "%.3f\n", $1 - $2 }' | sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'
}

# Checks a restored Linux run ($1) against the source's last tick ($2).
# A line the guest was writing when its domain moved is split between the two consoles:
# whether the source console $1 ends in the start of tick $3's line and one of the first
# lines of the receiver's stamped console $2 completes it.
split_tick() {
	[ -n "$(tail -c1 "$1")" ] || return 1
	awk -v p="$(tail -n1 "$1")" -v t="sr-workload: tick $3 " \
		'NR <= 40 { sub(/^[0-9.]* /, ""); if (index(p $0, t) == 1) f = 1 } END { exit !f }' "$2"
}
# The source's skew ($linux_ref, from console_skew) is set by the caller.
linux_restored_ok() {
	local first realtime host src=${3:-}
	first=$(sed -n 's/^[0-9.]* sr-workload: tick \([0-9]*\) .*/\1/p' "$1" | head -1)
	if [ -n "$src" ] && [ -n "$first" ] && [ "$first" -eq $(($2 + 2)) ] && split_tick "$src" "$1" $(($2 + 1)); then
		echo "tick $(($2 + 1)): its line began on the source's console and ended on the receiver's" >> "$1"
		first=$(($2 + 1))
	fi
	set -- "$1" "$2" $(sed -n 's/^\([0-9.]*\) sr-workload: tick [0-9]* .* realtime \([0-9.]*\)$/\1 \2/p' "$1" | head -1)
	host=${3:-0} realtime=${4:-999}
	[ -n "$first" ] && [ "$first" -ge "$2" ] && [ "$first" -le $(($2 + 1)) ] || { echo "first tick after restore '$first', last before $2" >> "$1"; return 1; }
	! grep -q 'sr-workload: [0-9]* MiB' "$1" || { echo "the workload restarted" >> "$1"; return 1; }
	grep -q 'sr-workload: PASS' "$1" || return 1
	! grep -Eq "$linux_warnings" "$1" || return 1
	# The median skew over the restored ticks within 1 s of the source's ($linux_ref):
	# a restore that did not move the guest's clock on is behind by the whole
	# save-to-restore gap on every tick; one line held up on its way (a loaded box:
	# 4.6 s against 2.8 s seen on a first tick) is not.
	local rskew; rskew=$(console_skew "$1")
	[ -n "${linux_ref:-}" ] && [ -n "$rskew" ] || { echo "no skew measured: source '${linux_ref:-}', restored '$rskew'" >> "$1"; return 1; }
	awk -v d="$rskew" -v s="$linux_ref" 'BEGIN { d -= s; if (d < 0) d = -d; exit !(d < 1) }' ||
		{ echo "guest realtime behind the host's stamps by $rskew s (median; first tick: realtime $realtime, host $host), the source's $linux_ref s" >> "$1"; return 1; }
	linux_skew="$rskew s (the source's $linux_ref s)"
}

if want linux-save && linux_ready linux-save; then
	$O/sr-run --name lx --vcpus 2 --kernel $kernel --initrd $initrd --cmdline "sr.workload=16,25" \
		</dev/null >"$tmp/lx.out" 2>&1 &
	pid=$!
	follow_stamp "$tmp/lx.out"
	wait_domain lx
	for _ in $(seq 1 600); do grep -q "tick 6 " "$tmp/lx.out" && break; sleep 0.2; done
	$O/sr-save --live lx "$tmp/lx.img" 2>"$tmp/lx.save"; rc=$?
	wait $pid; src=$?
	sleep 0.2; unfollow; linux_ref=$(console_skew "$tmp/lx.out.st")
	last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/lx.out" | tail -1)
	if [ $rc -ne 0 ] || [ $src -ne 0 ] || ! $O/sr-dump --verify "$tmp/lx.img" 2>>"$tmp/lx.save"; then
		bad "linux-save: sr-save exited $rc, the saved source runner $src, or the image does not verify" "$tmp/lx.save"
	else
		for k in 1 2; do
			$O/sr-restore --name lx$k "$tmp/lx.img" </dev/null 2>&1 | stamp >"$tmp/lx$k.out"
			if linux_restored_ok "$tmp/lx$k.out" "$last"; then
				ok "linux-save: restore $k of a live save taken at tick $last: the workload went on from tick $((last + 1)) to PASS, no lockup or stall warnings, guest realtime behind the host's console stamp by ${linux_skew}; $(grep -o 'live: .*met)' "$tmp/lx.save")"
			else
				bad "linux-save: restore $k" "$tmp/lx$k.out"
			fi
		done
		# The clock check can fail: restored with --clock freeze, the guest's clock is
		# behind by the whole time since the save, far past the source's skew.
		$O/sr-restore --name lxf --clock freeze "$tmp/lx.img" </dev/null 2>&1 | stamp >"$tmp/lxf.out" &
		poll_ms 120000 file_has 'sr-workload: tick' "$tmp/lxf.out"
		$O/sr-ctl destroy lxf >/dev/null 2>&1; wait $!
		fskew=$(console_skew "$tmp/lxf.out")
		if [ -n "$fskew" ] && awk -v f="$fskew" -v s="$linux_ref" 'BEGIN { exit !(f - s > 1) }'; then
			ok "linux-save: restored with --clock freeze, the guest is behind by ${fskew} s (the source's ${linux_ref} s): the clock check above would refuse it"
		else
			bad "linux-save: --clock freeze: skew '${fskew}' s, the source's ${linux_ref} s (want over 1 s more)" "$tmp/lxf.out"
		fi
	fi
fi

if want linux-6g 900 && linux_ready linux-6g; then
	# Linux on 6 GiB: the e820 map has RAM below the hole and from 4 GiB, and
	# the workload's 32 MiB lands above 4 GiB (user memory comes from
	# ZONE_NORMAL first): at least 1024 of its pages must lie there at the start
	# and the end.  On the old layout the guest hangs after "Run /init".
	# One vCPU (linux-save covers two); 90 ticks, so that a live save in a
	# loaded box (minutes for the memory Linux touched) ends before the
	# workload does.  Its boot, save and restore take minutes in a loaded box
	# (memmap for 6 GiB): a line a minute keeps the box's 200 s silence
	# watchdog quiet.
	l6_t0=$(date +%s)
	( while sleep 60; do echo "     linux-6g: $(( $(date +%s) - l6_t0 )) s, $(grep -c . "$tmp/l6.out") console lines"; done ) &
	l6_ticker=$!
	$O/sr-run --name l6 --vcpus 1 --memory 6144 --max-memory 8192 --kernel $kernel --initrd $initrd \
		--cmdline "sr.workload=32,90,1024" </dev/null >"$tmp/l6.out" 2>&1 &
	l6_pid=$!
	follow_stamp "$tmp/l6.out"
	wait_domain l6
	while [ $(( $(date +%s) - l6_t0 )) -lt 720 ] && ! grep -q "tick 6 " "$tmp/l6.out"; do sleep 0.5; done
	echo "     linux-6g: $(grep -c "tick 6 " "$tmp/l6.out") tick 6 after $(( $(date +%s) - l6_t0 )) s"
	$O/sr-save --live l6 "$tmp/l6.img" 2>"$tmp/l6.save"; rc=$?
	wait $l6_pid
	sleep 0.2; unfollow; linux_ref=$(console_skew "$tmp/l6.out.st")
	last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/l6.out" | tail -1)
	memtotal=$(sed -n 's/^sr-linux: .*MemTotal \([0-9]*\) kB.*/\1/p' "$tmp/l6.out")
	high=$(sed -n 's/^sr-workload: start: \([0-9]*\) of .*/\1/p' "$tmp/l6.out")
	if [ $rc -ne 0 ] || ! $O/sr-dump --verify "$tmp/l6.img" 2>>"$tmp/l6.save" ||
	   [ "${memtotal:-0}" -lt $((5 << 20)) ] || [ "${high:-0}" -lt 1024 ]; then
		cat "$tmp/l6.save" >> "$tmp/l6.out"
		bad "linux-6g: sr-save exited $rc, MemTotal '$memtotal' kB (want > 5 GiB), '$high' pages above 4 GiB (want >= 1024)" "$tmp/l6.out"
	else
		$O/sr-restore --name l6r --max-memory 8192 "$tmp/l6.img" </dev/null 2>&1 | stamp >"$tmp/l6r.out"
		endhigh=$(sed -n 's/^[0-9.]* sr-workload: end: \([0-9]*\) of .*/\1/p' "$tmp/l6r.out")
		if linux_restored_ok "$tmp/l6r.out" "$last" && [ "${endhigh:-0}" -ge 1024 ]; then
			ok "linux-6g: 6 GiB Linux (MemTotal $((memtotal >> 10)) MiB), $high of its workload's pages above 4 GiB, saved live at tick $last, restored: verified to PASS with $endhigh pages still above 4 GiB"
		else
			bad "linux-6g: restore ($endhigh pages above 4 GiB at the end)" "$tmp/l6r.out"
		fi
	fi
	kill $l6_ticker 2>/dev/null; wait $l6_ticker 2>/dev/null
fi

# ------------------------------------------------------------------ sandbox
# sr-restore's seccomp filters (tools/sandbox.c): every thread of a restored
# domain runs under its kind's filter, and the ordinary paths still work
# under them; tests/sandbox-test (check-tools) sees each kind refuse a call.
# Prints "comm seccomp-mode filters" for every thread of pid $1 (one awk, so
# that sampling is cheap in the box; a thread that ends meanwhile leaves no line).
sb_threads_raw() {
	awk 'FNR == 1 { n = m = "" } /^Name:/ { n = $2 } /^Seccomp:/ { m = $2 }
	     /^Seccomp_filters:/ && n != "" && m != "" { print n, m, $2 }' /proc/$1/task/*/status 2>/dev/null
}
sb_threads() { sb_threads_raw "$1" | sort; }
# Appends sb_threads of pid $1 to file $2 every 50 ms for as long as $1 lives.
sb_sample() {
	while kill -0 "$1" 2>/dev/null; do sb_threads_raw "$1" >> "$2"; sleep 0.05; done
}
# True when every line of file $1 is a filtered thread (mode 2), every thread but
# the main one (sr-restore: main's filter, then control's) under two filters or more
# (main's, then its own), and threads named $2... appear in it.
sb_file_filtered() {
	local f=$1 want; shift
	[ -s "$f" ] && ! awk '$2 != 2 || ($3 < 2 && $1 != "sr-restore") { bad = 1 } END { exit !bad }' "$f" || return 1
	for want in "$@"; do grep -q "^$want " "$f" || return 1; done
}
# True while pid $1 has a thread named $2.
sb_has_thread() { grep -qsx "$2" /proc/$1/task/*/comm; }
# True when every thread of $1 is filtered (mode 2) under two filters or more
# (the reader's, then its own kind's), and threads named $2... exist.
sb_all_filtered() {
	local pid=$1 want; shift
	sb_threads $pid > "$tmp/sb.threads"
	sb_file_filtered "$tmp/sb.threads" "$@"
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
	$O/sr-ctl pause sb1 >>"$tmp/sb1.ctl" 2>&1 && $O/sr-ctl status sb1 2>>"$tmp/sb1.ctl" | grep -q state=paused &&
		$O/sr-ctl resume sb1 >>"$tmp/sb1.ctl" 2>&1; prc=$?
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
	wait_domain sb3 && sleep 1 && $O/sr-ctl finish sb3 >/dev/null 2>&1
	wait $pid; rrc=$?
	cat "$tmp/sb.threads" "$tmp/sb2.save" "$tmp/sb3.out" >> "$tmp/sb2.out" 2>/dev/null
	if [ $filtered -eq 0 ] && [ $src -eq 0 ] && [ $rc -eq 0 ] && [ $rrc -eq 0 ] && grep -q '^PASS' "$tmp/sb3.out"; then
		ok "sandbox: a pipe, --threads 0, saved live, restored again (--threads 2): PASS"
	else
		bad "sandbox: pipe restore (filtered $filtered), live save $src, exits $rc/$rrc" "$tmp/sb2.out"
	fi
	# Mid-stream, from a pipe: the image is parsed on a reader thread under the reader's
	# own filter (workers under theirs), the main thread under its own as it waits.  The
	# stream holds after its first 64 KiB until every thread has been looked at.
	rm -f "$tmp/sb5.in"; mkfifo "$tmp/sb5.in"
	$O/sr-restore --name sb5 --threads 2 - <"$tmp/sb5.in" >"$tmp/sb5.out" 2>&1 &
	pid=$!
	exec {sbw}>"$tmp/sb5.in"
	head -c 65536 "$tmp/sb.img" >&$sbw
	poll_ms 30000 sb_has_thread $pid sr-reader && sb_all_filtered $pid sr-restore sr-reader; filtered=$?
	cp "$tmp/sb.threads" "$tmp/sb5.threads"
	tail -c +65537 "$tmp/sb.img" >&$sbw
	exec {sbw}>&-
	wait_domain sb5 && sleep 1 && $O/sr-ctl finish sb5 >/dev/null 2>&1
	wait $pid; rc=$?
	cat "$tmp/sb5.threads" >> "$tmp/sb5.out"
	if [ $filtered -eq 0 ] && [ $rc -eq 0 ] && grep -q '^PASS' "$tmp/sb5.out"; then
		ok "sandbox: mid-stream from a pipe, every thread filtered ($(awk '{ print $1 }' "$tmp/sb5.threads" | uniq -c | awk '{ printf "%s%s x%s", s, $2, $1; s = ", " }')), the image parsed on sr-reader; then PASS"
	else
		bad "sandbox: mid-stream pipe restore (filtered $filtered), exit $rc" "$tmp/sb5.out"
	fi
	# destroy ends it with 4; --no-sandbox leaves every thread unfiltered.
	$O/sr-restore --name sb4 -v --no-sandbox "$tmp/sb.img" >"$tmp/sb4.out" 2>&1 &
	pid=$!
	wait_domain sb4 && sb_threads $pid > "$tmp/sb4.threads"
	$O/sr-ctl destroy sb4 >/dev/null 2>&1
	wait $pid; rc=$?
	cat "$tmp/sb4.threads" >> "$tmp/sb4.out"
	if [ $rc -eq 4 ] && grep -q 'sandbox: off' "$tmp/sb4.out" && ! awk '$2 != 0 { bad = 1 } END { exit !bad }' "$tmp/sb4.threads"; then
		ok "sandbox: --no-sandbox: no thread filtered; sr-ctl destroy: exit 4"
	else
		bad "sandbox: --no-sandbox run, exit $rc" "$tmp/sb4.out"
	fi
fi

if want sandbox-linux 400 && linux_ready sandbox-linux; then
	# A Linux guest (UART: console and input threads; a disk and the rng: device
	# threads) saved live, restored under the sandbox: the main thread opens the
	# disk the reader's DISK record names (the reader's list opens nothing).
	truncate -s 8M "$tmp/sbl.raw"
	$O/sr-run --name sbl --vcpus 2 --kernel $kernel --initrd $initrd --cmdline "sr.workload=16,25" \
		--disk "$tmp/sbl.raw" --rng </dev/null >"$tmp/sbl.out" 2>&1 &
	wait_domain sbl
	for _ in $(seq 1 1500); do grep -q "tick 4 " "$tmp/sbl.out" && break; sleep 0.2; done
	$O/sr-save --live sbl "$tmp/sbl.img" 2>"$tmp/sbl.save"; rc=$?
	wait
	last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/sbl.out" | tail -1)
	# stdin stays open (a fifo with a sleeping writer): the input thread waits in read, filtered.
	mkfifo "$tmp/sbl.in"
	sleep 600 > "$tmp/sbl.in" & hold=$!
	$O/sr-restore --name sbl2 --disk "$tmp/sbl.raw" "$tmp/sbl.img" < "$tmp/sbl.in" >"$tmp/sbl2.out" 2>&1 &
	lp=$!
	wait_domain sbl2 && sb_all_filtered $lp sr-vcpu sr-console sr-input sr-device; filtered=$?
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
		ok "sandbox-linux: a Linux guest with a disk and the rng saved live at tick $last, restored under the sandbox (vCPU, console, input, device threads filtered: $(awk '{ print $1 }' "$tmp/sbl.threads" | uniq -c | awk '{ printf "%s%s x%s", s, $2, $1; s = ", " }')): the workload went on from tick $first to PASS, reset ended it"
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
	far $O/sr-restore --listen "$1" --insecure-plaintext --name "$2" --accept-timeout 120 </dev/null >"$tmp/$2.far" 2>&1 &
	fpid=$!
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/$2.far" && return 0; sleep 0.05; done
	return 1
}
# Once the domain $1 runs on far, a second later tells it to finish (its verdict follows).
far_finish() {
	SR_RUN_DIR=$tmp/far wait_domain "$1" && sleep 1 && SR_RUN_DIR=$tmp/far $O/sr-ctl finish "$1" >/dev/null
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
# stream (mpid: sr-migrate); mig_mid=1 once the receiver said it is receiving.
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
	mig_mid=0; poll_ms 20000 file_has 'receiving a domain' "$tmp/$1.far" && mig_mid=1
	sleep 1
}

if want migrate-linux 400 && linux_ready migrate-linux && mig_net; then
	# The Linux guest, live, mid-workload, over IPv4: it goes on there to PASS and is gone here.
	$O/sr-run --name ml --vcpus 2 --kernel $kernel --initrd $initrd --cmdline "sr.workload=16,25" \
		</dev/null >"$tmp/ml.out" 2>&1 &
	spid=$!
	follow_stamp "$tmp/ml.out"
	wait_domain ml
	far $O/sr-restore --listen 7701 --insecure-plaintext --accept-timeout 120 </dev/null 2>&1 | stamp >"$tmp/ml.far" &
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/ml.far" && break; sleep 0.05; done
	for _ in $(seq 1 600); do grep -q "tick 6 " "$tmp/ml.out" && break; sleep 0.2; done
	$O/sr-migrate --stats ml tcp:10.77.0.2:7701 2>"$tmp/ml.mig"; rc=$?
	wait $spid; src=$?
	sleep 0.2; unfollow; linux_ref=$(console_skew "$tmp/ml.out.st")
	last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/ml.out" | tail -1)
	wait
	if [ $rc -eq 0 ] && [ $src -eq 0 ] && ! $O/sr-ctl status ml >/dev/null 2>&1 &&
	   linux_restored_ok "$tmp/ml.far" "$last" "$tmp/ml.out"; then
		ok "migrate-linux: live-migrated at tick $last over veth: the workload went on there from tick $((last + 1)) to PASS, the source is gone; $(grep -o 'live: [^;]*' "$tmp/ml.mig"); $(grep -o 'paused [0-9.]* ms until the commit' "$tmp/ml.mig") (the receiver running)"
	else
		cat "$tmp/ml.mig" "$tmp/ml.far" > "$tmp/ml.all" 2>/dev/null
		bad "migrate-linux: sr-migrate exited $rc, the source $src" "$tmp/ml.all"
	fi
fi

if want migrate-ipv6 && mig_net; then
	# Cold, over IPv6, under the domain's own name there; the guest verifies its memory there.
	mig_guest m6 --memory 64 --pages 256 && far_listen 7702 m6
	$O/sr-migrate --cold -q --json m6 "tcp:[fd77::2]:7702" >"$tmp/m6.json" 2>"$tmp/m6.mig"; rc=$?
	wait $spid; src=$?
	far_finish m6
	wait $fpid; dst=$?
	# --json: the document docs/control.md lists ("schema: save").
	python3 tests/ctl_client.py check save "$tmp/m6.json" 2>>"$tmp/m6.mig" &&
		grep -q '"tool":"sr-migrate",.*"ok":true' "$tmp/m6.json" || { echo "sr-migrate --json: $(cat "$tmp/m6.json")" >> "$tmp/m6.mig"; rc=99; }
	if [ $rc -eq 0 ] && [ $src -eq 0 ] && [ $dst -eq 0 ] && grep -q '^PASS: .*finished on request' "$tmp/m6.far"; then
		ok "migrate-ipv6: cold over [fd77::2]: the guest verified its memory there: PASS; the source is gone; sr-migrate --json as docs/control.md lists"
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
	sleep 1; $O/sr-ctl finish mr >/dev/null 2>&1
	SR_RUN_DIR=$tmp/far $O/sr-ctl destroy mr >/dev/null 2>&1	# had it got there after all
	wait $spid; src=$?
	if [ $mig_mid -eq 1 ] && [ $rc -eq 1 ] && [ $src -eq 0 ] && grep -q '^PASS: .*finished on request' "$tmp/mr.src" && grep -q 'runs on' "$tmp/mr.mig"; then
		ok "migrate-receiver-dies: receiver SIGKILLed mid-stream: the source ran on to PASS: $(cat "$tmp/mr.mig")"
	else
		cat "$tmp/mr.mig" "$tmp/mr.far" > "$tmp/mr.all"
		bad "migrate-receiver-dies: receiver seen receiving $mig_mid (want 1), sr-migrate $rc, source $src" "$tmp/mr.all"
	fi
fi

if want migrate-source-dies && mig_net; then
	# The source's runner killed mid-stream: the receiver says so and leaves no VM.
	mig_midstream ms 7704
	kill -KILL $spid; wait $spid 2>/dev/null
	wait $fpid; dst=$?
	wait $mpid
	left=$(ls "$tmp/far" 2>/dev/null | grep -c '^ms\.sock$')
	if [ $mig_mid -eq 1 ] && [ $dst -eq 5 ] && [ "$left" -eq 0 ] && grep -q 'truncated\|stream ends' "$tmp/ms.far"; then
		ok "migrate-source-dies: source SIGKILLed mid-stream: the receiver exited 5, no VM left: $(tail -1 "$tmp/ms.far")"
	else
		bad "migrate-source-dies: receiver seen receiving $mig_mid (want 1), receiver exited $dst, $left sockets left" "$tmp/ms.far"
	fi
fi

if want migrate-receiver-dies-after-ready && mig_net; then
	# The receiver dies right after "ready": the source resumes its domain.
	mig_guest mq --memory 64 --pages 256
	far env SR_MIGRATE_TEST_DIE_AFTER_READY=1 $O/sr-restore --listen 7705 --insecure-plaintext --accept-timeout 120 </dev/null >"$tmp/mq.far" 2>&1 &
	fpid=$!
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/mq.far" && break; sleep 0.05; done
	SR_MIGRATE_TEST_GO_DELAY_MS=500 $O/sr-migrate --cold -q mq tcp:10.77.0.2:7705 2>"$tmp/mq.mig"; rc=$?
	st=$($O/sr-ctl status mq 2>&1)
	sleep 1; $O/sr-ctl finish mq >/dev/null 2>&1
	wait $spid; src=$?
	wait $fpid
	if [ $rc -eq 1 ] && [ $src -eq 0 ] && grep -q 'state=running' <<<"$st" && grep -q '^PASS: .*finished on request' "$tmp/mq.src"; then
		ok "migrate-receiver-dies-after-ready: the source resumed its domain, then PASS: $(cat "$tmp/mq.mig")"
	else
		echo "status: $st" >> "$tmp/mq.mig"
		bad "migrate-receiver-dies-after-ready: sr-migrate $rc, source $src" "$tmp/mq.mig"
	fi
fi

if want migrate-no-go && mig_net; then
	# The source goes away after "ready", before "go": the receiver discards its VM and
	# exits 6; the source's runner, its client gone before "go", resumes the domain.
	mig_guest mg --memory 64 --pages 256 && far_listen 7710 mg
	SR_MIGRATE_TEST_GO_DELAY_MS=20000 $O/sr-migrate --cold -q mg tcp:10.77.0.2:7710 2>"$tmp/mg.mig" &
	mpid=$!
	# Built and paused there (its control socket is up): "ready" is out.
	built=0; poll_ms 60000 test -S "$tmp/far/mg.sock" && built=1
	sleep 0.5
	kill -KILL $mpid; wait $mpid 2>/dev/null
	wait $fpid; dst=$?
	poll_ms 10000 file_has 'not committed' "$tmp/mg.src"
	st=$($O/sr-ctl status mg 2>&1)
	$O/sr-ctl finish mg >/dev/null 2>&1
	wait $spid; src=$?
	left=$(ls "$tmp/far" 2>/dev/null | grep -c '^mg\.sock$')
	if [ $built -eq 1 ] && [ $dst -eq 6 ] && grep -q 'did not say "go"' "$tmp/mg.far" && [ "$left" -eq 0 ] &&
	   grep -q 'state=running' <<<"$st" && [ $src -eq 0 ] && grep -q '^PASS: .*finished on request' "$tmp/mg.src"; then
		ok "migrate-no-go: the source killed after ready: the receiver exited 6 ($(grep -o 'the source did not say.*' "$tmp/mg.far" | cut -c1-90)), the source resumed, then PASS"
	else
		echo "status: $st" >> "$tmp/mg.far"; cat "$tmp/mg.mig" >> "$tmp/mg.far"
		bad "migrate-no-go: receiver built $built (want 1), exited $dst (want 6), $left sockets left, source $src" "$tmp/mg.far"
	fi
fi

if want migrate-unknown && mig_net; then
	# The link dies between "go" and "running": the source holds its domain paused, says
	# the outcome is unknown and how to settle it; the receiver runs it.  Never both.
	mig_guest mu --memory 64 --pages 256 && far_listen 7706 mu
	SR_MIGRATE_TEST_DROP_AFTER_GO=1 $O/sr-migrate --cold -q mu tcp:10.77.0.2:7706 2>"$tmp/mu.mig"; rc=$?
	st=$($O/sr-ctl status mu 2>&1)
	far_finish mu
	wait $fpid; dst=$?
	$O/sr-ctl destroy mu >/dev/null 2>&1
	wait $spid
	if [ $rc -eq 3 ] && grep -q 'paused' <<<"$st" && grep -q 'unknown' "$tmp/mu.mig" &&
	   grep -q 'sr-ctl destroy mu' "$tmp/mu.mig" && [ $dst -eq 0 ] && grep -q '^PASS' "$tmp/mu.far"; then
		ok "migrate-unknown: link dropped after go: source paused (exit 3), receiver ran to PASS: $(cat "$tmp/mu.mig")"
	else
		echo "status: $st" >> "$tmp/mu.mig"
		bad "migrate-unknown: sr-migrate $rc, receiver $dst" "$tmp/mu.mig"
	fi
fi

# Waits (up to 60 s) until file $2 has a line matching $1.
wait_line() { for _ in $(seq 1 1200); do grep -q "$1" "$2" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# Whether domain $1 is running here / on far.
near_runs() { $O/sr-ctl status "$1" 2>/dev/null | grep -q 'state=running'; }
far_runs() { SR_RUN_DIR=$tmp/far $O/sr-ctl status "$1" 2>/dev/null | grep -q 'state=running'; }

if want migrate-handshake 600 && mig_net; then
	# Never both: a cancel that reaches the runner while sr-migrate's "pending" waits unread
	# (the runner held just after "prepared") wins: the domain resumes here and "go" never
	# goes out (on main "pending" was fire-and-forget, "go" followed it, and both ran).
	# Once held, neither a cancel nor the stall timer resumes it.
	SR_TEST_PAUSE_AT=prepared SR_TEST_PAUSE_MS=4000 $O/sr-run --name hc --vcpus 2 --rounds 0 --delay-us 2000 \
		--memory 64 --pages 256 --quiet-guest "$guest" >"$tmp/hc.src" 2>&1 &
	spid=$!
	wait_domain hc && far_listen 7711 hc
	SR_TEST_PAUSE_AT=pending SR_TEST_PAUSE_MS=0 $O/sr-migrate --cold -q hc tcp:10.77.0.2:7711 2>"$tmp/hc.mig" &
	mpid=$!
	wait_line 'sr test hook: at pending' "$tmp/hc.mig"
	said=$($O/sr-ctl cancel hc 2>&1)
	wait $mpid; rc=$?
	wait $fpid; dst=$?
	here=$(near_runs hc && echo running); there=$(far_runs hc && echo running)
	$O/sr-ctl finish hc >/dev/null 2>&1; wait $spid; src=$?
	if [ $rc -eq 1 ] && [ $dst -eq 6 ] && [ "$here" = running ] && [ -z "$there" ] && [ $src -eq 0 ] &&
	   [[ "$said" == *"cancelling"* ]] && grep -q 'would not hold for "go"' "$tmp/hc.mig"; then
		ok "migrate-handshake: cancel with \"pending\" unread: the domain resumed here (then PASS), the receiver discarded its copy (exit 6): $(grep -v 'test hook' "$tmp/hc.mig")"
	else
		echo "cancel said: $said; here '$here', there '$there', source $src" >> "$tmp/hc.mig"
		cat "$tmp/hc.far" >> "$tmp/hc.mig"
		bad "migrate-handshake: cancel with pending unread: sr-migrate $rc, receiver $dst" "$tmp/hc.mig"
	fi

	mig_guest hh --memory 64 --pages 256 && far_listen 7712 hh
	SR_TEST_PAUSE_AT=held SR_TEST_PAUSE_MS=3000 $O/sr-migrate --cold -q hh tcp:10.77.0.2:7712 2>"$tmp/hh.mig" &
	mpid=$!
	wait_line 'sr test hook: at held' "$tmp/hh.mig"
	said=$($O/sr-ctl cancel hh 2>&1); st=$($O/sr-ctl status hh 2>&1)
	wait $mpid; rc=$?
	wait $spid; src=$?
	far_finish hh
	wait $fpid; dst=$?
	if [ $rc -eq 0 ] && [ $src -eq 0 ] && [ $dst -eq 0 ] && grep -q '^PASS' "$tmp/hh.far" &&
	   [[ "$said" == *"committing"* ]] && [[ "$st" == *"state=paused"*"save=committing"* ]]; then
		ok "migrate-handshake: cancel once held is refused ($said); the migration completed and the guest passed there"
	else
		echo "cancel said: $said; status: $st" >> "$tmp/hh.mig"
		bad "migrate-handshake: cancel once held: sr-migrate $rc, source $src, receiver $dst" "$tmp/hh.mig"
	fi

	mig_guest hs --memory 64 --pages 256 && far_listen 7713 hs
	SR_TEST_PAUSE_AT=ready SR_TEST_PAUSE_MS=4000 $O/sr-migrate --cold -q --stall-timeout 1 hs tcp:10.77.0.2:7713 2>"$tmp/hs.mig"; rc=$?
	wait $spid; src=$?
	far_finish hs
	wait $fpid; dst=$?
	if [ $rc -eq 0 ] && [ $src -eq 0 ] && [ $dst -eq 0 ] && grep -q '^PASS' "$tmp/hs.far" && ! grep -q 'no progress' "$tmp/hs.src"; then
		ok "migrate-handshake: a prepared save waiting 4 s for \"go\" (--stall-timeout 1) is not cancelled by the stall timer; it migrated and passed there"
	else
		cat "$tmp/hs.src" >> "$tmp/hs.mig"
		bad "migrate-handshake: stall in the commit window: sr-migrate $rc, source $src, receiver $dst" "$tmp/hs.mig"
	fi
fi

if want migrate-start-fails && mig_net; then
	# The receiver says "running" only once its vCPUs run: a start that fails after "go" is
	# answered "error", and the source resumes its domain (never neither).
	mig_guest sf --memory 64 --pages 256
	far env SR_TEST_START_FAIL=1 $O/sr-restore --listen 7714 --insecure-plaintext --accept-timeout 120 </dev/null >"$tmp/sf.far" 2>&1 &
	fpid=$!
	wait_line 'listening on' "$tmp/sf.far"
	$O/sr-migrate --cold -q sf tcp:10.77.0.2:7714 2>"$tmp/sf.mig"; rc=$?
	wait $fpid; dst=$?
	here=$(near_runs sf && echo running)
	$O/sr-ctl finish sf >/dev/null 2>&1; wait $spid; src=$?
	if [ $rc -eq 1 ] && [ $dst -eq 3 ] && [ "$here" = running ] && [ $src -eq 0 ] &&
	   grep -q 'could not start the domain' "$tmp/sf.mig" && grep -q '^PASS' "$tmp/sf.src"; then
		ok "migrate-start-fails: the receiver's start failed after \"go\": it said so, the source resumed (then PASS): $(cat "$tmp/sf.mig")"
	else
		cat "$tmp/sf.far" >> "$tmp/sf.mig"
		bad "migrate-start-fails: sr-migrate $rc, receiver $dst, source $src, here '$here'" "$tmp/sf.mig"
	fi
fi

if want migrate-commit-lost && mig_net; then
	# "running" heard, then the local runner is lost before the commit: the domain runs
	# there, and sr-migrate says so with exit 3 (not 1, "runs on here").
	mig_guest cl --memory 64 --pages 256 && far_listen 7715 cl
	SR_TEST_PAUSE_AT=running SR_TEST_PAUSE_MS=3000 $O/sr-migrate --cold -q cl tcp:10.77.0.2:7715 2>"$tmp/cl.mig" &
	mpid=$!
	wait_line 'sr test hook: at running' "$tmp/cl.mig"
	kill -KILL $spid; wait $spid 2>/dev/null
	wait $mpid; rc=$?
	far_finish cl
	wait $fpid; dst=$?
	if [ $rc -eq 3 ] && grep -q 'the receiver runs "cl"' "$tmp/cl.mig" && grep -q 'sr-ctl destroy cl' "$tmp/cl.mig" &&
	   [ $dst -eq 0 ] && grep -q '^PASS' "$tmp/cl.far"; then
		ok "migrate-commit-lost: the runner lost after \"running\": exit 3, the guest passed there: $(grep -v 'test hook' "$tmp/cl.mig")"
	else
		bad "migrate-commit-lost: sr-migrate $rc, receiver $dst" "$tmp/cl.mig"
	fi
fi

if want migrate-100mbit 300 && mig_net; then
	# A link limited to 100 Mbit/s (tbf, 2 ms netem delay): a live migration of a dirtying
	# guest converges (throttling where it must): pre-copy stops because the remainder fits
	# the downtime target, and the target (50 ms) is met.  Without the link there is no test.
	if ! { tc qdisc add dev sr-near root handle 1: netem delay 2ms >"$tmp/tc.out" 2>&1 &&
	       tc qdisc add dev sr-near parent 1:1 handle 10: tbf rate 100mbit burst 64kb latency 100ms >>"$tmp/tc.out" 2>&1; }; then
		bad "migrate-100mbit: tc could not shape the link" "$tmp/tc.out"
		tc qdisc del dev sr-near root 2>/dev/null
	else
		mig_guest mt --memory 128 --dirty-rate 500 && far_listen 7707 mt
		a=$(date +%s%N)
		$O/sr-migrate --stats mt tcp:10.77.0.2:7707 2>"$tmp/mt.mig"; rc=$?
		b=$(date +%s%N)
		wait $spid; src=$?
		far_finish mt
		wait $fpid; dst=$?
		tc qdisc del dev sr-near root 2>/dev/null
		# The target is met natively; under the box's emulation a pause costs
		# more (the live tests miss 50 ms there too): within 20 x the target.
		dt=$(sed -n 's/.*live: [0-9]* rounds (the remainder fits the downtime target), downtime \([0-9]*\)\.[0-9] ms (target 50 ms, \(met\|MISSED\)).*/\1/p' "$tmp/mt.mig")
		dt_max=50; [ -n "${SR_IN_BOX:-}" ] && dt_max=1000
		if [ $rc -eq 0 ] && [ $src -eq 0 ] && [ $dst -eq 0 ] && grep -q '^PASS' "$tmp/mt.far" &&
		   [ -n "$dt" ] && [ "$dt" -le $dt_max ] && { [ -n "${SR_IN_BOX:-}" ] || grep -q 'target 50 ms, met)' "$tmp/mt.mig"; }; then
			ok "migrate-100mbit: converged over 100 Mbit/s in $(( (b - a) / 1000000 )) ms, then PASS there; $(grep -o 'live: [^;]*' "$tmp/mt.mig"); $(grep -o 'paused [0-9.]* ms until the commit' "$tmp/mt.mig") (the receiver running)"
		else
			bad "migrate-100mbit: sr-migrate $rc, source $src, receiver $dst; want the stop reason 'the remainder fits the downtime target', target 50 ms and a downtime of at most $dt_max ms: $(grep -o 'live: [^;]*' "$tmp/mt.mig")" "$tmp/mt.mig"
		fi
	fi
fi

if want migrate-timeouts && mig_net; then
	# A receiver that hears nothing for --idle-timeout once a stream began gives up, and
	# tells the source why; a source whose SYNs are lost gives up after --connect-timeout,
	# the domain untouched.
	far $O/sr-restore --listen 7708 --insecure-plaintext --idle-timeout 2 </dev/null >"$tmp/it.far" 2>&1 &
	fpid=$!
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/it.far" && break; sleep 0.05; done
	exec 3<>/dev/tcp/10.77.0.2/7708
	printf SRKVMIMG >&3		# a stream's first bytes (a silent connection is dropped unanswered)
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
	# A running domain: sr-migrate names a missing one before it connects.
	$O/sr-run --name ct --memory 16 --rounds 0 --pages 64 --delay-us 5000 --quiet-guest "$guest" >"$tmp/ct.run" 2>&1 &
	ctpid=$!
	wait_domain ct
	tc qdisc add dev sr-near root netem loss 100% 2>"$tmp/ct.out"
	a=$(date +%s%N)
	$O/sr-migrate --connect-timeout 2 ct tcp:10.77.0.2:7709 >>"$tmp/ct.out" 2>&1; rc=$?
	b=$(date +%s%N)
	tc qdisc del dev sr-near root 2>/dev/null
	$O/sr-ctl status ct >"$tmp/ct.status" 2>&1
	$O/sr-ctl finish ct >/dev/null 2>&1; wait $ctpid; ctrc=$?
	if [ $rc -eq 1 ] && grep -q 'no answer (connect timeout); the domain was not touched' "$tmp/ct.out" &&
	   [ $(( (b - a) / 1000000 )) -lt 5000 ] && grep -q 'state=running' "$tmp/ct.status" &&
	   [ $ctrc -eq 0 ] && grep -q '^PASS' "$tmp/ct.run"; then
		ok "migrate-timeouts: every SYN lost: sr-migrate gave up after $(( (b - a) / 1000000 )) ms (--connect-timeout 2), the domain ran on to PASS: $(cat "$tmp/ct.out")"
	else
		cat "$tmp/ct.status" "$tmp/ct.run" >> "$tmp/ct.out"
		bad "migrate-timeouts: connect timeout: exit $rc after $(( (b - a) / 1000000 )) ms, the domain's runner $ctrc" "$tmp/ct.out"
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
	[ $rc -eq 0 ] || $O/sr-ctl destroy mh >/dev/null 2>&1	# it is still here: end it
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

# Live over TLS 1.3 with a pre-shared key between the two hosts: a wrong key first
# (refused, the domain untouched, the receiver listens on), then the right one; the
# guest verifies its memory there.  migrate-tls: kernel TLS where the kernel has it
# (this box's has the tls module); migrate-tls-user: the records in user space
# (SR_KTLS=off on both sides); migrate-tls-mixed: user space at the source, the kernel at
# the receiver (neither side may rekey: the kernel could not follow a TLS 1.3 KeyUpdate).
# mig_tls NAME PORT SR_KTLS EXPECTED-TRANSPORT [RECEIVER'S-SR_KTLS RECEIVER'S-TRANSPORT MiB]
mig_tls() {
	local n=$1 p=$2 ktls=$3 expect=$4 fktls=${5:-$3} fexpect=${6:-$4} mem=${7:-64} rc1 rc st
	echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/keys.psk"
	echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/wrong.psk"
	mig_guest $n --memory $mem --dirty-rate 50
	far env SR_KTLS=$fktls $O/sr-restore -v --listen $p --tls-psk "$tmp/keys.psk" --accept-timeout 120 </dev/null >"$tmp/$n.far" 2>&1 &
	fpid=$!
	for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/$n.far" && break; sleep 0.05; done
	# Every thread of the receiver, sampled from "listening on" (the main thread's filter is
	# on by then, the handshakes run under it) to its end; short-lived ones (the guard, the
	# reader, the TLS pumps) are seen when a sample falls in their time (migrate-bounds holds
	# a stream to see the guard and the reader for sure; sandbox-test checks each kind).
	: > "$tmp/$n.threads"
	sb_sample "$(pgrep -n -f "sr-restore -v --listen $p")" "$tmp/$n.threads" & sampler=$!
	SR_KTLS=$ktls $O/sr-migrate --tls-psk "$tmp/wrong.psk" $n tcp:10.77.0.2:$p 2>"$tmp/$n.mig"; rc1=$?
	st=$($O/sr-ctl status $n 2>&1)
	echo "     $n: the wrong key: sr-migrate exited $rc1: $(tail -1 "$tmp/$n.mig")"
	SR_KTLS=$ktls $O/sr-migrate --stats --tls-psk "$tmp/keys.psk" $n tcp:10.77.0.2:$p 2>>"$tmp/$n.mig"; rc=$?
	wait $spid; src=$?
	far_finish $n
	wait $fpid; dst=$?
	kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
	sort -u "$tmp/$n.threads" > "$tmp/$n.tu"
	threads_ok=0
	sb_file_filtered "$tmp/$n.tu" sr-restore sr-vcpu || threads_ok=1
	if [ $rc1 -eq 1 ] && grep -q 'TLS handshake.*the domain was not touched' "$tmp/$n.mig" && [ $threads_ok -eq 0 ] &&
	   grep -q running <<<"$st" && grep -q 'refused 10.77.0.1:[0-9]*: TLS handshake' "$tmp/$n.far" &&
	   [ $rc -eq 0 ] && [ $src -eq 0 ] && [ $dst -eq 0 ] && grep -q '^PASS: .*finished on request' "$tmp/$n.far" &&
	   grep -qF "transport: TLS1.3 AES-128-GCM, $expect" "$tmp/$n.mig" &&
	   grep -qF "transport: TLS1.3 AES-128-GCM, $fexpect" "$tmp/$n.far"; then
		ok "$n: a wrong key refused (domain untouched, still listening), then live over TLS with the right one: PASS there; $(grep '^transport' "$tmp/$n.mig"); $(grep -o 'live: [^;]*' "$tmp/$n.mig"); receiver's threads all filtered ($(awk '{ print $1 }' "$tmp/$n.tu" | sort -u | tr '\n' ' '))"
	else
		echo "status after the wrong key: $st" >> "$tmp/$n.mig"
		{ echo "receiver's threads (comm, seccomp mode, filters), every one seen:"; cat "$tmp/$n.tu"; } >> "$tmp/$n.mig"
		cat "$tmp/$n.mig" "$tmp/$n.far" > "$tmp/$n.all"
		bad "$n: wrong key $rc1, sr-migrate $rc, source $src, receiver $dst" "$tmp/$n.all"
	fi
}
if want migrate-tls && mig_net; then
	if [ -e /proc/net/tls_stat ]; then
		mig_tls migrate-tls 7710 on "kernel TLS (kTLS)"
	else
		mig_tls migrate-tls 7710 on "user-space TLS (GnuTLS; no kTLS in this kernel"
	fi
fi
if want migrate-tls-user && mig_net; then
	mig_tls migrate-tls-user 7711 off "user-space TLS (GnuTLS; SR_KTLS=off)"
fi
if want migrate-tls-mixed && mig_net; then
	if [ -e /proc/net/tls_stat ]; then
		mig_tls migrate-tls-mixed 7714 off "user-space TLS (GnuTLS; SR_KTLS=off)" on "kernel TLS (kTLS)"
	else
		echo "     migrate-tls-mixed: skipped: no kTLS in this kernel"
	fi
fi

if want migrate-bounds 200; then
	# A source that trickles a valid image 6 bytes at a time never meets the per-read idle
	# timeout; the overall deadline and the least rate cut it.
	$O/tests/mkimage -m 4 -v 1 -i 1 -d 50 "$tmp/trickle.img"
	trickle() {	# PORT: 6 bytes every 0.2 s to 127.0.0.1:PORT; what it hears back in $tmp/trPORT.heard
		python3 -c 'import socket, sys, threading, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
d = open(sys.argv[2], "rb").read()
heard = []
def listen():
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            heard.append(b)
    except OSError:
        pass
    open(sys.argv[3], "wb").write(b"".join(heard))
t = threading.Thread(target=listen)
t.start()
try:
    for i in range(0, len(d), 6):
        s.send(d[i:i + 6]); time.sleep(0.2)
except OSError:
    pass
t.join()' "$1" "$tmp/trickle.img" "$tmp/tr$1.heard" 2>/dev/null
	}
	for b in "--deadline 4 --min-rate 0:7712:did not end within --deadline 4 s" \
		 "--min-rate 64:7713:under --min-rate 64 KB/s"; do
		opts=${b%%:*}; rest=${b#*:}; p=${rest%%:*}; want_msg=${rest#*:}
		$O/sr-restore --listen 127.0.0.1:$p $opts --idle-timeout 5 </dev/null >"$tmp/tr$p.out" 2>&1 &
		rpid=$!
		for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/tr$p.out" && break; sleep 0.05; done
		trickle $p &
		tpid=$!
		for _ in $(seq 1 600); do grep -q 'receiving a domain' "$tmp/tr$p.out" && break; sleep 0.1; done
		# The stream, held by the trickle (10 s before the least rate can cut it): its
		# guard and its reader, each under its own filter.
		filtered=0; : > "$tmp/tr$p.threads"
		if [ $p = 7713 ]; then
			poll_ms 8000 sb_has_thread $rpid sr-guard && poll_ms 8000 sb_has_thread $rpid sr-reader &&
				sb_all_filtered $rpid sr-restore sr-guard sr-reader; filtered=$?
			cp "$tmp/sb.threads" "$tmp/tr$p.threads"
		fi
		a=$(date +%s%N)
		for _ in $(seq 1 600); do kill -0 $rpid 2>/dev/null || break; sleep 0.1; done
		b2=$(date +%s%N)
		kill $rpid 2>/dev/null; wait $rpid; rc=$?
		# The trickle ends itself once the connection is gone, after saving what it heard.
		for _ in $(seq 1 50); do kill -0 $tpid 2>/dev/null || break; sleep 0.1; done
		kill $tpid 2>/dev/null; wait $tpid 2>/dev/null
		cat "$tmp/tr$p.threads" >> "$tmp/tr$p.out"
		# The source, not authenticated, hears that it was cut, not the operator's bounds (audit9).
		heard=$(tr -d '\n' < "$tmp/tr$p.heard" 2>/dev/null)
		if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "$want_msg" "$tmp/tr$p.out" && [ $filtered -eq 0 ] &&
		   [ "$heard" = "error the receiver cut the stream: too slow, or past its deadline" ]; then
			ok "migrate-bounds: a 6-bytes-a-time source cut after $(( (b2 - a) / 1000000 )) ms ($opts): $(grep "$want_msg" "$tmp/tr$p.out" | tail -1)$([ $p = 7713 ] && echo "; every thread filtered, the guard's and the reader's each under its own"); the source heard '${heard#error }'"
		else
			bad "migrate-bounds: $opts: exit $rc after $(( (b2 - a) / 1000000 )) ms; the source heard '$heard'" "$tmp/tr$p.out"
		fi
	done
	# Over TLS the least rate counts payload, not the wire: a source sending its image a
	# byte a record (some 200 records/s: ~4.6 KB/s of records, 0.2 KB/s of payload) is
	# under --min-rate 1.  User-space TLS at the receiver (the pump counts what it decrypts).
	if command -v openssl >/dev/null; then
		p=7715
		echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/tr.psk"
		SR_KTLS=off $O/sr-restore --listen 127.0.0.1:$p --tls-psk "$tmp/tr.psk" --min-rate 1 \
			--idle-timeout 5 </dev/null >"$tmp/tr$p.out" 2>&1 &
		rpid=$!
		for _ in $(seq 1 200); do grep -q 'listening on' "$tmp/tr$p.out" && break; sleep 0.05; done
		python3 -c 'import sys, time
d = open(sys.argv[1], "rb").read()
try:
    for i in range(len(d)):
        sys.stdout.buffer.write(d[i:i + 1]); sys.stdout.flush(); time.sleep(0.005)
except OSError:
    pass' "$tmp/trickle.img" 2>/dev/null |
			openssl s_client -quiet -connect 127.0.0.1:$p -tls1_3 -psk_identity src \
				-psk "$(cut -d: -f2 "$tmp/tr.psk")" >/dev/null 2>&1 &
		tpid=$!
		for _ in $(seq 1 600); do grep -q 'receiving a domain' "$tmp/tr$p.out" && break; sleep 0.1; done
		a=$(date +%s%N)
		for _ in $(seq 1 600); do kill -0 $rpid 2>/dev/null || break; sleep 0.1; done
		b2=$(date +%s%N)
		kill $rpid 2>/dev/null; wait $rpid; rc=$?
		kill $tpid 2>/dev/null; wait $tpid 2>/dev/null
		if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q 'authenticated as PSK identity src' "$tmp/tr$p.out" &&
		   grep -q "under --min-rate 1 KB/s" "$tmp/tr$p.out"; then
			ok "migrate-bounds: a TLS source sending a byte a record cut after $(( (b2 - a) / 1000000 )) ms: $(tail -1 "$tmp/tr$p.out")"
		else
			bad "migrate-bounds: TLS, a byte a record: exit $rc after $(( (b2 - a) / 1000000 )) ms" "$tmp/tr$p.out"
		fi
	fi
fi
netns_down

# The README's "By hand" lines, run as written: build/ becomes this build, the
# image goes to a scratch directory, and a line that ends in & is waited for
# (its domain's control socket) before the next.
if want walkthrough; then
	root=$(cd "$O" && pwd); mkdir -p "$tmp/wt"; : >"$tmp/wt.out"; n=0; bg=; wfail=
	sed -n '/^## By hand$/,/^## /p' README.md | sed -n '/^```sh$/,/^```$/p' | grep -v '^```' >"$tmp/wt.lines"
	while IFS= read -r line; do
		n=$((n + 1)); line=${line//build\//$root/}
		echo "\$ $line" >>"$tmp/wt.out"
		if [[ $line == *'&' ]]; then
			( cd "$tmp/wt" && PATH=$root:$PATH eval "${line%&}" ) >>"$tmp/wt.out" 2>&1 &
			bg=$!
			name=$(sed -n 's/.*--name \([^ ]*\).*/\1/p' <<<"$line")
			wait_domain "$name" || { wfail="line $n: domain $name never answered"; break; }
		elif ! ( cd "$tmp/wt" && PATH=$root:$PATH eval "$line" ) >>"$tmp/wt.out" 2>&1 </dev/null; then
			wfail="line $n failed: $line"; break
		fi
	done <"$tmp/wt.lines"
	[ -n "$bg" ] && { wait $bg; echo "(sr-run exited $?)" >>"$tmp/wt.out"; }
	if [ "$n" -ge 5 ] && [ -z "$wfail" ] && grep -q '^sr-run ' "$tmp/wt.lines" && grep -q '^sr-restore ' "$tmp/wt.lines" &&
	   grep -q '^PASS: ' "$tmp/wt.out" && grep -q 'stream hash: verified' "$tmp/wt.out"; then
		ok "walkthrough: the README's $n lines ran (sr-run, sr-save, sr-dump, sr-restore to PASS)"
	else bad "walkthrough: ${wfail:-the README lines did not end in a verified image and PASS}" "$tmp/wt.out"; fi
fi

# sr-restore shows a progress line with --progress text (none unasked when
# stderr is no terminal), and refuses a name that is taken before it reads the
# image's pages: here the image's own name, its first 64 KiB and then a stall.
if want restore-checks; then
	$O/sr-run --name rchk --paused --rounds 2 --pages 64 --quiet-guest "$guest" >"$tmp/rchk.out" 2>&1 &
	rpid=$!
	if wait_domain rchk && $O/sr-save -p rchk "$tmp/rchk.img" 2>"$tmp/rchk.save"; then
		# An image with memory in it: the guest asks for its own save after writing its slice.
		$O/sr-run --name rchkp --memory 32 --rounds 2 --save-round 1 --save-to "$tmp/rchkp.img" \
			--quiet-guest "$guest" >/dev/null 2>&1
		$O/sr-restore --progress text --name rchk2 "$tmp/rchkp.img" >"$tmp/rchk2.out" 2>"$tmp/rchk2.err"; rc2=$?
		$O/sr-restore --name rchk3 "$tmp/rchkp.img" >"$tmp/rchk3.out" 2>"$tmp/rchk3.err"; rc3=$?
		last=$(tr '\r' '\n' <"$tmp/rchk2.err" | grep -o '^sr-restore: [0-9.]* of [0-9.]* MiB read' | tail -1)
		read -r _ got _ all _ <<<"$last"
		if [ $rc2 -eq 0 ] && [ -n "$last" ] && [ "$got" = "$all" ] && [ "${all%.*}" -ge 1 ] &&
		   [ $rc3 -eq 0 ] && ! grep -q 'MiB read' "$tmp/rchk3.err"; then
			ok "restore-checks: --progress text ends at '$last'; no line unasked off a terminal"
		else bad "restore-checks: progress line (exit $rc2, '$last'; unasked exit $rc3)" "$tmp/rchk2.err"; fi
		mkfifo "$tmp/rchk.fifo"
		( head -c 65536 "$tmp/rchk.img"; exec sleep 60 ) >"$tmp/rchk.fifo" &
		feeder=$!
		a=$(date +%s%N)
		timeout 30 $O/sr-restore - <"$tmp/rchk.fifo" >"$tmp/rchk4.out" 2>&1; rc4=$?
		ms=$(( ($(date +%s%N) - a) / 1000000 ))
		kill $feeder 2>/dev/null; wait $feeder 2>/dev/null
		if [ $rc4 -eq 2 ] && grep -q 'a domain named "rchk" is already running' "$tmp/rchk4.out"; then
			ok "restore-checks: the image's name, taken, refused after its first 64 KiB in $ms ms: $(cat "$tmp/rchk4.out")"
		else bad "restore-checks: a taken name with the rest of the image stalled: exit $rc4 after $ms ms" "$tmp/rchk4.out"; fi
	else bad "restore-checks: starting and saving rchk" "$tmp/rchk.save"; fi
	$O/sr-ctl destroy rchk >/dev/null 2>&1; wait $rpid 2>/dev/null
fi

# A sample of make faults-migrate (100 trials): 8, each fault kind twice, at
# different moments.  Its own namespaces: after the migration tests' are down.
# A sample of make faults-migrate (100 trials): 5, each fault kind and each
# moment at least once.  Its own namespaces: after the migration tests' are down.
if want faults-migrate-sample 1200; then
	if SR_FAULTS_MIG=5 SR_FAULTS_MIG_COVER=1 O=$O tests/faults-migrate-kvm.sh 2>&1 | tee "$tmp/fm.out" | grep --line-buffered '^ok   trial\|^FAIL\|^     | ' | sed 's/^/     faults-migrate-sample /'; [ "${PIPESTATUS[0]}" -eq 0 ]; then
		ok "faults-migrate-sample: 5 migrations hit by kills, cancels and cut links: the domain ran on exactly one side, or was held paused at the source with the way to settle it; $(grep -m1 "^faults-migrate: .*seed" "$tmp/fm.out" | cut -c17-)"
	else bad "faults-migrate-sample" "$tmp/fm.out"; fi
fi

# ------------------------------------------------------------------ Linux root disk
# The Linux guest with its root on sr's virtio-blk: the ext4 image the build
# makes (make linux-root), a fresh copy per test; the initramfs loads the
# modules and switches root (guest/linux/init), the disk workload writes
# fsync'd, journalled files and reads them back from the disk (disk.c).
# tests/disk-qemu-kvm.sh proves the same guest on QEMU's virtio-blk-pci.
# They need sr-run --disk: with an sr-run without it they are not run, and
# the pass says so (remove this guard once --disk is merged).
rootimg=$O/guest/linux-root.ext4
disk_ready() {
	linux_ready "$1" || return 1
	[ -f "$rootimg" ] && return 0
	echo "missing: $rootimg (make linux-root)" > "$tmp/$1.missing"
	bad "$1: no root disk image" "$tmp/$1.missing"
	return 1
}
# disk_boot NAME IMAGE WORKLOAD: one whole boot from IMAGE; sr-run's status.
disk_boot() {
	$O/sr-run --name "$1" --kernel $kernel --initrd $initrd --disk "$2" --rng \
		--cmdline "root=/dev/vda sr.workload=$3" </dev/null >"$tmp/$1.out" 2>&1
}
disk_mounted() { grep -q '^sr-linux: root /dev/vda mounted .* rng virtio_rng' "$1"; }
# A guest that boots the image must not spend its first minutes zeroing its
# inode tables through the disk (ext4lazyinit: the demo's save met it): the
# build zeroes every group's, which dumpe2fs shows as ITABLE_ZEROED.
if want root-image && disk_ready root-image; then
	PATH=$PATH:/sbin:/usr/sbin dumpe2fs "$rootimg" >"$tmp/ri.out" 2>&1
	groups=$(grep -c '^Group [0-9]*: ' "$tmp/ri.out") zeroed=$(grep -c '^Group [0-9]*: .*ITABLE_ZEROED' "$tmp/ri.out")
	if [ "$groups" -gt 0 ] && [ "$zeroed" = "$groups" ]; then
		ok "root-image: every one of its $groups groups' inode tables zeroed by the build (no lazy init in the guest)"
	else
		bad "root-image: $zeroed of $groups groups' inode tables zeroed: the guest's ext4lazyinit writes the rest" "$tmp/ri.out"
	fi
fi
if want linux-disk 450 && disk_ready linux-disk; then
	cp --sparse=always "$rootimg" "$tmp/ld.img"
	disk_boot ld "$tmp/ld.img" disk,5,20; rc=$?
	disk_boot ldv "$tmp/ld.img" verify; vrc=$?
	if [ $rc -eq 0 ] && disk_mounted "$tmp/ld.out" && grep -q '^sr-workload: PASS: disk' "$tmp/ld.out" &&
	   [ $vrc -eq 0 ] && grep -q '^sr-workload: PASS: verify' "$tmp/ldv.out" && ! grep -Eq "$linux_warnings" "$tmp/ld.out"; then
		ok "linux-disk: booted with its root on virtio-blk (virtio-rng beside it): $(grep -o '[0-9]* writes acknowledged ([^)]*), [0-9]* slots read back whole' "$tmp/ld.out"); booted again: $(grep -o '[0-9]* journalled writes up to seq [0-9]*, [0-9]* slots whole' "$tmp/ldv.out")"
	else
		bad "linux-disk: sr-run exited $rc, the verifying boot $vrc" "$tmp/ld.out"
		[ $rc -ne 0 ] || tail -5 "$tmp/ldv.out" | sed 's/^/     | /'
	fi
fi
if want linux-disk-save 600 && disk_ready linux-disk-save; then
	cp --sparse=always "$rootimg" "$tmp/lds.img"
	# The console as it comes (lds.out) and host-stamped (lds.st): the guest's
	# realtime lag behind the host before the save, which the restore keeps.
	{ $O/sr-run --name lds --vcpus 2 --kernel $kernel --initrd $initrd --disk "$tmp/lds.img" --rng \
		--cmdline "root=/dev/vda sr.workload=disk,40,20" </dev/null 2>&1; echo $? > "$tmp/lds.rc"; } |
		tee "$tmp/lds.out" | stamp > "$tmp/lds.st" &
	pid=$!
	wait_domain lds
	# Saved from tick 4 of 40: a loaded box's live save took the writer from
	# tick 6 past its 25th and last before it paused.
	for _ in $(seq 1 900); do grep -q "tick 4 " "$tmp/lds.out" && break; sleep 0.2; done
	$O/sr-save --live lds "$tmp/lds.sr" 2>"$tmp/lds.save"; rc=$?
	wait $pid
	src=$(cat "$tmp/lds.rc" 2>/dev/null)
	linux_ref=$(console_skew "$tmp/lds.st")
	last=$(sed -n 's/^sr-workload: tick \([0-9]*\) .*/\1/p' "$tmp/lds.out" | tail -1)
	if [ $rc -ne 0 ] || [ "$src" != 0 ] || ! $O/sr-dump --verify "$tmp/lds.sr" 2>>"$tmp/lds.save"; then
		bad "linux-disk-save: sr-save exited $rc, the saved source runner $src, or the image does not verify" "$tmp/lds.save"
	else
		$O/sr-restore --name lds1 --disk "$tmp/lds.img" "$tmp/lds.sr" </dev/null 2>&1 | stamp >"$tmp/lds1.out"
		disk_boot ldsv "$tmp/lds.img" verify; vrc=$?
		# linux_restored_ok knows the memory workload's first line; the writer's is its own.
		if linux_restored_ok "$tmp/lds1.out" "$last" "$tmp/lds.out" && ! grep -q 'sr-workload: disk writer' "$tmp/lds1.out" &&
		   grep -q 'sr-workload: PASS: disk' "$tmp/lds1.out" &&
		   [ $vrc -eq 0 ] && grep -q '^sr-workload: PASS: verify' "$tmp/ldsv.out"; then
			ok "linux-disk-save: saved live at tick $last mid-I/O, restored: the writer went on from tick $((last + 1)) and $(grep -o '[0-9]* writes acknowledged ([^)]*), [0-9]* slots read back whole' "$tmp/lds1.out"); booted again, every journalled write there; $(grep -o 'live: .*met)' "$tmp/lds.save")"
		else
			bad "linux-disk-save: restore, or the verifying boot ($vrc)" "$tmp/lds1.out"
		fi
	fi
fi

if want disk-snapshot 420 && linux_ready disk-snapshot; then
	# sr-save -c --disk-snapshot while the guest writes a 64 KiB block every
	# 300 ms (O_DIRECT, fsync).  First into a 1 MiB file system: the copy of
	# the disk (4 MiB of data) cannot be made, so the save fails, says why,
	# leaves nothing there, and the guest writes on.  Then for real (live): the
	# snapshot FILE.disk0 holds every block written before the checkpoint and
	# none after, while the domain writes on to PASS on its own disk; the
	# image's DISK has a full hash (--disk-hash full), which the restore checks.
	# Restoring the checkpoint runs on the snapshot, the disk untouched: the
	# guest writes on from where the checkpoint was and verifies all 24 blocks
	# there.  A second restore finds the snapshot changed, one without it finds
	# it missing: both refused, naming it.  The domain has a second disk (the
	# guest writes the same blocks there): a checkpoint whose second snapshot
	# cannot take its name at the commit (a directory put there while sr-save
	# holds the commit open) fails naming disk 1 and leaves no image, no
	# snapshot (the first, already named, is taken back) and no side file.
	sn_n=24
	make_disk "$tmp/sn.raw"
	dd if=/dev/urandom of="$tmp/sn.raw" bs=1M seek=32 count=4 conv=notrunc 2>/dev/null
	make_disk "$tmp/sn2.raw"
	mkdir -p "$tmp/snfull" "$tmp/ck" "$tmp/ck2"
	mount -t tmpfs -o size=1m tmpfs "$tmp/snfull"
	sn_t0=$(date +%s)
	( while sleep 60; do echo "     disk-snapshot: $(( $(date +%s) - sn_t0 )) s"; done ) &
	sn_ticker=$!
	$O/sr-run --name sn --kernel $kernel --initrd $initrd --disk "$tmp/sn.raw" --disk "$tmp/sn2.raw" \
		--cmdline "sr.disk=$sn_n,300" </dev/null >"$tmp/sn.out" 2>&1 &
	pid=$!
	# The N of each whole "sr-disk: wrote N" line of console $1 (the serial's lines end CR LF).
	sn_writes() { tr -d '\r' < "$1" | sed -n 's/^sr-disk: wrote \([0-9]*\)$/\1/p'; }
	sn_end=$(( $(date +%s) + 300 ))
	until [ "$(sn_writes "$tmp/sn.out" | tail -1)" -ge 2 ] 2>/dev/null; do
		kill -0 $pid 2>/dev/null && [ "$(date +%s)" -lt $sn_end ] || break
		sleep 0.2
	done
	echo "     disk-snapshot: booted, block $(sn_writes "$tmp/sn.out" | tail -1) written: checkpoint into a full file system"
	$O/sr-save -c --disk-snapshot sn "$tmp/snfull/sn.sr" 2>"$tmp/sn.full"; frc=$?
	# The runner closes the unnamed image just after its answer: up to 5 s for the space to come back.
	for _ in $(seq 1 50); do
		full_used=$(df --output=used -k "$tmp/snfull" | tail -1 | tr -d ' ')
		[ "$full_used" = 0 ] && break
		sleep 0.1
	done
	full_left=$(ls -A "$tmp/snfull")
	umount "$tmp/snfull"
	full_state=$($O/sr-ctl status sn 2>&1 | grep -o 'state=[a-z]*')
	SR_TEST_PAUSE_AT=commit SR_TEST_PAUSE_MS=3000 $O/sr-save -c --disk-snapshot sn "$tmp/ck2/sn.sr" 2>"$tmp/sn.two" &
	spid=$!
	for _ in $(seq 1 600); do
		grep -q 'sr test hook: at commit' "$tmp/sn.two" && break
		kill -0 $spid 2>/dev/null || break
		sleep 0.1
	done
	mkdir "$tmp/ck2/sn.sr.disk1"
	wait $spid; trc=$?
	two_left=$(ls -A "$tmp/ck2" | grep -vx 'sn.sr.disk1')
	rmdir "$tmp/ck2/sn.sr.disk1"
	two_state=$($O/sr-ctl status sn 2>&1 | grep -o 'state=[a-z]*')
	before=$(sn_writes "$tmp/sn.out" | tail -1)
	$O/sr-save -c --live --disk-snapshot --disk-hash full sn "$tmp/ck/sn.sr" 2>"$tmp/sn.save"; rc=$?
	wait $pid; src=$?
	snap=$tmp/ck/sn.sr.disk0
	# The snapshot: blocks 1..k whole, the rest never written (zeros), the host's 4 MiB
	# carried; block k+1 may be part written: its dd was in flight at the pause (a 64 KiB
	# write can be several requests; each one taken was completed), so each 4 KiB of it
	# is the pattern's or zeros, and the restored guest's dd writes the rest.
	k=0; while [ $k -lt $sn_n ] && disk_block_ok "$snap" $((k + 1)); do k=$((k + 1)); done
	zero=$(head -c 65536 /dev/zero | md5sum); zero4k=$(head -c 4096 /dev/zero | md5sum); later=0
	sn_part=$(for j in $(seq 0 15); do
		got=$(dd if="$snap" bs=4096 skip=$(( (17 + k) * 16 + j )) count=1 2>/dev/null | md5sum)
		if [ "$got" = "$zero4k" ]; then echo -n 0
		elif [ "$got" = "$(yes "sr-block $((k + 1)) gen 1" | head -c 65536 | tail -c +$((j * 4096 + 1)) | head -c 4096 | md5sum)" ]; then echo -n 1
		else echo -n x; fi
	done)
	case $sn_part in *x*) later=1 ;; esac
	for i in $(seq $((k + 2)) $sn_n); do
		[ "$(dd if="$snap" bs=65536 skip=$((16 + i)) count=1 2>/dev/null | md5sum)" = "$zero" ] || later=$((later + 1))
	done
	why=
	[ $frc -eq 1 ] && grep -q 'its snapshot .*No space left on device' "$tmp/sn.full" || why="$why the save into a full file system exited $frc: $(tail -1 "$tmp/sn.full");"
	[ -z "$full_left" ] && [ "${full_used:-1}" -eq 0 ] || why="$why left in the full file system: '$full_left', ${full_used} KiB;"
	[ "$full_state" = state=running ] || why="$why after the failed save the domain is '$full_state';"
	[ $trc -eq 1 ] && grep -q "disk 1: its snapshot $tmp/ck2/sn.sr.disk1: Is a directory" "$tmp/sn.two" ||
		why="$why the checkpoint whose disk 1 snapshot could not be named exited $trc: $(tail -1 "$tmp/sn.two");"
	[ -z "$two_left" ] || why="$why after it, left beside the image: '$(echo $two_left)';"
	[ "$two_state" = state=running ] || why="$why after it the domain is '$two_state';"
	[ $rc -eq 0 ] && grep -Eq "disk 0 snapshot $snap by (reflink|copy) in [0-9.]+ ms, the guest paused" "$tmp/sn.save" || why="$why sr-save -c --disk-snapshot exited $rc;"
	[ $src -eq 0 ] && grep -q "^sr-disk: PASS $sn_n blocks verified on vda" "$tmp/sn.out" || why="$why the checkpointed domain exited $src without PASS;"
	[ "$k" -ge "${before:-99}" ] && [ "$k" -lt $sn_n ] && [ $later -eq 0 ] || why="$why the snapshot has blocks 1..$k (written before the save: $before), block $((k + 1)) by 4 KiB '$sn_part' (1 written, 0 zeros), $later later ones not zeros;"
	cmp -s <(dd if="$tmp/sn.raw" bs=1M skip=32 count=4 2>/dev/null) <(dd if="$snap" bs=1M skip=32 count=4 2>/dev/null) || why="$why the snapshot lacks the disk's data;"
	disk_block_ok "$tmp/sn.raw" $sn_n || why="$why the disk lacks block $sn_n;"
	$O/sr-dump --verify "$tmp/ck/sn.sr" >>"$tmp/sn.save" 2>&1 || why="$why the image does not verify;"
	# --disk-hash full: the DISK record says so (the restore below hashes the whole snapshot).
	$O/sr-dump --type DISK "$tmp/ck/sn.sr" 2>&1 | grep -q 'writable, cache writeback, full hash 0x[0-9a-f]*, snapshot by' ||
		why="$why sr-dump does not show a full hash and a snapshot: $($O/sr-dump --type DISK "$tmp/ck/sn.sr" 2>&1 | grep DISK);"
	if [ -n "$why" ]; then
		cat "$tmp/sn.full" "$tmp/sn.out" >> "$tmp/sn.save"
		bad "disk-snapshot:$why" "$tmp/sn.save"
	else
		ok "disk-snapshot: disk 1's snapshot unplaceable at the commit: refused ($(sed "s|$tmp/||g" "$tmp/sn.two" | tail -1)), no image, snapshot or side file left"
		ok "disk-snapshot: into a full file system: refused ($(sed "s|$tmp/||g" "$tmp/sn.full" | tail -1)), nothing left, the guest wrote on; checkpointed (--disk-hash full) after block $before: $(grep -Eo 'disk 0 snapshot [^;]* by [a-z]+ in [0-9.]+ ms' "$tmp/sn.save" | sed "s|$tmp/||"); it holds blocks 1..$k and none of the $((sn_n - k)) written after$(case $sn_part in *1*) echo " (block $((k + 1)) in flight at the pause: its 4 KiB pieces $sn_part)";; esac)"
		raw=$(md5sum < "$tmp/sn.raw")
		# Restored paused (in its seccomp sandbox), checkpointed again with a snapshot of
		# its own disk (the first snapshot), then resumed: it runs on to PASS.
		echo "     disk-snapshot: restoring the checkpoint"
		$O/sr-restore --name sn1 --paused --disk "$snap" --disk "$tmp/ck/sn.sr.disk1" "$tmp/ck/sn.sr" </dev/null >"$tmp/sn1.out" 2>&1 &
		pid=$!
		wait_domain sn1
		$O/sr-save -p --disk-snapshot sn1 "$tmp/ck/sn1.sr" 2>"$tmp/sn1.save"; rc1=$?
		$O/sr-ctl resume sn1 >/dev/null 2>&1
		wait $pid; rc=$?
		first=$(sn_writes "$tmp/sn1.out" | head -1)
		if [ $rc -eq 0 ] && grep -q "^sr-disk: PASS $sn_n blocks verified on vda" "$tmp/sn1.out" &&
		   grep -q "disk 0 snapshot $snap: the guest runs on the checkpoint's snapshot" "$tmp/sn1.out" &&
		   { [ "${first:-0}" = "$k" ] || [ "${first:-0}" = $((k + 1)) ]; } &&
		   [ "$(md5sum < "$tmp/sn.raw")" = "$raw" ] && disk_block_ok "$snap" $sn_n &&
		   ! grep -Eq "$linux_warnings" "$tmp/sn1.out"; then
			ok "disk-snapshot: restored on the snapshot: the guest wrote on from block $first and verified all $sn_n there; the disk itself unchanged"
		else
			bad "disk-snapshot: restoring the checkpoint exited $rc, first block '$first' (snapshot up to $k), disk $([ "$(md5sum < "$tmp/sn.raw")" = "$raw" ] && echo unchanged || echo CHANGED)" "$tmp/sn1.out"
		fi
		if [ $rc1 -eq 0 ] && grep -Eq "disk 0 snapshot $tmp/ck/sn1.sr.disk0 by (reflink|copy) in" "$tmp/sn1.save" &&
		   disk_block_ok "$tmp/ck/sn1.sr.disk0" "$k" && ! disk_block_ok "$tmp/ck/sn1.sr.disk0" $sn_n &&
		   $O/sr-dump --verify "$tmp/ck/sn1.sr" 2>>"$tmp/sn1.save"; then
			ok "disk-snapshot: the restored domain (sandboxed) checkpointed with a snapshot of its own: $(grep -Eo 'disk 0 snapshot [^;]* by [a-z]+ in [0-9.]+ ms' "$tmp/sn1.save" | sed "s|$tmp/||")"
		else
			bad "disk-snapshot: sr-save -p --disk-snapshot of the restored domain exited $rc1" "$tmp/sn1.save"
		fi
		$O/sr-restore --name sn2 --disk "$snap" --disk "$tmp/ck/sn.sr.disk1" "$tmp/ck/sn.sr" </dev/null >"$tmp/sn2.out" 2>&1; rc=$?
		mv "$snap" "$snap.away"
		$O/sr-restore --name sn3 --disk "$snap" --disk "$tmp/ck/sn.sr.disk1" "$tmp/ck/sn.sr" </dev/null >"$tmp/sn3.out" 2>&1; rc3=$?
		if [ $rc -eq 2 ] && grep -q "disk 0 snapshot $snap changed since the save" "$tmp/sn2.out" &&
		   [ $rc3 -eq 2 ] && grep -q -- "--disk $snap: No such file or directory" "$tmp/sn3.out"; then
			ok "disk-snapshot: restored again, the snapshot written since: refused ($(grep -o 'changed since the save: [^(]*' "$tmp/sn2.out")); without it: refused naming it"
		else
			cat "$tmp/sn3.out" >> "$tmp/sn2.out"
			bad "disk-snapshot: a changed snapshot exited $rc, a missing one $rc3" "$tmp/sn2.out"
		fi
	fi
	kill $sn_ticker 2>/dev/null; wait $sn_ticker 2>/dev/null
fi

reap_timeout
section_time
echo "kvm: seconds per section, slowest first: $(sort -rn "$tmp/.times" 2>/dev/null | head -40 | awk '{ printf "%s %s, ", $2, $1 }')total $(awk '{ t += $1 } END { print t + 0 }' "$tmp/.times" 2>/dev/null)"
echo "kvm: $pass passed, $fail failed"
[ $fail -eq 0 ]
