#!/usr/bin/env python3
"""Overhead benchmark for the Ratatosk agent.

For each workload: start its server(s) once, then run R rounds; each round
runs the load once per run kind (baseline without the agent, the server
under a freshly started agent, and per workload extras such as hooks-only or
the OpenTelemetry SDK), rotating the order every round. Report medians of
throughput, latency and the agent's own costs; `--suite` runs every workload
and also draws a chart. See bench/README.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Bytecode would land in bench/ratabench/__pycache__, owned by root (the
# bench runs under sudo), and as untracked files under bench/ it would mark
# every result "bench/ uncommitted".
sys.dont_write_bytecode = True

from ratabench.paths import DEFAULT_VENV, REPO  # noqa: E402
from ratabench.suite import run_suite  # noqa: E402
from ratabench.workloads import WORKLOADS  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", action="store_true", help="run every workload")
    p.add_argument("--workload", type=lambda v: v.split(","), default=None,
                   help=f"comma-separated, from: {', '.join(WORKLOADS)} (default nginx-http1)")
    p.add_argument("--agent", type=Path, default=REPO / "target/release/ratatosk")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                   help="venv made by bench/setup.sh (Flask, gunicorn, OTel SDK, rotel, matplotlib)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=5, help="seconds per load run")
    p.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before round 1")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rate", type=float, default=50000, help="total req/s of the fixed-rate workload")
    p.add_argument("--hooks-only", action="store_true",
                   help="add a hooks-only run (agent attached, nothing selected) to every workload")
    p.add_argument("--perf", action="store_true", help="also record perf stat task-clock of the agent")
    p.add_argument("--hooks", type=lambda v: v.split(","), default=["socket"],
                   help="agent --syscall-hooks modes to compare, e.g. socket,raw (default: socket, the agent's default)")
    p.add_argument("--time-limit", type=int, default=1800,
                   help="seconds; past it everything is stopped and finished workloads are reported")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "bench/results")
    opts = p.parse_args()
    if opts.suite and opts.workload:
        p.error("--suite and --workload exclude each other")
    opts.workload = list(WORKLOADS) if opts.suite else (opts.workload or ["nginx-http1"])
    for name in opts.workload:
        if name not in WORKLOADS:
            p.error(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return opts


def main() -> int:
    return run_suite(parse_args())


if __name__ == "__main__":
    sys.exit(main())
