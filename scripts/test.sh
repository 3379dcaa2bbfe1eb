#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, the privileged
# end-to-end tests against real servers (serially: BPF programs are global
# kernel state) and a short fuzz run. Installs what it needs. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "test: run as root (the end-to-end tests load BPF programs)" >&2; exit 1; }
./scripts/setup.sh
./scripts/lab.sh
# The toolchain setup.sh found or installed (under sudo, perhaps the
# user's); the tests build as root (they load BPF programs), so what they
# write in a user's checkout is given back to the user at the end.
. scripts/rust-env.sh
find_rust || install_rust
rust_for_root

log=$(mktemp)
give_back() {
    rm -f "$log"
    if [ -n "$BUILD_USER" ]; then
        for d in target fuzz/target fuzz/corpus fuzz/artifacts; do
            [ ! -e "$d" ] || chown -R "$BUILD_USER": "$d"
        done
    fi
}
trap give_back EXIT

echo "== fmt"; cargo fmt --all -- --check
echo "== clippy"; cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== unit tests"
cargo test --locked --workspace --exclude ratatosk-e2e 2>&1 | tee -a "$log"
echo "== end-to-end tests"
cargo build --locked -p ratatosk
cargo test --locked -p ratatosk-e2e -- --test-threads=1 2>&1 | tee -a "$log"
echo "== fuzz smoke"; ./fuzz/smoke.sh

sum() { grep -oE "test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed" "$log" | awk -v f="$1" '{s += $f} END {print s + 0}'; }
echo "tests: $(sum 4) passed, $(sum 6) failed"
