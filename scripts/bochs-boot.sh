#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a kernel and initramfs under Bochs, whose Intel CPU models emulate
# VMX (EPT, VPID, unrestricted guest, virtual NMIs): kvm-intel loads there,
# where QEMU's TCG has no nested VMX.  Headless, bounded in time, and ended
# by this script once the console says the guest is done: the test kernel
# cannot power off under Bochs, and reboot -f would boot the CD again.
#
#   scripts/bochs-boot.sh <bzImage> <initramfs> <command line> <console log>
#
# VPMU_BOCHS_CPU (corei7_haswell_4770), VPMU_BOCHS_IPS (500000000),
# VPMU_VM_MEM (1024, in MiB) and VPMU_VM_TIMEOUT (1800 s) tune the run.
# The guest is done when its console prints VPMU_BOCHS_DONE
# ("VPMU-VM-TEST: done"); it may then wait or reboot.  Exits 0 then, 124 on timeout, 1 if Bochs ended
# first.
set -euo pipefail
. "$(dirname "$0")/env.sh"

[ $# = 4 ] || { vpmu_log "usage: $0 <bzImage> <initramfs> <command line> <console log>"; exit 2; }
kernel=$1 initrd=$2 cmdline=$3 log=$4
done_line=${VPMU_BOCHS_DONE:-VPMU-VM-TEST: done}
work=$(mktemp -d "${TMPDIR:-/tmp}/vpmu-bochs.XXXXXX")
bochs_pid=
cleanup() {
	if [ -n "$bochs_pid" ] && kill "$bochs_pid" 2>/dev/null; then
		wait "$bochs_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# An El Torito CD that isolinux boots: Bochs has no direct kernel boot.
mkdir -p "$work/iso/isolinux"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$work/iso/isolinux/"
cp "$kernel" "$work/iso/isolinux/vmlinuz"
cp "$initrd" "$work/iso/isolinux/initrd"
cat >"$work/iso/isolinux/isolinux.cfg" <<EOF
default vpmu
prompt 0
timeout 0
label vpmu
  kernel vmlinuz
  append initrd=initrd $cmdline
EOF
xorriso -as mkisofs -quiet -o "$work/vpmu.iso" -b isolinux/isolinux.bin \
	-c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
	"$work/iso" 2>/dev/null

# clock: sync=none makes guest time follow instructions executed (ips per
# second of guest time), whatever the host's load.  Below 500 million, PMIs
# of the soft PMU came too close together for the guest's handler (lost
# PMIs at 50 million, no progress in mux_legacy at 100 million).  The rfb
# display is the only headless one Debian's build has; timeout=0 does not
# wait for a viewer.  The dummy sound driver: with the default one, Bochs's
# mixer thread aborted at start on a machine without a sound card.
cat >"$work/bochsrc" <<EOF
sound: driver=dummy
cpu: model=${VPMU_BOCHS_CPU:-corei7_haswell_4770}, count=1, ips=${VPMU_BOCHS_IPS:-500000000}, reset_on_triple_fault=0
memory: guest=${VPMU_VM_MEM:-1024}, host=${VPMU_VM_MEM:-1024}
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
ata0-master: type=cdrom, path=$work/vpmu.iso, status=inserted
boot: cdrom
clock: sync=none, time0=utc
com1: enabled=1, mode=file, dev=$log
display_library: rfb, options="timeout=0"
mouse: enabled=0
log: $work/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
EOF
# Debian's Bochs has its debugger built in: without commands it waits at a
# prompt.  "c" runs the machine.
echo c >"$work/rc"
: >"$log"
# timeout bounds Bochs even if this script is killed before its trap runs.
limit=${VPMU_VM_TIMEOUT:-1800}
timeout -k 10 "$((limit + 30))" bochs -q -f "$work/bochsrc" -rc "$work/rc" \
	</dev/null >"$work/bochs.out" 2>&1 &
bochs_pid=$!

deadline=$((SECONDS + limit))
rc=124
while [ $SECONDS -lt $deadline ]; do
	if grep -qF "$done_line" "$log"; then
		rc=0
		break
	fi
	if ! kill -0 "$bochs_pid" 2>/dev/null; then
		# The guest's reboot -f follows its last line, and Bochs may
		# end at the reset before this loop sees that line.
		if grep -qF "$done_line" "$log"; then
			rc=0
			break
		fi
		vpmu_log "Bochs ended before the guest was done:"
		tail -n 5 "$work/bochs.out" "$work/bochs.log" >&2
		rc=1
		break
	fi
	sleep 2
done
exit $rc
