#!/usr/bin/env bash
# The README demo, on real KVM: start the self-checking test guest on two
# vCPUs, save it mid-workload, inspect the image, restore it, and let the
# guest prove that it carried on intact.
set -u
O=${O:-build}
guest=$O/guest/sr-test-guest.bin
export SR_RUN_DIR=$(mktemp -d /tmp/sr-demo.XXXXXX)
img=$SR_RUN_DIR/demo.img
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$SR_RUN_DIR"' EXIT
say() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
up() { for _ in $(seq 1 400); do $O/sr-ctl "$1" status >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

say "starting the test guest: 2 vCPUs, 64 MiB, rewriting its memory round after round"
$O/sr-run --name demo --vcpus 2 --memory 64 --rounds 0 --pages 512 --delay-us 400000 "$guest" &
up demo || { echo "demo: the guest did not come up"; exit 1; }
sleep 2
$O/sr-ctl demo status

say "sr-save demo $img   (the guest is paused, written out, and exits)"
$O/sr-save demo "$img" || exit 1
wait

say "sr-dump $img"
$O/sr-dump "$img" | sed -n '1,4p;/^ *[0-9]* *[0-9]* *HVM_CONTEXT/p;/VCPU_CONTEXT/p;/ END /p;/^$/,$p'

say "sr-restore $img   (a new VM is built from the image and resumed)"
$O/sr-restore -v --name demo "$img" > "$SR_RUN_DIR/restored.out" 2>&1 &
up demo || { cat "$SR_RUN_DIR/restored.out"; exit 1; }
sleep 2
$O/sr-ctl demo finish >/dev/null
wait
cat "$SR_RUN_DIR/restored.out"

say "what happened"
if grep -q '^PASS' "$SR_RUN_DIR/restored.out"; then
	echo "A running 2-vCPU guest was saved to a $(( $(stat -c %s "$img") >> 20 )) MiB image and its VM was torn down."
	echo "A brand-new VM was built from that image; the guest resumed mid-round and then checked"
	echo "every register, every page it had written, both timers and its clock: all intact (PASS)."
else
	echo "The restored guest did NOT pass its own checks: see the output above."
	exit 1
fi
