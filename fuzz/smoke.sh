#!/usr/bin/env bash
# A short fuzz run of every target, seeded from seeds/ (part of the test
# command). Needs the nightly toolchain (shipped with these machines) and
# cargo-fuzz (installed from crates.io if missing). Fails on any crash.
set -euo pipefail
cd "$(dirname "$0")"
# 15 targets x 10 s: the smoke run stays under three minutes of fuzzing
# (plus the build); long runs are by hand (README.md).
SECONDS_PER_TARGET=${FUZZ_SECONDS:-10}

rustup toolchain list | grep -q '^nightly' || {
    echo "fuzz: no nightly toolchain (cargo fuzz needs one): rustup toolchain install nightly" >&2
    exit 1
}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
    # Committed seeds where a target has them (libFuzzer refuses a missing
    # directory).
    dirs=("corpus/$target")
    [ -d "seeds/$target" ] && dirs+=("seeds/$target")
    # ELF readers get whole small files (their seeds are real ELF files of
    # a few KB; a cut one loses its section headers, which sit at the end).
    case "$target" in
        ssl_fingerprint | go_executable | gopclntab) max_len=16384 ;;
        *) max_len=4096 ;;
    esac
    log=$(mktemp)
    if ! cargo +nightly fuzz run "$target" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        rm -f "$log"
        echo "fuzz: $target failed (a crash leaves its input in fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    grep -E "^stat::number_of_executed_units" "$log" || true
    rm -f "$log"
done
echo "fuzz: no crash"
