#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the built kernel in QEMU with a busybox initramfs holding KVM and
# kvm_vpmu, run tests/vm/init.sh there, and judge the guest log.
# Bounded in time; the log is kept in $VPMU_CACHE/vm/.
set -euo pipefail
. "$(dirname "$0")/env.sh"

vm=$VPMU_CACHE/vm
root=$vm/root
log=$vm/guest.log
mkdir -p "$vm"
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,lib/modules/vpmu}
cp /bin/busybox "$root/bin/busybox"
for app in $("$root/bin/busybox" --list); do
	[ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"
done
for ko in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko \
	  arch/x86/kvm/kvm-intel.ko arch/x86/kvm/vpmu/kvm_vpmu.ko; do
	cp "$VPMU_KOUT/$ko" "$root/lib/modules/vpmu/"
done
mkdir -p "$root/bin/vpmu"
for t in vpmu_nmi_test vpmu_storm_test pmu_counters_test pmu_event_filter_test; do
	cp "$VPMU_CACHE/selftests/x86_64/$t" "$root/bin/vpmu/"
done
install -m 0755 "$VPMU_TOP/tests/vm/init.sh" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$vm/initramfs.cpio.gz"

# Hardware acceleration only where the CPU really has VMX or SVM: /dev/kvm
# on these machines may be backed by something that cannot run this kernel.
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then
	accel=(-accel kvm -cpu host)
else
	# Family 0x19 (Zen 3): upstream AMD PMU selftests apply only to Zen.
	accel=(-accel tcg -cpu "${VPMU_TCG_CPU:-max,family=25}")
fi
vpmu_log "booting (${accel[*]}), log in $log"
set +e
timeout --foreground -k 10 ${VPMU_VM_TIMEOUT:-600} qemu-system-x86_64 "${accel[@]}" \
	-m 1024 -smp 2 -nographic -no-reboot \
	-kernel "$VPMU_KOUT/arch/x86/boot/bzImage" -initrd "$vm/initramfs.cpio.gz" \
	-append "console=ttyS0 rdinit=/init panic=-1 oops=panic tsc_early_khz=2000000 tsc=reliable" \
	</dev/null >"$log" 2>&1
qemu_rc=$?
set -e
tr -d '\r' <"$log" >"$log.txt"

grep -E 'kvm_vpmu: (KTAP|ok|not ok|#|1\.\.)|VPMU-|^(ok|not ok|#) |^1\.\.|^TAP' "$log.txt" || true

bad=0
[ $qemu_rc = 0 ] || { vpmu_log "QEMU exited with $qemu_rc (124: timed out)"; bad=1; }
# Upstream PMU tests are reported, not judged: some cannot apply to soft mode.
if grep -v '^UPSTREAM ' "$log.txt" | grep -nE 'not ok|WARNING:|BUG:|Oops|Call Trace|Kernel panic'; then
	vpmu_log "the guest log has failures or kernel warnings"
	bad=1
fi
grep -q 'kvm_vpmu self-test: [0-9]* passed, 0 failed' "$log.txt" ||
	{ vpmu_log "the self-test did not run to a clean summary"; bad=1; }
grep -q 'VPMU-VM-TEST: PASS' "$log.txt" || { vpmu_log "VM checks did not pass"; bad=1; }
[ $bad = 0 ] && vpmu_log "vm-test passed"
exit $bad
