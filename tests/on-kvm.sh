#!/usr/bin/env bash
# Runs a command on real KVM: natively when this host has /dev/kvm, else
# inside the nested box (tests/box.sh).  O (the build directory) goes along.
#   tests/on-kvm.sh WHAT COMMAND [ARGS...]     WHAT names it in the message
set -eu
what=$1
shift
export O=${O:-build}
if [ -c /dev/kvm ]; then
	exec "$@"
fi
echo "$what: no /dev/kvm here: running inside the nested KVM box (tests/box.sh; ~50x slower than native)"
exec tests/box.sh -- env O="$O" "$@"
