#!/usr/bin/env bash
# Installs the Debian packages sr needs that are missing.  Usage: deps.sh [build|box|bench|fuzz|all]
set -eu
build_pkgs="gcc make pkg-config libxxhash-dev liblz4-dev libgnutls28-dev libseccomp-dev libjansson-dev libcriterion-dev python3"
test_pkgs="man-db iproute2 openssh-server openssh-client openssl strace"	# man pages; migration tests (netns, tc, sshd; openssl makes TLS test certificates); strace: virtio-disk-save sees which files a restore opens
box_pkgs="qemu-system-x86 busybox-static cpio kmod e2fsprogs"	# kmod: depmod orders the guest's modules; e2fsprogs: mke2fs -d makes its root disk
bench_pkgs="gnuplot-nox bsdextrautils"
fuzz_pkgs="clang libclang-rt-dev"
case "${1:-all}" in
	build) want=$build_pkgs ;;
	box) want=$box_pkgs ;;
	bench) want=$bench_pkgs ;;
	fuzz) want=$fuzz_pkgs ;;
	all) want="$build_pkgs $test_pkgs $box_pkgs" ;;
	*) echo "usage: $0 [build|box|bench|fuzz|all]" >&2; exit 2 ;;
esac
missing=
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
sudo=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install:$missing" >&2; exit 2; }
	sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
