#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Checks that every prefix of the patch series builds: applies the patches of
# patches/$VPMU_KVER/ one by one to a pristine linux-source tree of its own
# ($KVM_VPMU_CACHE/series-check, with the test kernel's configuration) with
# `git am`, and builds KVM after each and the kernel with kvm_vpmu after the
# last.  Nothing is copied into the tree: the module patch brings the
# module's sources, and it must be the one scripts/series.py generates from
# this checkout.  Incremental after the first run: about a minute per patch on
# 2 cores.
set -euo pipefail
. "$(dirname "$0")/env.sh"

series=$VPMU_TOP/patches/$VPMU_KVER
check=$VPMU_CACHE/series-check
[ "$VPMU_KVER" = 6.12 ] || check=$VPMU_CACHE/series-check-$VPMU_KVER
src=$check/linux-source-$VPMU_KVER
out=$check/build
python3 "$VPMU_TOP/scripts/series.py" check "$VPMU_KVER"
[ -f "$VPMU_KOUT/.config" ] || { vpmu_log "run 'make kernel' first (for its .config)"; exit 1; }

# A pristine tree as a git repository, so that `git am` checks each patch.
if [ ! -d "$src/.git" ]; then
	vpmu_log "unpacking linux-source-$VPMU_KVER into $check"
	rm -rf "$check"
	mkdir -p "$check"
	tar -C "$check" -xf /usr/src/linux-source-$VPMU_KVER.tar.xz
	git -C "$src" init -q
	# Debian's tree ignores everything in its .gitignore: add by force.
	git -C "$src" add -f -A .
	git -C "$src" -c user.name=kvm-vpmu -c user.email=kvm-vpmu@localhost \
		commit -q -m "linux-source-$VPMU_KVER"
	git -C "$src" tag pristine
fi
git -C "$src" am --abort >/dev/null 2>&1 || true
git -C "$src" reset -q --hard pristine
git -C "$src" clean -qfdx

mkdir -p "$out"
# The same toolchain as the test kernel: VPMU_KMAKE past make -C <src> O= -j.
KMAKE=(make -C "$src" O="$out" -j"$VPMU_JOBS" "${VPMU_KMAKE[@]:5}")

n=0
for p in "$series"/*.patch; do
	case $(basename "$p") in 0000-*) continue ;; esac
	n=$((n + 1))
	touch "$out/.vpmu-prefix"
	git -C "$src" -c user.name=kvm-vpmu -c user.email=kvm-vpmu@localhost \
		am -q "$p" || { vpmu_log "$(basename "$p") does not apply with git am"; exit 1; }
	# The test kernel's configuration, as far as this prefix knows it.
	cp "$VPMU_KOUT/.config" "$out/.config"
	"${KMAKE[@]}" -s olddefconfig
	cfg=$(grep -oE '^CONFIG_KVM_VPMU(_SOFT)?=[ym]' "$out/.config" | tr '\n' ' ' || true)
	vpmu_log "prefix $n ($(basename "$p")): building KVM ${cfg:+with $cfg}"
	# Without warnings: the module patch builds kvm_vpmu here without soft
	# mode (the option needs the last patch), which nothing else builds.
	log=$("${KMAKE[@]}" -s arch/x86/kvm/ 2>&1) ||
		{ printf '%s\n' "$log"; vpmu_log "the series does not build at $(basename "$p")"; exit 1; }
	if grep -q 'warning' <<<"$log"; then
		printf '%s\n' "$log"
		vpmu_log "warnings at $(basename "$p")"
		exit 1
	fi
	# Once the module is in the tree, this prefix must have compiled it.
	if [ -d "$src/arch/x86/kvm/vpmu" ] &&
		[ -z "$(find "$out/arch/x86/kvm/vpmu" -name kvm_vpmu.o -newer "$out/.vpmu-prefix" 2>/dev/null)" ]; then
		vpmu_log "kvm_vpmu was not built at $(basename "$p")"
		exit 1
	fi
done

vpmu_log "whole series: building the kernel and modules with kvm_vpmu"
"${KMAKE[@]}" -s bzImage modules
grep -q '^CONFIG_KVM_VPMU=m' "$out/.config" || { vpmu_log "CONFIG_KVM_VPMU lost"; exit 1; }
[ -f "$out/arch/x86/kvm/vpmu/kvm_vpmu.ko" ] || { vpmu_log "kvm_vpmu.ko not built"; exit 1; }
# The whole series with the test facility's option off, as a production
# kernel that carries patch 8 builds it: KVM's stubs, kvm_vpmu without soft.
"$src/scripts/config" --file "$out/.config" --disable KVM_PMU_BACKEND_HOST_PMU
"${KMAKE[@]}" -s olddefconfig
! grep -q '^CONFIG_KVM_VPMU_SOFT=y' "$out/.config" || { vpmu_log "CONFIG_KVM_VPMU_SOFT left on"; exit 1; }
vpmu_log "whole series, CONFIG_KVM_PMU_BACKEND_HOST_PMU off: building KVM"
log=$("${KMAKE[@]}" -s arch/x86/kvm/ 2>&1) ||
	{ printf '%s\n' "$log"; vpmu_log "the series does not build with the option off"; exit 1; }
! grep -q 'warning' <<<"$log" || { printf '%s\n' "$log"; vpmu_log "warnings with the option off"; exit 1; }
git -C "$src" status --porcelain --ignored | grep -q . &&
	{ vpmu_log "the build left files in the source tree:"; git -C "$src" status --short --ignored | head; exit 1; }
vpmu_log "series clean: each of $n patches applies with git am to a pristine tree and builds"
