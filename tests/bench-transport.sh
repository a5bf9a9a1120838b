#!/usr/bin/env bash
# bench-transport, natively (no guest, no box): what TLS costs the migration
# stream on this host's CPU.  build/tests/bench-transport is one end of a
# stream through the tools' own transport code (tools/net.c, listener.c,
# tls.c: see tests/bench_transport.c); a receiver and a sender move
# SR_BENCH_TRANSPORT_MIB MiB (2048) of page-like records over plaintext TCP,
# TLS 1.3 in user space (GnuTLS's pump threads, SR_KTLS=off) and TLS 1.3 in
# the kernel (kTLS; skipped, said so, when the kernel has no tls module), on
# each link of SR_BENCH_TRANSPORT_LINKS:
#   lo      loopback: both ends and all the crypto share the host's CPUs
#   veth    a veth pair between two network namespaces (tests/netns.sh)
#   10g 1g  the same veth pair, the sender's side shaped by tc's tbf to 10 or
#           1 Gbit/s: a link a migration crosses, the network the limit
# SR_BENCH_TRANSPORT_RUNS (3) rounds, the transports' order rotated each round
# so load drifts hit each alike.  Prints every stream (the receiver's rate:
# payload delivered over the time from the authenticated connection to the
# end of the stream; each end's CPU seconds per GiB; peak RSS), then each
# link's medians and their ratio to plaintext's.  Numbers, not a test: only
# a broken run fails (an end that fails, a stream whose XXH3 differs end to
# end, a transport that is not the one asked for).  Runs as root, in a
# network namespace of its own (the host's interfaces are not touched).
set -u
O=${O:-build}
bin=$O/tests/bench-transport
mib=${SR_BENCH_TRANSPORT_MIB:-2048}
runs=${SR_BENCH_TRANSPORT_RUNS:-3}
links=${SR_BENCH_TRANSPORT_LINKS:-lo veth 10g 1g}
die() { echo "bench-transport: $1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -20 "$2" | sed 's/^/  | /'; exit 1; }

[ -x "$bin" ] || die "$bin is not built (make bench-transport builds it)"
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, a veth pair, tc)"
if [ -z "${SR_BENCH_TRANSPORT_NETNS:-}" ]; then
	# The tls module is loaded from the host's namespace (a module is the kernel's, not a namespace's).
	[ -e /proc/net/tls_stat ] || modprobe tls 2>/dev/null
	exec unshare --net env SR_BENCH_TRANSPORT_NETNS=1 "$0" "$@"
fi
ip link set lo up || die "loopback in a network namespace of our own"
tmp=$(mktemp -d /tmp/sr-bench-transport.XXXXXX)
. tests/netns.sh
trap 'kill $(jobs -p) 2>/dev/null; netns_down; rm -rf "$tmp"' EXIT
echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/keys.psk"

transports="plain user"
if [ -e /proc/net/tls_stat ]; then
	transports="plain ktls user"
fi
echo "bench-transport: $mib MiB a stream, $runs rounds; $(nproc) CPU(s): $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); $(uname -r)"
[ -e /proc/net/tls_stat ] || echo "bench-transport: no kTLS in this kernel (modprobe tls: no module): user-space TLS only"
echo "bench-transport: load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
# What the cipher costs on this CPU, one core: no stream can beat it (both of its ends encrypt or decrypt).
if command -v openssl >/dev/null; then
	for c in aes-128-gcm chacha20-poly1305; do
		echo "bench-transport: openssl speed -evp $c, 16 KiB blocks, one thread: $(timeout 60 openssl speed -seconds 2 -bytes 16384 -evp $c 2>/dev/null | awk 'END { printf "%.0f MB/s", $NF / 1000 }')"
	done
fi

# link_up LINK: the addresses a receiver listens on and a sender connects to, in $addr_r, $addr_s.
link_up() {
	case $1 in
	lo) addr_r=127.0.0.1; addr_s=127.0.0.1; return 0 ;;
	esac
	netns_up "$tmp" || die "two network namespaces joined by a veth pair" "$tmp/net.out"
	tc qdisc del dev sr-near root 2>/dev/null
	case $1 in
	veth) ;;
	10g) tc qdisc add dev sr-near root tbf rate 10gbit burst 4mb latency 20ms ;;
	1g)  tc qdisc add dev sr-near root tbf rate 1gbit burst 512kb latency 20ms ;;
	*) die "link $1: lo, veth, 10g or 1g" ;;
	esac || die "$1: tc qdisc tbf on sr-near"
	addr_r=10.77.0.2; addr_s=10.77.0.2
}

recv_cmd() { if [ "$1" = lo ]; then env "${@:2}"; else far env "${@:2}"; fi; }

port=7700
# one LINK TRANSPORT: one stream; appends "LINK TRANSPORT MB/s send_cpu/GiB recv_cpu/GiB rss_kib" to $tmp/rows.
one() {
	local l=$1 t=$2 ktls=on want=plaintext rc src
	local -a opts=()
	port=$((port + 1))
	case $t in
	plain) want="plaintext TCP" ;;
	ktls)  opts=(--psk "$tmp/keys.psk"); want="kernel TLS (kTLS)" ;;
	user)  opts=(--psk "$tmp/keys.psk"); ktls=off; want="user-space TLS" ;;
	esac
	rm -f "$tmp/r.out" "$tmp/s.out"	# the last stream's "listening" is not this one's
	recv_cmd "$l" SR_KTLS=$ktls "$bin" recv "$addr_r:$port" "${opts[@]}" >"$tmp/r.out" 2>"$tmp/r.err" &
	local rpid=$!
	local until=$(( $(date +%s) + 60 ))
	while ! grep -q '^listening' "$tmp/r.out" && kill -0 $rpid 2>/dev/null && [ "$(date +%s)" -lt $until ]; do
		sleep 0.05
	done
	grep -q '^listening' "$tmp/r.out" ||
		die "$l $t: the receiver did not listen within 60 s ($(kill -0 $rpid 2>/dev/null && echo running || echo exited))" "$tmp/r.err"
	timeout 900 env SR_KTLS=$ktls "$bin" send "$addr_s:$port" "${opts[@]}" --mib "$mib" \
		>"$tmp/s.out" 2>"$tmp/s.err"; rc=$?
	wait $rpid; src=$?
	[ $rc -eq 0 ] || die "$l $t: the sender exited $rc (receiver $src)" "$tmp/s.err"
	[ $src -eq 0 ] || die "$l $t: the receiver exited $src" "$tmp/r.err"
	local r s
	r=$(grep '^transport=' "$tmp/r.out"); s=$(grep '^transport=' "$tmp/s.out")
	case "$r" in *"$want"*) ;; *) die "$l $t: the receiver's stream is not $want: $r" ;; esac
	case "$s" in *"$want"*) ;; *) die "$l $t: the sender's stream is not $want: $s" ;; esac
	kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
	[ "$(kv bytes "$r")" = "$(kv bytes "$s")" ] && [ "$(kv hash "$r")" = "$(kv hash "$s")" ] ||
		die "$l $t: the stream differs end to end: sent $(kv bytes "$s") bytes $(kv hash "$s"), received $(kv bytes "$r") bytes $(kv hash "$r")"
	local gib rate scpu rcpu rss
	gib=$(awk -v b="$(kv bytes "$r")" 'BEGIN { print b / 2^30 }')
	rate=$(kv mbps "$r")
	scpu=$(awk -v c="$(kv cpu "$s")" -v g=$gib 'BEGIN { printf "%.2f", c / g }')
	rcpu=$(awk -v c="$(kv cpu "$r")" -v g=$gib 'BEGIN { printf "%.2f", c / g }')
	rss=$(( $(kv maxrss_kib "$s") > $(kv maxrss_kib "$r") ? $(kv maxrss_kib "$s") : $(kv maxrss_kib "$r") ))
	printf '  %-4s %-5s %8s MB/s  CPU s/GiB send %5s recv %5s  peak RSS %6s KiB  load %s\n' \
		$l $t "$rate" $scpu $rcpu $rss "$(cut -d' ' -f1 /proc/loadavg)"
	echo "$l $t $rate $scpu $rcpu $rss" >>"$tmp/rows"
}

median() { awk -v l=$1 -v t=$2 -v c=$3 '$1 == l && $2 == t { print $c }' "$tmp/rows" | sort -g |
	awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

read -r -a order <<<"$transports"
n=${#order[@]}
for l in $links; do
	link_up $l
	echo "bench-transport: link $l"
	for r in $(seq 1 "$runs"); do
		for i in $(seq 0 $((n - 1))); do
			one $l "${order[$(( (i + r - 1) % n ))]}"
		done
	done
done
echo "bench-transport: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-transport: medians of $runs (MB/s, receiver's rate; CPU s/GiB send+recv; ratio to plaintext on the same link)"
for l in $links; do
	p=$(median $l plain 3)
	line="  $(printf '%-4s' $l)"
	for t in $transports; do
		m=$(median $l $t 3)
		line+=$(printf '  %s %7s (%s, %s+%s)' $t "$m" "$(awk -v a=$m -v b=$p 'BEGIN { printf "%.2f", a / b }')" \
			"$(median $l $t 4)" "$(median $l $t 5)")
	done
	echo "$line"
done
echo "bench-transport: peak RSS of an end: $(awk '{ if ($6 > m) m = $6 } END { print m }' "$tmp/rows") KiB"
