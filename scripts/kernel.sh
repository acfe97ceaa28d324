#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Prepare and build a patched host kernel (KVER: 7.3 by default, or 6.12)
# with kvm_vpmu in tree, in a cache outside the checkout ($KVM_VPMU_CACHE,
# default ~/.cache/kvm-vpmu).  Incremental: a second run with no change
# rebuilds nothing.
#
#   scripts/kernel.sh           the test kernel; on 6.12 also the KVM
#                               selftests, which both kernels run
#   scripts/kernel.sh --debug   the same kernel with kernel/debug.config (lockdep,
#                               KASAN, kmemleak), Clang-built, in build-$KVER-debug/
set -euo pipefail
. "$(dirname "$0")/env.sh"

fragments=("$VPMU_TOP/kernel/vpmu.config")
# What one kernel adds (kernel/vpmu-7.3.config: the KUnit suite).
[ -f "$VPMU_TOP/kernel/vpmu-$VPMU_KVER.config" ] && fragments+=("$VPMU_TOP/kernel/vpmu-$VPMU_KVER.config")
if [ "${1:-}" = --debug ]; then
	fragments+=("$VPMU_TOP/kernel/debug.config")
	vpmu_use_debug_build
fi

mkdir -p "$VPMU_CACHE" "$VPMU_KOUT"
# The series last applied to the tree (6.12's directory keeps its old name).
applied=$VPMU_CACHE/applied
[ "$VPMU_KVER" = 6.12 ] || applied=$VPMU_CACHE/applied-$VPMU_KVER

# 1. Pristine source, unpacked once.
if [ ! -f "$VPMU_KSRC/.vpmu-unpacked" ]; then
	vpmu_log "unpacking linux-source-$VPMU_KVER into $VPMU_CACHE"
	rm -rf "$VPMU_KSRC" "$applied"
	# Debian's tarballs are multi-block xz: every core decompresses.
	tar -C "$VPMU_CACHE" -I "xz -T0" -xf /usr/src/linux-source-$VPMU_KVER.tar.xz
	touch "$VPMU_KSRC/.vpmu-unpacked"
fi

# The benchmark reference (6. below) is applied to the tree only while
# its kvm.ko builds: a run stopped in between left it applied.
ref_applied=$VPMU_CACHE/reference-applied-$VPMU_KVER
if [ -f "$ref_applied" ]; then
	vpmu_log "reverting the benchmark reference left applied"
	patch -d "$VPMU_KSRC" -p1 -R -s --no-backup-if-mismatch <"$ref_applied"
	rm -f "$ref_applied"
fi

# 2. The patch series (patches/$VPMU_KVER/, git format-patch output; the
#    cover letter carries no diff).  The module patch adds the module's
#    sources, which 3. copies from the checkout instead, so that editing
#    them does not re-apply the series: only that patch's hooks into KVM's
#    build are applied here.  The series last applied is kept so that a
#    changed series is reverted and re-applied, touching only the files it
#    patches.
series=$VPMU_TOP/patches/$VPMU_KVER
wanted=$(mktemp -d)
trap 'rm -rf "$wanted"' EXIT
module=$(python3 "$VPMU_TOP/scripts/series.py" module "$VPMU_KVER")
module=${module##*/}
for p in "$series"/*.patch; do
	case $p in
	*/0000-*) ;;
	*/"$module") python3 "$VPMU_TOP/scripts/series.py" hooks "$p" >"$wanted/${p##*/}" ;;
	*) cp "$p" "$wanted/" ;;
	esac
done
mkdir -p "$applied"
if ! diff -rq -x "0000-*" "$wanted" "$applied" >/dev/null 2>&1; then
	for p in $(ls -r "$applied"/*.patch 2>/dev/null | grep -v /0000-); do
		vpmu_log "reverting $(basename "$p")"
		if ! patch -d "$VPMU_KSRC" -p1 -R -s --no-backup-if-mismatch <"$p"; then
			vpmu_log "cannot revert $p: delete $VPMU_KSRC and run again"
			exit 1
		fi
	done
	rm -f "$applied"/*.patch
	for p in "$wanted"/*.patch; do
		vpmu_log "applying $(basename "$p")"
		patch -d "$VPMU_KSRC" -p1 -N -s --no-backup-if-mismatch <"$p"
		cp "$p" "$applied/"
	done
fi

# 3. This repository in tree at arch/x86/kvm/vpmu/: the files the module
#    patch carries, staged for this kernel (compat/$VPMU_KVER.patch).
dst=$VPMU_KSRC/arch/x86/kvm/vpmu
mkdir -p "$dst"
python3 "$VPMU_TOP/scripts/series.py" stage "$VPMU_KVER" "$wanted/vpmu"
rsync -rlp --checksum --delete "$wanted/vpmu/" "$dst/"

# 4. tinyconfig plus the fragments, regenerated only when they change.
stamp=$VPMU_KOUT/.vpmu-fragments
if ! cat "${fragments[@]}" | cmp -s - "$stamp"; then
	vpmu_log "configuring (tinyconfig + ${fragments[*]##*/})"
	"${VPMU_KMAKE[@]}" -s tinyconfig
	(cd "$VPMU_KOUT" && "$VPMU_KSRC/scripts/kconfig/merge_config.sh" -m -O . .config "${fragments[@]}" >/dev/null)
	"${VPMU_KMAKE[@]}" -s olddefconfig
	bad=0
	for frag in "${fragments[@]}"; do
		while read -r line; do
			case "$line" in
			CONFIG_*=*) grep -qx "$line" "$VPMU_KOUT/.config" ;;
			"# CONFIG_"*" is not set") ! grep -q "^${line:2:-11}=" "$VPMU_KOUT/.config" ;;
			*) continue ;;
			esac || { vpmu_log "config lost: $line"; bad=1; }
		done <"$frag"
	done
	[ $bad = 0 ] || { vpmu_log "see 'make rustavailable' and the dependencies above"; exit 1; }
	cat "${fragments[@]}" >"$stamp"
fi

# 5. Build.
vpmu_log "building bzImage and modules in $VPMU_KOUT"
"${VPMU_KMAKE[@]}" -s bzImage modules
vpmu_log "kernel ready: $VPMU_KOUT/arch/x86/boot/bzImage"
[ "${1:-}" = --debug ] && exit 0
[ "$VPMU_KVER" = 6.12 ] || exit 0

# 6. The cost suite's reference (tests/bench/kvm-c-reference-6.12.patch):
#    kvm.ko with KVM's own reprogram path on soft events, built in this
#    tree with the patch applied and kept as kvm-c-reference.ko; then the
#    patch is reverted and kvm.ko rebuilt (1. reverts it if a run stopped
#    in between).
ref_patch=$VPMU_TOP/tests/bench/kvm-c-reference-6.12.patch
ref_ko=$VPMU_KOUT/kvm-c-reference.ko
if [ ! -f "$ref_ko" ] || ! cmp -s "$ref_patch" "$ref_ko.patch" ||
   [ "$VPMU_KOUT/arch/x86/kvm/kvm.ko" -nt "$ref_ko" ]; then
	vpmu_log "building the benchmark reference, kvm-c-reference.ko"
	cp "$ref_patch" "$ref_applied"
	patch -d "$VPMU_KSRC" -p1 -N -s --fuzz=0 --no-backup-if-mismatch <"$ref_patch"
	"${VPMU_KMAKE[@]}" -s modules
	cp "$VPMU_KOUT/arch/x86/kvm/kvm.ko" "$ref_ko.new"
	patch -d "$VPMU_KSRC" -p1 -R -s --fuzz=0 --no-backup-if-mismatch <"$ref_patch"
	rm -f "$ref_applied"
	"${VPMU_KMAKE[@]}" -s modules
	mv "$ref_ko.new" "$ref_ko"
	touch "$ref_ko"
	cp "$ref_patch" "$ref_ko.patch"
fi

# 7. KVM selftests, static, from 6.12's tree: ours plus the upstream PMU
#    tests, only those (the full suite takes minutes).  7.3's library moved
#    (x86_64/ became x86/); the binaries run on both kernels.
vpmu_log "building KVM selftests"
"${VPMU_KMAKE[@]}" -s headers
kst=$VPMU_KSRC/tools/testing/selftests/kvm
for t in "$VPMU_TOP"/tests/selftests/*.[ch]; do
	cmp -s "$t" "$kst/x86_64/$(basename "$t")" || cp "$t" "$kst/x86_64/"
done
progs="$(cd "$VPMU_TOP/tests/selftests" && ls *.c | sed 's|^|x86_64/|; s|\.c$||' | tr '\n' ' ')"
progs+="x86_64/pmu_counters_test x86_64/pmu_event_filter_test x86_64/vmx_pmu_caps_test"
mkdir -p "$VPMU_CACHE/selftests"
make -s -C "$kst" -j"$VPMU_JOBS" OUTPUT="$VPMU_CACHE/selftests" \
	KHDR_INCLUDES="-isystem $VPMU_KOUT/usr/include" \
	TEST_GEN_PROGS_x86_64="$progs" EXTRA_CFLAGS=-static LDFLAGS=-static
vpmu_log "selftests ready in $VPMU_SELFTESTS"
