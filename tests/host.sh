#!/usr/bin/env bash
# The host probe and the native-or-box choice, on any host (no VM needed):
# sr-ctl host's report, the one-line refusal (exit 3) of every tool that
# creates a VM on a host that cannot run sr's guests (a kvm_pvm host and a
# missing /dev/kvm are faked with SR_PROBE_SYSFS / SR_PROBE_DEV), the
# dispatcher's choice and its SR_KVM override, and the KVM tests' watchdog.
set -u
O=${O:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     | /' "$2" | tail -12; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name" "$tmp/out"; fi; }
one_line() { [ "$(wc -l < "$1")" -eq 1 ]; }

# This host, whatever it is: a verdict and a status that agree.
$O/sr-ctl host >"$tmp/out" 2>&1; rc=$?
check "sr-ctl host: exit 0 or 3 with a verdict ($(sed -n 's/^module: *//p' "$tmp/out"), exit $rc)" \
	bash -c "{ [ $rc -eq 0 ] && grep -q '^verdict: *sr.s guests can run here' '$tmp/out'; } || { [ $rc -eq 3 ] && grep -q '^verdict: *sr.s guests cannot run here: ' '$tmp/out'; }"
check "sr-ctl host lists the capabilities sr uses" \
	bash -c "for c in IRQCHIP PIT2 MANUAL_DIRTY_LOG_PROTECT2 DIRTY_LOG_RING TSC_CONTROL XSAVE XCRS SREGS2 NESTED_STATE; do grep -q \"\$c=\" '$tmp/out' || exit 1; done"
$O/sr-ctl host --json >"$tmp/j" 2>"$tmp/out"; jrc=$?
check "sr-ctl host --json: one document agreeing with the text (exit $jrc)" python3 -c "
import json; d = json.load(open('$tmp/j'))
assert d['usable'] == ($rc == 0) and ($jrc == $rc)
assert set(d) >= {'module', 'api_version', 'caps', 'guest_runs', 'guest', 'why'}
assert d['caps']['IRQCHIP']['required'] and not d['caps']['DIRTY_LOG_RING']['required']"
echo "     this host: $(sed -n 's/^verdict: *//p' < <($O/sr-ctl host))"

# A kvm_pvm host, faked: every tool that would create a VM refuses at once.
mkdir -p "$tmp/sys/module/kvm_pvm" "$tmp/sys/module/kvm"
export SR_PROBE_SYSFS=$tmp/sys
$O/sr-ctl host >"$tmp/out" 2>&1; rc=$?
check "kvm_pvm host: sr-ctl host says so, exit 3" bash -c "[ $rc -eq 3 ] && grep -q '^module: *kvm_pvm' '$tmp/out' && grep -q 'paravirtual KVM' '$tmp/out'"
start=$(date +%s%N)
$O/sr-run $O/guest/sr-test-guest.bin >"$tmp/out" 2>&1; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "kvm_pvm host: sr-run exits 3 with one line naming kvm_pvm and the box, in $ms ms" \
	bash -c "[ $rc -eq 3 ] && one_line() { [ \$(wc -l < \$1) -eq 1 ]; } && one_line '$tmp/out' && grep -q 'kvm_pvm, a paravirtual KVM.*tests/box.sh' '$tmp/out' && [ $ms -lt 2000 ]"
echo "     $(cat "$tmp/out")"
echo "not an image: read, it would be refused with status 5" >"$tmp/junk.img"
$O/sr-restore "$tmp/junk.img" >"$tmp/out" 2>&1; rc=$?
check "kvm_pvm host: sr-restore exits 3 before reading the image" bash -c "[ $rc -eq 3 ] && [ \$(wc -l < '$tmp/out') -eq 1 ] && grep -q kvm_pvm '$tmp/out'"
# Checks first: FILE opens, and NAME is free, before the host is probed.
$O/sr-restore "$tmp/no-such.img" >"$tmp/out" 2>&1; rc=$?
check "kvm_pvm host: sr-restore names a FILE that does not open (exit 2) before probing the host" bash -c "[ $rc -eq 2 ] && [ \$(wc -l < '$tmp/out') -eq 1 ] && grep -q 'no-such.img: No such file' '$tmp/out'"
mkdir -m 0700 "$tmp/run"
exec 9>"$tmp/run/taken.lock"
flock 9		# what a running domain named "taken" holds
SR_RUN_DIR=$tmp/run $O/sr-restore --name taken "$tmp/junk.img" >"$tmp/out" 2>&1; rc=$?
exec 9>&-
check "kvm_pvm host: sr-restore --name of a running domain is refused (exit 2) at once" bash -c "[ $rc -eq 2 ] && [ \$(wc -l < '$tmp/out') -eq 1 ] && grep -q 'a domain named \"taken\" is already running' '$tmp/out'"
$O/tests/kvm-dirty-log $O/guest/sr-test-guest.bin >"$tmp/out" 2>&1; rc=$?
check "kvm_pvm host: the dirty-log test exits 3" bash -c "[ $rc -eq 3 ] && grep -q kvm_pvm '$tmp/out'"
SR_KVM_DRY_RUN=1 tests/on-kvm.sh check-kvm true >"$tmp/out" 2>&1; rc=$?
check "kvm_pvm host: the dispatcher picks the box and says why" bash -c "[ $rc -eq 0 ] && grep -q 'inside the nested KVM box.*kvm_pvm' '$tmp/out'"
SR_KVM=native SR_KVM_DRY_RUN=1 tests/on-kvm.sh check-kvm true >"$tmp/out" 2>&1
check "SR_KVM=native forces the native path" grep -q 'running natively: forced by SR_KVM=native' "$tmp/out"
unset SR_PROBE_SYSFS

# No /dev/kvm and no KVM module at all, faked.
mkdir -p "$tmp/sys0/module"
export SR_PROBE_DEV=$tmp/no-kvm SR_PROBE_SYSFS=$tmp/sys0
$O/sr-run $O/guest/sr-test-guest.bin >"$tmp/out" 2>&1; rc=$?
check "no /dev/kvm: sr-run exits 3 with one line naming the device and the box" \
	bash -c "[ $rc -eq 3 ] && [ \$(wc -l < '$tmp/out') -eq 1 ] && grep -q 'no-kvm.*tests/box.sh' '$tmp/out'"
SR_KVM_DRY_RUN=1 tests/on-kvm.sh demo true >"$tmp/out" 2>&1
check "no /dev/kvm: the dispatcher picks the box" grep -q 'inside the nested KVM box' "$tmp/out"
# A /dev/kvm this user may not open: the kvm group, not another host.
: >"$tmp/kvm-denied"; chmod 000 "$tmp/kvm-denied"
as_user=; [ "$(id -u)" -eq 0 ] && as_user="setpriv --reuid=nobody --regid=nogroup --clear-groups"
SR_PROBE_DEV=$tmp/kvm-denied $as_user $O/sr-run $O/guest/sr-test-guest.bin >"$tmp/out" 2>&1; rc=$?
check "/dev/kvm permission denied: sr-run exits 3 saying join the kvm group" \
	bash -c "[ $rc -eq 3 ] && [ \$(wc -l < '$tmp/out') -eq 1 ] && grep -q 'Permission denied: the kvm group may open it: join it' '$tmp/out' && ! grep -q 'kvm_intel\|box' '$tmp/out'"
SR_KVM=box SR_KVM_DRY_RUN=1 tests/on-kvm.sh demo true >"$tmp/out" 2>&1
check "SR_KVM=box forces the box" grep -q 'forced by SR_KVM=box' "$tmp/out"
unset SR_PROBE_DEV SR_PROBE_SYSFS
SR_KVM=maybe tests/on-kvm.sh demo true >"$tmp/out" 2>&1; rc=$?
check "SR_KVM=maybe is refused (exit 2)" [ $rc -eq 2 ]

# Nothing hangs: a native run past SR_KVM_TIMEOUT is listed and killed.
SR_KVM=native SR_KVM_TIMEOUT=2 tests/on-kvm.sh hang sleep 1000 >"$tmp/out" 2>&1; rc=$?
check "native run killed at SR_KVM_TIMEOUT with its processes listed (exit $rc)" \
	bash -c "[ $rc -eq 137 ] && grep -q 'sleep 1000' '$tmp/out' && grep -q 'killed at its 2 s limit' '$tmp/out'"
# ... and a KVM test past its limit is killed, fails, and the run goes on.
O=$O SR_KVM_TESTS="hang-selftest after-hang" SR_KVM_TEST_LIMIT=5 tests/kvm.sh >"$tmp/out" 2>&1
check "kvm.sh: a hung test is killed at its limit, fails, and the next one runs" \
	bash -c "grep -q 'FAIL hang-selftest: killed at its 5 s time limit' '$tmp/out' && grep -q '^ok   after-hang' '$tmp/out' && grep -q 'kvm: 1 passed, 1 failed' '$tmp/out' && grep -q 'sleep 100000' '$tmp/out'"
# The parts of a sharded pass (tests/on-kvm.sh, SR_KVM_SHARDS) cover every section once.
all=$(sed -nE 's/^[[:space:]]*(if[[:space:]]+)?want ([a-z][a-z0-9-]*).*/\2/p' tests/kvm.sh | grep -vxE 'hang-selftest|after-hang' | sort -u)
devices="virtio-disk-save linux-disk linux-disk-save disk-snapshot"
for n in 2 3; do
	got=$(for i in $(seq 1 $n); do SR_KVM_TESTS= SR_KVM_EXCLUDE= SR_KVM_DEVICES= SR_KVM_LIST=1 SR_KVM_SHARD=$i/$n O=$O tests/kvm.sh 2>/dev/null | sed -n 's/^kvm: part [0-9/]* of this pass: //p' | tr ' ' '\n'; done | sed '/^$/d' | sort)
	want=$(grep -vxF -f <(tr ' ' '\n' <<<"$devices") <<<"$all")
	check "kvm.sh in $n parts: every section of the pass in exactly one part ($(wc -l <<<"$got") of $(wc -l <<<"$want"))" \
		bash -c "[ '$(md5sum <<<"$got")' = '$(md5sum <<<"$want")' ] && [ $(wc -l <<<"$want") -gt 60 ]"
done
SR_KVM_LIST=1 SR_KVM_SHARD=3/2 O=$O tests/kvm.sh >"$tmp/out" 2>&1; rc=$?
check "kvm.sh: SR_KVM_SHARD=3/2 is refused" bash -c "[ $rc -eq 1 ] && grep -q 'SR_KVM_SHARD must be I/N' '$tmp/out'"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
