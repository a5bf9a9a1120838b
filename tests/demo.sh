#!/usr/bin/env bash
# make demo: natively when this host has /dev/kvm, else in the nested box.
set -eu
O=${1:-build}
if [ -c /dev/kvm ]; then
	O=$O exec tests/demo-kvm.sh
fi
echo "demo: this host has no /dev/kvm: running the demo inside the nested KVM box (tests/box.sh)"
exec tests/box.sh -- env O="$O" tests/demo-kvm.sh
