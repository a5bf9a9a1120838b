#!/usr/bin/env bash
# make sr-bench: natively when this host has /dev/kvm, else in the nested box.
set -eu
O=${1:-build}
if [ -c /dev/kvm ]; then
	O=$O exec tests/sr-bench-kvm.sh
fi
echo "sr-bench: no /dev/kvm here: running inside the nested KVM box (numbers are ~50x slower than native)"
exec tests/box.sh -- env O="$O" tests/sr-bench-kvm.sh
