#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the test VM: loads KVM and kvm_vpmu, runs the in-kernel self-test,
# exercises the parameters and debugfs, unloads, and reports one verdict line.

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
for f in reprograms creates resumes releases idle create_failures \
	 emulated_overflows reject_no_event reject_config_changed \
	 reject_pebs_changed reject_period_rejected reject_legacy live_events; do
	[ -r $D/$f ] || fail "debugfs $f missing"
done
expect "live events before unload" 0 "$(cat $D/live_events)"
if echo 5 > $D/creates 2>/dev/null; then fail "stat accepted a non-zero write"; else pass "stat rejects non-zero writes"; fi
echo 1 > $D/reset && pass "reset accepted"

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

if [ $fails = 0 ]; then echo "VPMU-VM-TEST: PASS"; else echo "VPMU-VM-TEST: FAIL ($fails)"; fi
echo "VPMU-VM-TEST: done"
reboot -f
