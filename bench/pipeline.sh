#!/usr/bin/env bash
# Cost per span of the agent's pipeline stages, without BPF or root:
# builds the pipeline benchmark (crates/agent/benches/pipeline.rs) in
# release and runs it. With a rotel collector (the lab's or the bench
# venv's), the `grpc` stage also exports every span to it; --no-grpc skips
# that stage. Other arguments go to the benchmark (--requests N,
# --connections N, --rounds N). See bench/README.md.
set -euo pipefail

cd "$(dirname "$0")/.."
grpc=1
args=()
for a in "$@"; do
    case "$a" in
        --no-grpc) grpc=0 ;;
        *) args+=("$a") ;;
    esac
done

rotel_pid=
cleanup() {
    if [ -n "$rotel_pid" ]; then
        kill "$rotel_pid" 2>/dev/null || true
        wait "$rotel_pid" 2>/dev/null || true
    fi
    [ -z "${rotel_log:-}" ] || rm -f "$rotel_log"
}
trap cleanup EXIT

if ((grpc)); then
    rotel=
    for venv in "${RATATOSK_LAB:-/opt/ratatosk-lab}" "${RATATOSK_BENCH_VENV:-/opt/ratatosk-bench-venv}"; do
        for f in "$venv"/lib/python3*/site-packages/rotel/rotel-agent; do
            [ -x "$f" ] && rotel=$f && break 2
        done
    done
    if [ -z "$rotel" ]; then
        echo "pipeline: rotel-agent not found (run scripts/lab.sh or bench/setup.sh, or pass --no-grpc)" >&2
        exit 1
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    rotel_log=$(mktemp /tmp/ratatosk-pipeline-rotel.XXXXXX)
    "$rotel" start --otlp-grpc-endpoint "127.0.0.1:$port" --exporter blackhole >"$rotel_log" 2>&1 &
    rotel_pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$rotel_pid" 2>/dev/null || { echo "pipeline: rotel exited:" >&2; cat "$rotel_log" >&2; exit 1; }
        sleep 0.1
    done
    args+=(--otlp-grpc "http://127.0.0.1:$port")
fi

cargo bench -q -p ratatosk --bench pipeline -- "${args[@]}"
