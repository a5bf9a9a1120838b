#!/usr/bin/env bash
# Mutation testing (make mutants): each mutant of tests/mutants.tsv changes one
# exact snippet of one file (a flipped comparison, a dropped check, an
# off-by-one, a skipped wait) in a scratch copy of the tree (build-mutants/src,
# never the checkout itself), which is built and run against the tests that
# cover that file.  A mutant that makes a test fail (or hang, or crash) is
# killed; one that passes them all survived: a gap in the tests, or a change
# that does not matter (the table says which, and why).
#
# The table, tab separated, one mutant a line ('#' lines are comments):
#   ID  FILE  TESTS  ORIGINAL  REPLACEMENT  WHAT
# ORIGINAL must occur exactly once in FILE; when it does not (another change
# moved the code on) the mutant is reported STALE, never skipped silently: its
# snippet needs refreshing.  In the snippets \t, \n and \\ stand for tab,
# newline and backslash; a REPLACEMENT of <delete> is nothing.
# TESTS: test sets joined by '+', run in order until one fails:
#   unit        make check-unit (libsr's and ctl's Criterion tests, tests/threads)
#   hw          the device models' Criterion tests (test-hw: bus, PCI, virtqueues;
#               test-virtio: the virtio-pci transport, its saves and restores)
#   tools       make check-tools (sr-dump, sr-save/sr-migrate options, man pages)
#   kvm:A,B     the sections A and B of tests/kvm.sh on real KVM (the box here);
#               run only with MUTANTS_KVM=1, all such mutants in one box session
#
#   tests/mutants.sh [ID ...]      only these mutants
#   MUTANTS_KVM=1                  also the mutants only KVM tests cover
#   MUTANTS_TIMEOUT (600)          seconds per test set: past it the mutant counts killed (hung)
#   MUTANTS_WORK (build-mutants)   the scratch directory: two runs with their own
#                                  directories and IDs split the table between them
#
# Ends "N killed, N survived (score P%)" on a line of its own; exit 1 when the
# score is under 90% or a mutant is stale or does not build.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
table=${MUTANTS_TABLE:-$top/tests/mutants.tsv}
work=${MUTANTS_WORK:-$top/build-mutants}
case $work in /*) ;; *) work=$top/$work ;; esac
src=$work/src
limit=${MUTANTS_TIMEOUT:-600}
kvm=${MUTANTS_KVM:-0}
only=" $* "
cd "$top"

log() { printf '%s\n' "$*"; }

# A scratch copy of the tree as it is now (tracked and new files, not build output).
log "mutants: copying the tree to $src"
rm -rf "$src"
mkdir -p "$src/build"
git ls-files -z --cached --others --exclude-standard | (cd "$top" && xargs -0 cp --parents -t "$src") ||
	{ log "mutants: copying the tree failed"; exit 2; }
# The box kernel is shared, not fetched again.
ln -s "$top/build/box" "$src/build/box"

mk() { nice -n 10 make -C "$src" --no-print-directory -s -j2 "$@"; }
targets="all build/tests/test-libsr build/tests/test-ctl build/tests/test-hw build/tests/test-virtio build/tests/threads build/tests/mkimage
	build/tests/kvm-dirty-log build/tests/imgedit build/guest/linux-initramfs.cpio.gz"
# What a mutant's test sets need built (unit tests alone link little).
targets_for() {
	case $1 in
	unit) echo "build/tests/test-libsr build/tests/test-ctl build/tests/threads build/sr-dump" ;;	# all of them: a mutant must build
	hw) echo "build/tests/test-hw build/tests/test-virtio" ;;
	*) echo "$targets" ;;
	esac
}

# Runs test set $1 against the scratch build for a mutant of file $2 (none:
# the unmutated tree); 0 when every test passed.  The unit set is what
# check-unit runs, each test bounded (a mutant may hang one), stopping at the
# first failure; ctl.c's mutants need only test-ctl, libsr's not it.
run_set() {
	case $1 in
	unit)
		(cd "$src" &&
		 { [ "${2:-}" = tools/ctl.c ] ||
		   { SR_DUMP=$src/build/sr-dump timeout "$limit" build/tests/test-libsr --jobs 2 --timeout 120 --fail-fast &&
		     timeout 300 build/tests/threads; }; } &&
		 { [[ "${2:-}" == libsr/* ]] || timeout "$limit" build/tests/test-ctl --jobs 2 --timeout 60 --fail-fast; }) ;;
	hw) (cd "$src" && timeout "$limit" build/tests/test-hw --jobs 2 --timeout 60 --fail-fast &&
	     timeout "$limit" build/tests/test-virtio --jobs 2 --timeout 120 --fail-fast) ;;
	tools) timeout "$limit" make -C "$src" --no-print-directory -s check-tools ;;
	*) return 0 ;;
	esac
}

log "mutants: building the unmutated copy"
mk $targets >"$work/base.build" 2>&1 || { cat "$work/base.build"; log "mutants: the unmutated tree does not build"; exit 2; }
used=$(awk -F'\t' '!/^#/ && NF > 2 { print $3 }' "$table" | tr '+' '\n' | grep -v '^kvm:' | sort -u)
for set in $used; do
	if ! run_set $set >"$work/base.$set" 2>&1; then
		tail -20 "$work/base.$set"
		log "mutants: the unmutated tree fails '$set': no mutant can be judged"
		exit 2
	fi
done

killed=0 survived=0 stale=0 broken=0 notrun=0
declare -a kvm_ids=() kvm_sets=()
rm -rf "$work/kvm"
mkdir -p "$work/kvm"
results=$work/results
: > "$results"

report() {	# id file verdict what
	printf '%-6s %-18s %-26s %s\n' "$1" "$2" "$3" "$4" | tee -a "$results"
}

# Applies or undoes one mutant: python does the exact, counted replacement.
apply() {	# file original replacement -> 0 applied, 3 not found, 4 found more than once
	python3 - "$src/$1" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1:4]
unesc = lambda s: s.encode().decode('unicode_escape')
old = unesc(old)
new = '' if new == '<delete>' else unesc(new)
text = open(path).read()
n = text.count(old)
if n != 1:
    sys.exit(3 if n == 0 else 4)
open(path, 'w').write(text.replace(old, new))
EOF
}

while IFS=$'\t' read -r id file tests orig repl what; do
	[ -z "$id" ] || [ "${id:0:1}" = "#" ] && continue
	[ "$only" = "  " ] || [[ "$only" == *" $id "* ]] || continue
	cp "$top/$file" "$src/$file"		# pristine
	apply "$file" "$orig" "$repl"; rc=$?
	if [ $rc -ne 0 ]; then
		stale=$((stale + 1))
		report "$id" "$file" "STALE" "the snippet occurs $([ $rc -eq 3 ] && echo 0 || echo '>1') times: refresh it ($what)"
		continue
	fi
	touch "$src/$file"
	if [ "$kvm" != 1 ] && [[ "$tests" == kvm:* ]] && [[ "$tests" != *+* ]]; then
		notrun=$((notrun + 1))
		report "$id" "$file" "not run: KVM (${tests#kvm:})" "$what"
		cp "$top/$file" "$src/$file"; touch "$src/$file"
		continue
	fi
	if ! mk $(targets_for "$tests") >"$work/$id.build" 2>&1; then
		broken=$((broken + 1))
		report "$id" "$file" "DOES NOT BUILD" "$what (see $work/$id.build)"
		cp "$top/$file" "$src/$file"; touch "$src/$file"
		continue
	fi
	verdict=survived by=
	IFS=+ read -ra sets <<< "$tests"
	kvm_part=
	for set in "${sets[@]}"; do
		case $set in
		kvm:*) kvm_part=${set#kvm:} ;;
		*)
			run_set "$set" "$file" >"$work/$id.$set" 2>&1; rc=$?
			if [ $rc -ne 0 ]; then
				verdict=killed by="$set$([ $rc -eq 124 ] && echo ' (hung: timeout)')"
				break
			fi ;;
		esac
	done
	if [ $verdict = survived ] && [ -n "$kvm_part" ]; then
		if [ "$kvm" = 1 ]; then
			# Kept for the box session below: the mutant's binaries in a build of its own.
			mkdir -p "$work/kvm/$id"
			(cd "$src/build" && find . -path ./box -prune -o -type f ! -name '*.o' ! -name '*.d' -print0 |
				cpio -0 -pdm --quiet "$work/kvm/$id")
			kvm_ids+=("$id") kvm_sets+=("$kvm_part")
			printf '%s\t%s\t%s\n' "$id" "$file" "$what" >> "$work/kvm/pending"
			verdict=pending
		else
			verdict=notrun		# what native tests there are passed; KVM's not run
		fi
	fi
	case $verdict in
	killed) killed=$((killed + 1)); report "$id" "$file" "killed by $by" "$what" ;;
	survived) survived=$((survived + 1)); report "$id" "$file" "SURVIVED" "$what" ;;
	notrun) notrun=$((notrun + 1)); report "$id" "$file" "not run: KVM ($kvm_part)" "$what" ;;
	pending) log "$(printf '%-6s %-18s %-26s %s' "$id" "$file" "for the box: $kvm_part" "$what")" ;;
	esac
	cp "$top/$file" "$src/$file"
	touch "$src/$file"
done < "$table"

# The KVM-only mutants: one box session runs the unmutated build first (it must
# pass, or nothing is judged), then each mutant's sections.
if [ ${#kvm_ids[@]} -gt 0 ]; then
	mk $targets >/dev/null 2>&1
	mkdir -p "$work/kvm/base"
	(cd "$src/build" && find . -path ./box -prune -o -type f ! -name '*.o' ! -name '*.d' -print0 |
		cpio -0 -pdm --quiet "$work/kvm/base")
	rel=${work#"$top"/}		# the box runs in the checkout, by relative paths
	all_sets=$(printf '%s\n' "${kvm_sets[@]}" | tr ',' '\n' | sort -u | tr '\n' ' ')
	{
		echo "cd '$top'"
		echo "O=$rel/kvm/base SR_KVM_TESTS='$all_sets' tests/kvm.sh > $rel/kvm/base.log 2>&1; echo \$? > $rel/kvm/base.rc"
		echo "echo mutants: the unmutated build: \$(tail -1 $rel/kvm/base.log)"
		for i in "${!kvm_ids[@]}"; do
			id=${kvm_ids[$i]}
			echo "O=$rel/kvm/$id SR_KVM_TESTS='${kvm_sets[$i]//,/ }' timeout $limit tests/kvm.sh > $rel/kvm/$id.log 2>&1; echo \$? > $rel/kvm/$id.rc"
			echo "echo mutants: $id: \$(tail -1 $rel/kvm/$id.log)"
		done
	} > "$work/kvm/run.sh"
	log "mutants: ${#kvm_ids[@]} mutant(s) only KVM tests cover: one box session (sections: $all_sets)"
	SR_BOX_TIMEOUT=${SR_BOX_TIMEOUT:-7200} tests/box.sh -- sh "$work/kvm/run.sh"
	base=$(cat "$work/kvm/base.rc" 2>/dev/null || echo none)
	while IFS=$'\t' read -r id file what; do
		rc=$(cat "$work/kvm/$id.rc" 2>/dev/null || echo none)
		if [ "$base" != 0 ]; then
			notrun=$((notrun + 1)); report "$id" "$file" "not judged: base failed" "$what"
		elif [ "$rc" = none ]; then
			notrun=$((notrun + 1)); report "$id" "$file" "not run (box)" "$what"
		elif [ "$rc" != 0 ]; then
			killed=$((killed + 1)); report "$id" "$file" "killed by kvm (box)" "$what"
		else
			survived=$((survived + 1)); report "$id" "$file" "SURVIVED (kvm)" "$what"
		fi
	done < "$work/kvm/pending"
fi

judged=$((killed + survived))
score=$(awk -v k=$killed -v j=$judged 'BEGIN { printf "%.1f", j ? 100 * k / j : 0 }')
log ""
log "mutants: $stale stale, $broken do not build, $notrun not run (KVM only: MUTANTS_KVM=1 runs them in the box)"
log "$killed killed, $survived survived (score $score%)"
[ $stale -eq 0 ] && [ $broken -eq 0 ] && awk -v s="$score" 'BEGIN { exit !(s >= 90) }'
