#!/usr/bin/env bash
# Soak on real KVM: one test guest saved and restored N times in a chain
# (save -> the domain ends -> restore -> it runs on -> save ...), the guest
# verifying its memory throughout; cold and live saves alternate.  A
# progress line every 50 cycles; at the end the guest must PASS.
#   SR_SOAK_CYCLES (1000)
set -u
O=${O:-build}
n=${SR_SOAK_CYCLES:-1000}
guest=$O/guest/sr-test-guest.bin
export SR_RUN_DIR=$(mktemp -d /tmp/sr-soak.XXXXXX)
tmp=$(mktemp -d /tmp/sr-soak-tmp.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$SR_RUN_DIR" "$tmp"' EXIT
up() { for _ in $(seq 1 400); do $O/sr-ctl status "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
ms() { date +%s%3N; }

$O/sr-run --name sk --memory 24 --vcpus 2 --rounds 0 --pages 64 --delay-us 2000 --quiet-guest \
	"$guest" >"$tmp/sk.out" 2>&1 &
pid=$!
up sk || { echo "soak: the guest did not start"; echo "0 passed, 1 failed"; exit 1; }
done_n=0 save_ms=0 restore_ms=0 bytes=0 t0=$(ms) why=
for i in $(seq 1 "$n"); do
	live=; [ $((i % 2)) -eq 0 ] && live=--live
	a=$(ms)
	$O/sr-save -q $live sk "$tmp/sk.img" 2>>"$tmp/sk.err" || { why="save $i failed: $(tail -1 "$tmp/sk.err")"; break; }
	# The saved domain's runner ends with 0.
	wait $pid; rc=$?
	[ $rc -eq 0 ] || { why="the runner saved in cycle $i exited $rc"; break; }
	b=$(ms)
	$O/sr-dump --verify "$tmp/sk.img" 2>>"$tmp/sk.err" || { why="image $i does not verify"; break; }
	bytes=$((bytes + $(stat -c %s "$tmp/sk.img")))
	c=$(ms)
	$O/sr-restore --name sk "$tmp/sk.img" >>"$tmp/sk.out" 2>&1 &
	pid=$!
	up sk || { why="restore $i did not come up: $(tail -2 "$tmp/sk.out")"; break; }
	save_ms=$((save_ms + b - a)) restore_ms=$((restore_ms + $(ms) - c))
	done_n=$i
	[ $((i % ${SR_SOAK_EVERY:-50})) -eq 0 ] && echo "soak: $i/$n cycles, $(( ($(ms) - t0) / 1000 )) s"
done
$O/sr-ctl finish sk >/dev/null 2>&1
wait $pid; rc=$?
pass=0 fail=0
if [ "$done_n" -eq "$n" ] && [ $rc -eq 0 ] && grep -q '^PASS' "$tmp/sk.out"; then
	pass=1
	echo "soak: $n save -> restore cycles (cold and live alternating), then the guest verified its memory: PASS"
else
	fail=1
	echo "FAIL soak: $done_n of $n cycles, last exit $rc${why:+: $why}"; grep -E 'FAIL|ASSERT' "$tmp/sk.out" | head -3
fi
[ "$done_n" -gt 0 ] && printf 'soak: cycles %d, wall %d s, mean save %d ms, mean restore-to-running %d ms, mean image %d KiB\n' \
	"$done_n" $(( ($(ms) - t0) / 1000 )) $((save_ms / done_n)) $((restore_ms / done_n)) $((bytes / done_n / 1024))
echo "soak: $pass passed, $fail failed"
[ $fail -eq 0 ]
