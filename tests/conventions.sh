#!/usr/bin/env bash
# The command-line convention every tool follows (README "Command-line
# conventions"): --version and --help exit 0 on stdout; a usage error is one
# line naming the problem, then the Try line, on stderr, exit 2, nothing run;
# a short option means what the README's table says, in every tool that has
# it, and each tool accepts exactly the short options its --help lists.
set -u
O=${O:-build}
tmp=$(mktemp -d)
trap '[ -n "${SR_KEEP:-}" ] || rm -rf "$tmp"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     | /' "$2" | tail -6; }

tools="sr-run sr-save sr-migrate sr-restore sr-dump sr-ctl"
version=$(sed -n 's/^VERSION *:= *//p' Makefile)

# run TOOL ARGS...: status in $rc, stdout in $tmp/out, stderr in $tmp/err.
run() { "$O/$1" "${@:2}" </dev/null >"$tmp/out" 2>"$tmp/err"; rc=$?; }

# usage_error WHAT TOOL ARGS...: exit 2, nothing on stdout, one line naming the problem, the Try line.
usage_error() {
	local what=$1 t=$2 try
	shift 2
	run "$t" "$@"
	try="Try '$t --help' for more information."
	if [ $rc -eq 2 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l < "$tmp/err")" -eq 2 ] &&
	   [ "$(sed -n 1p "$tmp/err" | cut -c1-$((${#t} + 2)))" = "$t: " ] &&
	   [ "$(sed -n 2p "$tmp/err")" = "$try" ]; then
		ok "$t $*: $what: $(head -1 "$tmp/err")"
	else
		bad "$t $*: $what is not one line, the Try line and exit 2 (exit $rc)" "$tmp/err"
	fi
}

for t in $tools; do
	run "$t" --version
	if [ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "$t (sr) $version" ] && [ ! -s "$tmp/err" ]; then
		ok "$t --version: $(cat "$tmp/out")"
	else bad "$t --version: exit $rc, '$(head -1 "$tmp/out")', not '$t (sr) $version'" "$tmp/err"; fi
	run "$t" --help
	if [ $rc -eq 0 ] && head -1 "$tmp/out" | grep -q "^usage: $t " && [ ! -s "$tmp/err" ]; then
		ok "$t --help: exit 0, usage on stdout"
	else bad "$t --help: exit $rc, stdout '$(head -1 "$tmp/out")'" "$tmp/err"; fi
	usage_error "an unknown long option" "$t" --no-such-option
	usage_error "an unknown short option" "$t" -Z
	usage_error "an option given an argument it does not take" "$t" --help=yes
done

# Missing and extra arguments, missing and bad option values: each tool's own.
usage_error "no GUEST" sr-run
usage_error "two GUESTs" sr-run g1 g2
usage_error "a GUEST beside --kernel" sr-run --kernel k g1
usage_error "--name without its value" sr-run g1 --name
usage_error "a bad --vcpus" sr-run --vcpus many g1
usage_error "--initrd without --kernel" sr-run --initrd i g1
usage_error "no DOMAIN" sr-save
usage_error "no FILE" sr-save dom
usage_error "a third argument" sr-save dom f1 f2
usage_error "a bad --threads" sr-save --threads x dom f1
usage_error "a bad --compress" sr-save --compress zip dom f1
usage_error "a bad --disk-hash" sr-save --disk-hash most dom f1
usage_error "--disk-snapshot without -c or -p" sr-save --disk-snapshot dom f1
usage_error "--disk-snapshot to stdout" sr-save -c --disk-snapshot dom -
usage_error "--disk-snapshot on a migration" sr-migrate --disk-snapshot dom tcp:127.0.0.1:9
usage_error "no destination" sr-migrate dom
usage_error "a file destination" sr-migrate dom f1
usage_error "a bad --bandwidth" sr-migrate --bandwidth 0 dom tcp:127.0.0.1:9
usage_error "no FILE" sr-restore
usage_error "two FILEs" sr-restore f1 f2
usage_error "a FILE beside --listen" sr-restore --listen 9 f1
usage_error "a bad --clock" sr-restore --clock stop f1
usage_error "no FILE" sr-dump
usage_error "two FILEs" sr-dump f1 f2
usage_error "an unknown --type" sr-dump --type NOPE f1

# The README's table of short options: one meaning per letter.
sed -n '/^| short | long | meaning | tools |$/,/^$/p' README.md |
	sed -n 's/^| `\(-[a-zA-Z]\)` | `\(--[a-z0-9-]*\)` | [^|]* | \(.*\) |$/\1 \2 \3/p' > "$tmp/table"
if [ -s "$tmp/table" ] && [ "$(cut -d' ' -f1 "$tmp/table" | sort | uniq -d)" = "" ] &&
   [ "$(cut -d' ' -f2 "$tmp/table" | sort | uniq -d)" = "" ]; then
	ok "README: $(wc -l < "$tmp/table") short options, each letter and long option in one row"
else bad "README's short-option table is missing or gives a letter two meanings" "$tmp/table"; fi

# A value for a short option that takes one, that passes its check.
value() { case $1 in -t) echo END;; -n) echo x;; *) echo 1;; esac; }

for t in $tools; do
	# The table's rows for t, and --help's "-x, --long" lines (with whether it takes a value).
	awk -v t="$t" '{ for (i = 3; i <= NF; i++) { f = $i; sub(/,$/, "", f); if (f == t) print $1, $2 } }' \
		"$tmp/table" | sort > "$tmp/want"
	"$O/$t" --help | sed -n 's/^ \{1,8\}\(-[a-zA-Z]\), \(--[a-z0-9-]*\)\( [A-Z][^ ]*\)\{0,1\}.*/\1 \2\3/p' |
		sort > "$tmp/help"
	if [ "$(cut -d' ' -f1,2 "$tmp/help")" = "$(cat "$tmp/want")" ]; then
		ok "$t: --help's short options are the README's: $(cut -d' ' -f1 "$tmp/want" | tr '\n' ' ')"
	else
		bad "$t: --help and the README's table differ: $(diff <(cut -d' ' -f1,2 "$tmp/help") "$tmp/want" |
			grep '^[<>]' | tr '\n' ' ')"
	fi
	# Each listed letter is accepted (with a value if --help shows one) ...
	while read -r s l arg; do
		run "$t" $s ${arg:+$(value $s)} --help
		if [ $rc -eq 0 ]; then ok "$t accepts $s ($l)"
		else bad "$t refuses $s, which its --help lists as $l (exit $rc)" "$tmp/err"; fi
	done < "$tmp/help"
	# ... and every other letter of the table is refused.
	for s in $(cut -d' ' -f1 "$tmp/table"); do
		grep -q -- "^$s " "$tmp/help" && continue
		usage_error "a short option that is another tool's" "$t" $s x --help
	done
done

# Packaging: make install into a staging root with PREFIX=/usr, after a build
# with the default PREFIX.  sr.pc says /usr; a program built with pkg-config
# against that root compiles, links the installed libsr and runs; the
# installed tools name no path of the checkout; bash completion is there and
# completes; make uninstall leaves no file behind.
root=$tmp/root
make -s O="$O" install DESTDIR="$root" PREFIX=/usr >"$tmp/inst" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -qx 'prefix=/usr' "$root/usr/lib/pkgconfig/sr.pc"; then
	ok "make install PREFIX=/usr: sr.pc has prefix=/usr (the build's PREFIX: $(sed -n 's/^prefix=//p' "$O/sr.pc"))"
else bad "make install PREFIX=/usr (exit $rc): sr.pc says '$(grep '^prefix=' "$root/usr/lib/pkgconfig/sr.pc" 2>&1)'" "$tmp/inst"; fi
cat >"$tmp/prog.c" <<'C'
/* Writes a small image with libsr and reads it back: the installed library, end to end. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sr.h>

int main(void)
{
	struct sr_gen_params p = { .mem_bytes = 1 << 20, .vcpus = 1, .iterations = 1,
				   .dirty_pages = 8, .compress = SR_COMPRESS_LZ4, .seed = 1 };
	struct sr_error err;
	struct sr_record rec;
	struct sr_reader *r;
	int fd = memfd_create("prog", 0), n = 0, rc;

	if (fd < 0 || sr_gen_image(fd, &p, &err) || lseek(fd, 0, SEEK_SET))
		return 1;
	if (!(r = sr_reader_open(fd, &err)))
		return 1;
	while ((rc = sr_reader_next(r, &rec, &err)) == 1)
		n++;
	printf("libsr %s: %d records, %s\n", SR_LIBRARY_VERSION, n + 1, rc ? err.msg : "verified");
	sr_reader_free(r);
	return rc != 0;
}
C
flags=$(PKG_CONFIG_SYSROOT_DIR=$root PKG_CONFIG_PATH=$root/usr/lib/pkgconfig pkg-config --cflags --libs sr 2>&1)
# Under make asan the installed libsr is sanitized too (SAN=1 reaches make install):
# its runtime must come first, so the program is built with it.
san=
ldd "$root/usr/lib/libsr.so.0" 2>/dev/null | grep -q libasan && san="-fsanitize=address,undefined"
if cc $san -o "$tmp/prog" "$tmp/prog.c" $flags >"$tmp/cc.out" 2>&1 &&
   LD_LIBRARY_PATH=$root/usr/lib "$tmp/prog" >"$tmp/prog.out" 2>&1 &&
   grep -q 'verified$' "$tmp/prog.out" &&
   LD_LIBRARY_PATH=$root/usr/lib ldd "$tmp/prog" | grep -q "libsr.so.0 => $root/usr/lib/libsr.so.0"; then
	ok "a program built with pkg-config --cflags --libs sr ($flags) against the root runs: $(cat "$tmp/prog.out")"
else bad "building and running a program against the installed libsr ($flags)" "$tmp/cc.out"; cat "$tmp/prog.out" 2>/dev/null; fi
mkdir -p "$tmp/pvm/module/kvm_pvm"
SR_PROBE_SYSFS=$tmp/pvm "$root/usr/bin/sr-run" "$O/guest/sr-test-guest.bin" >"$tmp/out" 2>&1; rc=$?
SR_PROBE_SYSFS=$tmp/pvm "$O/sr-run" "$O/guest/sr-test-guest.bin" >"$tmp/out2" 2>&1
if [ $rc -eq 3 ] && grep -q kvm_pvm "$tmp/out" && ! grep -q 'tests/box.sh' "$tmp/out" && grep -q 'tests/box.sh' "$tmp/out2"; then
	ok "the installed sr-run's host verdict names no tests/box.sh (the checkout's does): $(cat "$tmp/out")"
else bad "installed sr-run's verdict (exit $rc)" "$tmp/out"; fi
# Completion: options from the tool's --help, values, domain names from the run directory.
mkdir -p "$tmp/run"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$tmp/run/web1.sock"
complete_words() {	# words...: what completion offers for the last one
	PATH=$root/usr/bin:$PATH SR_RUN_DIR=$tmp/run bash -c '
		source "$0"; COMP_WORDS=("${@}"); COMP_CWORD=$(($# - 1)); _sr "$1"
		printf "%s\n" "${COMPREPLY[@]}"' "$root/usr/share/bash-completion/completions/$1" "$@" | sort | tr '\n' ' '
}
c1=$(complete_words sr-save --thr); c2=$(complete_words sr-save --compress ''); c3=$(complete_words sr-save -q '')
c4=$(complete_words sr-dump --t)
if [ "$c1" = "--threads --throttle " ] && [ "$c2" = "lz4 none " ] && [ "$c3" = "web1 " ] && [ "$c4" = "--type " ] &&
   [ "$(ls "$root/usr/share/bash-completion/completions" | wc -l)" -eq 7 ]; then
	ok "bash completion for each tool: sr-save --thr: $c1; --compress: $c2; DOMAIN: $c3; sr-dump --t: $c4"
else bad "bash completion: '$c1' '$c2' '$c3' '$c4'"; fi
make -s O="$O" uninstall DESTDIR="$root" PREFIX=/usr >"$tmp/uninst" 2>&1; rc=$?
left=$(find "$root" ! -type d | sed "s|^$root||")
if [ $rc -eq 0 ] && [ -z "$left" ]; then ok "make uninstall removes every file make install put there"
else bad "make uninstall (exit $rc) left: $(echo $left)" "$tmp/uninst"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
