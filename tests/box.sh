#!/usr/bin/env bash
# The nested KVM box: runs a command inside a Linux VM that has /dev/kvm.
#
# QEMU's TCG emulates AMD SVM with -cpu max, so a Debian kernel booted there
# loads kvm-amd.  The host's root is shared read-only over 9p with a tmpfs
# overlay on top, the checkout read-write at its own path, so the command runs
# with the host's binaries.  Its output comes back on the console, its exit
# status through a file in the checkout.
#
#   tests/box.sh [--timeout SEC] [--mem MiB] [--smp N] -- COMMAND [ARGS...]
#
# A run ends in failure after --timeout seconds in all, or when the console
# stays silent for $SR_BOX_IDLE seconds (200): QEMU is killed and the run is
# retried $SR_BOX_RETRIES times (1), each time saying so loudly.  Rarely, the
# emulated box's own kernel locks up under nested SVM; that is what the retry
# is for.  A run that needed a retry says so in its last line, and writes the
# number of retries to $SR_BOX_RETRIES_OUT when that is set.
#   tests/box.sh --shell        interactive shell in the box
#   tests/box.sh --prepare      only fetch the kernel and build the initramfs
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${SR_BOX_CACHE:-$top/build/box}
timeout=${SR_BOX_TIMEOUT:-1200}
idle=${SR_BOX_IDLE:-200}		# seconds without console output that mean the box hung
retries=${SR_BOX_RETRIES:-1}
mem=${SR_BOX_MEM:-4096}
# One emulated CPU: with two, the box's kernel now and then deadlocks under
# nested SVM (soft lockups, both CPUs stuck); one costs only ~10% of the
# suite's time, since the L2 guests' vCPUs are threads either way.
smp=${SR_BOX_SMP:-1}
mode=run

die() { echo "box: $*" >&2; exit 125; }

while [ $# -gt 0 ]; do
	case "$1" in
	--timeout) timeout=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--shell) mode=shell; shift ;;
	--prepare) mode=prepare; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
[ "$mode" != run ] || [ $# -gt 0 ] || die "no command given (try --help)"

need() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install Debian package $2 (make deps)"
}
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need dpkg-deb dpkg
[ -x /bin/busybox ] || die "/bin/busybox not found: install Debian package busybox-static (make deps)"

mkdir -p "$cache"

# ---------------------------------------------------------------- kernel
kdir=$cache/kernel
if [ ! -f "$kdir/vmlinuz" ]; then
	kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
	pkg=$(kpkg)
	if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
		echo "box: apt does not know linux-image-amd64 yet: running apt-get update" >&2
		apt-get update -qq >/dev/null 2>&1 || true
		pkg=$(kpkg)
	fi
	[ -n "$pkg" ] || die "apt does not know linux-image-amd64: run 'apt-get update' first"
	echo "box: fetching $pkg (once, into $kdir)" >&2
	rm -rf "$cache/dl" "$kdir.tmp"
	mkdir -p "$cache/dl"
	(cd "$cache/dl" && apt-get download "$pkg" >/dev/null 2>"$cache/dl/log") ||
		die "apt-get download $pkg failed: $(tail -1 "$cache/dl/log")"
	dpkg-deb -x "$cache"/dl/"$pkg"_*.deb "$kdir.tmp"
	kver=$(ls "$kdir.tmp/lib/modules")
	mkdir -p "$kdir.tmp/box"
	cp "$kdir.tmp/boot/vmlinuz-$kver" "$kdir.tmp/vmlinuz"
	echo "$kver" > "$kdir.tmp/version"
	rm -rf "$kdir" "$cache/dl"
	mv "$kdir.tmp" "$kdir"
fi
kver=$(cat "$kdir/version")
moddir=$kdir/lib/modules/$kver/kernel

# ------------------------------------------------------------- initramfs
# Module load order: kvm-amd needs kvm and ccp, kvm needs irqbypass; then
# virtio-pci and 9p for the shares, overlay for the writable root; veth, tbf
# and netem for the migration tests' two network namespaces and their link; tls for
# kernel TLS (kTLS) under migration over TLS, with the AES-GCM it needs (the box has no
# modprobe to load them on demand: without them TLS_RX fails with ENOENT).
modules="virt/lib/irqbypass drivers/crypto/ccp/ccp arch/x86/kvm/kvm arch/x86/kvm/kvm-amd
drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev
drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci fs/netfs/netfs
fs/fscache/fscache net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/overlayfs/overlay
drivers/net/veth net/sched/sch_tbf net/sched/sch_netem crypto/cryptd crypto/crypto_simd
arch/x86/crypto/aesni-intel crypto/gf128mul crypto/ghash-generic crypto/ctr crypto/gcm net/tls/tls"

initrd=$cache/initrd.gz
if [ ! -f "$initrd" ] || [ "$0" -nt "$initrd" ]; then
	root=$cache/initramfs
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,mnt/lower,mnt/rw,mnt/root,lib/modules}
	cp /bin/busybox "$root/bin/busybox"
	for m in $modules; do
		cp "$moddir/$m.ko" "$root/lib/modules/" || die "module $m.ko missing from $kver"
	done
	echo "$modules" | tr ' ' '\n' | sed 's|.*/||' > "$root/lib/modules/order"
	cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# What udev would add: bash's process substitution needs /dev/fd.
ln -s /proc/self/fd /dev/fd; ln -s fd/0 /dev/stdin; ln -s fd/1 /dev/stdout; ln -s fd/2 /dev/stderr
for m in $(cat /lib/modules/order); do
	insmod /lib/modules/$m.ko 2>/dev/null || echo "box: insmod $m failed"
done
workdir=$(sed -n 's/.*sr.workdir=\([^ ]*\).*/\1/p' /proc/cmdline)
run=$(sed -n 's/.*sr.run=\([^ ]*\).*/\1/p' /proc/cmdline)
fail() { echo "box: $*"; echo o > /proc/sysrq-trigger; sleep 5; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /mnt/lower || fail "mounting the host root"
mount -t tmpfs -o size=75% tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /mnt/root || fail "overlay"
mount -t tmpfs tmpfs /mnt/root/tmp
mount -t tmpfs tmpfs /mnt/root/run
mkdir -p /mnt/root$workdir
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none work /mnt/root$workdir || fail "mounting $workdir"
mount --move /dev /mnt/root/dev
mount --move /proc /mnt/root/proc
mount --move /sys /mnt/root/sys
exec switch_root /mnt/root /bin/sh $run/run.sh
INIT
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
fi
[ "$mode" = prepare ] && exit 0

# --------------------------------------------------------------- the run
# The command script lives in the checkout so the box can read it, in a
# directory of this run's own (two boxes from one checkout must not swap
# scripts); the kernel command line tells init where.
rundir=$top/build/box/run-$$
[ "$cache" = "$top/build/box" ] || mkdir -p "$top/build/box"
rm -rf "$rundir"
mkdir -p "$rundir"
trap 'rm -rf "$rundir"' EXIT
status=$rundir/status
{
	echo "#!/bin/sh"
	echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb SR_IN_BOX=1"
	# Carry the caller's sr and build settings in.
	env | grep -E '^(SR_[A-Z_]*|O|V|CI)=' | grep -v '^SR_BOX' | sed "s/'/'\\\\''/g; s/^\([^=]*\)=\(.*\)$/export \1='\2'/" || true
	echo "cd '$top'"
	echo "ip link set lo up 2>/dev/null"
	echo "[ -c /dev/kvm ] || echo 'box: /dev/kvm did not appear (kvm-amd failed to load)'"
	if [ "$mode" = shell ]; then
		echo "setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'"
		echo "echo 0 > '$status'"
	else
		printf '%q ' "$@" > "$rundir/cmd"
		echo "sh -c \"\$(cat '$rundir/cmd')\" </dev/null"
		echo "echo \$? > '$status'"
	fi
	echo "sync"
	echo "echo 1 > /proc/sys/kernel/printk"
	echo "echo o > /proc/sysrq-trigger"
	# Nothing from 9p may run once power-off has begun: wait on builtins only.
	echo "while :; do :; done"
} > "$rundir/run.sh"

qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$smp" -m "$mem" -no-reboot
      -kernel "$kdir/vmlinuz" -initrd "$initrd"
      -append "console=ttyS0 quiet loglevel=3 panic=-1 sr.workdir=$top sr.run=$rundir"
      -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
      -virtfs "local,path=$top,mount_tag=work,security_model=none,multidevs=remap")

# Runs QEMU once; echoes its console, killing it on overall or idle timeout.
# Returns 0 when the command left an exit status, 124 when QEMU was killed.
run_once() {
	local fifo=$rundir/console pid line deadline killed=0
	rm -f "$fifo" "$status"
	mkfifo "$fifo"
	"${qemu[@]}" -display none -monitor none -serial stdio </dev/null >"$fifo" 2>&1 &
	pid=$!
	deadline=$(( $(date +%s) + timeout ))
	exec 3<"$fifo"
	while :; do
		if IFS= read -r -t "$idle" line <&3; then
			printf '%s\n' "$line"
			if [ "$(date +%s)" -ge "$deadline" ]; then
				echo "box: TIMEOUT: the command ran past ${timeout}s; QEMU killed" >&2
				killed=1
				break
			fi
		elif [ $? -gt 128 ]; then
			echo "box: HUNG: no console output for ${idle}s; QEMU killed" >&2
			killed=1
			break
		else
			[ -n "$line" ] && printf '%s\n' "$line"
			break			# QEMU closed the console: it exited
		fi
	done
	if [ $killed = 1 ]; then
		kill -TERM "$pid" 2>/dev/null
		sleep 2
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	exec 3<&-
	rm -f "$fifo"
	[ $killed = 0 ] || return 124
	return 0
}

start=$(date +%s%N)
if [ "$mode" = shell ]; then
	echo "box: interactive shell; 'exit' powers the box off (Ctrl-A X kills it)" >&2
	"${qemu[@]}" -nographic || true
	exit 0
fi
attempt=0
# The retry count, for the caller's summary (tests/on-kvm.sh).
note_retries() { [ -z "${SR_BOX_RETRIES_OUT:-}" ] || echo "$attempt" > "$SR_BOX_RETRIES_OUT"; }
while :; do
	rc=0
	run_once || rc=$?
	# A box that stopped without the command's status (its kernel panicked at
	# boot: "IO-APIC + timer doesn't work" on a loaded host) failed, not the command.
	if [ $rc = 0 ] && [ ! -s "$status" ]; then
		echo "box: the box stopped on its own, without the command's exit status" >&2
		rc=124
	fi
	[ $rc = 124 ] || break
	if [ $attempt -ge "$retries" ]; then
		echo "box: giving up after $((attempt + 1)) attempt(s): the command did not finish" >&2
		note_retries
		exit 124
	fi
	attempt=$((attempt + 1))
	echo "box: RETRYING the whole command (attempt $((attempt + 1)) of $((retries + 1))) after the box hung or stopped" >&2
done
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
note_retries
retried=
[ $attempt -eq 0 ] || retried=", on attempt $((attempt + 1)): the box hung or stopped and the whole command was RETRIED $attempt time(s)"
if [ ! -s "$status" ]; then
	echo "box: the command left no exit status (the box stopped on its own): treating as failure$retried" >&2
	exit 125
fi
st=$(cat "$status")
echo "box: command exited $st after ${elapsed} ms in the box$retried" >&2
exit "$st"
