# Sourced by setup.sh and test.sh from the checkout's root: who builds, and
# which Rust toolchain (>= MIN_RUST) they build with.
#
# Run through sudo by the owner of the checkout, the build runs as that user
# (BUILD_USER), so no root-owned file is left in the checkout; as root
# without sudo (or by anyone else), as the caller. Under sudo root's PATH
# lacks the user's ~/.cargo/bin, so that is looked at too.

MIN_RUST=1.88

BUILD_USER=
if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] &&
    [ "$(stat -c %U .)" = "$SUDO_USER" ]; then
    BUILD_USER=$SUDO_USER
fi

build_home() {
    if [ -n "$BUILD_USER" ]; then
        getent passwd "$BUILD_USER" | cut -d: -f6
    else
        echo "${HOME:-/root}"
    fi
}

# Runs a command as the build user (with their HOME, and our PATH).
as_build_user() {
    if [ -n "$BUILD_USER" ]; then
        runuser -u "$BUILD_USER" -- env HOME="$(build_home)" PATH="$PATH" \
            ${RUSTUP_TOOLCHAIN:+RUSTUP_TOOLCHAIN="$RUSTUP_TOOLCHAIN"} "$@"
    else
        "$@"
    fi
}

# Whether the directory holds a cargo and a rustc >= MIN_RUST.
rust_ok() {
    local v
    [ -x "$1/cargo" ] && [ -x "$1/rustc" ] || return 1
    v=$(as_build_user "$1/rustc" --version 2>/dev/null | awk '{print $2}') || return 1
    v=${v%%-*}
    [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$MIN_RUST" "$v" | sort -V | head -n1)" = "$MIN_RUST" ]
}

# Puts the first suitable toolchain's directory first in PATH (RUST_BIN).
find_rust() {
    local d
    for d in "$(dirname "$(command -v cargo 2>/dev/null || echo /nonexistent/cargo)")" \
        "$(build_home)/.cargo/bin" "${HOME:-/root}/.cargo/bin" /usr/local/cargo/bin /usr/bin; do
        if rust_ok "$d"; then
            RUST_BIN=$d
            export PATH="$d:$PATH"
            return 0
        fi
    done
    return 1
}

# Installs the stable toolchain for the build user with the official rustup
# installer (https://rustup.rs), or, where rustup is already there with an
# older default toolchain, adds stable and builds with it.
install_rust() {
    local rustup_bin="" d installer
    for d in "$(build_home)/.cargo/bin" "$(dirname "$(command -v rustup 2>/dev/null || echo /nonexistent/rustup)")"; do
        [ -x "$d/rustup" ] && rustup_bin=$d/rustup && break
    done
    if [ -n "$rustup_bin" ]; then
        echo "setup: the default Rust toolchain is older than $MIN_RUST: installing stable with $rustup_bin for ${BUILD_USER:-$(id -un)}" >&2
        as_build_user "$rustup_bin" toolchain install stable --profile minimal
        export RUSTUP_TOOLCHAIN=stable
        RUST_BIN=$(dirname "$rustup_bin")
        export PATH="$RUST_BIN:$PATH"
        return 0
    fi
    echo "setup: no Rust >= $MIN_RUST found (looked on PATH and in $(build_home)/.cargo/bin): installing the stable toolchain with the official rustup installer (https://sh.rustup.rs) for ${BUILD_USER:-$(id -un)}, into $(build_home)/.cargo and $(build_home)/.rustup" >&2
    if ! command -v curl >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl ca-certificates >/dev/null
    fi
    installer=$(mktemp)
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs -o "$installer"
    chmod 644 "$installer"
    as_build_user sh "$installer" -y --profile minimal --default-toolchain stable
    rm -f "$installer"
    RUST_BIN=$(build_home)/.cargo/bin
    export PATH="$RUST_BIN:$PATH"
}

# For root using the build user's rustup toolchain (test.sh runs cargo as
# root: the end-to-end tests load BPF programs).
rust_for_root() {
    if [ -n "$BUILD_USER" ] && [ -z "${RUSTUP_HOME:-}" ] && [ -d "$(build_home)/.rustup" ] &&
        case "${RUST_BIN:-}" in "$(build_home)"/*) true ;; *) false ;; esac; then
        export RUSTUP_HOME="$(build_home)/.rustup"
    fi
}
