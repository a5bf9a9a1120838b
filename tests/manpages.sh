#!/usr/bin/env bash
# Every tool has a man page that lists exactly the options its --help lists
# (and, for sr-ctl, the same commands), and make install installs them all.
set -u
O=${O:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# Options a --help text defines: an indented "-x, --name" or "--name" at a line's start.
help_opts() { "$O/$1" --help | sed -n 's/^ \{1,8\}\(-[a-zA-Z], \)\{0,1\}\(--[a-z][a-z0-9-]*\).*/\2/p' | sort -u; }
# Options a man page defines: the line after each .TP.
man_opts() { awk 'prev == ".TP" { print } { prev = $1 }' "docs/$1.1" | sed 's/\\-/-/g' |
	grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }
# Short options, as "-x --long": --help's "  -x, --long", a man page's ".BR \-x ", " \-\-long".
help_shorts() { "$O/$1" --help | sed -n 's/^ \{1,8\}\(-[a-zA-Z]\), \(--[a-z][a-z0-9-]*\).*/\1 \2/p' | sort -u; }
man_shorts() { awk 'prev == ".TP" { print } { prev = $1 }' "docs/$1.1" | sed 's/\\-/-/g' |
	sed -n 's/^\.BR* \(-[a-zA-Z]\) *", *" *\(--[a-z][a-z0-9-]*\).*/\1 \2/p' | sort -u; }

for t in sr-run sr-save sr-migrate sr-restore sr-dump sr-ctl; do
	if [ ! -f "docs/$t.1" ]; then bad "$t: no man page docs/$t.1"; continue; fi
	if ! man -l "docs/$t.1" >"$tmp/page" 2>"$tmp/err" || [ -s "$tmp/err" ]; then
		bad "$t: man page does not render cleanly: $(head -2 "$tmp/err")"; continue
	fi
	help_opts $t > "$tmp/h"; man_opts $t > "$tmp/m"
	if [ ! -s "$tmp/h" ]; then bad "$t: no options found in --help"; continue; fi
	if cmp -s "$tmp/h" "$tmp/m"; then
		ok "$t: man page and --help list the same $(wc -l < "$tmp/h") options"
	else
		bad "$t: man page and --help differ: $(diff "$tmp/h" "$tmp/m" | grep '^[<>]' | tr '\n' ' ')"
	fi
	if grep -q '^\.SH EXAMPLES$' "docs/$t.1" && [ "$(sed -n '/^\.SH EXAMPLES$/,/^\.SH /p' "docs/$t.1" | grep -c "^$t ")" -ge 1 ]; then
		ok "$t: the man page has EXAMPLES running $t"
	else bad "$t: the man page has no EXAMPLES section running $t"; fi
	help_shorts $t > "$tmp/h"; man_shorts $t > "$tmp/m"
	if cmp -s "$tmp/h" "$tmp/m"; then
		ok "$t: man page and --help give the same short options: $(cut -d' ' -f1 "$tmp/h" | tr '\n' ' ')"
	else
		bad "$t: short options differ: $(diff "$tmp/h" "$tmp/m" | grep '^[<>]' | tr '\n' ' ')"
	fi
done

# sr-ctl's commands, both ways.
"$O/sr-ctl" --help | sed -n 's/^  \([a-z]\{3,\}\)  .*/\1/p' | sort -u > "$tmp/h"
awk '/^\.SH/ { desc = ($2 == "DESCRIPTION") }
     desc && prev == ".TP" && $1 == ".B" && NF == 2 { print $2 } { prev = $1 }' docs/sr-ctl.1 | sort -u > "$tmp/m"
if cmp -s "$tmp/h" "$tmp/m"; then ok "sr-ctl: man page and --help describe the same $(wc -l < "$tmp/h") commands"
else bad "sr-ctl commands differ: $(diff "$tmp/h" "$tmp/m" | grep '^[<>]' | tr '\n' ' ')"; fi

make -s O="$O" install DESTDIR="$tmp/root" PREFIX=/usr >"$tmp/inst" 2>&1
n=$(ls "$tmp/root/usr/share/man/man1/" 2>/dev/null | grep -c '^sr-.*\.1$')
if [ "$n" -eq 6 ]; then ok "make install puts the 6 man pages in share/man/man1"
else bad "make install installed $n man pages, not 6: $(tail -3 "$tmp/inst")"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
