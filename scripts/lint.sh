#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Style gates: rustfmt and clippy (host and kernel builds), checkpatch
# --strict for the C shim, the patch series and the cost suite's
# reference patch, the module's layering, SPDX lines everywhere.
# The kernel clippy pass runs in $KVER's build directory, or with --debug
# in its debug build's (make check builds 7.3 only that way).
set -euo pipefail
. "$(dirname "$0")/env.sh"
[ "${1:-}" = --debug ] && vpmu_use_debug_build
cd "$VPMU_TOP"
export PATH=$HOME/.cargo/bin:$PATH
bad=0

cargo fmt --check || bad=1
rustfmt --check --edition 2021 src/kvm_vpmu.rs || bad=1
# The sources as staged for this kernel (compat/$VPMU_KVER.patch).
rustfmt --check --edition 2021 "$VPMU_KSRC/arch/x86/kvm/vpmu/src/kvm_vpmu.rs" || bad=1
cargo clippy --quiet --all-targets -- -D warnings || bad=1

# The kernel crate under the kernel's own clippy lints (undocumented unsafe
# blocks, missing docs, ...); any warning fails.
touch "$VPMU_KSRC/arch/x86/kvm/vpmu/src/kvm_vpmu.rs"
clippy=$("${VPMU_KMAKE[@]}" -s CLIPPY=1 arch/x86/kvm/vpmu/ 2>&1) || bad=1
if grep -qE '^(warning|error)' <<<"$clippy"; then
	printf '%s\n' "$clippy"
	vpmu_log "kernel clippy reported the above"
	bad=1
fi

# checkpatch runs outside this git repository, which it would otherwise
# take for the kernel tree the patches apply to.
cp=(perl scripts/checkpatch.pl --strict --no-tree --quiet)
(cd "$VPMU_KSRC" && "${cp[@]}" -f "$VPMU_TOP"/bindings/shim.c "$VPMU_TOP"/bindings/vpmu_bindings.h \
	"$VPMU_TOP"/src/selftest/ctxsw.c "$VPMU_TOP"/tests/guest/loop.c) || bad=1
# The profiler's QEMU plugin runs in QEMU, whose API spells uint64_t.
(cd "$VPMU_KSRC" && "${cp[@]}" --ignore PREFER_KERNEL_TYPES -f \
	"$VPMU_TOP"/tests/bench/tb_insns.c "$VPMU_TOP"/tests/bench/qemu_plugin_v1.h) || bad=1
# Without a git tree checkpatch cannot resolve the upstream commit that the
# series cites, and kernel style keeps a cited commit title on one line.
# On 7.3, KVM_SUB_MODULES is a bare list of module names, as upstream
# writes it; checkpatch flags upstream's unchanged lines there the same way.
# The module's files are under arch/x86/kvm/, which MAINTAINERS gives to
# KVM/x86 (the cover letter says so).
ignore=UNKNOWN_COMMIT_ID,COMMIT_LOG_LONG_LINE,FILE_PATH_CHANGES
[ "$VPMU_KVER" = 6.12 ] || ignore+=,SPACING,COMPLEX_MACRO
(cd "$VPMU_KSRC" && "${cp[@]}" --ignore "$ignore" "$VPMU_TOP"/patches/$VPMU_KVER/*.patch) || bad=1
# The series' module patch carries the module's sources as they are here.
python3 scripts/series.py check "$VPMU_KVER" || bad=1
# The cost suite's reference of KVM's own path (6.12's tree builds it).
if [ "$VPMU_KVER" = 6.12 ]; then
	(cd "$VPMU_KSRC" && "${cp[@]}" --ignore "$ignore" "$VPMU_TOP"/tests/bench/*.patch) || bad=1
fi

# The C seam stays in src/ffi/: no other Rust file names the bindings.
if git grep -n 'bindings::' -- 'src/*.rs' ':!src/ffi/*'; then
	vpmu_log "bindings:: outside src/ffi/ (above)"
	bad=1
fi
# Layers only look down (model, seam, kernel glue, executor, entry points,
# crate root), and no files import each other.
python3 scripts/layers.py || { vpmu_log "layering (above)"; bad=1; }
# Every unsafe block has a SAFETY comment within the three lines above it,
# and every unsafe fn a "# Safety" section in its doc comment.
for f in $(git ls-files 'src/*.rs'); do
	awk -v f="$f" '
		{ line[NR] = $0 }
		/unsafe \{/ && $0 !~ /^[[:space:]]*\/\// {
			ok = 0
			for (i = NR; i >= NR - 3 && i > 0; i--)
				if (line[i] ~ /SAFETY:/) ok = 1
			if (!ok) { printf "%s:%d: unsafe block without a SAFETY comment\n", f, NR; bad = 1 }
		}
		/unsafe (extern "C" )?fn / {
			ok = 0
			for (i = NR - 1; i > 0 && line[i] ~ /^[[:space:]]*(\/\/\/|#\[)/; i--)
				if (line[i] ~ /# Safety/) ok = 1
			if (!ok) { printf "%s:%d: unsafe fn without a # Safety section\n", f, NR; bad = 1 }
		}
		END { exit bad }' "$f" || bad=1
done

for f in $(git ls-files '*.rs' '*.c' '*.h' '*.sh' '*.py' 'tests/mutants/*.patch' 'compat/*.patch' 'Kbuild' 'Kconfig' 'Makefile' 'Cargo.toml' '.ci/run'); do
	head -3 "$f" | grep -q 'SPDX-License-Identifier' || { vpmu_log "no SPDX line: $f"; bad=1; }
done

[ $bad = 0 ] && vpmu_log "lint clean"
exit $bad
