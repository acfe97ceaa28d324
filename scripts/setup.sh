#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install what building and testing kvm-vpmu needs on a Debian 12 machine.
# Idempotent: a second run installs nothing.
set -euo pipefail
. "$(dirname "$0")/env.sh"

pkgs=(linux-source-6.12 rustc-web rust-web-src rustfmt-web rust-web-clippy
      clang libclang-dev llvm lld clang-19 lld-19 llvm-19 libclang-19-dev
      flex bison bc libelf-dev libssl-dev cpio kmod rsync
      busybox-static qemu-system-x86 python3 linux-perf)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	vpmu_log "installing ${missing[*]}"
	[ "$(id -u)" = 0 ] || { vpmu_log "need root to install packages"; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export PATH=$HOME/.cargo/bin:$PATH
if ! bindgen --version 2>/dev/null | grep -q '0\.73\.2'; then
	vpmu_log "installing bindgen-cli 0.73.2 (about 3 minutes)"
	cargo install bindgen-cli --version 0.73.2 --locked --quiet
fi
vpmu_log "toolchain ready: $(/usr/bin/rustc --version), $(bindgen --version)"
