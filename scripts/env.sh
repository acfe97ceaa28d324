# SPDX-License-Identifier: GPL-2.0
# Shared settings for the kvm-vpmu scripts: which kernel, where its cache
# lives and which toolchain builds it.  Sourced, not executed.
#
# KVER selects the host kernel: 7.3 (the default) or 6.12 (the LTS).  Each
# has its patch series in patches/$KVER/ and its own source and build
# directories in the cache; the module sources are the same for both.

VPMU_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VPMU_CACHE=${KVM_VPMU_CACHE:-$HOME/.cache/kvm-vpmu}
VPMU_KVERS=(7.3 6.12)
VPMU_JOBS=${VPMU_JOBS:-$(nproc)}
# The KVM selftests are built once, from 6.12's tree, and run on both
# kernels: they reach the host only through KVM's stable ioctl ABI.
VPMU_SELFTESTS=$VPMU_CACHE/selftests/x86_64

# vpmu_use_kernel <version>: sets VPMU_KVER, its source tree (VPMU_KSRC),
# build directory (VPMU_KOUT) and make command (VPMU_KMAKE).
vpmu_use_kernel() {
	case $1 in
	6.12) VPMU_KOUT=$VPMU_CACHE/build ;;
	7.3) VPMU_KOUT=$VPMU_CACHE/build-7.3 ;;
	*)
		vpmu_log "unknown kernel '$1' (supported: ${VPMU_KVERS[*]})"
		exit 2
		;;
	esac
	VPMU_KVER=$1
	VPMU_KSRC=$VPMU_CACHE/linux-source-$VPMU_KVER
	# Debian's rustc-web is the kernel toolchain; rustup's rustc (first in
	# PATH on these machines) has no rust-src and must not build kernel
	# code.  7.3's bindgen needs libclang >= 17: Debian 12's libclang-19.
	# 6.12's GCC build keeps Debian 12's default libclang (14).
	VPMU_KMAKE=(make -C "$VPMU_KSRC" O="$VPMU_KOUT" -j"$VPMU_JOBS"
		RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
		RUSTFMT=/usr/bin/rustfmt CLIPPY_DRIVER=/usr/bin/clippy-driver
		BINDGEN="$(command -v bindgen || echo "$HOME/.cargo/bin/bindgen")")
	[ "$VPMU_KVER" = 6.12 ] || VPMU_KMAKE+=(LIBCLANG_PATH=/usr/lib/llvm-19/lib)
}

# The debug variant (kernel/debug.config, with KASAN) of the selected kernel
# builds from the same source into its own output directory with Debian's
# Clang 19 toolchain: both kernels allow KASAN beside Rust only in
# Clang-built kernels.
vpmu_use_debug_build() {
	VPMU_KOUT=$VPMU_CACHE/build-$VPMU_KVER-debug
	VPMU_KMAKE=("${VPMU_KMAKE[@]/#O=*/O=$VPMU_KOUT}" LLVM=-19
		LIBCLANG_PATH=/usr/lib/llvm-19/lib)
}

vpmu_log() { printf '[kvm-vpmu] %s\n' "$*" >&2; }

vpmu_use_kernel "${KVER:-7.3}"
