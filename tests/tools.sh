#!/usr/bin/env bash
# Command-line behaviour of sr-dump on real images (output, exit codes, errors),
# and of sr-migrate's destinations before any domain is asked.
set -u
O=${O:-build}
dump=$O/sr-dump
mk=$O/tests/mkimage
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

ok()   { pass=$((pass + 1)); echo "ok   $1"; }
bad()  { fail=$((fail + 1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

[ -x "$mk" ] || make -s O="$O" "$mk" >/dev/null
"$mk" -m 4 -v 2 -i 2 -d 50 "$tmp/a.img" || { echo "mkimage failed"; echo "0 passed, 1 failed"; exit 1; }

"$dump" "$tmp/a.img" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "dump exits 0 on a good image" [ $rc -eq 0 ]
check "dump lists every record type" bash -c "grep -q DOMAIN '$tmp/out' && grep -q PAGE_DATA '$tmp/out' && grep -q HVM_CONTEXT '$tmp/out' && grep -q VCPU_CONTEXT '$tmp/out' && grep -q ITERATION '$tmp/out' && grep -q DEVICE '$tmp/out' && grep -q ' END ' '$tmp/out'"
check "dump summarises page batches" grep -Eq 'iter 0: [0-9]+ pages, [0-9]+ raw, [0-9]+ zero, [0-9]+ lz4' "$tmp/out"
check "dump prints per-iteration totals" grep -Eq '^ +2 +[0-9]+ +50 ' "$tmp/out"
check "dump reports the stream hash" grep -q 'stream hash: verified' "$tmp/out"
check "dump prints the compression ratio" grep -q 'ratio' "$tmp/out"

"$dump" --verify "$tmp/a.img" >"$tmp/out" 2>&1; rc=$?
check "verify is quiet and exits 0" bash -c "[ $rc -eq 0 ] && [ ! -s '$tmp/out' ]"

cat "$tmp/a.img" | "$dump" --verify - ; rc=$?
check "verify reads a pipe" [ $rc -eq 0 ]

"$dump" --json "$tmp/a.img" >"$tmp/j" 2>/dev/null
check "json is one valid document" python3 -c "import json,sys; d=json.load(open('$tmp/j')); assert d['verified'] and d['totals']['records']>5 and len(d['iterations'])==3"

"$dump" --type vcpu_context "$tmp/a.img" >"$tmp/out"
check "type filter" bash -c "[ \$(grep -c VCPU_CONTEXT '$tmp/out') -eq 2 ] && ! grep -q ' PAGE_DATA ' '$tmp/out'"

"$dump" --pfns --type PAGE_DATA "$tmp/a.img" >"$tmp/out"
check "pfn listing" bash -c "[ \$(grep -c ' pfn 0x' '$tmp/out') -ge 1024 ]"

# Corrupt: flip one byte in the middle.
cp "$tmp/a.img" "$tmp/c.img"
size=$(stat -c %s "$tmp/a.img")
printf '\xAA' | dd of="$tmp/c.img" bs=1 seek=$((size / 2)) conv=notrunc status=none
"$dump" --verify "$tmp/c.img" 2>"$tmp/err"; rc=$?
check "corrupt image exits 1" [ $rc -eq 1 ]
check "corrupt image: one line naming record and offset" bash -c "[ \$(wc -l < '$tmp/err') -eq 1 ] && grep -Eq 'record [0-9]+ (\(PAGE_DATA\) )?at offset [0-9]+: ' '$tmp/err'"
echo "     $(cat "$tmp/err")"

head -c $((size - 100)) "$tmp/a.img" > "$tmp/t.img"
"$dump" --verify "$tmp/t.img" 2>"$tmp/err"; rc=$?
check "truncated image exits 1" bash -c "[ $rc -eq 1 ] && grep -q truncated '$tmp/err'"
echo "     $(cat "$tmp/err")"

"$dump" "$tmp/c.img" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "dump of a corrupt image says NOT verified" bash -c "[ $rc -eq 1 ] && grep -q 'record' '$tmp/err'"

head -c 1000 /dev/urandom > "$tmp/r.img"
"$dump" --verify "$tmp/r.img" 2>"$tmp/err"; rc=$?
check "foreign file exits 1 naming the magic" bash -c "[ $rc -eq 1 ] && grep -q 'not an sr image' '$tmp/err'"
"$dump" --json "$tmp/r.img" >"$tmp/j" 2>/dev/null; rc=$?
check "json of a foreign file: exit 1 and one document with the error" bash -c "[ $rc -eq 1 ] && python3 -c \"import json; d = json.load(open('$tmp/j')); assert d['verified'] is False and d['error']['code'] == 'not an sr image' and d['header'] is None\""

"$dump" --verify "$tmp/nonexistent" 2>/dev/null; rc=$?
check "missing file exits 2" [ $rc -eq 2 ]
"$dump" --bogus 2>/dev/null; rc=$?
check "bad option exits 2" [ $rc -eq 2 ]
"$dump" --type NOPE "$tmp/a.img" 2>/dev/null; rc=$?
check "unknown type name exits 2" [ $rc -eq 2 ]
"$dump" --help | grep -q -- '--verify'
check "--help documents options" [ $? -eq 0 ]

# sr-migrate and sr-save's network destinations, before any domain is asked.
mig=$O/sr-migrate
"$mig" --help | grep -q -- '--bandwidth'
check "sr-migrate --help documents --bandwidth" [ $? -eq 0 ]
"$mig" dom "$tmp/file" >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate refuses a file destination (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'DEST is tcp:HOST:PORT or ssh:' '$tmp/m.out'"
$O/sr-save -c dom tcp:127.0.0.1:9 >"$tmp/m.out" 2>&1; rc=$?
check "sr-save -c to tcp: is refused: both would run (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'here as well as there' '$tmp/m.out'"
"$mig" --name 'a;b' dom ssh:host >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate refuses a --name the remote shell would see (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'bad domain name' '$tmp/m.out'"
"$mig" dom tcp:nohost >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate: tcp: without a port (exit 1, domain untouched)" bash -c "[ $rc -eq 1 ] && grep -q 'is not HOST:PORT' '$tmp/m.out' && grep -q 'not touched' '$tmp/m.out'"
# A port nobody listens on: refused at once, before the domain is asked.
"$mig" --connect-timeout 2 dom tcp:127.0.0.1:1 >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate: connection refused (exit 1, domain untouched)" bash -c "[ $rc -eq 1 ] && grep -q 'connecting to 127.0.0.1:1: Connection refused; the domain was not touched' '$tmp/m.out'"
"$mig" dom "tcp:[::1]:1" >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate: an IPv6 literal in brackets is understood" bash -c "[ $rc -eq 1 ] && grep -q 'connecting to \[::1\]:1' '$tmp/m.out'"

# sr-restore's sandbox: each thread kind refuses what it never does (the
# process ends with one line naming the call and the kind, status 159), and
# allows what it does.  The refused ioctl is a KVM request the kind does not
# make (the reader: TIOCSTI).
sbt=$O/tests/sandbox-test
for kind in reader worker vCPU console input control save; do
	for call in execve socket ioctl; do
		"$sbt" $kind $call >"$tmp/sb.out" 2>&1; rc=$?
		case $call in
		execve) what='system call 59 (execve)' ;;
		socket) what='system call 41 (socket)' ;;
		ioctl) what='system call 16 (ioctl) request 0x' ;;
		esac
		check "sandbox: the $kind thread's $call is refused (exit 159, one line)" bash -c "[ $rc -eq 159 ] && [ \$(wc -l < '$tmp/sb.out') -eq 1 ] && grep -q 'sandbox: the $kind thread made $what' '$tmp/sb.out'"
	done
	"$sbt" $kind allowed >"$tmp/sb.out" 2>&1; rc=$?
	check "sandbox: the $kind thread's own calls are allowed" bash -c "[ $rc -eq 0 ] && grep -qx allowed '$tmp/sb.out'"
done
echo "     $("$sbt" vCPU ioctl 2>&1)"
$O/sr-restore --help | grep -q -- '--no-sandbox'
check "sr-restore --help documents --no-sandbox" [ $? -eq 0 ]

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
