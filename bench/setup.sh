#!/usr/bin/env bash
# Installs everything `bench/run.py --suite` needs on a fresh Debian 12
# machine. Idempotent: what is already there is left alone. Run as root.
#
#   bench/setup.sh                      # venv in /opt/ratatosk-bench-venv
#   RATATOSK_BENCH_VENV=/path bench/setup.sh
#
# Debian packages: the servers and load generators. PyPI (into a venv of
# its own, never the system Python): Flask + gunicorn, the OpenTelemetry
# Python SDK with its auto-instrumentation, rotel (an OTLP collector the
# SDK exports to) and matplotlib (the chart). The agent itself is built
# with `cargo build --release -p ratatosk`; this script does not build it.
set -euo pipefail

VENV=${RATATOSK_BENCH_VENV:-/opt/ratatosk-bench-venv}
PYTHON=${PYTHON:-/usr/bin/python3}

if [[ $EUID -ne 0 ]]; then
    echo "bench/setup.sh: must run as root" >&2
    exit 1
fi

# ---------------------------------------------------------------- Debian
APT_PACKAGES=(nginx wrk nghttp2-client redis-server redis-tools postgresql mariadb-server mariadb-client sysbench openssl
              bpftool python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "apt: installing ${missing[*]}"
    apt-get update -qq
    # Installing a server package does not start it here (no systemd); the
    # suite starts its own instances on free loopback ports either way.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- PyPI
# Versions pinned so the SDK's overhead is comparable between runs.
PIP_PACKAGES=(
    flask==3.1.3 gunicorn==27.0.1 matplotlib==3.11.2 rotel==0.0.1a15 grpcio==1.76.0
    opentelemetry-distro==0.66b1 opentelemetry-instrumentation==0.66b1 opentelemetry-exporter-otlp==1.45.1
)
if [[ ! -x $VENV/bin/python ]]; then
    echo "venv: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
# The instrumentation packages for what is installed (flask, werkzeug, …).
# opentelemetry-bootstrap pins the newest release (0.66b2 at the time of
# writing), which needs a newer SDK than the one pinned above: use 0.66b1.
reqs=$("$VENV/bin/opentelemetry-bootstrap" -a requirements | sed 's/==0\.66b2$/==0.66b1/')
# shellcheck disable=SC2086
"$VENV/bin/pip" install -q --disable-pip-version-check $reqs

rotel=$("$VENV/bin/python" -c 'import rotel, pathlib; print(pathlib.Path(rotel.__file__).parent / "rotel-agent")')
for exe in "$VENV/bin/gunicorn" "$VENV/bin/opentelemetry-instrument" "$rotel"; do
    [[ -x $exe ]] || { echo "bench/setup.sh: $exe missing after install" >&2; exit 1; }
done
"$VENV/bin/python" -c 'import flask, matplotlib, opentelemetry.instrumentation.flask' \
    || { echo "bench/setup.sh: the venv cannot import flask/matplotlib/the Flask instrumentation" >&2; exit 1; }
echo "bench/setup.sh: ready (venv $VENV)"
