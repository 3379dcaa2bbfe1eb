#!/usr/bin/env bash
# Installs the non-system OpenSSL builds the sslcal tests calibrate: the
# libssl/libcrypto pairs vendored (with their exported symbols) in
# psycopg2-binary wheels from PyPI. 2.9.3 ships OpenSSL 1.1.1l, 2.9.13 ships
# OpenSSL 3.5.8. Output: $1 (scripts/lab.sh passes $RATATOSK_LAB/sslcal-libs;
# default target/sslcal-libs)/{openssl-1.1.1,openssl-3.5}/
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
out=${1:-$root/target/sslcal-libs}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { # version python-version dir
    "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_x86_64 --python-version "$2" \
        "psycopg2-binary==$1" -d "$tmp/$1"
    (cd "$tmp/$1" && "${PYTHON:-python3}" -m zipfile -e ./*.whl x)
    mkdir -p "$out/$3"
    cp "$tmp/$1"/x/psycopg2_binary.libs/libssl-* "$tmp/$1"/x/psycopg2_binary.libs/libcrypto-* "$out/$3/"
}
fetch 2.9.3 3.10 openssl-1.1.1
fetch 2.9.13 3.11 openssl-3.5
ls -l "$out"/*
