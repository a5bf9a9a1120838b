#!/usr/bin/env bash
# audit9: tools/tls.c's receive pump (pull_ahead) against tlspeer's wire
# patterns.  Receiver: build/tests/bench-transport recv (the tools' listener,
# tls.c and guard).  Each case: the receiver's hash must equal the peer's, or
# (cases marked fail) the receiver must fail within its bound.
# Usage: tests/audit9/pump.sh [CASE...]   (O=build by default)
set -u
O=${O:-build}
bench=$O/tests/bench-transport
tmp=$(mktemp -d /tmp/audit9-pump.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
gcc -O2 -o "$tmp/tlspeer" tests/tlspeer.c -lgnutls -lxxhash || exit 1
echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/k.psk"
port=$((47100 + RANDOM % 500))
pass=0 fail=0

# one NAME EXPECT(ok|cut) MAXSECS PEER-OPTIONS...
one() {
	local name=$1 expect=$2 max=$3; shift 3
	port=$((port + 1))
	: >"$tmp/r.out"
	"$bench" recv 127.0.0.1:$port --psk "$tmp/k.psk" --record 65536 >"$tmp/r.out" 2>"$tmp/r.err" &
	local rpid=$!
	for _ in $(seq 100); do grep -q listening "$tmp/r.out" && break; sleep 0.05; done
	local t0=$(date +%s)
	"$tmp/tlspeer" 127.0.0.1 $port "$tmp/k.psk" "$@" >"$tmp/p.out" 2>"$tmp/p.err" &
	local ppid=$!
	local rrc=124
	for _ in $(seq $((max * 10))); do
		kill -0 $rpid 2>/dev/null || { wait $rpid; rrc=$?; break; }
		sleep 0.1
	done
	local secs=$(( $(date +%s) - t0 ))
	kill $rpid $ppid 2>/dev/null; wait $ppid 2>/dev/null
	local want got
	want=$(sed -n 's/.*hash=\([0-9a-f]*\).*/\1/p' "$tmp/p.out")
	got=$(sed -n 's/.* hash=\([0-9a-f]*\).*/\1/p' "$tmp/r.out")
	local ok=0
	if [ "$expect" = ok ]; then
		[ $rrc = 0 ] && [ -n "$want" ] && [ "$want" = "$got" ] && ok=1
	else	# cut: the receiver ended within its bound, with less than was sent
		local gotb=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' "$tmp/r.out")
		[ $rrc != 124 ] && [ "$want" != "$got" ] && [ -n "$gotb" ] && ok=1
	fi
	grep -q 'Sanitizer\|runtime error' "$tmp/r.err" && ok=0	# an ASan/UBSan build's report
	if [ $ok = 1 ]; then
		pass=$((pass + 1)); echo "PASS $name (${secs}s, rc $rrc)"
	else
		fail=$((fail + 1)); echo "FAIL $name (${secs}s, rc $rrc, want '$want' got '$got')"
		sed 's/^/  recv| /' "$tmp/r.out" "$tmp/r.err" | tail -5; sed 's/^/  peer| /' "$tmp/p.err" | tail -3
	fi
}

cases=${*:-all}
run() { [ "$cases" = all ] || [[ " $cases " == *" $1 "* ]]; }

run plain      && one plain ok 30 --mib 16
run coalesce   && one coalesce ok 30 --coalesce --mib 4
run coalesce1  && one coalesce-1byte-records ok 30 --coalesce --bytes 70000 --rec 1
run split1     && one split-every-byte ok 60 --split 1 --bytes 300000 --rec 16384,1,7,5000
run split7     && one split-7-mixed ok 60 --split 7 --bytes 2000000 --rec 16384,3,16383,100
run trickle    && one trickle-1byte-1ms-guard-cuts cut 40 --split 1 --delay-us 1000 --bytes 20000 --rec 16384,1
run coal-split && one coalesce-split1 ok 60 --coalesce --split 1 --bytes 40000
run empty      && one empty-records ok 30 --empty 3 --bytes 1000000 --rec 16384,10
run alert      && one close-notify ok 30 --end alert --mib 2
run keyupdate  && one keyupdate ok 30 --keyupdate-at 100000 --mib 2
run eofmid     && one eof-mid-record cut 30 --stall-at 100000 --mib 2
run rstmid     && one rst-mid-record cut 30 --stall-at 100000 --mib 2 --end rst
run stallhold  && one stall-mid-record-held-guard-cuts cut 40 --stall-at 100000 --mib 2 --hold-s 60
run stallhdr   && one stall-in-header-held cut 40 --stall-at 3 --mib 2 --hold-s 60
echo "$pass passed, $fail failed"
[ $fail = 0 ]
