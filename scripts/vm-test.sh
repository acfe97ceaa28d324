#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the built kernels in QEMU with a busybox initramfs holding KVM,
# kvm_vpmu and the selftests, run tests/vm/init.sh there, and judge each
# guest log.  Bounded in time; the logs are kept in $VPMU_CACHE/vm/.
#
#   scripts/vm-test.sh [suite[@kernel]...]
#
# full: the self-test, parameters and the kselftests; scale: the scale test
# up to 512 vCPUs; real: a Linux L2 guest with perf (tests/guest/); robust:
# hostile guests, on a debug kernel only; cost: the cost per guest write
# under each policy and under KVM's own path (6.12 only, whose tree builds
# that reference, tests/bench/); intel, intel-real and intel-cost: the
# full, real and cost suites beside kvm-intel, booted under Bochs (nested
# VMX), where the QEMU suites run beside kvm-amd.  A suite runs on the kernel named
# after @: 6.12, 7.3, or their debug builds (KASAN, lockdep, kmemleak)
# 6.12-debug and 7.3-debug; by default on $KVER (7.3).  Without arguments,
# what make check runs: real, intel-real (one round), intel, full, scale,
# cost and intel-cost on 6.12, intel on 7.3, full and robust on 7.3's
# debug build.
#
# For scripts/cost-profile.sh: VPMU_COST_ONLY=<policy>|kvm runs that part
# of the cost suite alone, unjudged; VPMU_QEMU_PLUGIN=<plugin[,args]> loads
# a TCG plugin into QEMU.
set -euo pipefail
. "$(dirname "$0")/env.sh"

vm=${VPMU_VM_DIR:-$VPMU_CACHE/vm}
mkdir -p "$vm"
# CPUs of the test VM: the machine's, at least 2 (the concurrency tests).
VPMU_VM_CPUS=${VPMU_VM_CPUS:-$(( $(nproc) < 2 ? 2 : $(nproc) ))}

# Hardware acceleration only where the CPU really has VMX or SVM: /dev/kvm
# on these machines may be backed by something that cannot run this kernel.
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then
	accel=(-accel kvm -cpu host)
else
	# Family 0x19 (Zen 3): upstream AMD PMU selftests apply only to Zen.
	# thread=single interleaves the VM's CPUs on one host thread; with
	# thread=multi (MTTCG, VPMU_TCG_THREAD=multi) nested SVM guests
	# triple-faulted and the host took interrupts with IF clear (README,
	# Limits).
	tcg_cpu=(-cpu "${VPMU_TCG_CPU:-max,family=25}")
fi
tcg_thread() { # tcg_thread <suite>
	# Under thread=single the L2 Linux guest of the real suite lost its timer
	# interrupts and stopped at boot (3 of 3 runs); under MTTCG it runs.
	[ "$1" = real ] && { echo "${VPMU_TCG_THREAD:-multi}"; return; }
	echo "${VPMU_TCG_THREAD:-single}"
}
# kunit_check <log>: the KUnit suite kvm_vpmu (7.3 with
# CONFIG_KVM_VPMU_KUNIT_TEST), which the full suite runs once through
# KUnit's debugfs (autorun is off: at every load of the module it cost
# minutes on the KASAN kernel) and KUnit reports in KTAP on the console.
# Fails unless it ran, every run passed every case and skipped none, and
# its cases are the self-test's: a missing or skipped suite fails.
kunit_check() {
	local log=$1 runs cases ktap
	runs=$(grep -cx 'ok [0-9]* kvm_vpmu' "$log" || true)
	[ "$runs" -gt 0 ] || { vpmu_log "the KUnit suite kvm_vpmu did not pass (not run, skipped or failed)"; return 1; }
	if grep -E '^# kvm_vpmu: pass:' "$log" |
	   grep -vqE '^# kvm_vpmu: pass:([1-9][0-9]*) fail:0 skip:0 total:\1$'; then
		vpmu_log "a KUnit run of kvm_vpmu failed, skipped or ran no case"
		return 1
	fi
	cases=$(awk '/^    # Subtest: kvm_vpmu$/ { on = 1; next }
		on && /^(not )?ok [0-9]+ kvm_vpmu/ { on = 0 }
		on && /^    (not )?ok [0-9]+ / { print }' "$log")
	if [ -z "$cases" ] || grep -qvE '^    ok [0-9]+ [a-z0-9_]+$' <<<"$cases"; then
		vpmu_log "KUnit cases of kvm_vpmu failed, were skipped or are missing"
		return 1
	fi
	cases=$(sed 's/^    ok [0-9]* //' <<<"$cases" | sort -u)
	# Not anchored: on a slow console (Bochs) the kernel's lines can land
	# inside a line of user space's that was still being sent.
	ktap=$(sed -n 's/.*kvm_vpmu: ok [0-9]* //p' "$log" | sort -u)
	if [ -n "$ktap" ] && [ "$ktap" != "$cases" ]; then
		vpmu_log "the KUnit cases of kvm_vpmu are not the self-test's"
		return 1
	fi
	vpmu_log "KUnit suite kvm_vpmu: passed in $runs runs, $(wc -l <<<"$cases") cases"
}

# boot_qemu <kernel build dir> <suite> <name> <command line> <log>: the
# AMD suites, under QEMU (nested SVM under TCG).  Under thread=single with
# -icount shift=0, QEMU's virtual clock advances 1 ns per instruction
# executed (L1 and L2 alike), so the TSC, the timers and the task-clock of
# soft events follow instructions, not the host's load: costs repeat from
# boot to boot (README, Exact cost).  align=off: guest time need not keep
# up with host time; sleep=off: an idle CPU's wait is skipped, not slept.
# What else could differ between two boots is taken away: RDRAND and
# RDSEED (TCG answers them from the host's random source), the RTC's
# start (the host's time), and KASLR.  Not on the debug kernels, which
# measure nothing (KASAN's costs are not the product's) and whose suites
# would take minutes longer; VPMU_ICOUNT=0 turns it off everywhere.
boot_qemu() {
	local kout=$1 suite=$2 name=$3 cmdline=$4 log=$5 cpus=$VPMU_VM_CPUS
	local icount=() plugin=()
	[ -n "${VPMU_QEMU_PLUGIN:-}" ] && plugin=(-plugin "$VPMU_QEMU_PLUGIN")
	if [ -n "${tcg_cpu+x}" ]; then
		accel=(-accel "tcg,thread=$(tcg_thread "$suite")" "${tcg_cpu[@]}")
		if [ "$(tcg_thread "$suite")" = single ] && [[ $name != *-debug ]] &&
		   [ "${VPMU_ICOUNT:-1}" = 1 ]; then
			accel[-1]+=,-rdrand,-rdseed
			icount=(-icount shift=0,align=off,sleep=off -rtc clock=vm,base=2026-01-01T00:00:00)
			cmdline+=" vpmu.exact=1 nokaslr random.trust_cpu=off"
		fi
	fi
	# The cost suite times one vCPU: a second L1 CPU would only add its
	# own work between the measured writes.
	[ "$suite" = cost ] && cpus=1
	vpmu_log "booting $name suite on $kout (${accel[*]} ${icount[*]}), log in $log"
	timeout --foreground -k 10 "${VPMU_VM_TIMEOUT:-1800}" qemu-system-x86_64 "${accel[@]}" "${icount[@]}" "${plugin[@]}" \
		-m "${VPMU_VM_MEM:-4096}" -smp "$cpus" -nographic -no-reboot \
		-kernel "$kout/arch/x86/boot/bzImage" -initrd "$vm/initramfs-$name.cpio.gz" \
		-append "$cmdline vpmu.cpus=$cpus tsc_early_khz=2000000" </dev/null >"$log" 2>&1
}

# boot_bochs <kernel build dir> <name> <command line> <log>: the Intel
# suites, under Bochs (nested VMX).  One CPU: Bochs emulates every CPU on
# one host thread, and with two, one run of mux_reuse went 15 minutes
# without an NMI.  Its clock (sync=none, bochs-boot.sh) follows
# instructions executed: costs repeat, as under QEMU's -icount.
# clearcpuid=ht: the Haswell model's CPUID topology makes the kernel warn
# (topology_common.c) without it.  115200 baud: Bochs's
# UART sends at the baud rate in guest time, and at the kernel's default
# of 9600 the console ran seconds behind the tests.
boot_bochs() {
	local kout=$1 name=$2 cmdline=$3 log=$4
	# The real suite's L1 holds QEMU, L2's image and L2's 384 MiB.
	local mem=1024 clear=ht extra=
	# The cost suite, as under QEMU: no KASLR, no RDRAND or RDSEED.
	if [[ $name == intel-cost* ]]; then
		clear+=,rdrand,rdseed
		extra=" nokaslr random.trust_cpu=off"
	fi
	[[ $name == intel-real* ]] && mem=2048
	vpmu_log "booting $name suite on $kout (Bochs, ${VPMU_BOCHS_CPU:-corei7_haswell_4770}), log in $log"
	VPMU_VM_MEM=${VPMU_BOCHS_MEM:-$mem} "$VPMU_TOP/scripts/bochs-boot.sh" \
		"$kout/arch/x86/boot/bzImage" "$vm/initramfs-$name.cpio.gz" \
		"${cmdline/console=ttyS0/console=ttyS0,115200} vpmu.cpus=1 vpmu.end=wait vpmu.exact=1 clearcpuid=$clear$extra" \
		"$log" </dev/null
}

# boot <kernel build dir> <suite> <name>: builds the initramfs, boots,
# judges; the log is guest-<name>.log.
boot() {
	local kout=$1 suite=$2 name=$3
	local root=$vm/root-$name log=$vm/guest-$name.log ko t rc bad=0
	# What runs in the VM (tests/vm/init.sh), and under what: the intel
	# suites are the full, real and cost suites booted under Bochs.
	local guest_suite=$suite
	case $suite in
	intel) guest_suite=full ;;
	intel-real) guest_suite=real ;;
	intel-cost) guest_suite=cost ;;
	esac

	rm -rf "$root"
	mkdir -p "$root"/{bin/vpmu,sbin,proc,sys,dev,tmp,lib/modules/vpmu}
	cp /bin/busybox "$root/bin/busybox"
	for app in $("$root/bin/busybox" --list); do
		[ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"
	done
	for ko in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko \
		  arch/x86/kvm/kvm-intel.ko arch/x86/kvm/vpmu/kvm_vpmu.ko; do
		cp "$kout/$ko" "$root/lib/modules/vpmu/"
	done
	[ "$guest_suite" = cost ] && cp "$kout/kvm-c-reference.ko" "$root/lib/modules/vpmu/"
	for t in vpmu_nmi_test vpmu_storm_test vpmu_writes_test vpmu_scale_test \
		 pmu_counters_test pmu_event_filter_test vmx_pmu_caps_test; do
		cp "$VPMU_SELFTESTS/$t" "$root/bin/vpmu/"
	done
	install -m 0755 "$VPMU_TOP/tests/vm/init.sh" "$root/init"
	[ "$guest_suite" = real ] && "$VPMU_TOP/scripts/guest-image.sh" "$root" "$kout"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$vm/initramfs-$name.cpio.gz"

	# KUnit suites run when asked (tests/vm/init.sh), not at every load.
	local kunit_args=
	grep -qx 'CONFIG_KUNIT=y' "$kout/.config" && kunit_args=kunit.autorun=0
	# Under Bochs a round of the real suite's workloads takes minutes: one.
	local rounds=${VPMU_GUEST_ROUNDS:-3}
	[ "$suite" = intel-real ] && rounds=${VPMU_GUEST_ROUNDS:-1}
	# no5lvl: 4-level paging.  With 5-level paging a KASAN kernel (7.3)
	# reported a wild-memory-access from an interrupt taken while
	# identify_cpu() had zeroed the boot CPU's features: without LA57 its
	# shadow bounds are those of 4-level paging, which 5-level addresses
	# fall outside of.
	local cmdline="console=ttyS0 rdinit=/init panic=-1 oops=panic tsc=reliable no5lvl vpmu.suite=$guest_suite vpmu.rounds=$rounds vpmu.iters=${VPMU_GUEST_ITERS:-40} vpmu.vendor_args=${VPMU_VENDOR_ARGS:-} vpmu.policies=${VPMU_GUEST_POLICIES:-} vpmu.work=${VPMU_GUEST_WORK:-} vpmu.cost_only=${VPMU_COST_ONLY:-} $kunit_args"
	set +e
	if [ "$suite" != "$guest_suite" ]; then
		boot_bochs "$kout" "$name" "$cmdline" "$log"
	else
		boot_qemu "$kout" "$suite" "$name" "$cmdline" "$log"
	fi
	rc=$?
	set -e
	tr -d '\r' <"$log" >"$log.txt"

	grep -E 'kvm_vpmu: (KTAP|ok|not ok|#|1\.\.)|VPMU-|^( {4})?(ok|not ok|#) |^1\.\.|^TAP' "$log.txt" || true

	[ $rc = 0 ] || { vpmu_log "the VM exited with $rc (124: timed out)"; bad=1; }
	if judged_lines "$log.txt" |
	   grep -E 'not ok|WARNING:|BUG:|Oops|Call Trace|Kernel panic|possible (circular|recursive) locking|inconsistent lock state'; then
		vpmu_log "the $name guest log has failures or kernel warnings"
		bad=1
	fi
	if [ "$guest_suite" = full ]; then
		grep -q 'kvm_vpmu self-test: [0-9]* passed, 0 failed' "$log.txt" ||
			{ vpmu_log "the self-test did not run to a clean summary"; bad=1; }
	fi
	if [ "$guest_suite" = full ] && grep -qx 'CONFIG_KVM_VPMU_KUNIT_TEST=y' "$kout/.config"; then
		kunit_check "$log.txt" || bad=1
	fi
	grep -q 'VPMU-VM-TEST: PASS' "$log.txt" || { vpmu_log "$name VM checks did not pass"; bad=1; }
	[ $bad = 0 ] && vpmu_log "$name suite passed"
	return $bad
}

# judged_lines <guest log>: the lines judged for failures and kernel
# warnings.  Not judged: upstream PMU tests (reported only; some cannot
# apply to soft mode), and the L2 lines of a boot that the real suite
# discarded (VPMU-L2-DISCARDED, tests/vm/init.sh: that L2 stopped before
# its PMU driver probed, and kvm_vpmu handled no write from it).
judged_lines() {
	awk '
	function release() { for (i = 0; i < held; i++) print line[i]; held = 0 }
	/^VPMU-L2-BOOT / { release() }
	/^VPMU-L2-DISCARDED / { held = 0 }
	/^UPSTREAM / { next }
	/^L2\| / { line[held++] = $0; next }
	{ print }
	END { release() }' "$1"
}

# parse_suite <suite[@kernel]>: sets suite, kernel (6.12, 7.3, 6.12-debug
# or 7.3-debug) and name (which names the logs), or fails with a message.
parse_suite() {
	suite=${1%@*} kernel=$VPMU_KVER
	[[ $1 == *@* ]] && kernel=${1#*@}
	case $suite in
	full | scale | real | intel | intel-real) ;;
	cost | intel-cost) [ "$kernel" = 6.12 ] || { vpmu_log "$suite runs on 6.12 (@6.12), whose tree builds KVM's reference"; return 2; } ;;
	robust) [[ $kernel == *-debug ]] || { vpmu_log "robust runs on a debug kernel (@6.12-debug or @7.3-debug)"; return 2; } ;;
	*) vpmu_log "unknown suite '$1' (full, scale, cost, real, robust, intel, intel-real, intel-cost)"; return 2 ;;
	esac
	case ${kernel%-debug} in
	6.12 | 7.3) ;;
	*) vpmu_log "unknown kernel in '$1' (6.12, 7.3, 6.12-debug, 7.3-debug)"; return 2 ;;
	esac
	name=$suite-$kernel
}

# run_suite <suite[@kernel]>: boots it on its kernel.
run_suite() (
	parse_suite "$1"
	vpmu_use_kernel "${kernel%-debug}"
	[[ $kernel == *-debug ]] && vpmu_use_debug_build
	boot "$VPMU_KOUT" "$suite" "$name"
)

failed=0
suites=("$@")
# The real-guest suite boots first, alone (it runs under MTTCG on every
# host CPU); then the others, two at a time.
[ ${#suites[@]} -gt 0 ] || suites=(real@6.12 intel-real@6.12 full@6.12 intel@6.12 intel@7.3 robust@7.3-debug full@7.3-debug scale@6.12 cost@6.12 intel-cost@6.12)
logs=()
for s in "${suites[@]}"; do
	parse_suite "$s" || exit 2
	logs+=("$vm/guest-$name.log.txt")
done
# Suites under thread=single keep one host CPU busy each: on a machine with
# two or more, two boot at a time and the next starts as soon as one ends
# (list the longest first); each suite's output is shown when it ends.  The
# real suite (MTTCG, every CPU) boots alone.
slots=1
[ -n "${tcg_cpu+x}" ] && [ "${VPMU_TCG_THREAD:-single}" = single ] && [ "$(nproc)" -ge 2 ] && slots=2
declare -A outs=() # running suite's pid -> its output
finish_one() { # waits for a running suite to end and shows its output
	local pid rc=0
	wait -n -p pid || rc=$?
	[ $rc = 0 ] || failed=1
	cat "${outs[$pid]}"
	unset "outs[$pid]"
}
n=0
for s in "${suites[@]}"; do
	if [ "${s%@*}" = real ] || [ $slots = 1 ]; then
		while [ ${#outs[@]} -gt 0 ]; do finish_one; done
		run_suite "$s" || failed=1
		continue
	fi
	[ ${#outs[@]} -lt $slots ] || finish_one
	n=$((n + 1))
	run_suite "$s" >"$vm/run-$n.out" 2>&1 &
	outs[$!]=$vm/run-$n.out
done
while [ ${#outs[@]} -gt 0 ]; do finish_one; done
# One closing line over every guest: KTAP and TAP cases (KUnit's cases
# indented), and the VM checks.
cases=$(cat "${logs[@]}" | grep -v '^UPSTREAM ' | sed 's/^kvm_vpmu: //')
passes=$(grep -cE '^( {4})?ok |^VPMU-CHECK ok' <<<"$cases" || true)
fails=$(grep -cE '^( {4})?not ok |^VPMU-CHECK FAIL' <<<"$cases" || true)
[ $failed = 0 ] && [ "$fails" = 0 ] && vpmu_log "vm-test passed"
echo "vm-test: $passes passed, $fails failed"
[ "$fails" = 0 ] || failed=1
exit $failed
