#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the test VM.  vpmu.suite=full (the test kernel): loads KVM and
# kvm_vpmu, runs the in-kernel self-test, exercises the parameters, debugfs
# and reloads, then soft mode with every kselftest but the scale test.
# vpmu.suite=scale (the test kernel): the scale test up to 512 vCPUs.
# vpmu.suite=robust (the debug kernel): the robustness kselftests and a
# kmemleak scan.  Each ends with one verdict line.

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t debugfs debugfs /sys/kernel/debug
mount -t devtmpfs dev /dev 2>/dev/null

fails=0
fail() { echo "VPMU-CHECK FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "VPMU-CHECK ok: $*"; }
expect() { # expect <what> <want> <got>
	if [ "$2" = "$3" ]; then pass "$1 = $3"; else fail "$1: want '$2', got '$3'"; fi
}

M=/lib/modules/vpmu
P=/sys/module/kvm_vpmu/parameters
D=/sys/kernel/debug/kvm_vpmu
# arg <name>: the value of vpmu.<name>= on the kernel command line.
arg() { sed -n "s/.*vpmu\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
suite=$(arg suite)
# vpmu.exact=1: time follows instructions executed (QEMU -icount, Bochs),
# so costs repeat and the tests may hold them to bounds (vpmu_util.h).
exact=$(arg exact)
[ "$exact" = 1 ] && export VPMU_EXACT=1
cpus=$(arg cpus)
# Every CPU QEMU gives the VM is online: the concurrency tests need them.
expect "CPUs online (QEMU -smp $cpus)" "$cpus" "$(grep -c '^processor' /proc/cpuinfo)"

vendor_ko() {
	if grep -qw svm /proc/cpuinfo; then echo kvm-amd; else echo kvm-intel; fi
}

# load_soft <kvm_vpmu arguments> [vendor module arguments...]: KVM with
# kvm_vpmu in soft mode, registered before the vendor module initializes
# (the suites below).  kvm.ko, or what $kvm_ko names (the cost suite's
# reference of KVM's own path, with its parameter).
kvm_ko=kvm.ko
load_soft() {
	[ -d /sys/module/irqbypass ] || insmod $M/irqbypass.ko
	# report_ignored_msrs=0: the upstream tests probe counters that do not
	# exist, and KVM's console lines for each cut into the tests' output.
	insmod $M/$kvm_ko report_ignored_msrs=0 || fail "insmod $kvm_ko"
	insmod $M/kvm_vpmu.ko soft=1 $1 || fail "insmod kvm_vpmu soft=1 $1"
	shift
	insmod $M/$(vendor_ko).ko "$@" || fail "insmod $(vendor_ko)"
}

# unload_soft: the vendor module, then kvm_vpmu (which it pins in soft mode).
unload_soft() {
	# One at a time: busybox's rmmod stops at the first module not loaded.
	rmmod kvm_amd 2>/dev/null
	rmmod kvm_intel 2>/dev/null
	rmmod kvm_vpmu || fail "rmmod kvm_vpmu"
}

# expect_nothing_kept: no kept event and no vCPU state once the VMs are gone.
expect_nothing_kept() {
	expect "vCPUs with kept-event state after the VMs" 0 "$(cat $D/kept_vcpus)"
	expect "kept events after the VMs" 0 "$(cat $D/kept_events)"
}

# verdict: the one line vm-test.sh judges, then the end of the boot.
verdict() {
	if [ $fails = 0 ]; then echo "VPMU-VM-TEST: PASS"; else echo "VPMU-VM-TEST: FAIL ($fails)"; fi
	echo "VPMU-VM-TEST: done"
	# vpmu.end=wait (Bochs): the host ends the VM once it reads the line
	# above.  Bochs's UART sends at its baud rate in guest time, behind
	# the tests, and a reboot here lost the last lines of the run.
	if [ "$(arg end)" = wait ]; then
		while :; do sleep 60; done
	fi
	reboot -f
}

# Upstream assertions that soft counters cannot meet: they count vCPU run
# time in ns, whatever their event, so exact instruction and branch counts
# do not hold.  "<test source>: <assertion>", as the selftest library
# prints them, without the line number.
SOFT_UNMET="x86_64/pmu_counters_test.c: count == NUM_INSNS_RETIRED
x86_64/pmu_counters_test.c: count == NUM_BRANCH_INSNS_RETIRED"

# upstream_verdict <test> <exit code> <log>: an upstream PMU selftest
# passes, is skipped where it cannot apply (reported, not counted), or
# fails only at an assertion soft mode cannot meet (reported with the
# reason); any other failure fails the suite.
upstream_verdict() {
	case $2 in
	0) pass "upstream $1" ;;
	4) echo "VPMU-UPSTREAM $1 skipped: $(grep -m1 -i 'skip' "$3")" ;;
	*)
		at=$(grep -A1 'Test Assertion Failure' "$3" | sed -n '2s/^ *\([^:]*\):[0-9]*: \(.*\)$/\1: \2/p')
		if [ -n "$at" ] && printf '%s\n' "$SOFT_UNMET" | grep -qxF "$at"; then
			echo "VPMU-UPSTREAM $1 stopped at '$at': soft counters count vCPU time, not instructions or branches"
		else
			fail "upstream $1 exit $2 at '${at:-no assertion}'"
		fi
		;;
	esac
}

run_test() { # run_test <name> <command...>
	name=$1
	shift
	echo "VPMU-KSELFTEST begin $name"
	"$@"
	rc=$?
	echo "VPMU-KSELFTEST end $name exit $rc"
	expect "$name exit code" 0 "$rc"
}

# The robustness suite, on the debug kernel (KASAN, lockdep, kmemleak):
# hostile guests, refused unloads, the event filter and the scale test in
# soft mode.
if [ "$suite" = robust ]; then
	load_soft selftest=1
	run_test "vpmu_storm_test -v 16" /bin/vpmu/vpmu_storm_test -v 16 $M/kvm_vpmu.ko soft=1
	# vpmu_nmi_test faults runs in the full suite, which make check also
	# boots on 7.3's debug kernel.
	run_test "vpmu_nmi_test filter" /bin/vpmu/vpmu_nmi_test filter
	# The debug kernel has tracing: the tracepoint against the counts.
	mount -t tracefs tracefs /sys/kernel/tracing
	run_test "vpmu_writes_test trace" /bin/vpmu/vpmu_writes_test trace
	run_test "vpmu_scale_test 4 32" /bin/vpmu/vpmu_scale_test 4 32
	expect_nothing_kept
	unload_soft
	rmmod kvm || fail "rmmod kvm"
	if [ -w /sys/kernel/debug/kmemleak ]; then
		echo scan > /sys/kernel/debug/kmemleak
		echo scan > /sys/kernel/debug/kmemleak
		cat /sys/kernel/debug/kmemleak > /tmp/kmemleak
		objects=$(grep -c 'unreferenced object' /tmp/kmemleak)
		ours=$(awk '/unreferenced object/ { o = 0 } /kvm/ && !o { n++; o = 1 } END { print n + 0 }' /tmp/kmemleak)
		sed 's/^/KMEMLEAK| /' /tmp/kmemleak | head -60
		expect "kmemleak objects leaked by KVM or kvm_vpmu ($objects reported in all)" 0 "$ours"
	else
		fail "kmemleak is not available in this kernel"
	fi
	verdict
fi

# The real-guest suite: a Linux L2 guest with perf, per policy (tests/guest/).
if [ "$suite" = real ]; then
	load_soft "" $(arg vendor_args | tr , ' ')
	rounds=$(arg rounds)
	iters=$(arg iters)
	policies=$(arg policies | tr , ' ')
	work=$(arg work)
	# l2_boot <policy> <L2 CPUs> <workloads>: one L2 boot, judged by
	# check.sh.  An L2 that stops before L2-DONE (under nested MTTCG an L2
	# sometimes resets mid-run, or faults in early boot) is booted once
	# more, and the retry is reported; a second stop fails.  vm-test.sh
	# judges every kernel line of the first boot too, except the L2's
	# when that L2 stopped before its PMU driver probed and kvm_vpmu had
	# handled no write from it: nothing of ours ran for that L2.
	l2_boot() {
		for attempt in 1 2; do
			echo "VPMU-L2-BOOT policy $1 cpus $2 attempt $attempt"
			sh /guest/run.sh "$1" "$2" "$3" "$rounds" "$iters" | tee /tmp/l2-boot.log
			grep -q '^L2| L2-DONE' /tmp/l2-boot.log && break
			[ $attempt = 2 ] && break
			if ! grep -q '^L2| Performance Events:' /tmp/l2-boot.log &&
			   grep -q '^VPMU-L2-REPROGRAMS 0$' /tmp/l2-boot.log; then
				echo "VPMU-L2-DISCARDED policy $1 cpus $2 attempt $attempt: L2 stopped before its PMU driver probed, kvm_vpmu handled no write from it"
			fi
			echo "VPMU-GUEST-RETRY policy $1 cpus $2: L2 stopped before L2-DONE, booting it again" |
				tee -a /tmp/guest.log
		done
		cat /tmp/l2-boot.log >> /tmp/guest.log
	}
	for p in ${policies:-legacy reuse cache}; do
		l2_boot $p 1 "${work:-stat8,rec1,rec6}"
	done
	# Two vCPUs: per-vCPU state under a real guest (perf stat -a).
	[ -z "$work" ] && l2_boot cache 2 stata
	sh /guest/check.sh /tmp/guest.log
	fails=$((fails + $?))
	unload_soft
	verdict
fi

# report_verdicts <file>: shows the VPMU-CHECK lines a judge wrote to
# <file> and counts its failures.
report_verdicts() {
	cat "$1"
	fails=$((fails + $(grep -c '^VPMU-CHECK FAIL' "$1")))
}

# run_logged <log> <name> <command...>: run_test, with the output kept in
# <log> for the judgements below.
run_logged() {
	log=$1
	shift
	run_test "$@" >"$log" 2>&1
	cat "$log"
}

# cost_judge <log...>: the cost suite's verdicts on the cycles per guest
# write of vpmu_writes_test cost (lines "# cost/<sequence>/<label>: ...
# per write <n> cycles"), for the label kvm_c (KVM's own path) and each
# policy.  Two boots agree to 0.1% (README, Exact cost): "no dearer" allows
# that much, "cheaper" none.  kvm_vpmu's reprogram costs more than KVM's
# C, by at most 3.5% of a write that reprograms beside kvm-amd under QEMU
# and 5.2% beside kvm-intel under Bochs (Documentation/results.md, Exact
# cost): kvm_vpmu's own instructions.  That gap is held to 4% and 6%, which
# the module as it was before the reprogram lost KVM's SRCU section and the
# copy of its snapshot (4.5%, 6.8%) fails.
cost_judge() {
	local gap=1.04
	[ "$(vendor_ko)" = kvm-intel ] && gap=1.06
	cat "$@" | awk -v gap="$gap" '
	/^# cost\/[a-z_]+\/[a-z_]+: / {
		split(substr($2, 1, length($2) - 1), k, "/")
		for (i = 3; i < NF; i++) if ($i == "write") w[k[2] "/" k[3]] = $(i + 1)
		if (!(k[2] in seen)) { seen[k[2]] = 1; order[n++] = k[2]; writes[k[2]] = $3 }
	}
	function at(s, l) { return (s "/" l) in w ? w[s "/" l] : "-" }
	# judge <what> <a> <b> <bound>: a <= b * bound, or a < b if bound is 0.
	function judge(what, a, b, bound, ok) {
		if (a == "-" || b == "-") {
			printf "VPMU-CHECK FAIL: cost %s: a figure is missing (%s, %s)\n", what, a, b
			return
		}
		ok = bound ? a <= b * bound : a < b
		printf "VPMU-CHECK %s: cost %s (%s against %s cycles per write, %+.1f%%)\n",
			ok ? "ok" : "FAIL", what, a, b, (a - b) * 100 / b
	}
	END {
		for (i = 0; i < n; i++) {
			s = order[i]
			printf "VPMU-COST %s writes %s legacy %s reuse %s cache %s kvm_c %s\n", s, writes[s],
				at(s, "legacy"), at(s, "reuse"), at(s, "cache"), at(s, "kvm_c")
		}
		# No reprogram: the backend adds nothing to a write.
		judge("same_value: reuse no dearer than KVM'"'"'s C", at("same_value", "reuse"), at("same_value", "kvm_c"), 1.001)
		above = sprintf("reuse at most %d%% above KVM'"'"'s C", (gap - 1) * 100 + 0.5)
		judge("en_toggles: " above, at("en_toggles", "reuse"), at("en_toggles", "kvm_c"), gap)
		judge("usr_os_flips: " above, at("usr_os_flips", "reuse"), at("usr_os_flips", "kvm_c"), gap)
		judge("rotation: " above, at("rotation", "reuse"), at("rotation", "kvm_c"), gap)
		# Nothing to keep: cache costs what reuse does.
		judge("same_value: cache no dearer than reuse", at("same_value", "cache"), at("same_value", "reuse"), 1.001)
		judge("en_toggles: cache no dearer than reuse", at("en_toggles", "cache"), at("en_toggles", "reuse"), 1.001)
		judge("en_toggles: reuse cheaper than legacy", at("en_toggles", "reuse"), at("en_toggles", "legacy"), 0)
		# Configs that come back: what cache keeps saves creates, and
		# makes it cheaper than KVM'"'"'s C.
		judge("usr_os_flips: cache cheaper than reuse", at("usr_os_flips", "cache"), at("usr_os_flips", "reuse"), 0)
		judge("rotation: cache cheaper than reuse", at("rotation", "cache"), at("rotation", "reuse"), 0)
		judge("usr_os_flips: cache cheaper than KVM'"'"'s C", at("usr_os_flips", "cache"), at("usr_os_flips", "kvm_c"), 0)
		judge("rotation: cache cheaper than KVM'"'"'s C", at("rotation", "cache"), at("rotation", "kvm_c"), 0)
	}' >/tmp/cost-verdicts
	report_verdicts /tmp/cost-verdicts
}

# The cost suite, under an emulator whose time follows instructions
# executed (QEMU -icount): the write sequences of vpmu_writes_test cost
# under each policy, then under KVM's own reprogram path on the same soft
# events (kvm-c-reference.ko, tests/bench/), and their verdicts.
# vpmu.cost_only=<policy> or =kvm runs that alone, for a profile of the
# boot (scripts/cost-profile.sh), and judges nothing.
if [ "$suite" = cost ]; then
	only=$(arg cost_only)
	if [ "$only" != kvm ]; then
		load_soft ""
		run_logged /tmp/cost-vpmu.log "vpmu_writes_test cost $only" /bin/vpmu/vpmu_writes_test cost $only
		expect_nothing_kept
		unload_soft
		rmmod kvm || fail "rmmod kvm"
	fi
	if [ -z "$only" ] || [ "$only" = kvm ]; then
		kvm_ko="kvm-c-reference.ko vpmu_c_reference=1"
		load_soft ""
		run_logged /tmp/cost-kvm.log "vpmu_writes_test cost kvm" /bin/vpmu/vpmu_writes_test cost kvm
		unload_soft
		rmmod kvm || fail "rmmod kvm-c-reference"
	fi
	if [ -z "$only" ]; then
		cost_judge /tmp/cost-vpmu.log /tmp/cost-kvm.log
	else
		echo "VPMU-COST-ONLY: $only alone, for a profile: not judged"
	fi
	verdict
fi

# The scale suite, in a boot of its own: the rotation on up to 512 vCPUs.
if [ "$suite" = scale ]; then
	load_soft ""
	run_test "vpmu_scale_test 4 32 128 512" /bin/vpmu/vpmu_scale_test 4 32 128 512
	expect_nothing_kept
	unload_soft
	verdict
fi

insmod $M/irqbypass.ko
insmod $M/kvm.ko || fail "insmod kvm"
if grep -qw svm /proc/cpuinfo; then
	insmod $M/kvm-amd.ko && pass "kvm-amd loaded" || fail "insmod kvm-amd"
elif grep -qw vmx /proc/cpuinfo; then
	insmod $M/kvm-intel.ko && pass "kvm-intel loaded" || fail "insmod kvm-intel"
else
	fail "the CPU has neither SVM nor VMX"
fi

insmod $M/kvm_vpmu.ko selftest=1 || fail "insmod kvm_vpmu selftest=1 (self-test failed?)"
# The self-test's benchmarks, held to what the design promises when costs
# are exact: a resume cheaper than a create in every round, take+keep flat
# however many events the host keeps, and a context switch costing at most
# 4% more per paused event than with none.  Judged on the self-test's
# lines before the KUnit run below prints the same again (7.3), and
# printed after it: on Bochs's slow console a line still being sent when
# KUnit starts would cut into KUnit's KTAP, which vm-test.sh parses.
if [ "$exact" = 1 ]; then
	dmesg | sed -n 's/.*kvm_vpmu: # //p' | awk '
	# "round 1: create+release median 5891 cycles, pause+period+resume median 3219 cycles (n=201)"
	$1 == "round" && $3 == "create+release" && rounds < 5 {
		rounds++
		if ($5 + 0 <= $9 + 0) bad = bad " (round " $2 " " $5 " against " $9 ")"
	}
	# "take+keep with 1000 events kept host-wide: median 187 cycles (...)"
	$1 == "take+keep" && n < 3 { keep[n++] = $8 }
	# "context-switch round trip with 4 paused events: median 7210 cycles (...)"
	$1 == "context-switch" && !($5 in sw) { sw[$5] = $9 }
	function verdict(ok, what) { printf "VPMU-CHECK %s: self-test cost: %s\n", ok ? "ok" : "FAIL", what }
	END {
		verdict(rounds == 5 && bad == "", sprintf("create+release above pause+period+resume in %d of 5 rounds%s", rounds, bad))
		verdict(n == 3 && keep[1] <= keep[0] * 1.25 && keep[2] <= keep[0] * 1.25,
			sprintf("take+keep flat with 0, 1000, 10000 events kept (%s, %s, %s cycles)", keep[0], keep[1], keep[2]))
		per = (0 in sw && 64 in sw) ? (sw[64] - sw[0]) / 64 : -1
		verdict(per >= 0 && per <= sw[0] * 0.04,
			sprintf("context switch per paused event %d cycles, bound 4%% of %s", per, sw[0]))
	}' >/tmp/bench-verdicts
fi
# 7.3: the same cases as the KUnit suite, once (vm-test.sh boots with
# kunit.autorun=0 and judges its KTAP).
if [ -e /sys/kernel/debug/kunit/kvm_vpmu/run ]; then
	echo 1 > /sys/kernel/debug/kunit/kvm_vpmu/run || fail "KUnit run of kvm_vpmu"
fi
[ "$exact" = 1 ] && report_verdicts /tmp/bench-verdicts
# The self-test and each KUnit case keep nothing once done.
expect "events kept after the self-test" 0 "$(cat $D/kept_events)"
expect "default policy" reuse "$(cat $P/policy)"
expect "default enable" Y "$(cat $P/enable)"
echo legacy > $P/policy
expect "policy after 'legacy'" legacy "$(cat $P/policy)"
if echo fastest > $P/policy 2>/dev/null; then
	fail "unknown policy accepted"
else
	pass "unknown policy rejected"
fi
expect "policy after a rejected write" legacy "$(cat $P/policy)"
echo 0 > $P/enable
expect "enable after '0'" N "$(cat $P/enable)"
echo 1 > $P/enable
# kvm_vpmu's debugfs holds what is not per vCPU; the per-vCPU counts are
# KVM's statistics (patches/), summed over the host in debugfs kvm/.
for f in kept_events kept_vcpus kept_max mediated_pmu injected_failures \
	 fail_create/probability fail_create/interval; do
	[ -r $D/$f ] || fail "debugfs kvm_vpmu/$f missing"
done
for f in pmu_reprograms pmu_event_creates pmu_event_create_failures \
	 pmu_event_resumes pmu_event_releases pmu_events_kept \
	 pmu_events_adopted pmu_events_evicted; do
	[ -r /sys/kernel/debug/kvm/$f ] || fail "KVM statistic $f missing from debugfs kvm/"
done
for f in creates reprograms reset; do
	[ -e $D/$f ] && fail "debugfs kvm_vpmu/$f still there (now KVM's statistics)"
done
expect "vCPUs with kept-event state before unload" 0 "$(cat $D/kept_vcpus)"
echo 64 > $P/cache_size && pass "cache_size 64 accepted" || fail "cache_size 64 refused"
if echo 65 > $P/cache_size 2>/dev/null; then fail "cache_size 65 accepted"; else pass "cache_size 65 refused"; fi
expect "cache_size after a refused write" 64 "$(cat $P/cache_size)"
echo 0 > $P/cache_size
if echo 5 > $D/kept_max 2>/dev/null; then fail "kept_max accepted a non-zero write"; else pass "kept_max rejects non-zero writes"; fi
if echo x > $D/kept_max 2>/dev/null; then fail "kept_max accepted a non-number"; else pass "kept_max rejects a non-number"; fi
echo 0 > $D/kept_max && pass "kept_max accepts 0" || fail "kept_max refused 0"
expect "kept_max after writing 0" 0 "$(cat $D/kept_max)"
# Load-time parameters are not in sysfs, on 6.12 (the shim) as on 7.3 (module!).
for f in soft selftest; do
	[ -e $P/$f ] && fail "load-time parameter $f in sysfs" || pass "load-time parameter $f not in sysfs"
done

rmmod kvm_vpmu || fail "rmmod kvm_vpmu"
[ -d /sys/module/kvm_vpmu ] && fail "kvm_vpmu still loaded"
insmod $M/kvm_vpmu.ko policy=legacy || fail "reload with policy=legacy"
expect "policy given at load" legacy "$(cat $P/policy)"
if insmod $M/kvm_vpmu.ko 2>/dev/null; then fail "second load succeeded"; else pass "second load refused"; fi
rmmod kvm_vpmu || fail "second rmmod"
if insmod $M/kvm_vpmu.ko policy=bogus 2>/dev/null; then
	fail "load with an unknown policy succeeded"
	rmmod kvm_vpmu
else
	pass "load with an unknown policy refused"
fi

# Phase 2: soft mode.  kvm_vpmu must be registered before the vendor module
# initializes, so that KVM asks it for the PMU that perf lacks here.  KVM
# turned enable_pmu off for good when the vendor module first loaded without
# it, so kvm itself is reloaded.
vendor=$(lsmod | awk '$1 == "kvm_amd" || $1 == "kvm_intel" { print $1 }')
rmmod "$vendor" || fail "rmmod $vendor"
rmmod kvm || fail "rmmod kvm"
# 7.x: ask for the mediated vPMU too.  KVM must refuse it on the soft PMU,
# which the backend never offers as mediated, and keep the perf-based vPMU
# that calls kvm_vpmu; the backend says which in debugfs.
mediated=
case $(uname -r) in 6.*) ;; *) mediated=enable_mediated_pmu=1 ;; esac
load_soft "" $mediated
if [ -n "$mediated" ]; then
	expect "$vendor enable_mediated_pmu after asking for it on the soft PMU" N \
		"$(cat /sys/module/$vendor/parameters/enable_mediated_pmu)"
fi
expect "debugfs mediated_pmu (KVM's mediated vPMU off)" 0 "$(cat $D/mediated_pmu)"
if [ "$(cat /sys/module/kvm/parameters/enable_pmu)" = Y ]; then
	pass "KVM enabled its vPMU on kvm_vpmu's soft PMU"
	if rmmod kvm_vpmu 2>/dev/null; then
		fail "kvm_vpmu unloaded while $vendor uses its soft PMU"
		insmod $M/kvm_vpmu.ko soft=1
	else
		pass "unload refused while $vendor uses the soft PMU"
	fi
	run_test vpmu_nmi_test /bin/vpmu/vpmu_nmi_test
	run_test "vpmu_nmi_test faults" /bin/vpmu/vpmu_nmi_test faults
	run_test "vpmu_nmi_test filter" /bin/vpmu/vpmu_nmi_test filter
	run_test vpmu_storm_test /bin/vpmu/vpmu_storm_test $M/kvm_vpmu.ko soft=1
	run_test vpmu_writes_test /bin/vpmu/vpmu_writes_test
	run_test "vpmu_writes_test idle" /bin/vpmu/vpmu_writes_test idle
	run_test "vpmu_writes_test concurrent" /bin/vpmu/vpmu_writes_test concurrent
	run_test "vpmu_writes_test pin" /bin/vpmu/vpmu_writes_test pin
	upstream="pmu_counters_test pmu_event_filter_test"
	[ "$vendor" = kvm_intel ] && upstream="$upstream vmx_pmu_caps_test"
	for t in $upstream; do
		timeout 600 /bin/vpmu/$t >/tmp/$t.log 2>&1
		rc=$?
		sed "s/^/UPSTREAM $t| /" /tmp/$t.log | tail -20
		echo "VPMU-UPSTREAM $t exit $rc"
		upstream_verdict $t $rc /tmp/$t.log
	done
else
	fail "KVM did not enable its vPMU in soft mode"
fi
if echo 0 > $P/enable 2>/dev/null; then fail "enable=0 accepted in soft mode"; else pass "enable=0 refused in soft mode"; fi
expect "enable after the refused write" Y "$(cat $P/enable)"
expect_nothing_kept
rmmod "$vendor" || fail "rmmod $vendor after soft mode"
rmmod kvm_vpmu || fail "rmmod kvm_vpmu after soft mode"

verdict
