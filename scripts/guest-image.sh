#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Stage the real-guest suite into a test-VM root: QEMU with what it loads,
# and under /guest the L2 guest (the same bzImage as L1, an initramfs with
# busybox, Debian's perf with its libraries and the busy loop) and the L1
# driver tests/guest/run.sh.
#
#   scripts/guest-image.sh <test-VM root> <kernel build dir>
set -euo pipefail
. "$(dirname "$0")/env.sh"

l1=$1 kout=$2

# copy_elf <root> <file>...: each file and every library ldd lists, at the
# same paths, so the dynamic loader finds them as on this machine.
copy_elf() {
	local root=$1 f lib
	shift
	for f in "$@"; do
		install -D -m 0755 "$(readlink -f "$f")" "$root$f"
		for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
			[ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
		done
	done
	[ -e "$root/etc/ld.so.cache" ] || install -D -m 0644 /etc/ld.so.cache "$root/etc/ld.so.cache"
}

# L2: busybox, perf, the loop, tests/guest/init.sh.
l2=$l1-l2
rm -rf "$l2"
mkdir -p "$l2"/{bin,sbin,proc,sys,dev,tmp}
cp /bin/busybox "$l2/bin/busybox"
for app in $("$l2/bin/busybox" --list); do
	[ -e "$l2/bin/$app" ] || ln -s busybox "$l2/bin/$app"
done
# Debian's linux-perf (perf 6.1 on Debian 12).
copy_elf "$l2" /usr/bin/perf
ln -sf /usr/bin/perf "$l2/bin/perf"
gcc -O2 -static -o "$l2/bin/loop" "$VPMU_TOP/tests/guest/loop.c"
install -m 0755 "$VPMU_TOP/tests/guest/init.sh" "$l2/init"
mkdir -p "$l1/guest"
# Uncompressed: inflating it in L2 under nested TCG takes minutes.
(cd "$l2" && find . | cpio -o -H newc --quiet) >"$l1/guest/initramfs.cpio"
cp "$kout/arch/x86/boot/bzImage" "$l1/guest/bzImage"
install -m 0755 "$VPMU_TOP/tests/guest/run.sh" "$VPMU_TOP/tests/guest/check.sh" "$l1/guest/"

# L1: QEMU, its firmware for -M microvm (qboot) and the option ROMs it loads.
copy_elf "$l1" /usr/bin/qemu-system-x86_64
mkdir -p "$l1/usr/share/qemu"
for f in bios-microvm.bin qboot.rom linuxboot_dma.bin linuxboot.bin pvh.bin kvmvapic.bin; do
	[ -e "/usr/share/qemu/$f" ] && cp -L "/usr/share/qemu/$f" "$l1/usr/share/qemu/"
done
vpmu_log "real-guest image: L2 initramfs $(du -h "$l1/guest/initramfs.cpio" | cut -f1), $(perf --version)"
