#!/usr/bin/env bash
# audit9's box reproducers in one box run:
#   gcc -O2 -o build/tests/audit9-tlspeer tests/tlspeer.c -lgnutls -lxxhash
#   SR_BOX_IDLE=900 /work/boxrun SR_KVM=box tests/on-kvm.sh audit9 tests/audit9/box-all.sh
rc=0
for t in oracle pump-kvm; do
	echo "== tests/audit9/$t.sh"
	tests/audit9/$t.sh || rc=1
done
exit $rc
