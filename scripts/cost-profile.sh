#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Where the cost suite's instructions go: boots the cost suite twice on
# 6.12, once with one policy of kvm_vpmu alone and once with KVM's own
# path alone (kvm-c-reference.ko), each under QEMU -icount with a TCG
# plugin (tests/bench/tb_insns.c) that counts the instructions of every
# kernel block executed, and prints, per kernel function, the
# instructions per reprogram in each boot and the difference.  A
# developer's tool: make check does not run it.
#
#   scripts/cost-profile.sh [legacy|reuse|cache]   (default: reuse)
#
# The two boots run at once, one host CPU each, about two minutes; the
# files are kept in $VPMU_CACHE/cost-profile/.
set -euo pipefail
. "$(dirname "$0")/env.sh"

policy=${1:-reuse}
case $policy in
legacy | reuse | cache) ;;
*) vpmu_log "usage: $0 [legacy|reuse|cache]"; exit 2 ;;
esac
vpmu_use_kernel 6.12
dir=$VPMU_CACHE/cost-profile
mkdir -p "$dir"
gcc -O2 -Wall -shared -fPIC -o "$dir/tb_insns.so" "$VPMU_TOP/tests/bench/tb_insns.c"

declare -A pids=()
for part in "$policy" kvm; do
	rm -f "$dir/$part.prof"
	VPMU_COST_ONLY=$part VPMU_VM_DIR="$dir/vm-$part" \
		VPMU_QEMU_PLUGIN="$dir/tb_insns.so,out=$dir/$part.prof" \
		"$VPMU_TOP/scripts/vm-test.sh" cost@6.12 >"$dir/$part.out" 2>&1 &
	pids[$part]=$!
done
failed=0
for part in "${!pids[@]}"; do
	wait "${pids[$part]}" || { vpmu_log "the $part boot failed: $dir/$part.out"; failed=1; }
done
[ $failed = 0 ]

grep -h '^# cost/' "$dir/vm-$policy/guest-cost-6.12.log.txt" "$dir/vm-kvm/guest-cost-6.12.log.txt" |
	sed 's/^# //'
python3 "$VPMU_TOP/scripts/cost_profile.py" "$VPMU_KOUT" \
	"$policy:$dir/$policy.prof:$dir/vm-$policy/guest-cost-6.12.log.txt:arch/x86/kvm/kvm.ko" \
	"kvm_c:$dir/kvm.prof:$dir/vm-kvm/guest-cost-6.12.log.txt:kvm-c-reference.ko"
