#!/usr/bin/env bash
# audit9: sr-restore --listen --tls-psk's receive pump (pull_ahead, under the
# tls-pump seccomp list) fed a whole image by tlspeer in hostile wire shapes.
# Needs real KVM (the receiver reads the whole stream only when its host can
# run guests):
#   gcc -O2 -o build/tests/audit9-tlspeer tests/tlspeer.c -lgnutls -lxxhash
#   SR_BOX_IDLE=900 /work/boxrun SR_KVM=box tests/on-kvm.sh audit9-pump tests/audit9/pump-kvm.sh
# Each case passes when the source hears the class told once the whole stream
# verified (mkimage's MSRs: "its KVM cannot run this guest's CPU state"), not a
# stream fault, and the receiver's log has no sandbox trap.
set -u
O=${O:-build}
peer=$O/tests/audit9-tlspeer
tmp=$(mktemp -d /tmp/audit9-pumpkvm.XXXXXX)
export SR_RUN_DIR=$tmp/run
mkdir -p "$SR_RUN_DIR" && chmod 700 "$SR_RUN_DIR"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0 fail=0
[ -x "$peer" ] || { echo "$peer: not built (see the header)"; exit 1; }
$O/tests/mkimage -m 1 -v 1 -i 0 "$tmp/pr.img" >/dev/null || exit 1
echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/k.psk"

one() {	# NAME KTLS(off|on) PEER-OPTIONS...
	local name=$1 ktls=$2 port lp heard kenv=; shift 2
	port=$((20000 + RANDOM % 20000))
	[ "$ktls" = off ] && kenv=SR_KTLS=off
	: >"$tmp/l.log"
	env $kenv $O/sr-restore -v --listen 127.0.0.1:$port --tls-psk "$tmp/k.psk" \
		--accept-timeout 60 --name "a9-$name" >"$tmp/l.log" 2>&1 & lp=$!
	for _ in $(seq 300); do grep -q 'listening on' "$tmp/l.log" && break; kill -0 $lp 2>/dev/null || break; sleep 0.1; done
	heard=$(timeout 120 "$peer" 127.0.0.1 $port "$tmp/k.psk" --file "$tmp/pr.img" "$@" 2>"$tmp/p.err" | sed -n 's/^heard=//p')
	kill $lp 2>/dev/null; wait $lp 2>/dev/null
	if [[ "$heard" == "error refused by the receiver: its KVM cannot run this guest's CPU state"* ]] &&
	   ! grep -qi 'sigsys\|sandbox:.*refused\|seccomp' "$tmp/l.log"; then
		pass=$((pass + 1)); echo "PASS $name ($(grep -o '(TLS1.3[^)]*)' "$tmp/l.log" | head -1))"
	else
		fail=$((fail + 1)); echo "FAIL $name: heard '$heard'"; tail -4 "$tmp/l.log" | sed 's/^/    receiver| /'; tail -2 "$tmp/p.err" | sed 's/^/    peer| /'
	fi
}
for k in off on; do
	one "plain-ktls-$k" $k
	one "coalesce-finished-and-data-ktls-$k" $k --coalesce
	one "split-97-ktls-$k" $k --split 97
	one "records-1-16384-7-split-5-ktls-$k" $k --rec 1,16384,7 --split 5
	one "empty-records-ktls-$k" $k --empty 2 --rec 4096
done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
