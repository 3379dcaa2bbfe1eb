#!/usr/bin/env bash
# Installs what building Ratatosk needs on Debian (as root) and builds the
# release binary at target/release/ratatosk.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=(clang-19 llvm-19 libclang1-19 libelf-dev zlib1g-dev pkg-config make)
missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found: install Rust >= 1.88 (rustup) first" >&2
    exit 1
fi
cargo build --release --locked -p ratatosk
