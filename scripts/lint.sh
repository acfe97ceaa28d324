#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Style gates: rustfmt and clippy (host and kernel builds), checkpatch
# --strict for the C shim and the patch series, SPDX lines everywhere.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$VPMU_TOP"
export PATH=$HOME/.cargo/bin:$PATH
bad=0

cargo fmt --check || bad=1
rustfmt --check --edition 2021 src/vpmu.rs || bad=1
cargo clippy --quiet --all-targets -- -D warnings || bad=1

# The kernel crate under the kernel's own clippy lints (undocumented unsafe
# blocks, missing docs, ...); any warning fails.
touch "$VPMU_KSRC/arch/x86/kvm/vpmu/src/vpmu.rs"
clippy=$("${VPMU_KMAKE[@]}" -s CLIPPY=1 arch/x86/kvm/vpmu/ 2>&1) || bad=1
if grep -qE '^(warning|error)' <<<"$clippy"; then
	printf '%s\n' "$clippy"
	vpmu_log "kernel clippy reported the above"
	bad=1
fi

# checkpatch runs outside this git repository, which it would otherwise
# take for the kernel tree the patches apply to.
cp=(perl scripts/checkpatch.pl --strict --no-tree --quiet)
(cd "$VPMU_KSRC" && "${cp[@]}" -f "$VPMU_TOP"/bindings/shim.c "$VPMU_TOP"/bindings/vpmu_bindings.h) || bad=1
# Without a git tree checkpatch cannot resolve the upstream commit that the
# series cites, and kernel style keeps a cited commit title on one line.
(cd "$VPMU_KSRC" && "${cp[@]}" --ignore UNKNOWN_COMMIT_ID,COMMIT_LOG_LONG_LINE "$VPMU_TOP"/patches/*.patch) || bad=1

for f in $(git ls-files '*.rs' '*.c' '*.h' '*.sh' 'Kbuild' 'Kconfig' 'Makefile' 'Cargo.toml' '.ci/run'); do
	head -3 "$f" | grep -q 'SPDX-License-Identifier' || { vpmu_log "no SPDX line: $f"; bad=1; }
done

[ $bad = 0 ] && vpmu_log "lint clean"
exit $bad
