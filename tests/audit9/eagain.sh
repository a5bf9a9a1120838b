#!/usr/bin/env bash
# audit9: a host fault with errno EAGAIN (here: the reader's thread cannot
# start, a cgroup's pids.max) is taken for the source's idle timeout: the
# receiver's log says "no data for the idle timeout" and an unauthenticated
# source (--listen --insecure-plaintext) is told "gave up on the stream",
# a stream cause, not the one fixed answer.  Needs real KVM and cgroup v2:
#   SR_BOX_IDLE=900 /work/boxrun SR_KVM=box tests/on-kvm.sh audit9-eagain tests/audit9/eagain.sh
set -u
O=${O:-build}
tmp=$(mktemp -d /tmp/audit9-eagain.XXXXXX)
export SR_RUN_DIR=$tmp/run
mkdir -p "$SR_RUN_DIR" && chmod 700 "$SR_RUN_DIR"
cg=/sys/fs/cgroup/audit9-$$
trap 'kill $(jobs -p) 2>/dev/null; rmdir "$cg" 2>/dev/null; rm -rf "$tmp"' EXIT
$O/tests/mkimage -m 1 -v 1 -i 0 "$tmp/pr.img" >/dev/null || exit 1
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
grep -qw pids /sys/fs/cgroup/cgroup.controllers 2>/dev/null || { echo "no pids controller: skipped"; echo "0 passed, 0 failed"; exit 0; }
echo +pids >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
mkdir "$cg" || exit 1
port=$((20000 + RANDOM % 20000))
# main + guard run; the listener's thread has ended; the reader's is the third.
( echo $BASHPID >"$cg/cgroup.procs"; echo 2 >"$cg/pids.max"
  exec $O/sr-restore --listen 127.0.0.1:$port --insecure-plaintext --accept-timeout 60 ) >"$tmp/l.log" 2>&1 & lp=$!
for _ in $(seq 300); do grep -q 'listening on' "$tmp/l.log" && break; kill -0 $lp 2>/dev/null || break; sleep 0.1; done
said=$(timeout 60 python3 - "$port" "$tmp/pr.img" <<'PY'
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
print(out.decode(errors="replace").strip())
PY
)
wait $lp
echo "the source heard: $said"
sed 's/^/    receiver| /' "$tmp/l.log"
if [[ "$said" == "error refused by the receiver (an unauthenticated source is told no more"* ]] &&
   ! grep -q 'no data for the idle timeout' "$tmp/l.log"; then
	echo "PASS a host's EAGAIN is neither told as the source's silence nor logged as it"
	echo "1 passed, 0 failed"
else
	echo "FAIL a host's EAGAIN (thread limit) is told and logged as the stream's idle timeout"
	echo "0 passed, 1 failed"; exit 1
fi
