#!/usr/bin/env bash
# audit9: what an unauthenticated source learns from sr-restore --listen
# --insecure-plaintext (commit 9673174: "one answer for every cause but a
# fault in its own stream").  Needs real KVM (host_check must pass, else
# every source hears the fixed refusal before its first byte is read):
#   SR_BOX_IDLE=900 /work/boxrun SR_KVM=box tests/on-kvm.sh audit9-oracle tests/audit9/oracle.sh
# Each probe pair asks one host fact twice (fact true / fact false) with the
# same bytes; a pass is two answers the source cannot tell apart, in what it
# hears and in when it hears it.  Ends with "N passed, N failed".
set -u
O=${O:-build}
tmp=$(mktemp -d /tmp/audit9-oracle.XXXXXX)
export SR_RUN_DIR=$tmp/run
mkdir -p "$SR_RUN_DIR" && chmod 700 "$SR_RUN_DIR"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0 fail=0
$O/tests/mkimage -m 1 -v 1 -i 0 "$tmp/pr.img" >/dev/null &&
	$O/tests/imgedit region-size 4000 "$tmp/pr.img" "$tmp/big.img" || { echo "mkimage/imgedit failed"; exit 1; }

# probe IMAGE BYTES EOF(1|0) WAIT-S [SR-RESTORE ARGS...]: prints "heard=<answer> ms=<when>"
probe() {
	local img=$1 n=$2 eof=$3 wait_s=$4 port lp; shift 4
	port=$((20000 + RANDOM % 20000))
	: >"$tmp/l.log"
	env ${SR_PROBE_DEV:+SR_PROBE_DEV=$SR_PROBE_DEV} $O/sr-restore --listen 127.0.0.1:$port --insecure-plaintext --accept-timeout 60 "$@" >"$tmp/l.log" 2>&1 & lp=$!
	for _ in $(seq 300); do grep -q 'listening on' "$tmp/l.log" && break; kill -0 $lp 2>/dev/null || break; sleep 0.1; done
	python3 - "$port" "$img" "$n" "$eof" "$wait_s" <<'PY'
import socket, sys, time
port, img, n, eof, wait_s = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", float(sys.argv[5])
s = socket.create_connection(("127.0.0.1", port), timeout=30)
try:
    s.sendall(open(img, "rb").read()[:n])
    if eof:
        s.shutdown(socket.SHUT_WR)
except OSError:
    pass
t0 = time.monotonic()
s.settimeout(wait_s)
out = b""
try:
    while not out.endswith(b"\n"):
        b = s.recv(4096)
        if not b:
            break
        out += b
except OSError:
    pass
ms = int((time.monotonic() - t0) * 1000)
print("heard=%r ms=%d" % (out.decode(errors="replace").strip() or "(nothing)", ms if out else -1))
PY
	kill $lp 2>/dev/null; wait $lp 2>/dev/null
	sed 's/^/    receiver| /' "$tmp/l.log" | grep -v 'listening on' | tail -2 >&2
}

# same NAME A B: the two probes' answers (heard, and whether heard in the wait) must match.
same() {
	local name=$1 a=$2 b=$3
	local ha=${a%% ms=*} hb=${b%% ms=*} ta=${a##* ms=} tb=${b##* ms=}
	if [ "$ha" = "$hb" ] && { [ "$ta" = -1 ] && [ "$tb" = -1 ] || [ "$ta" != -1 ] && [ "$tb" != -1 ]; }; then
		pass=$((pass + 1)); echo "PASS $name: both hear $ha"
	else
		fail=$((fail + 1)); echo "FAIL $name: the source tells them apart:"
		echo "    first  (fact holds):     $a"; echo "    second (fact does not):  $b"
	fi
}

take_name() { exec 9>"$SR_RUN_DIR/synthetic.lock"; flock 9; }
free_name() { exec 9>&-; }

# 1. Is a domain named "synthetic" running here?  The image's header and DOMAIN
#    record (216 bytes) and a few page bytes, then EOF.
take_name; a=$(probe "$tmp/pr.img" 1000 1 10); free_name
b=$(probe "$tmp/pr.img" 1000 1 10)
same "name in use, truncated stream" "$a" "$b"
# 2. The same by timing: the prefix, no EOF, an answer within 3 s or not.
take_name; a=$(probe "$tmp/pr.img" 1000 0 3); free_name
b=$(probe "$tmp/pr.img" 1000 0 3)
same "name in use, by when the answer comes" "$a" "$b"
# 3. Is MemAvailable (here: --max-memory 64) under 4000 MiB?  Same bytes but the region's size.
a=$(probe "$tmp/big.img" 1000 1 10 --max-memory 64)
b=$(probe "$tmp/pr.img" 1000 1 10 --max-memory 64)
same "memory bound, truncated stream" "$a" "$b"
# 4. Can this host run guests at all?  A byte of the DOMAIN record flipped (the
#    source's own fault, found before any host check would be); the host made
#    unusable by pointing the probe at a device that is not KVM (SR_PROBE_DEV).
cp "$tmp/pr.img" "$tmp/bad-domain.img"
printf '\x5a' | dd of="$tmp/bad-domain.img" bs=1 seek=100 conv=notrunc status=none
a=$(SR_PROBE_DEV=/dev/null probe "$tmp/bad-domain.img" 1000 1 10)
b=$(probe "$tmp/bad-domain.img" 1000 1 10)
same "host can run guests, fault in the first record" "$a" "$b"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
