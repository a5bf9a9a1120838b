#!/usr/bin/env bash
# bench-tls, on real KVM: what TLS costs a migration.  The same test guest
# (SR_BENCH_TLS_MIB MiB, 64, every page written) is migrated cold and
# uncompressed (the bytes are the guest's memory) between two network
# namespaces joined by a veth pair (tests/netns.sh) over plaintext TCP, TLS
# 1.3 with the records in the kernel (kTLS, both sides), and TLS 1.3 in user
# space (GnuTLS, SR_KTLS=off both sides); SR_BENCH_TLS_RUNS (3) rounds, the
# order rotated each round so load drifts hit every transport alike.
# Prints each migration's stream rate (the source's round 0: bytes over the
# time the runner took to write them, TCP's back-pressure included) and
# wall time, then each transport's median and its ratio to plaintext's.
# Numbers, not a test: only a broken run fails.  In the box (TCG, one vCPU
# unless SR_BOX_SMP) both ends and the crypto share the emulated CPU.
set -u
O=${O:-build}
mib=${SR_BENCH_TLS_MIB:-64}
runs=${SR_BENCH_TLS_RUNS:-3}
guest=$O/guest/sr-test-guest.bin
tmp=$(mktemp -d /tmp/sr-bench-tls.XXXXXX)
export SR_RUN_DIR=$tmp/near
mkdir -p -m 0700 "$SR_RUN_DIR"	# sr-run refuses a run directory others can enter
. tests/netns.sh
trap 'kill $(jobs -p) 2>/dev/null; netns_down; rm -rf "$tmp"' EXIT
die() { echo "bench-tls: $1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -20 "$2" | sed 's/^/  | /'; exit 1; }
ms() { date +%s%3N; }

netns_up "$tmp" || die "two network namespaces joined by a veth pair" "$tmp/net.out"
echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/keys.psk"
cpus=$(nproc)
echo "bench-tls: ${mib} MiB guest, cold, uncompressed, near -> far over a veth pair; $cpus CPU(s); $(uname -r)"
[ -e /proc/net/tls_stat ] || modprobe tls 2>/dev/null
[ -e /proc/net/tls_stat ] || echo "bench-tls: no kTLS in this kernel: the ktls row will be user-space TLS"
# What the cipher costs on this CPU (TCG emulates AES-NI and PCLMULQDQ one helper call each):
# the migrations below cannot beat it, both ends sharing the CPU.
if command -v openssl >/dev/null; then
	for c in aes-128-gcm chacha20-poly1305; do
		echo "bench-tls: openssl speed $c, 16 KiB blocks: $(timeout 60 openssl speed -seconds 2 -bytes 16384 -evp $c 2>/dev/null | awk 'END { printf "%.0f MB/s", $NF / 1000 }')"
	done
fi

# one TRANSPORT N: one migration; appends "TRANSPORT MB/s wall_ms" to $tmp/rows.
one() {
	local t=$1 n=bt$2 port=$((7800 + $2)) ktls=on want rc dst
	local -a ropts copts
	case $t in
	plain) ropts=(--insecure-plaintext); copts=(); want="plaintext TCP" ;;
	ktls)  ropts=(--tls-psk "$tmp/keys.psk"); copts=("${ropts[@]}"); want="kernel TLS (kTLS)" ;;
	user)  ropts=(--tls-psk "$tmp/keys.psk"); copts=("${ropts[@]}"); ktls=off; want="user-space TLS" ;;
	esac
	# sr-run's host probe gives its guest 500 ms: a loaded box can miss that; try again.
	for _ in 1 2 3; do
		$O/sr-run --name $n --vcpus 1 --rounds 0 --delay-us 2000 --memory "$mib" --prefill \
			--pages 64 --quiet-guest "$guest" >"$tmp/$n.src" 2>&1 &
		spid=$!
		for _ in $(seq 1 100); do
			$O/sr-ctl status $n >/dev/null 2>&1 && break 2
			kill -0 $spid 2>/dev/null || break
			sleep 0.2
		done
		wait $spid 2>/dev/null
	done
	# Until the guest has written its memory (the memfd's resident pages show it; some
	# of the guest's RAM is never written: three quarters, as kvm.sh's mig_midstream).
	local until=$(( $(date +%s) + 300 ))
	while [ "$(date +%s)" -lt $until ]; do
		[ "$(awk '/^RssShmem:/ { print $2 }' /proc/$spid/status 2>/dev/null)" -ge $((mib * 768)) ] 2>/dev/null && break
		sleep 0.5
	done
	$O/sr-ctl status $n >/dev/null 2>&1 || die "$t: the guest did not start" "$tmp/$n.src"
	echo "  ($t: the guest has written its memory; migrating)"
	far env SR_KTLS=$ktls $O/sr-restore --listen $port "${ropts[@]}" --name $n --accept-timeout 120 \
		</dev/null >"$tmp/$n.far" 2>&1 &
	fpid=$!
	for _ in $(seq 1 400); do grep -q 'listening on' "$tmp/$n.far" && break; sleep 0.05; done
	a=$(ms)
	timeout 900 env SR_KTLS=$ktls $O/sr-migrate --cold --stats --compress none "${copts[@]}" $n \
		tcp:10.77.0.2:$port 2>"$tmp/$n.mig"; rc=$?
	b=$(ms)
	wait $spid
	SR_RUN_DIR=$tmp/far $O/sr-ctl destroy $n >/dev/null 2>&1
	wait $fpid; dst=$?
	[ $rc -eq 0 ] || die "$t: sr-migrate exited $rc (receiver $dst)" "$tmp/$n.mig"
	grep -q "^transport: .*$want" "$tmp/$n.mig" || grep -q "^transport: .*user-space" "$tmp/$n.mig" ||
		die "$t: not over $want" "$tmp/$n.mig"
	rate=$(awk '/^ *0 +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9]+ / { print $4; exit }' "$tmp/$n.mig")
	[ -n "$rate" ] || die "$t: no round 0 in sr-migrate --stats" "$tmp/$n.mig"
	printf '  %-6s %8s MB/s %8s ms  %s\n' $t "$rate" $((b - a)) "$(sed -n 's/^transport: //p' "$tmp/$n.mig" | cut -c1-70)"
	echo "$t $rate $((b - a))" >>"$tmp/rows"
}

order=(plain ktls user)
k=0
for r in $(seq 1 "$runs"); do
	for i in 0 1 2; do
		one "${order[$(( (i + r - 1) % 3 ))]}" $k
		k=$((k + 1))
	done
done
median() { awk -v t=$1 '$1 == t { print $2 }' "$tmp/rows" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
p=$(median plain); kt=$(median ktls); u=$(median user)
echo "bench-tls: medians of $runs: plaintext $p MB/s, kTLS $kt MB/s ($(awk -v a=$kt -v b=$p 'BEGIN { printf "%.2f", a / b }') of plaintext), user-space TLS $u MB/s ($(awk -v a=$u -v b=$p 'BEGIN { printf "%.2f", a / b }') of plaintext)"
