# SPDX-License-Identifier: GPL-2.0
# Shared settings for the kvm-vpmu scripts: where the kernel cache lives and
# which toolchain builds it.  Sourced, not executed.

VPMU_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VPMU_CACHE=${KVM_VPMU_CACHE:-$HOME/.cache/kvm-vpmu}
VPMU_KVER=6.12
VPMU_KSRC=$VPMU_CACHE/linux-source-$VPMU_KVER
VPMU_KOUT=$VPMU_CACHE/build
VPMU_JOBS=${VPMU_JOBS:-$(nproc)}

# Debian's rustc-web is the kernel toolchain; rustup's rustc (first in PATH on
# these machines) has no rust-src and must not build kernel code.
VPMU_KMAKE=(make -C "$VPMU_KSRC" O="$VPMU_KOUT" -j"$VPMU_JOBS"
	RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
	RUSTFMT=/usr/bin/rustfmt CLIPPY_DRIVER=/usr/bin/clippy-driver
	BINDGEN="$(command -v bindgen || echo "$HOME/.cargo/bin/bindgen")")

# The debug variant (kernel/debug.config, with KASAN) builds from the same
# source into its own output directory with Debian's Clang 19 toolchain:
# 6.12 has KASAN beside Rust only in Clang-built kernels.  bindgen then
# parses with the same libclang.
vpmu_use_debug_build() {
	VPMU_KOUT=$VPMU_CACHE/build-clang-debug
	VPMU_KMAKE=("${VPMU_KMAKE[@]/#O=*/O=$VPMU_KOUT}" LLVM=-19
		LIBCLANG_PATH=/usr/lib/llvm-19/lib)
}

vpmu_log() { printf '[kvm-vpmu] %s\n' "$*" >&2; }
