#!/usr/bin/env bash
# audit9: a TLS source that half-closes (TCP FIN, no close_notify) once its
# bytes are sent still hears the receiver's answer.  GnuTLS takes a FIN
# without close_notify for a truncation and invalidates the session, both
# directions: under user-space TLS the receive pump saw it first and the
# answer was never sent (with kTLS it was).  Native: the receiver's answer is
# its host check's class, told as soon as the source has authenticated.
#   tests/audit9/halfclose.sh [ROUNDS]      (O=build by default)
set -u
O=${O:-build}
rounds=${1:-10}
tmp=$(mktemp -d /tmp/audit9-halfclose.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
gcc -O2 -o "$tmp/tlspeer" tests/tlspeer.c -lgnutls -lxxhash || exit 1
echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/k.psk"
pass=0 fail=0
for end in eof alert; do
	for i in $(seq "$rounds"); do
		port=$((20000 + RANDOM % 20000))
		: >"$tmp/l.log"		# now: the last round's "listening on" is not this one's
		SR_KTLS=off $O/sr-restore --listen 127.0.0.1:$port --tls-psk "$tmp/k.psk" --accept-timeout 30 \
			>"$tmp/l.log" 2>&1 & lp=$!
		for _ in $(seq 100); do grep -q 'listening on' "$tmp/l.log" && break; kill -0 $lp 2>/dev/null || break; sleep 0.05; done
		heard=$(timeout 60 "$tmp/tlspeer" 127.0.0.1 $port "$tmp/k.psk" --coalesce --bytes 100 --end $end 2>"$tmp/p.err" |
			sed -n 's/^heard=//p')
		wait $lp
		if [[ "$heard" == "error refused by the receiver"* ]] && ! grep -q 'Sanitizer' "$tmp/l.log"; then
			pass=$((pass + 1))
		else
			cp "$tmp/l.log" "/tmp/audit9-halfclose-fail.$$.$end.$i.log" 2>/dev/null; fail=$((fail + 1)); echo "FAIL end=$end round $i: the source heard '$heard'"; tail -2 "$tmp/l.log" | sed "s/^/    receiver| /"; sed "s/^/    peer| /" "$tmp/p.err"
		fi
	done
	echo "end=$end (a FIN$([ $end = alert ] && echo ' after close_notify')): $rounds rounds"
done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
