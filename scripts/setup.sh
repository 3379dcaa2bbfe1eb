#!/usr/bin/env bash
# Installs what building Ratatosk needs on Debian or Ubuntu and builds the
# release binary at target/release/ratatosk. Run as root (directly, or with
# sudo from a user's checkout: the build then runs as that user). Installs
# Rust with the official rustup installer when no Rust >= 1.88 is found.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/rust-env.sh

need_pkgs=(clang-19 llvm-19 libclang1-19 libelf-dev zlib1g-dev pkg-config make)
missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || { echo "setup: run as root to install ${missing[*]}" >&2; exit 1; }
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
find_rust || install_rust
if [ -n "$BUILD_USER" ]; then
    # A target dir an earlier root build left behind goes back to its owner.
    [ ! -e target ] || chown -R "$BUILD_USER": target
    echo "setup: building as $BUILD_USER (the owner of this checkout)" >&2
fi
as_build_user cargo build --release --locked -p ratatosk
