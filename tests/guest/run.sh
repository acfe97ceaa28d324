#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs in the test VM (L1: the patched kernel, kvm, kvm_vpmu soft=1 and the
# vendor module): boots the L2 Linux guest with QEMU on L1's KVM and runs its
# perf workloads under one policy, with KVM's PMU statistics of the L2 VM
# (the only VM: KVM's host-wide sums in debugfs) read around every round.
# Prints L2's console prefixed "L2| ", one line per round:
#
#   VPMU-GUEST policy P cpus N work W round R host <stat> <delta>... guest <L2-RESULT fields>
#
# and, as L2's console ends, the reprograms KVM had counted for it by its
# last line before its PMU driver probed (init.sh discards an L2 that
# stopped before then with none):
#
#   VPMU-L2-REPROGRAMS <n>
#
#   run.sh <policy> <L2 CPUs> <workloads> <rounds> <million iterations>

P=/sys/module/kvm_vpmu/parameters
D=/sys/kernel/debug/kvm_vpmu
K=/sys/kernel/debug/kvm
policy=$1 cpus=$2 work=$3 rounds=$4 iters=$5
STATS="creates reprograms resumes releases kept adopted evicted"

# kvm_file <stat>: KVM's name of a statistic in $STATS.
kvm_file() {
	case $1 in
	reprograms) echo pmu_reprograms ;;
	creates | resumes | releases) echo "pmu_event_$1" ;;
	*) echo "pmu_events_$1" ;;
	esac
}

snapshot() {
	for s in $STATS; do printf '%s ' "$(cat $K/$(kvm_file $s))"; done
}

echo "$policy" > $P/policy

# -cpu host: L2 sees the PMU that KVM builds on kvm_vpmu's soft counters.
# -xsave: QEMU's TCG does not intercept L2's XSETBV for L1's KVM, so KVM's
# CPUID 0xd sizes miss L2's XCR0 and L2 warns "XSAVE consistency problem"
# (xstate.c:605) at boot.  idle=poll: a halted L2 vCPU under nested TCG
# sometimes never saw its timer interrupt again, and L2 hung.  microvm with
# acpi=off: with its ACPI tables this L2 kernel got no serial interrupt, so
# user space wrote nothing.  Bounded: a hung L2 must not hold up the suite
# (an L2 boot and its workloads take about a minute; one hung at boot
# cost its full 10 minutes under the earlier bound).
timeout -s KILL 300 /usr/bin/qemu-system-x86_64 -M microvm,acpi=off -accel kvm -cpu host,pmu=on,-xsave \
	-m 384 -smp "$cpus" -nodefaults -no-user-config -display none -serial stdio -no-reboot \
	-kernel /guest/bzImage -initrd /guest/initramfs.cpio \
	-append "console=ttyS0 rdinit=/init panic=-1 reboot=t idle=poll l2.work=$work l2.rounds=$rounds l2.iters=$iters" \
	</dev/null 2>&1 | {
	cr=$(printf '\r')
	before=""
	result=""
	seen=0
	probed=""
	while IFS= read -r line; do
		line=${line%"$cr"}
		echo "L2| $line"
		[ -n "$probed" ] || seen=$(cat $K/pmu_reprograms)
		case $line in
		"Performance Events:"*)
			probed=1
			;;
		L2-RESULT*)
			result=${line#L2-RESULT }
			;;
		"L2-MARK begin "*)
			before=$(snapshot)
			warm=""
			;;
		"L2-MARK warm"*)
			warm=$(snapshot)
			;;
		"L2-MARK end "*)
			set -- ${line#L2-MARK end }
			w=$1 r=$2
			after=$(snapshot)
			# The counts once warm: from the loop's mark to the end.
			echo "$STATS" "$before" "$after" "${warm:-$before}" | awk -v p="$policy" -v c="$cpus" -v w="$w" -v r="$r" -v g="$result" '{
				n = NF / 4
				printf "VPMU-GUEST policy %s cpus %s work %s round %s host", p, c, w, r
				for (i = 1; i <= n; i++)
					printf " %s %.0f", $i, $(2 * n + i) - $(n + i)
				for (i = 1; i <= n; i++)
					printf " warm_%s %.0f", $i, $(2 * n + i) - $(3 * n + i)
				sub(/^work [^ ]* round [^ ]* /, "", g)
				printf " guest %s\n", g
			}'
			result=""
			;;
		esac
	done
	echo "VPMU-L2-REPROGRAMS $seen"
}
echo "VPMU-GUEST-EXIT policy $policy cpus $cpus kept_events $(cat $D/kept_events) kept_vcpus $(cat $D/kept_vcpus)"
