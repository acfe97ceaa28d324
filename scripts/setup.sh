#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install what building and testing kvm-vpmu needs on a Debian 12 machine.
# Idempotent: a second run installs nothing.
set -euo pipefail
. "$(dirname "$0")/env.sh"

pkgs=(linux-source-6.12 linux-source-7.3 rustc-web rust-web-src rustfmt-web rust-web-clippy
      clang libclang-dev llvm lld clang-19 lld-19 llvm-19 libclang-19-dev
      flex bison bc libelf-dev libssl-dev cpio kmod rsync
      busybox-static qemu-system-x86 python3 linux-perf
      bochs bochsbios vgabios isolinux syslinux-common xorriso)
# Linux 7.3's source comes from Debian 13's backports (trixie-backports,
# arch all, needing only binutils and xz-utils), on the mirror this machine
# already uses for bookworm; only linux-source-7.3 may come from there.
mirror_for() { # mirror_for <suite>: the first URI the apt sources give it
	local uris
	uris=$({
		sed -nE '/^URIs:/{s/^URIs: *//;h};/^Suites:(.* )?'"$1"'( |$)/{x;p}' \
			/etc/apt/sources.list.d/*.sources || true
		awk -v s="$1" '$1 == "deb" && $0 !~ /\[/ && $3 == s { print $2 }' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list || true
	} 2>/dev/null)
	set -- $uris
	echo "${1:-}"
}
backports=/etc/apt/sources.list.d/kvm-vpmu-trixie-backports.sources
if ! dpkg-query -W -f='${Status}' linux-source-7.3 2>/dev/null | grep -q "ok installed" &&
   [ ! -e "$backports" ]; then
	[ "$(id -u)" = 0 ] || { vpmu_log "need root to add trixie-backports to apt"; exit 1; }
	mirror=$(mirror_for bookworm)
	[ -n "$mirror" ] || { vpmu_log "no apt source for bookworm to take the mirror from"; exit 1; }
	vpmu_log "adding trixie-backports from $mirror for linux-source-7.3 only"
	cat >"$backports" <<EOS
Types: deb
URIs: $mirror
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
	cat >/etc/apt/preferences.d/kvm-vpmu-trixie-backports <<'EOS'
# kvm-vpmu: only linux-source-7.3 comes from trixie-backports.
Package: *
Pin: release n=trixie-backports
Pin-Priority: -1

Package: linux-source-7.3
Pin: release n=trixie-backports
Pin-Priority: 500
EOS
fi

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
