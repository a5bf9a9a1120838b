#!/usr/bin/env bash
# Command-line behaviour of sr-dump on real images (output, exit codes, errors),
# and of sr-migrate's destinations before any domain is asked.
set -u
O=${O:-build}
dump=$O/sr-dump
mk=$O/tests/mkimage
tmp=$(mktemp -d)
trap '[ -n "${SR_KEEP:-}" ] || rm -rf "$tmp"' EXIT
pass=0 fail=0

ok()   { pass=$((pass + 1)); echo "ok   $1"; }
bad()  { fail=$((fail + 1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

[ -x "$mk" ] || make -s O="$O" "$mk" >/dev/null
"$mk" -m 4 -v 2 -i 2 -d 50 "$tmp/a.img" || { echo "mkimage failed"; echo "0 passed, 1 failed"; exit 1; }

"$dump" "$tmp/a.img" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "dump exits 0 on a good image" [ $rc -eq 0 ]
check "dump lists every record type" bash -c "grep -q DOMAIN '$tmp/out' && grep -q PAGE_DATA '$tmp/out' && grep -q HVM_CONTEXT '$tmp/out' && grep -q VCPU_CONTEXT '$tmp/out' && grep -q ITERATION '$tmp/out' && grep -q DEVICE '$tmp/out' && grep -q ' END ' '$tmp/out'"
check "dump summarises page batches" grep -Eq 'iter 0: [0-9]+ pages, [0-9]+ raw, [0-9]+ zero, [0-9]+ lz4' "$tmp/out"
check "dump prints per-iteration totals" grep -Eq '^ +2 +[0-9]+ +50 ' "$tmp/out"
check "dump reports the stream hash" grep -q 'stream hash: verified' "$tmp/out"
check "dump prints the compression ratio" grep -q 'ratio' "$tmp/out"

"$dump" --verify "$tmp/a.img" >"$tmp/out" 2>&1; rc=$?
check "verify is quiet and exits 0" bash -c "[ $rc -eq 0 ] && [ ! -s '$tmp/out' ]"

cat "$tmp/a.img" | "$dump" --verify - ; rc=$?
check "verify reads a pipe" [ $rc -eq 0 ]

"$dump" --json "$tmp/a.img" >"$tmp/j" 2>/dev/null
check "json is one valid document" python3 -c "import json,sys; d=json.load(open('$tmp/j')); assert d['verified'] and d['totals']['records']>5 and len(d['iterations'])==3"

"$dump" --type vcpu_context "$tmp/a.img" >"$tmp/out"
check "type filter" bash -c "[ \$(grep -c VCPU_CONTEXT '$tmp/out') -eq 2 ] && ! grep -q ' PAGE_DATA ' '$tmp/out'"

"$dump" --pfns --type PAGE_DATA "$tmp/a.img" >"$tmp/out"
check "pfn listing" bash -c "[ \$(grep -c ' pfn 0x' '$tmp/out') -ge 1024 ]"

# Corrupt: flip one byte in the middle.
cp "$tmp/a.img" "$tmp/c.img"
size=$(stat -c %s "$tmp/a.img")
printf '\xAA' | dd of="$tmp/c.img" bs=1 seek=$((size / 2)) conv=notrunc status=none
"$dump" --verify "$tmp/c.img" 2>"$tmp/err"; rc=$?
check "corrupt image exits 1" [ $rc -eq 1 ]
check "corrupt image: one line naming record and offset" bash -c "[ \$(wc -l < '$tmp/err') -eq 1 ] && grep -Eq 'record [0-9]+ (\(PAGE_DATA\) )?at offset [0-9]+: ' '$tmp/err'"
echo "     $(cat "$tmp/err")"

head -c $((size - 100)) "$tmp/a.img" > "$tmp/t.img"
"$dump" --verify "$tmp/t.img" 2>"$tmp/err"; rc=$?
check "truncated image exits 1" bash -c "[ $rc -eq 1 ] && grep -q truncated '$tmp/err'"
echo "     $(cat "$tmp/err")"

"$dump" "$tmp/c.img" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "dump of a corrupt image says NOT verified" bash -c "[ $rc -eq 1 ] && grep -q 'record' '$tmp/err'"

head -c 1000 /dev/urandom > "$tmp/r.img"
"$dump" --verify "$tmp/r.img" 2>"$tmp/err"; rc=$?
check "foreign file exits 1 naming the magic" bash -c "[ $rc -eq 1 ] && grep -q 'not an sr image' '$tmp/err'"
"$dump" --json "$tmp/r.img" >"$tmp/j" 2>/dev/null; rc=$?
check "json of a foreign file: exit 1 and one document with the error" bash -c "[ $rc -eq 1 ] && python3 -c \"import json; d = json.load(open('$tmp/j')); assert d['verified'] is False and d['error']['code'] == 'MAGIC' and d['error']['reason'] == 'not an sr image' and d['header'] is None\""

"$dump" --verify "$tmp/nonexistent" 2>/dev/null; rc=$?
check "missing file exits 2" [ $rc -eq 2 ]
# --json: one document for every outcome, each checked against docs/control.md's tables.
"$dump" --json "$tmp/nonexistent" >"$tmp/j" 2>/dev/null; rc=$?
check "json of a missing file: exit 2 and an error document (code IO)" bash -c "[ $rc -eq 2 ] && python3 tests/ctl_client.py check dump '$tmp/j' && python3 -c \"import json; d = json.load(open('$tmp/j')); assert d['error']['code'] == 'IO' and d['schema'] == 1\""
for img in a c t r; do
	"$dump" --json --pfns "$tmp/$img.img" >"$tmp/j" 2>/dev/null
	check "json of $img.img: the fields docs/control.md lists" python3 tests/ctl_client.py check dump "$tmp/j"
done
"$dump" --json "$tmp/a.img" >"$tmp/j" 2>/dev/null
check "json: the domain, its vCPUs and devices as fields" python3 -c "import json; d = json.load(open('$tmp/j')); assert d['domain']['vcpus'] == 2 == len(d['vcpus']) and 'REGS' in d['vcpus'][0]['blocks'] and d['devices'][0]['name'] == 'serial8250' and d['domain']['memory_bytes'] == 4 << 20"
"$dump" --json "$tmp/t.img" >"$tmp/j" 2>/dev/null
check "json of a truncated image: code TRUNCATED" python3 -c "import json; d = json.load(open('$tmp/j')); assert d['error']['code'] == 'TRUNCATED' and not d['verified']"
"$dump" --bogus 2>/dev/null; rc=$?
check "bad option exits 2" [ $rc -eq 2 ]
"$dump" --type NOPE "$tmp/a.img" 2>/dev/null; rc=$?
check "unknown type name exits 2" [ $rc -eq 2 ]
"$dump" --help | grep -q -- '--verify'
check "--help documents options" [ $? -eq 0 ]

# Virtio devices and disks (docs/format.md §3.8, §6.1): sr-dump shows their state,
# and --verify refuses each broken one naming the record, the body byte and the field.
"$mk" -m 1 -v 1 -i 0 -b 1 -g 1 "$tmp/dev.img" || bad "mkimage -b 1 -g 1"
"$dump" "$tmp/dev.img" >"$tmp/out" 2>&1; rc=$?
check "dump of a disk and virtio devices: exit 0, each record with its state" bash -c "[ $rc -eq 0 ] &&
	grep -Eq '^ +6 +[0-9]+  DISK +141  disk 0 \"/var/lib/sr/disk0.img\", 67108864 bytes, writable, cache writeback, sampled hash 0x[0-9a-f]{16}\$' '$tmp/out' &&
	grep -Eq '^ +sample: 64 blocks of 4096 bytes\$' '$tmp/out' &&
	grep -Eq '^ +7 +[0-9]+  DEVICE +312  virtio-blk v1.0 instance 0, 272 bytes: PCI slot 2, status 0x0f, 1 queue, blk\$' '$tmp/out' &&
	grep -Eq '^ +queue 0: size 256/256 ready, desc 0x10000 avail 0x11000 used 0x12000, avail idx 1000, used idx 1000, signalled 999\$' '$tmp/out' &&
	grep -Eq '^ +blk: 131072 sectors on disk 0, serial \"sr-disk0\"\$' '$tmp/out' &&
	grep -Eq '^ +8 +[0-9]+  DEVICE +[0-9]+  virtio-rng v1.0 instance 0, [0-9]+ bytes: PCI slot 3, status 0x0f, 1 queue\$' '$tmp/out' &&
	grep -Eq '^ +features 0x0000000120000000 offered, 0x0000000120000000 accepted; isr 0x1, config generation 0, queue_select 0, MSI-X enabled\$' '$tmp/out'"
"$dump" --json "$tmp/dev.img" >"$tmp/j" 2>/dev/null
check "json: the disk's identity and the devices' queues, PCI and blk state" python3 -c "
import json
d = json.load(open('$tmp/j'))
r = d['records']
disk = [x['disk'] for x in r if x['type'] == 'DISK']
dev = [x['virtio'] for x in r if x['type'] == 'DEVICE' and 'virtio' in x]
assert d['verified'] and len(disk) == 1 and len(dev) == 2, (len(disk), len(dev))
assert disk[0]['path'] == '/var/lib/sr/disk0.img' and disk[0]['id']['size'] == 64 << 20 and disk[0]['snapshot'] is None
assert disk[0]['id']['hash_blocks'] == 64 and disk[0]['read_only'] is False and disk[0]['cache'] == 'writeback'
blk, rng = dev
assert blk['device_id'] == 2 and blk['version'] == '1.0' and blk['status'] == 15 and blk['pci']['slot'] == 2
assert blk['queues'][0]['size'] == 256 and blk['queues'][0]['ready'] and blk['queues'][0]['last_used_idx'] == 1000
assert blk['blk'] == {'capacity': 131072, 'disk': 0, 'serial': 'sr-disk0', 'writeback': 0} and blk['msix'] is None
assert rng['device_id'] == 4 and 'blk' not in rng and rng['queues'][0]['desc'] == 0x13000
assert rng['msix'] == {'table_size': 2, 'enabled': True, 'masked': False, 'pending': 2} and rng['queues'][0]['msix_vector'] == 1
"
"$dump" --type DISK "$tmp/dev.img" >"$tmp/out"
check "type filter DISK" bash -c "[ \$(grep -c ' DISK ' '$tmp/out') -eq 1 ] && ! grep -q ' DEVICE ' '$tmp/out'"
# A checkpoint's disk snapshot (sr-save -c --disk-snapshot, §3.8.3): sr-dump names it, its method and time.
"$mk" -m 1 -v 1 -i 0 -b 1 -g 1 -S "$tmp/snap.img" || bad "mkimage -S"
"$dump" "$tmp/snap.img" >"$tmp/out" 2>&1; rc=$?
check "dump of a disk snapshot: the DISK says which method, where and how long it held the guest" bash -c "[ $rc -eq 0 ] &&
	grep -Eq '^ +6 +[0-9]+  DISK +166  disk 0 \"/var/lib/sr/disk0.img\", 67108864 bytes, writable, cache writeback, sampled hash 0x[0-9a-f]{16}, snapshot by reflink\$' '$tmp/out' &&
	grep -Eq '^ +snapshot \"/var/lib/sr/ckpt.sr.disk0\" by reflink in 1.235 ms, inode 1100\$' '$tmp/out'"
"$dump" --json "$tmp/snap.img" 2>/dev/null | python3 -c "
import json, sys
r = json.load(sys.stdin)['records']
s = [x['disk'] for x in r if x['type'] == 'DISK'][0]['snapshot']
assert s['path'] == '/var/lib/sr/ckpt.sr.disk0' and s['method'] == 'reflink' and s['ns'] == 1234567, s
assert s['id']['ino'] == 1100 and s['id']['hash_blocks'] == 64, s
"
check "json: the snapshot's path, method, time and identity" [ $? -eq 0 ]
while IFS='|' read -r brk rec what; do
	"$mk" -m 1 -v 1 -i 0 -b 1 -g 1 -B "$brk" "$tmp/b.img" || bad "mkimage -B $brk"
	"$dump" --verify "$tmp/b.img" >"$tmp/out" 2>"$tmp/err"; rc=$?
	check "verify refuses a device with $brk: exit 1, one line naming record, byte and field" bash -c "[ $rc -eq 1 ] && [ ! -s '$tmp/out' ] && [ \$(wc -l < '$tmp/err') -eq 1 ] && grep -Eq ': record $rec at offset [0-9]+: ' '$tmp/err' && grep -qF -- '$what' '$tmp/err'"
	[ "$brk" = ring-outside ] && echo "     $(cat "$tmp/err")"
	# a full dump (not --verify) reads through the same validator
	"$dump" "$tmp/b.img" >/dev/null 2>"$tmp/err2"; rc=$?
	check "dump (not --verify) refuses $brk alike" bash -c "[ $rc -eq 1 ] && cmp -s '$tmp/err' '$tmp/err2'"
done <<'CASES'
ring-outside|7 \(DEVICE\)|virtio-blk 0: body byte 120: queue 0 used ring 0xffc00+2054 is outside guest RAM
qsize3|7 \(DEVICE\)|virtio-blk 0: body byte 128: queue 0 size 3 is not a power of two in 1..256
index|7 \(DEVICE\)|virtio-blk 0: body byte 132: queue 0 last_avail_idx 1257 is 257 entries past last_used_idx 1000, beyond the ring of 256
unaligned|7 \(DEVICE\)|body byte 104: queue 0 descriptor table at 0x10008 is not aligned to 16
inflight|7 \(DEVICE\)|queue 0 has 1 requests in flight (last_avail_idx 1001, last_used_idx 1000): not drained
feature|7 \(DEVICE\)|body byte 72: driver_features bit 28 was not offered
unknown-bit|7 \(DEVICE\)|body byte 64: device_features bit 50 is not a virtio-blk feature
slot|8 \(DEVICE\)|duplicate: virtio-rng 0: body byte 187: PCI slot 3 taken by an earlier device
no-disk|7 \(DEVICE\)|body byte 216: disk 9: no DISK record before this device
version|7 \(DEVICE\)|unsupported version: virtio-blk 0: body byte 32: state version 2.0, this reader reads 1.x
section|7 \(DEVICE\)|body byte 312: section 3: unknown mandatory kind 0x777
disk-path|6 \(DISK\)|disk 0: body byte 120: path is not absolute
snap-ro|6 \(DISK\)|disk 0: body byte 4: SNAPSHOT on a read-only disk
snap-size|6 \(DISK\)|disk 0: body byte 72: snap_id size 67104768, the disk
snap-hash|6 \(DISK\)|disk 0: body byte 104: snap_id hash 0x
snap-sample|6 \(DISK\)|disk 0: body byte 112: snap_id hashed as 32 x 4096 bytes, id as 64 x 4096
snap-self|6 \(DISK\)|disk 0: body byte 141: snap_path is the disk
CASES
"$mk" -m 1 -v 1 -i 0 -b 1 -g 1 -B optional "$tmp/b.img" || bad "mkimage -B optional"
"$dump" "$tmp/b.img" >"$tmp/out" 2>&1; rc=$?
check "an unknown optional device section is skipped, and said so" bash -c "[ $rc -eq 0 ] && grep -Eq '^ +1 optional section skipped \(newer writer\)\$' '$tmp/out'"

# Option bounds, checked before any domain is asked: a stall timeout of 0 would
# cancel every save at once, a bandwidth of 0 would never send.
for bad_opt in "--stall-timeout 0" "--stall-timeout 3601" "--bandwidth 0"; do
	$O/sr-save $bad_opt dom "$tmp/file" >"$tmp/o.out" 2>&1; rc=$?
	check "sr-save $bad_opt is refused (exit 2, naming the range)" bash -c "[ $rc -eq 2 ] && grep -q -- '${bad_opt% *}: \"${bad_opt#* }\" is not a number in 1\.\.' '$tmp/o.out' && [ ! -e '$tmp/file' ]"
done

# A fake domain "dom" for what follows: it answers status, refuses any save,
# and logs every request (the first word) in $tmp/run/dom.log.
export SR_RUN_DIR=$tmp/run
mkdir -p -m 0700 "$SR_RUN_DIR"
# In a subshell: not a job of this shell, so the bare waits below do not wait for it.
( python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
while True:
	c, _ = s.accept(); req = c.recv(1024)
	open(sys.argv[2], "a").write(req.split()[0].decode() + "\n")
	c.sendall(b"ok name=dom state=running\n" if req.startswith(b"status") else
		  b"error the fake domain saves nothing\n")
	c.close()
' "$SR_RUN_DIR/dom.sock" "$SR_RUN_DIR/dom.log" & echo $! >"$tmp/fake_dom.pid" )
trap 'kill "$(cat "$tmp/fake_dom.pid")" 2>/dev/null; [ -n "${SR_KEEP:-}" ] || rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -S "$SR_RUN_DIR/dom.sock" ] && break; sleep 0.05; done

# Checks first: a destination that does not parse, a domain that is not
# there, a FILE that cannot be: refused (exit 2) before any connection, and
# before the domain is asked to save (its log shows only "status").
mig=$O/sr-migrate
: >"$SR_RUN_DIR/dom.log"
"$mig" dom tcp:nohost >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate: tcp: without a port is a usage error (exit 2), the domain not asked" bash -c "[ $rc -eq 2 ] && grep -q 'is not HOST:PORT' '$tmp/m.out' && grep -q \"Try 'sr-migrate --help'\" '$tmp/m.out' && [ ! -s '$SR_RUN_DIR/dom.log' ]"
# A listener that writes out what its first connection says: ours, if sr-migrate never connected.
python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); open(sys.argv[1], "wb").write(c.recv(64)); c.close()
' "$tmp/first" >"$tmp/port" &
first_pid=$!
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
"$mig" nosuch "tcp:127.0.0.1:$(cat "$tmp/port")" >"$tmp/m.out" 2>&1; rc=$?
echo sentinel >/dev/tcp/127.0.0.1/"$(cat "$tmp/port")"; wait $first_pid
check "sr-migrate nosuch tcp:...: no such domain (exit 2) before connecting" bash -c "[ $rc -eq 2 ] && grep -q 'no domain \"nosuch\".*nothing was sent to 127.0.0.1:' '$tmp/m.out' && [ \"\$(cat '$tmp/first')\" = sentinel ]"
mkdir "$tmp/adir"
$O/sr-save dom "$tmp/adir" >"$tmp/m.out" 2>&1; rc=$?
check "sr-save dom DIR: refused (exit 2) before the domain is asked to save" bash -c "[ $rc -eq 2 ] && grep -q 'adir: Is a directory' '$tmp/m.out' && [ \"\$(cat '$SR_RUN_DIR/dom.log')\" = status ]"
: >"$SR_RUN_DIR/dom.log"
$O/sr-save dom /proc/sr-test.img >"$tmp/m.out" 2>&1; rc=$?
check "sr-save dom FILE in a directory nothing can be created in: refused (exit 2) before the save" bash -c "[ $rc -eq 2 ] && grep -q '^sr-save: /proc/sr-test.img' '$tmp/m.out' && [ \"\$(cat '$SR_RUN_DIR/dom.log')\" = status ]"
$O/sr-save nosuch "$tmp/n.img" >"$tmp/m.out" 2>&1; rc=$?
check "sr-save nosuch FILE: no such domain (exit 2), nothing written" bash -c "[ $rc -eq 2 ] && grep -q 'no domain \"nosuch\".*nothing was written' '$tmp/m.out' && [ -z \"\$(ls '$tmp' | grep '^n\.img')\" ]"

# sr-migrate and sr-save's network destinations, before the domain is asked to save.
"$mig" --help | grep -q -- '--bandwidth'
check "sr-migrate --help documents --bandwidth" [ $? -eq 0 ]
"$mig" dom "$tmp/file" >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate refuses a file destination (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'DEST is tcp:HOST:PORT or ssh:' '$tmp/m.out'"
$O/sr-save -c dom tcp:127.0.0.1:9 >"$tmp/m.out" 2>&1; rc=$?
check "sr-save -c to tcp: is refused: both would run (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'here as well as there' '$tmp/m.out'"
"$mig" --name 'a;b' dom ssh:host >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate refuses a --name the remote shell would see (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'bad domain name' '$tmp/m.out'"
# A port nobody listens on: refused at once, before the domain is asked.
"$mig" --connect-timeout 2 dom tcp:127.0.0.1:1 >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate: connection refused (exit 1, domain untouched)" bash -c "[ $rc -eq 1 ] && grep -q 'connecting to 127.0.0.1:1: Connection refused; the domain was not touched' '$tmp/m.out'"
"$mig" dom "tcp:[::1]:1" >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate: an IPv6 literal in brackets is understood" bash -c "[ $rc -eq 1 ] && grep -q 'connecting to \[::1\]:1' '$tmp/m.out'"

"$mig" dom ssh:-oProxyCommand=x >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate refuses an ssh: host ssh would take for an option (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'not a \[USER@\]HOST' '$tmp/m.out'"
host_bad=0
for h in 'a b' 'h%h' 'x;y' "q'q" 'h$x' 'h`x`' $'h\nx' 'h/x' 'h\x' 'h*' 'a@-oProxyCommand=x' '@host' 'a@'; do
	"$mig" dom "ssh:$h" >"$tmp/m.out" 2>&1; rc=$?
	{ [ $rc -eq 2 ] && grep -q 'not a \[USER@\]HOST' "$tmp/m.out"; } || { host_bad=$((host_bad + 1)); echo "     ssh:$(printf %q "$h"): exit $rc"; }
done
SR_RUN_DIR=$tmp "$mig" nodomain ssh:me_1@host-1.example.org >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate ssh: takes only letters, digits and ._-@:[] in [USER@]HOST ($host_bad of 13 others, a@-x, @host and a@ among them, not refused; a plain user@host passes: exit $rc)" \
	bash -c "[ $host_bad -eq 0 ] && [ $rc -eq 2 ] && grep -q 'no domain \"nodomain\"' '$tmp/m.out'"
SR_RUN_DIR=$tmp "$mig" --ssh "touch $tmp/ssh-ran; ssh" nodomain ssh:localhost >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate ssh: starts nothing for a domain that is not here (exit 2)" bash -c "[ $rc -eq 2 ] && [ ! -e '$tmp/ssh-ran' ] && grep -q 'no domain \"nodomain\"' '$tmp/m.out' && grep -q 'nothing was started' '$tmp/m.out'"
# --remote-disk: each FILE reaches the remote sr-restore as --disk FILE, one word
# whatever the remote shell sees in it (a space, ;, (...), *, &, |, <, #, ~, [..], UTF-8);
# the bytes some login shell reads inside quotes (' " \ ` $ ! and controls) are refused.
# A fake ssh runs the remote command line through sh, as sshd's shell would;
# a fake sr-restore writes the words it got.
printf '#!/bin/sh\nwhile [ "$1" != -- ]; do shift; done\nshift 2\nexec sh -c "$1"\n' >"$tmp/fake-ssh"
printf '#!/bin/sh\nprintf "%%s\\n" "$@" >"%s/remote-args.tmp" && mv "%s/remote-args.tmp" "%s/remote-args"\n' "$tmp" "$tmp" "$tmp" >"$tmp/fake-restore"
chmod +x "$tmp/fake-ssh" "$tmp/fake-restore"
d0="$tmp/my disk (1);*&|<>.raw,ro" d1='rel/é[x]{y}#~%^.raw,cache=none'
(mig_abs=$(realpath "$mig") && cd "$tmp" && "$mig_abs" --ssh "$tmp/fake-ssh" --remote "$tmp/fake-restore" --name dom2 \
	--remote-disk "$d0" --remote-disk "$d1" dom ssh:somehost >"$tmp/m.out" 2>&1); rc=$?
for _ in $(seq 100); do [ -e "$tmp/remote-args" ] && break; sleep 0.05; done
printf '%s\n' --migrate-receive --name dom2 --disk "$d0" --disk "$d1" - >"$tmp/remote-want"
check "sr-migrate --remote-disk: the remote sr-restore gets --disk FILE for each, quoted for its shell (a space, ;, (), *, &, |, <>, [], {}, #, ~, é reach it as they are)" bash -c "[ $rc -eq 1 ] && cmp -s '$tmp/remote-want' '$tmp/remote-args'"
cmp -s "$tmp/remote-want" "$tmp/remote-args" || { cat "$tmp/m.out"; diff "$tmp/remote-want" "$tmp/remote-args"; } 2>&1 | sed 's/^/     /'
rd_bad=0
for c in "'" '"' '\\' '`' '$' '!' $'\n' $'\t' $'\x1b'; do
	SR_RUN_DIR=$tmp "$mig" --ssh "touch $tmp/ssh-ran; ssh" --remote-disk "$tmp/a${c}b.raw" dom ssh:somehost >"$tmp/m.out" 2>&1; rc=$?
	{ [ $rc -eq 2 ] && grep -q -- '--remote-disk: a FILE for the remote shell may not hold' "$tmp/m.out" && [ ! -e "$tmp/ssh-ran" ]; } ||
		{ rd_bad=$((rd_bad + 1)); echo "     --remote-disk with $(printf %q "$c"): exit $rc"; }
done
check "sr-migrate --remote-disk refuses ' \" \\ \` \$ ! newline, tab and ESC in FILE (exit 2, before ssh): $rd_bad not refused" [ $rd_bad -eq 0 ]
"$mig" --remote-disk "$tmp/x.raw" dom tcp:127.0.0.1:9 >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate --remote-disk with tcp: is refused (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q -- '--remote-disk is for ssh:' '$tmp/m.out'"
"$mig" --remote-disk "$tmp/x.raw,rw" dom ssh:somehost >"$tmp/m.out" 2>&1; rc=$?
check "sr-migrate --remote-disk FILE,rw is refused (exit 2) before ssh starts" bash -c "[ $rc -eq 2 ] && grep -q -- '--remote-disk takes FILE\[,ro\]' '$tmp/m.out'"

# Test hooks are in the tools the tests run, never in the installed ones (make release):
# against a fake runner, a save's commit step announces SR_TEST_PAUSE_AT=commit only in
# the test build.
hook_said() {	# tool: prints what the tool said on stderr
	mkdir -p "$tmp/run"
	python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept(); c.recv(1024); c.sendall(b"ok name=fake\n"); c.close()	# sr-save asks status first
c, _ = s.accept(); c.recvmsg(1024, 64); c.sendall(b"prepared test\n")
w = c.recv(64); c.sendall(b"ok saved\n" if w == b"commit\n" else b"error " + w + b"\n"); c.close()
' "$tmp/run/fake.sock" &
	for _ in $(seq 1 100); do [ -S "$tmp/run/fake.sock" ] && break; sleep 0.1; done
	SR_RUN_DIR=$tmp/run SR_TEST_PAUSE_AT=commit SR_TEST_PAUSE_MS=0 "$1" -q fake "$tmp/hook.img" 2>&1 || echo "exit $?"
	wait; rm -f "$tmp/run/fake.sock" "$tmp/hook.img"
}
said_test=$(hook_said $O/sr-save); said_rel=$(hook_said $O/release/sr-save)
check "test hooks: the tests' sr-save honours SR_TEST_PAUSE_AT ('$said_test'), the installed build does not ('$said_rel')" \
	bash -c "[ '$said_test' = 'sr test hook: at commit' ] && [ -z '$said_rel' ]"

# Strings from an image or a peer reach the terminal escaped (control bytes, non-UTF-8).
python3 - "$tmp/a.img" "$tmp/esc.img" <<'PY'
import ctypes, struct, sys
x = ctypes.CDLL("libxxhash.so.0"); x.XXH3_64bits.restype = ctypes.c_uint64
b = bytearray(open(sys.argv[1], "rb").read())
b[32:56] = b"sr\x1b[2J\xff\xc3\xa9".ljust(24, b"\0")		# creator: a terminal escape, a bad byte, an e-acute
b[56:64] = struct.pack("<Q", x.XXH3_64bits(bytes(b[:56]), 56))
open(sys.argv[2], "wb").write(b)
PY
"$dump" "$tmp/esc.img" >"$tmp/out" 2>&1
check "sr-dump escapes the image's creator" bash -c "grep -qF 'by \"sr\\x1b[2J\\xffé\"' '$tmp/out' && ! grep -q \$'\\x1b' '$tmp/out'"
# (bounded: a receiver that never hears from sr-migrate must not hang the run)
timeout 60 python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.sendall(b"error \x1b]0;owned\x07 red \x9b31m\n"); c.recv(1 << 20); c.close()
' >"$tmp/port" &
epid=$!
for _ in $(seq 1 300); do [ -s "$tmp/port" ] && break; sleep 0.1; done
"$mig" dom "tcp:127.0.0.1:$(cat "$tmp/port")" >"$tmp/m.out" 2>&1; wait $epid
check "sr-migrate escapes the receiver's error text" bash -c "grep -qF 'the receiver: \\x1b]0;owned\\x07 red \\x9b31m' '$tmp/m.out' && ! grep -q \$'\\x1b\\|\\x07' '$tmp/m.out'"
# Characters that print as nothing or turn the text around them (bidi marks, joiners, soft
# hyphen, fillers) are escaped too, while a letter such as e-acute is shown as it is.
rm -f "$tmp/port"
timeout 60 python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); print(s.getsockname()[1], flush=True)
t = "a\u061cb\u2060c\u2061d\u2062e\u2063f\u2064g\u00adh\u180ei\u3164j\u00e9"
c, _ = s.accept(); c.sendall(b"error " + t.encode() + b"\n"); c.recv(1 << 20); c.close()
' >"$tmp/port" &
epid=$!
for _ in $(seq 1 300); do [ -s "$tmp/port" ] && break; sleep 0.1; done
"$mig" dom "tcp:127.0.0.1:$(cat "$tmp/port")" >"$tmp/m.out" 2>&1; wait $epid
check "sr-migrate escapes invisible characters (U+061C, U+2060-U+2064, U+00AD, U+180E, U+3164)" bash -c "grep -qF 'the receiver: a\\xd8\\x9cb\\xe2\\x81\\xa0c\\xe2\\x81\\xa1d\\xe2\\x81\\xa2e\\xe2\\x81\\xa3f\\xe2\\x81\\xa4g\\xc2\\xadh\\xe1\\xa0\\x8ei\\xe3\\x85\\xa4jé' '$tmp/m.out'"

# A migration's receiver tells its source a class of cause, never this host's
# facts: here (no KVM that runs sr's guests) the host check refuses, on a KVM
# host the synthetic vCPU's unknown MSRs do; either way the reason (kvm_pvm,
# the MSR indices) stays in the receiver's log.  The box's kvm.sh
# peer-refusals covers the other classes.
"$O/sr-restore" --migrate-receive - <"$tmp/a.img" >"$tmp/pr.ans" 2>"$tmp/pr.log"; rc=$?
said=$(cat "$tmp/pr.ans")
pr_ok=false
if [ $rc -eq 3 ]; then
	[ "$said" = "error refused by the receiver: its host cannot run guests now (the receiver's log says why)" ] &&
		grep -q '/dev/kvm' "$tmp/pr.log" && pr_ok=true
elif [ $rc -eq 2 ]; then
	[ "$said" = "error refused by the receiver: its KVM cannot run this guest's CPU state (the receiver's log says what it lacks)" ] &&
		grep -q 'does not know: 0x' "$tmp/pr.log" && pr_ok=true
fi
check "sr-restore --migrate-receive: the source hears a class, the log the reason (exit $rc, '$said')" $pr_ok
# With --log the receiver says nothing on stderr (under ssh: the source's), all in the log.
"$O/sr-restore" --migrate-receive --log "$tmp/pr2.log" - <"$tmp/a.img" >"$tmp/pr2.ans" 2>"$tmp/pr2.err"; rc=$?
check "sr-restore --migrate-receive --log: nothing on stderr, the reason in the log, the class on stdout (exit $rc)" \
	bash -c "[ $rc -ne 0 ] && [ ! -s '$tmp/pr2.err' ] && grep -q '^error refused by the receiver' '$tmp/pr2.ans' && grep -q 'sr-restore' '$tmp/pr2.log'"

# sr-restore --listen: addresses, TLS, and connections that must not end it.
# Without KVM here the listener stops at the host check once a source has
# authenticated (exit 3, its reason answered over TLS); on a KVM host the
# stream that never comes ends it.  Either way: only an authenticated
# source hears anything.
rst=$O/sr-restore
port=$((20000 + RANDOM % 20000))
lpid=
# Starts a listener (its output in $tmp/l.out) and waits for its "listening on" line.
listener() {
	port=$((port + 1))
	: >"$tmp/l.out"		# by us, now: the last listener's "listening on" is not this one's
	"$rst" "$@" >"$tmp/l.out" 2>&1 &
	lpid=$!
	for _ in $(seq 400); do
		grep -q 'listening on' "$tmp/l.out" && return 0
		kill -0 $lpid 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
# Waits (20 s at most) for the listener to end; its status, or 124 still running (then killed).
listener_end() {
	for _ in $(seq 400); do
		kill -0 $lpid 2>/dev/null || { wait $lpid; return $?; }
		sleep 0.05
	done
	kill $lpid; wait $lpid 2>/dev/null
	return 124
}
alive() { kill -0 $lpid 2>/dev/null; }
rss_kib() { awk '/^VmRSS/ { print $2 }' /proc/$lpid/status; }

listener --listen 127.0.0.1:$((port + 1))
check "listen: ADDR:PORT binds that address" grep -q "listening on 127.0.0.1:$port (plaintext" "$tmp/l.out"
kill $lpid; wait $lpid 2>/dev/null
listener --listen "[::1]:$((port + 1))"
check "listen: [V6]:PORT binds that IPv6 address" grep -q "listening on \[::1\]:$port " "$tmp/l.out"
kill $lpid; wait $lpid 2>/dev/null
listener --listen $((port + 1))
check "listen: PORT alone without TLS is loopback only" grep -q "listening on 127.0.0.1:$port " "$tmp/l.out"
kill $lpid; wait $lpid 2>/dev/null
for spec in "::1:80" "[::1]80" "host:" "99999" "0" "a:b:c" "[::1:80"; do
	timeout 10 "$rst" --listen "$spec" >"$tmp/l.out" 2>&1; rc=$?
	check "listen: \"$spec\" is a usage error (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'is not \[ADDR:\]PORT' '$tmp/l.out'"
done
timeout 10 "$rst" --listen 0.0.0.0:$((port + 1)) >"$tmp/l.out" 2>&1; rc=$?
check "listen: plaintext on a non-loopback address is refused (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q '0.0.0.0 is not a loopback address: without TLS' '$tmp/l.out'"
listener --listen 0.0.0.0:$((port + 1)) --insecure-plaintext
check "listen: --insecure-plaintext allows it" grep -q "listening on 0.0.0.0:$port (plaintext" "$tmp/l.out"
kill $lpid; wait $lpid 2>/dev/null

# A port scan, a silent client and a foreign one are dropped; listening goes on.
listener --listen 127.0.0.1:$((port + 1))
(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null
printf 'GET / HTTP/1.0\r\n\r\n' 2>/dev/null >/dev/tcp/127.0.0.1/$port
for _ in $(seq 400); do [ "$(grep -c 'still listening' "$tmp/l.out")" -ge 2 ] && break; sleep 0.05; done
check "listen: a port scan and a foreign client leave it listening" bash -c "alive() { kill -0 $lpid 2>/dev/null; }; alive && grep -q 'closed the connection; still listening' '$tmp/l.out' && grep -q 'did not send an sr image; still listening' '$tmp/l.out'"
cat "$tmp/a.img" 2>/dev/null >/dev/tcp/127.0.0.1/$port
listener_end
check "listen: then an image's source is taken" grep -q 'receiving a domain from 127.0.0.1:' "$tmp/l.out"

# A host without IPv6: the listener falls back to IPv4.
timeout 10 "$rst" --listen $((port + 1)) --tls-psk /dev/null >"$tmp/l.out" 2>&1; rc=$?
check "listen: an empty --tls-psk file is a usage error" bash -c "[ $rc -eq 2 ] && grep -q 'no key in it' '$tmp/l.out'"
psk=$tmp/keys.psk
echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$psk"
echo "src:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/wrong.psk"
ASAN_OPTIONS=verify_asan_link_order=0 LD_PRELOAD=$PWD/$O/tests/noipv6.so listener --listen $((port + 1)) --tls-psk "$psk"
check "listen: no IPv6 on the host: every IPv4 address instead" grep -q "listening on 0.0.0.0:$port (TLS)" "$tmp/l.out"
kill $lpid; wait $lpid 2>/dev/null
listener --listen $((port + 1)) --tls-psk "$psk"
check "listen: with TLS, PORT alone is every address (dual stack)" grep -q "listening on \[::\]:$port (TLS)" "$tmp/l.out"
kill $lpid; wait $lpid 2>/dev/null

# PSK: a wrong key is refused (nothing answered, no memory taken, still listening), the right one is taken.
listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
rss0=$(rss_kib)
"$mig" --tls-psk "$tmp/wrong.psk" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
for _ in $(seq 400); do grep -q 'still listening' "$tmp/l.out" && break; sleep 0.05; done
check "tls-psk: a wrong key is refused by both sides (sr-migrate exit 1, domain untouched)" bash -c "[ $rc -eq 1 ] && grep -q 'TLS handshake' '$tmp/m.out' && grep -q 'not touched' '$tmp/m.out' && grep -q 'refused 127.0.0.1:[0-9]*: TLS handshake' '$tmp/l.out'"
check "tls-psk: after a wrong key: still listening, under 1 MiB more resident, no VM" bash -c "kill -0 $lpid && [ \$(awk '/^VmRSS/ { print \$2 }' /proc/$lpid/status) -lt $((rss0 + 1024)) ] && ! grep -q 'receiving a domain' '$tmp/l.out'"
"$mig" --stats --tls-psk "$psk" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
listener_end
check "tls-psk: the right key is taken (authenticated as its identity)" grep -q "receiving a domain from 127.0.0.1:[0-9]*, authenticated as PSK identity src (TLS1.3 AES-128-GCM" "$tmp/l.out"
check "tls-psk: sr-migrate --stats names the transport" bash -c "grep -q '^transport: TLS1.3 AES-128-GCM, \(kernel TLS\|user-space TLS\)' '$tmp/m.out'"

# The --tls-psk file is opened once, before the sandbox (the listen thread opens
# no file), and read again at each handshake on that descriptor: a key added to
# the file while it listens is taken.
cp "$psk" "$tmp/grow.psk"
listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$tmp/grow.psk"
echo "late:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/late.psk"
cat "$tmp/late.psk" >>"$tmp/grow.psk"
"$mig" --connect-timeout 5 --tls-psk "$tmp/late.psk" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
listener_end
check "tls-psk: a key added to the file after the listener started is taken (read on the held descriptor; sr-migrate exit $rc)" bash -c "[ $rc -eq 1 ] && grep -q 'authenticated as PSK identity late' '$tmp/l.out'"
# A key file deleted, or replaced by rename, revokes its keys (fails closed).
for how in delete rename; do
	cp "$psk" "$tmp/rev.psk"
	listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$tmp/rev.psk"
	if [ $how = delete ]; then rm "$tmp/rev.psk"; else cp "$psk" "$tmp/rev.new" && mv "$tmp/rev.new" "$tmp/rev.psk"; fi
	"$mig" --connect-timeout 5 --tls-psk "$psk" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
	kill $lpid 2>/dev/null; wait $lpid 2>/dev/null
	check "tls-psk: a key file ${how}d while listening revokes its keys (sr-migrate exit $rc, not authenticated)" bash -c "[ $rc -eq 1 ] && ! grep -q 'authenticated as' '$tmp/l.out' && grep -q 'TLS handshake' '$tmp/m.out'"
done
# Idle peers do not keep a source out: five connect and send nothing, and hold their
# connections while the source comes (a one-at-a-time listener gave each its 10 s
# handshake time, past the source's 5 s connect timeout).
listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
idle=()
for _ in 1 2 3 4 5; do exec {ifd}<>/dev/tcp/127.0.0.1/$port && idle+=($ifd); done
"$mig" --connect-timeout 5 --tls-psk "$psk" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
listener_end
for ifd in "${idle[@]}"; do exec {ifd}>&-; done
check "listen: 5 idle peers hold connections, a TLS source gets in beside them (sr-migrate exit 1: the fake domain saves nothing)" bash -c "[ ${#idle[@]} -eq 5 ] && [ $rc -eq 1 ] && grep -q 'receiving a domain from 127.0.0.1:[0-9]*, authenticated as PSK identity src' '$tmp/l.out' && ! grep -q 'not done within' '$tmp/l.out'"
# A full table of idle connections (1100 from 300 addresses, 127.0.0.2-127.1.45, under the
# per-address cap: more than its 1024 slots), all at once, that outlive the 10 s handshake
# time: the listener once decided whether to accept before dropping them, and a full table
# that its deadlines emptied left it waiting on nothing for good (the audit's wedge).  A
# source 12 s later gets in.  (Checked to fail with that decision moved back before the
# drops, with 16 connections and a table of 16.)
listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
# First five from one address: past four pending, its oldest goes (make_room).
idle=()
for _ in 1 2 3 4 5; do exec {ifd}<>/dev/tcp/127.0.0.1/$port && idle+=($ifd); done
for _ in $(seq 200); do grep -q 'a newer connection from its address took its place' "$tmp/l.out" && break; sleep 0.05; done
check "listen: a fifth pending connection from one address drops that address's oldest" bash -c "[ ${#idle[@]} -eq 5 ] && [ \$(grep -c 'refused 127.0.0.1:[0-9]*: a newer connection from its address took its place' '$tmp/l.out') -eq 1 ]"
for ifd in "${idle[@]}"; do exec {ifd}>&-; done
timeout 30 "$O/tests/netflood" hold $port 300 1100 25 >"$tmp/idle16" &
ipid=$!
for _ in $(seq 100); do [ -s "$tmp/idle16" ] && break; sleep 0.05; done
sleep 12
"$mig" --connect-timeout 5 --tls-psk "$psk" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
listener_end
kill $ipid 2>/dev/null; wait $ipid 2>/dev/null
check "listen: a full table of idle connections ($(cat "$tmp/idle16")) past their handshake time does not wedge the listener; a source 12 s later gets in" bash -c "[ \"\$(cat '$tmp/idle16')\" -gt 1024 ] && [ $rc -eq 1 ] && grep -q 'receiving a domain from 127.0.0.1:[0-9]*, authenticated as PSK identity src' '$tmp/l.out'"

# A flood: idle connections from 400 loopback addresses (more than the table's 1024
# slots hold at 4 an address), 2000 a second, 6000 held, while the real source comes
# through a relay that holds each chunk 25 ms each way (a WAN).  The source must
# authenticate 5 times in 5.  (audit5's starve: 0/5 when a full table of 16 evicted its
# oldest peer, which under a flood is the source mid-handshake; checked to fail so.)
# Trials 2 and 4: each flood connection sends a TLS record's header and stalls
# (audit7: 6 of 18 got in while any byte protected a peer before its address's count).
flood_ok=0
flood_full=0
flood_why=
for trial in 1 2 3 4 5; do
	listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
	"$O/tests/netflood" flood $port 20 400 6000 2000 $([ $((trial % 2)) = 0 ] && echo speak) 2>/dev/null &
	fpid=$!
	for _ in $(seq 200); do grep -q 'every slot was taken' "$tmp/l.out" && break; sleep 0.02; done
	grep -q 'every slot was taken' "$tmp/l.out" && flood_full=$((flood_full + 1))
	"$O/tests/netflood" relay 0 $port 25 >"$tmp/relay.out" &
	rpid=$!
	for _ in $(seq 100); do grep -q 'relay ready' "$tmp/relay.out" && break; sleep 0.02; done
	rport=$(awk '/relay ready on/ { print $4 }' "$tmp/relay.out")
	"$mig" --connect-timeout 5 --tls-psk "$psk" dom tcp:127.0.0.1:${rport:-0} >"$tmp/m.out" 2>&1
	listener_end
	kill $fpid $rpid 2>/dev/null; wait $fpid $rpid 2>/dev/null
	if grep -q 'receiving a domain from 127.0.0.1:[0-9]*, authenticated as PSK identity src' "$tmp/l.out"; then
		flood_ok=$((flood_ok + 1))
	else	# what the source heard, and the listener's word on it, for the check's line
		flood_why="$flood_why; trial $trial: $(tail -1 "$tmp/m.out") / $(grep -o 'refused 127\.0\.0\.1:[0-9]*: [^;]*' "$tmp/l.out" | head -1)"
	fi
done
check "listen: a flood from 400 addresses, idle or sending 5 bytes and stalling (the table full in $flood_full of 5), does not starve a TLS-PSK source 25 ms away: $flood_ok/5 authenticated${flood_why:-}" bash -c "[ $flood_full -eq 5 ] && [ $flood_ok -eq 5 ]"

# The peers' bytes are handled on a thread of the listen kind, not under the main
# thread's list: while it listens, sr-restore has an sr-listen thread with one more
# seccomp filter than the main thread (its own, stacked on main's).
listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
ltid=
for _ in $(seq 100); do
	for t in /proc/$lpid/task/*; do [ "$(cat $t/comm 2>/dev/null)" = sr-listen ] && ltid=${t##*/}; done
	[ -n "$ltid" ] && break; sleep 0.05
done
nf_main=$(awk '/^Seccomp_filters:/ { print $2 }' /proc/$lpid/status)
nf_listen=$(awk '/^Seccomp_filters:/ { print $2 }' /proc/$lpid/task/${ltid:-none}/status 2>/dev/null)
kill $lpid; wait $lpid 2>/dev/null
check "sandbox: --listen's peers are handled on an sr-listen thread under its own filter (filters: main ${nf_main:-?}, sr-listen ${nf_listen:-none})" bash -c "[ -n '$ltid' ] && [ '${nf_listen:-0}' -eq \$(( ${nf_main:-0} + 1 )) ] && [ '${nf_main:-0}' -ge 1 ]"

# The keys' text is wiped after each use: after a handshake (a wrong key: the file is read
# for the identity) no readable page of the listener holds the key, in hex or in binary.
listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
"$mig" --tls-psk "$tmp/wrong.psk" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1
for _ in $(seq 400); do grep -q 'still listening' "$tmp/l.out" && break; sleep 0.05; done
found=$(python3 - "$lpid" "$(cut -d: -f2 "$psk")" <<'PY'
import re, sys
pid, hexkey = sys.argv[1], sys.argv[2]
needles = [hexkey.encode(), hexkey.upper().encode(), bytes.fromhex(hexkey)]
hits = 0
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
    for line in maps:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (r)", line)
        if not m or "[vvar" in line or "[vsyscall" in line:
            continue
        a, b = int(m.group(1), 16), int(m.group(2), 16)
        if b - a > 256 << 20:
            continue
        try:
            mem.seek(a); d = mem.read(b - a)
        except OSError:
            continue
        hits += sum(d.count(n) for n in needles)
print(hits)
PY
)
check "tls-psk: the key's text is wiped after use: in no readable page of the listener (found $found)" bash -c "kill -0 $lpid && [ '$found' = 0 ]"
kill $lpid; wait $lpid 2>/dev/null
# And a process holding a key is not dumpable (no core, no ptrace or /proc/PID/mem by its
# own user) from before it reads the file: its /proc/PID/* are then root's, not its user's.
# As root, the listener runs as nobody to tell the two apart.
nb=$(mktemp -d /tmp/sr-nodump.XXXXXX); chmod 755 "$nb"; cp "$psk" "$nb/k.psk"
as=(); [ "$(id -u)" = 0 ] && { chown nobody "$nb/k.psk"; as=(setpriv --reuid=nobody --regid=nogroup --clear-groups); }
port=$((port + 1))
"${as[@]}" "$rst" --listen 127.0.0.1:$((port + 1)) --tls-psk "$nb/k.psk" >"$tmp/l.out" 2>&1 &
lpid=$!
for _ in $(seq 400); do grep -q 'listening on' "$tmp/l.out" && break; sleep 0.05; done
nd_uid=$(awk '/^Uid:/ { print $2 }' /proc/$lpid/status 2>/dev/null); nd_owner=$(stat -c %u /proc/$lpid/status 2>/dev/null)
check "tls-psk: the listener is not dumpable (runs as uid $nd_uid, its /proc/PID/status is uid $nd_owner's)" bash -c "grep -q 'listening on' '$tmp/l.out' && [ -n '$nd_uid' ] && [ '$nd_uid' != 0 ] && [ '$nd_owner' = 0 ]"
kill $lpid; wait $lpid 2>/dev/null
rm -rf "$nb"

# A limit of the moment on accept (EMFILE: no descriptor left) does not end the listener:
# it waits and takes the connection once a descriptor is free.
listener --listen 127.0.0.1:$((port + 1))
freefd=0; while [ -e /proc/$lpid/fd/$freefd ]; do freefd=$((freefd + 1)); done
prlimit --pid $lpid --nofile=$freefd:	# the lowest free descriptor is over the limit
cat "$tmp/a.img" 2>/dev/null >/dev/tcp/127.0.0.1/$port &
cpid=$!
for _ in $(seq 400); do grep -q 'Too many open files; still listening' "$tmp/l.out" && break; sleep 0.05; done
check "listen: accept's EMFILE leaves it listening" bash -c "kill -0 $lpid && grep -q 'accept: Too many open files; still listening' '$tmp/l.out'"
prlimit --pid $lpid --nofile=1024:
listener_end
kill $cpid 2>/dev/null; wait $cpid 2>/dev/null
check "listen: ... and once a descriptor is free, the waiting source is taken" grep -q 'receiving a domain from 127.0.0.1:' "$tmp/l.out"
# An independent client (OpenSSL) with the right key hears the receiver's answer over TLS.
if command -v openssl >/dev/null; then
	listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
	timeout 10 openssl s_client -connect 127.0.0.1:$port -tls1_3 -psk_identity src \
		-psk "$(cut -d: -f2 "$tmp/wrong.psk")" -quiet <"$tmp/a.img" >"$tmp/c1.out" 2>/dev/null
	# 30 s: the receiver reads the whole image before it answers (once in a run beside two
	# ASan boxes, 10 s ended the client first: the answer was not heard).
	a=$(date +%s%N)
	timeout 30 openssl s_client -connect 127.0.0.1:$port -tls1_3 -psk_identity src \
		-psk "$(cut -d: -f2 "$psk")" -quiet <"$tmp/a.img" >"$tmp/c2.out" 2>"$tmp/c2.err"; c2rc=$?
	c2ms=$(( ($(date +%s%N) - a) / 1000000 ))
	listener_end
	check "tls-psk: OpenSSL with a wrong key hears nothing" bash -c "[ ! -s '$tmp/c1.out' ] && grep -q 'refused' '$tmp/l.out'"
	check "tls-psk: OpenSSL with the right key hears the receiver's answer (s_client $c2rc after $c2ms ms$(grep -q '^error \|^ready' "$tmp/c2.out" || echo "; it heard '$(head -c 200 "$tmp/c2.out" | tr '\n' ' ')', said '$(tail -1 "$tmp/c2.err")'; the receiver: $(tail -2 "$tmp/l.out" | tr '\n' ' ')"))" grep -q '^error \|^ready' "$tmp/c2.out"
fi
# A source that half-closes once its bytes are sent (a FIN, no close_notify) still hears
# the answer: GnuTLS takes such a FIN for a truncation and invalidates the session both
# ways, and the receive pump, which sees it first, kept the answer from being sent (audit9).
# The Finished, the bytes and the FIN arrive together; user-space TLS (no kTLS here, or off).
hc=0 hc_why=
for i in 1 2 3 4 5; do
	SR_KTLS=off listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
	a=$(date +%s%N)
	timeout 30 "$O/tests/tlspeer" 127.0.0.1 $port "$psk" --coalesce --bytes 100 --end eof >"$tmp/hc.out" 2>"$tmp/hc.err"; prc=$?
	listener_end; lrc=$?
	if grep -q '^heard=error ' "$tmp/hc.out"; then
		hc=$((hc + 1))
	else	# what each side saw, for a failure seen once in 75 trials (not reproduced since)
		hc_why="$hc_why; trial $i: tlspeer exit $prc after $(( ($(date +%s%N) - a) / 1000000 )) ms: $(tr '\n' ' ' <"$tmp/hc.out" | head -c 200) $(tail -2 "$tmp/hc.err" | tr '\n' ' ') / listener exit $lrc: $(tail -3 "$tmp/l.out" | tr '\n' ' ')"
	fi
done
check "tls-psk: a source that half-closes (FIN, no close_notify) hears the answer ($hc of 5$hc_why)" [ $hc -eq 5 ]
# The guard counts what the receive pump decrypted: a refused source's connection is freed
# (tls_end) only once the guard has stopped.  With the exit held 1.5 s past tls_end, the
# guard's next look would read the freed connection (a SAN=1 build reports it, or its report
# trips the sandbox; audit9).  The host check refuses (SR_PROBE_DEV: not KVM) on any host.
SR_PROBE_DEV=/dev/null SR_KTLS=off SR_TEST_PAUSE_AT=told SR_TEST_PAUSE_MS=1500 \
	listener --listen 127.0.0.1:$((port + 1)) --tls-psk "$psk"
timeout 30 "$O/tests/tlspeer" 127.0.0.1 $port "$psk" --bytes 100 >"$tmp/hc.out" 2>/dev/null
listener_end; rc=$?
check "tls-psk: a refused source's connection is freed after the guard stopped (held 1.5 s: exit $rc, no sanitizer report)" bash -c "[ $rc -eq 3 ] && grep -q 'at told' '$tmp/l.out' && grep -q '^heard=error refused by the receiver: its host cannot run guests now' '$tmp/hc.out' && ! grep -q 'Sanitizer\|runtime error' '$tmp/l.out'"

# X.509 in QEMU's layout, made here: a CA, the receiver (127.0.0.1), two sources, one from another CA.
x509() {	# DIR NAME SAN CA-DIR
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -utf8 -subj "/O=sr test/CN=$2" \
		-keyout "$1.key" -out "$1.csr" 2>/dev/null &&
	printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext" &&
	openssl x509 -req -in "$1.csr" -CA "$4/ca-cert.pem" -CAkey "$4/ca-key.pem" -CAcreateserial \
		-days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
ca() {		# DIR
	mkdir -p "$1" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/O=sr test/CN=sr test CA ${1##*/}" -keyout "$1/ca-key.pem" -out "$1/ca-cert.pem" 2>/dev/null
}
if command -v openssl >/dev/null && ca "$tmp/ca" && ca "$tmp/ca2" &&
   x509 "$tmp/ca/srv" receiver "DNS:receiver.test,IP:127.0.0.1" "$tmp/ca" &&
   x509 "$tmp/ca/src" source "DNS:source.test" "$tmp/ca" &&
   x509 "$tmp/ca/evil" intruder "DNS:intruder.test" "$tmp/ca" &&
   x509 "$tmp/ca/wild" wildcard "DNS:*.test,DNS:*.sr.test" "$tmp/ca" &&
   x509 "$tmp/ca/bidi" $'ab\u202ecd\x1b[2J' "DNS:bidi.test" "$tmp/ca" &&
   x509 "$tmp/ca2/src" source "DNS:source.test" "$tmp/ca2"; then
	mkdir -p "$tmp/srv" "$tmp/src" "$tmp/evil" "$tmp/foreign" "$tmp/wild" "$tmp/bidi"
	cp "$tmp/ca/ca-cert.pem" "$tmp/srv/"; cp "$tmp/ca/srv.pem" "$tmp/srv/server-cert.pem"; cp "$tmp/ca/srv.key" "$tmp/srv/server-key.pem"
	cp "$tmp/ca/wild.pem" "$tmp/wild/server-cert.pem"; cp "$tmp/ca/wild.key" "$tmp/wild/server-key.pem"
	for c in src evil wild bidi; do
		cp "$tmp/ca/ca-cert.pem" "$tmp/$c/"; cp "$tmp/ca/$c.pem" "$tmp/$c/client-cert.pem"; cp "$tmp/ca/$c.key" "$tmp/$c/client-key.pem"
	done
	cp "$tmp/ca/ca-cert.pem" "$tmp/foreign/"; cp "$tmp/ca2/src.pem" "$tmp/foreign/client-cert.pem"; cp "$tmp/ca2/src.key" "$tmp/foreign/client-key.pem"
	listener --listen 127.0.0.1:$((port + 1)) --tls-creds "$tmp/srv" --tls-authz other.test --tls-authz source.test
	"$mig" --tls-creds "$tmp/evil" dom tcp:127.0.0.1:$port >"$tmp/m1.out" 2>&1; rc1=$?
	"$mig" --tls-creds "$tmp/foreign" dom tcp:127.0.0.1:$port >"$tmp/m2.out" 2>&1; rc2=$?
	for _ in $(seq 400); do [ "$(grep -c 'still listening' "$tmp/l.out")" -ge 2 ] && break; sleep 0.05; done
	cp "$tmp/l.out" "$tmp/l1.out"
	check "tls-creds: a certificate not in --tls-authz is refused, still listening" bash -c "kill -0 $lpid && grep -q 'certificate \"CN=intruder,O=sr test\" is not in --tls-authz; still listening' '$tmp/l.out' && [ $rc1 -ne 0 ]"
	check "tls-creds: a certificate from another CA is refused" bash -c "grep -q 'refused 127.0.0.1:[0-9]*: TLS handshake: .*\(not trusted\|Certificate is required\)' '$tmp/l1.out' && [ $rc2 -ne 0 ]"
	"$mig" --tls-creds "$tmp/src" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
	listener_end
	check "tls-creds: an allowed source is taken (authenticated as its DN)" grep -q 'authenticated as CN=source,O=sr test (TLS1.3' "$tmp/l.out"
	check "tls-creds: ... and sr-migrate went on to ask the domain to save" bash -c "[ $rc -eq 1 ] && grep -q 'the fake domain saves nothing' '$tmp/m.out'"
	# The source checks the receiver: its certificate must name the host dialled, or a --tls-authz name.
	listener --listen 127.0.0.1:$((port + 1)) --tls-creds "$tmp/srv"
	"$mig" --tls-creds "$tmp/src" dom tcp:localhost:$port >"$tmp/m.out" 2>&1; rc=$?
	check "tls-creds: a receiver whose certificate does not name the host is refused (exit 1)" bash -c "[ $rc -eq 1 ] && grep -q \"the peer's certificate: .*does not match\" '$tmp/m.out' && grep -q 'not touched' '$tmp/m.out'"
	"$mig" --tls-creds "$tmp/src" --tls-authz receiver.test dom tcp:localhost:$port >"$tmp/m.out" 2>&1; rc=$?
	listener_end
	check "tls-creds: ... unless --tls-authz names it" bash -c "[ $rc -eq 1 ] && grep -q 'authenticated as CN=source' '$tmp/l.out'"
	# --tls-authz takes a DN whole, commas and all.
	listener --listen 127.0.0.1:$((port + 1)) --tls-creds "$tmp/srv" --tls-authz "CN=source,O=sr test"
	"$mig" --tls-creds "$tmp/src" dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
	listener_end
	check "tls-authz: a DN with commas authorizes its certificate" bash -c "[ $rc -eq 1 ] && grep -q 'authenticated as CN=source,O=sr test (TLS1.3' '$tmp/l.out'"
	# A wildcard certificate (*.test, *.sr.test) is no certificate for a.test or a.sr.test,
	# either way (GnuTLS itself refuses a wildcard over one label, not *.sr.test); a peer's
	# DN is printed escaped (its CN has U+202E, a bidi override, and a terminal escape).
	listener --listen 127.0.0.1:$((port + 1)) --tls-creds "$tmp/srv" --tls-authz a.test --tls-authz a.sr.test
	"$mig" --tls-creds "$tmp/wild" dom tcp:127.0.0.1:$port >"$tmp/m1.out" 2>&1; rc1=$?
	"$mig" --tls-creds "$tmp/bidi" dom tcp:127.0.0.1:$port >"$tmp/m2.out" 2>&1; rc2=$?
	for _ in $(seq 400); do [ "$(grep -c 'still listening' "$tmp/l.out")" -ge 2 ] && break; sleep 0.05; done
	check "tls-authz: a source's wildcard certificate (*.test, *.sr.test) is refused for a.test, a.sr.test" bash -c "kill -0 $lpid && [ $rc1 -ne 0 ] && grep -q 'certificate \"CN=wildcard,O=sr test\" is not in --tls-authz; still listening' '$tmp/l.out'"
	raw=$(LC_ALL=C grep -c $'\xe2\x80\xae\|\x1b' "$tmp/l.out")
	check "tls-creds: the peer's DN is printed escaped (bidi override, terminal escape)" bash -c "grep -qF 'certificate \"CN=ab\\xe2\\x80\\xaecd\\x1b[2J,O=sr test\" is not' '$tmp/l.out' && [ $raw = 0 ]"
	kill $lpid; wait $lpid 2>/dev/null
	listener --listen 127.0.0.1:$((port + 1)) --tls-creds "$tmp/wild"
	"$mig" --tls-creds "$tmp/src" --tls-authz a.sr.test dom tcp:127.0.0.1:$port >"$tmp/m.out" 2>&1; rc=$?
	grep -q 'certificate "CN=wildcard,O=sr test" is not in --tls-authz' "$tmp/m.out" || sed 's/^/     | /' "$tmp/m.out"
	check "tls-authz: a receiver's wildcard certificate (*.sr.test) is refused for a.sr.test (exit $rc)" bash -c "[ $rc -eq 1 ] && grep -q 'certificate \"CN=wildcard,O=sr test\" is not in --tls-authz' '$tmp/m.out' && grep -q 'not touched' '$tmp/m.out'"
	kill $lpid 2>/dev/null; wait $lpid 2>/dev/null
else
	bad "tls-creds: making test certificates with openssl"
fi
[ -n "$lpid" ] && kill $lpid 2>/dev/null

# sr-restore's sandbox: each thread kind refuses what it never does (the
# process ends with one line naming the call and the kind, status 159), and
# allows what it does.  The refused ioctl is a request the kind does not
# make (main: TIOCSTI; a device thread makes none).  Only main (the creator
# of every thread), control (--save-to) and save (sr-save --disk-snapshot's
# files beside the image, named at the commit) create, unlink or rename files;
# only main makes a unix socket, a stream one (no datagram to a named socket),
# and none connects (audit5's sbx: main connected to any unix service); reader, worker, input, guard,
# detach, tls-pump (send, not write, on its socket pair) and listen (--listen's
# peers and their TLS handshakes: audit5's sbx found them under main's list,
# which holds every list of the threads main starts: open for writing, link,
# rename, unlink, connect) write to no fd but stderr (tests/sandbox_test.c
# names each call).  A
# SAN=1 build's filters let the sanitizer runtime's mmap, openat, write and
# rt_sigaction (never SIGSYS's) through.
sbt=$O/tests/sandbox-test
san=$("$sbt" sanitized)
for kind in main reader worker vCPU console input control save device guard tls-pump detach listen; do
	calls="execve socket dgram connect exec ioctl sigsys"
	# (The reader's openat fails with EACCES instead: glibc's error formatting tries it.)
	case $kind in main|control|save) ;; reader) calls="$calls unlink rename" ;; *) calls="$calls create unlink rename" ;; esac
	[ $kind = main ] || calls="$calls unix"
	case $kind in reader|worker|input|guard|detach|listen|tls-pump) calls="$calls write" ;; esac
	[ "$san" = no ] || calls=$(echo " $calls " | sed 's/ exec / /; s/ create / /; s/ open / /; s/ write / /')
	for call in $calls; do
		"$sbt" $kind $call >"$tmp/sb.out" 2>&1; rc=$?
		case $call in
		sigsys) what='system call 13 (rt_sigaction)' ;;
		execve) what='system call 59 (execve)' ;;
		socket|unix|dgram) what='system call 41 (socket)' ;;
		ioctl) what='system call 16 (ioctl) request 0x' ;;
		exec) what='system call 9 (mmap)' ;;
		create) what='system call 257 (openat)' ;;
		unlink) what='system call 87 (unlink)' ;;
		rename) what='system call 82 (rename)' ;;
		connect) what='system call 42 (connect)' ;;
		write) what='system call 1 (write)' ;;
		esac
		check "sandbox: the $kind thread's $call is refused (exit 159, one line)" bash -c "[ $rc -eq 159 ] && [ \$(wc -l < '$tmp/sb.out') -eq 1 ] && grep -q 'sandbox: the $kind thread made $what' '$tmp/sb.out'"
	done
	"$sbt" $kind allowed >"$tmp/sb.out" 2>&1; rc=$?
	check "sandbox: the $kind thread's own calls are allowed" bash -c "[ $rc -eq 0 ] && grep -qx allowed '$tmp/sb.out'"
done
# Only main, control and save open files; elsewhere a read-only openat fails with
# EACCES, not a kill (glibc makes some on any thread: the malloc arena's overcommit
# check, under a --listen flood on the listen thread; message catalogs), and one that
# would write traps (create, above).
open_bad=
for kind in main reader worker vCPU console input control save device guard tls-pump detach listen; do
	"$sbt" $kind open >"$tmp/sb.out" 2>&1; rc=$?
	case $kind in main|control|save) want=opened ;; *) want='denied 13' ;; esac
	# The sanitizer runtime's list allows openat, but the reader's own EACCES comes first
	# (and a worker, started by the reader, has the reader's filter beneath its own).
	case $san/$kind in no/*|*/reader|*/worker) ;; *) want=opened ;; esac
	{ [ $rc -eq 0 ] && grep -qx "$want" "$tmp/sb.out"; } || open_bad="$open_bad $kind ($rc: $(head -1 "$tmp/sb.out"))"
done
check "sandbox: a read-only openat opens on main, control and save only, fails with EACCES elsewhere${open_bad:+; wrong:$open_bad}" [ -z "$open_bad" ]
# The reader sizes and punches guest memory (ftruncate, fallocate) until the stream is
# in; sealed before it asks for an image's disks, it can do neither to a disk.
"$sbt" reader seal >"$tmp/sb.out" 2>&1; rc=$?
check "sandbox: the reader's ftruncate/fallocate, allowed until sandbox_reader_seal, are refused after it (exit $rc)" bash -c "[ $rc -eq 159 ] && grep -qx 'unsealed: allowed' '$tmp/sb.out' && grep -q 'sandbox: the reader thread made system call 285 (fallocate)' '$tmp/sb.out'"
# The reader opens no file (its openat fails, EACCES), but an image's disks
# are opened for it by the main thread it asks (sandbox_ask).
"$sbt" reader ask >"$tmp/sb.out" 2>&1; rc=$?
check "sandbox: the reader's own openat fails; the main thread opens a file for it (sandbox_ask)" bash -c "[ $rc -eq 0 ] && grep -qx allowed '$tmp/sb.out'"
echo "     $("$sbt" vCPU ioctl 2>&1)"
$O/sr-restore --help | grep -q -- '--no-sandbox'
check "sr-restore --help documents --no-sandbox" [ $? -eq 0 ]

# sr-ctl without a domain: the verb order, names, stale sockets, --json against docs/control.md.
ctl=$O/sr-ctl
rd=$tmp/ctlrun; mkdir -m 700 "$rd"
SR_RUN_DIR=$rd $ctl list >"$tmp/ctl.out" 2>&1; rc=$?
check "sr-ctl list: an empty run directory says no domains (exit 0)" bash -c "[ $rc -eq 0 ] && grep -qx 'no domains' '$tmp/ctl.out'"
# A socket nobody listens on and a NAME.lock nobody holds: what a runner killed by SIGKILL leaves.
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$rd/old.sock"
: > "$rd/old.lock"; echo 4242 > "$rd/old.pid"
SR_RUN_DIR=$rd $ctl list >"$tmp/ctl.out" 2>&1; rc=$?
check "sr-ctl list shows a dead runner's socket as stale" bash -c "[ $rc -eq 0 ] && grep -q '^name=old state=stale (no process holds old.lock' '$tmp/ctl.out'"
SR_RUN_DIR=$rd $ctl list --json >"$tmp/ctl.json" 2>"$tmp/ctl.err"; rc=$?
check "sr-ctl list --json: the fields docs/control.md lists, the stale one with its pid file's pid" bash -c "[ $rc -eq 0 ] && python3 tests/ctl_client.py check list '$tmp/ctl.json' && python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))[\"domains\"]; sys.exit(not (d[0][\"state\"] == \"stale\" and d[0][\"pid\"] == 4242))' '$tmp/ctl.json'"
# A runner that holds its name but does not answer (stopped, stuck): listed as unresponsive, not waited for.
python3 -c 'import fcntl, socket, sys, time
d = sys.argv[1]
lock = open(d + "/hung.lock", "w"); fcntl.flock(lock, fcntl.LOCK_EX)
s = socket.socket(socket.AF_UNIX); s.bind(d + "/hung.sock"); s.listen(8)
open(d + "/hung.ready", "w").close()
time.sleep(60)' "$rd" &
hung=$!
for _ in $(seq 1 100); do [ -e "$rd/hung.ready" ] && break; sleep 0.05; done
a=$(date +%s%N)
SR_RUN_DIR=$rd timeout 30 $ctl list >"$tmp/ctl.out" 2>&1; rc=$?
b=$(date +%s%N)
kill $hung 2>/dev/null; wait $hung 2>/dev/null
rm -f "$rd/hung.sock" "$rd/hung.lock" "$rd/hung.ready"
check "sr-ctl list: a runner that does not answer is unresponsive after 3 s ($(( (b - a) / 1000000 )) ms), the stale one still listed" bash -c "[ $rc -eq 0 ] && grep -q '^name=hung state=unresponsive (domain \"hung\" did not answer within 3000 ms)' '$tmp/ctl.out' && grep -q '^name=old state=stale' '$tmp/ctl.out' && [ $(( (b - a) / 1000000 )) -lt 10000 ]"
printf '{"protocol": 1, "run_dir": "x", "domains": [{"name": "a", "state": "stale", "pid": null}]}' > "$tmp/ctl.bad.json"
check "ctl_client.py check refuses a document without a documented field" bash -c "! python3 tests/ctl_client.py check list '$tmp/ctl.bad.json' 2>/dev/null"
ctl_usage() {	# name expected-line-pattern args...
	local name=$1 want=$2; shift 2
	SR_RUN_DIR=$rd $ctl "$@" >"$tmp/ctl.out" 2>"$tmp/ctl.err"; local rc=$?
	if [ $rc -eq 2 ] && [ ! -s "$tmp/ctl.out" ] && [ "$(wc -l < "$tmp/ctl.err")" -le 2 ] &&
	   grep -qF -e "$want" "$tmp/ctl.err"; then ok "sr-ctl $*: $name (exit 2)"
	else bad "sr-ctl $*: $name: exit $rc, $(head -1 "$tmp/ctl.err")"; fi
}
ctl_usage "a domain named host is addressable" 'no domain "host"' status host
ctl_usage "a domain named list is addressable" 'no domain "list"' pause list
ctl_usage "the older order still works" 'no domain "old"' old status
ctl_usage "an unknown verb in either order" "neither 'x' nor 'frobnicate'" x frobnicate
ctl_usage "an unknown command" "unknown command 'frobnicate'" frobnicate
ctl_usage "a bad name" "bad domain name 'a/b'" status a/b
ctl_usage "--json only where documented" "--json goes with" pause x --json
ctl_usage "a missing name" "status needs a domain name" status
ctl_usage "list takes no name" "list takes no argument" list x
# The default run directory: $XDG_RUNTIME_DIR/sr for a user other than root, /run/sr for root.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	env -u SR_RUN_DIR XDG_RUNTIME_DIR=/nonexistent-xdg setpriv --reuid=nobody --regid=nogroup --clear-groups $ctl list >"$tmp/ctl.out" 2>&1
	check "sr-ctl as a user other than root: \$XDG_RUNTIME_DIR/sr" grep -qx 'no domains (/nonexistent-xdg/sr does not exist)' "$tmp/ctl.out"
	env -u SR_RUN_DIR XDG_RUNTIME_DIR=/nonexistent-xdg $ctl status x >"$tmp/ctl.out" 2>&1
	check "sr-ctl as root: /run/sr whatever \$XDG_RUNTIME_DIR says" grep -q '(/run/sr/x.sock: ' "$tmp/ctl.out"
fi
$ctl --version >"$tmp/ctl.out" 2>&1
check "sr-ctl --version" grep -qx 'sr-ctl (sr) [0-9.]*' "$tmp/ctl.out"
# --detach: a start that fails returns at once with the child's error and status.
SR_RUN_DIR=$rd timeout 20 $O/sr-run --detach --name dd "$tmp/none.bin" >"$tmp/dd.out" 2>"$tmp/dd.err"; rc=$?
check "sr-run --detach: a failed start returns its status ($rc) and error" bash -c "[ $rc -eq 2 ] || [ $rc -eq 3 ]; [ \$? -eq 0 ] && [ -s '$tmp/dd.err' ] && [ ! -e '$rd/dd.pid' ]"
SR_RUN_DIR=$rd timeout 20 $O/sr-restore --detach "$tmp/none.img" >"$tmp/dd.out" 2>"$tmp/dd.err"; rc=$?
check "sr-restore --detach: a failed restore returns its status ($rc) and error" bash -c "[ $rc -eq 2 ] || [ $rc -eq 3 ]; [ \$? -eq 0 ] && [ -s '$tmp/dd.err' ]"

# sr-save --json and --progress json: a failure is a document too.
SR_RUN_DIR=$rd $O/sr-save --json --progress json nosuch "$tmp/ns.img" >"$tmp/ns.json" 2>"$tmp/ns.err"; rc=$?
check "sr-save --json --progress json of no domain: exit 2, start and end events and an error document as docs/control.md lists" bash -c "[ $rc -eq 2 ] && python3 tests/ctl_client.py check-lines '$tmp/ns.json' && tail -1 '$tmp/ns.json' | grep -q '\"ok\":false,\"message\":\"no domain'"
SR_RUN_DIR=$rd $O/sr-save --json x - >"$tmp/ns.json" 2>"$tmp/ns.err"; rc=$?
check "sr-save --json refuses - (the image's stdout)" bash -c "[ $rc -eq 2 ] && [ ! -s '$tmp/ns.json' ]"

# make install: the systemd template unit and the tmpfiles.d entry, with PREFIX's paths.
make -s O="$O" install DESTDIR="$tmp/root" PREFIX=/usr >"$tmp/inst" 2>&1
unit=$tmp/root/usr/lib/systemd/system/sr@.service
check "make install: sr@.service runs /usr/bin's tools from /etc/sr/NAME.conf, tmpfiles.d makes /run/sr 0700" bash -c "grep -q '/usr/bin/\\\$\\\$SR_TOOL' '$unit' && grep -q '^EnvironmentFile=/etc/sr/%i.conf' '$unit' && grep -qx 'd /run/sr 0700 root root -' '$tmp/root/usr/lib/tmpfiles.d/sr.conf'"
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify "$unit" 2>&1 | grep -v "Command 'man " >"$tmp/verify"
	check "systemd-analyze verify sr@.service: nothing but the man pages outside this root" bash -c "[ ! -s '$tmp/verify' ]"
fi
# The unit's command line as systemd hands it to sh: a domain named by the instance, SR_ARGS split.
cmd=$(sed -n "s/^ExecStart=\/bin\/sh -c '\(.*\)' sr %i$/\1/p" "$unit" | sed 's/\$\$/$/g')
out=$(SR_TOOL=sr-bogus sh -c "$cmd" sr web 2>&1); rc=$?
check "sr@.service refuses an SR_TOOL other than sr-run and sr-restore (exit $rc)" bash -c "[ $rc -eq 2 ] && [[ '$out' == *'SR_TOOL must be'* ]]"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
