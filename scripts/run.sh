#!/usr/bin/env bash
# Sets up, builds and starts the agent; arguments go to ratatosk
# (e.g. --open-port 8080 --prometheus-port 9400). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
exec ./target/release/ratatosk "$@"
