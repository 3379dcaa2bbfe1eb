"""Checks before anything starts: root, tools, venv, agent binary, perf."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from .errors import BenchError
from .servers import pg_bin, rotel_agent
from .workloads import WORKLOADS


def preflight(opts: argparse.Namespace) -> None:
    """Everything the selected workloads need, checked before anything
    starts; all that is missing in one line."""
    if os.geteuid() != 0:
        raise BenchError("must run as root (the agent loads BPF programs)")
    missing = [tool for tool in dict.fromkeys(t for n in opts.workload for t in WORKLOADS[n].needs + ["bpftool"])
               if not (pg_bin(tool) if tool in ("initdb", "postgres") else shutil.which(tool))]
    if "flask" in opts.workload:
        missing += [str(p) for p in (opts.venv / "bin/gunicorn", opts.venv / "bin/opentelemetry-instrument",
                                     rotel_agent(opts.venv)) if not os.access(p, os.X_OK)]
    py = opts.venv / "bin/python"
    if not opts.no_chart and not (py.exists() and subprocess.run(
            [str(py), "-c", "import matplotlib"], capture_output=True, timeout=60).returncode == 0):
        if opts.suite:
            missing.append(f"matplotlib in {opts.venv}")
        else:
            print(f"warning: no matplotlib in {opts.venv}: no chart (bench/setup.sh installs it)", file=sys.stderr)
            opts.no_chart = True
    if missing:
        raise BenchError(f"missing: {', '.join(missing)} (run bench/setup.sh as root)")
    if not os.access(opts.agent, os.X_OK):
        raise BenchError(f"agent binary {opts.agent} missing; run `cargo build --release -p ratatosk`")
    if opts.perf and (not shutil.which("perf") or subprocess.run(
            ["perf", "stat", "-e", "task-clock", "--", "true"], capture_output=True).returncode != 0):
        print("warning: perf stat is not usable, skipping --perf", file=sys.stderr)
        opts.perf = False
