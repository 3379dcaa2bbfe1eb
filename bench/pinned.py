#!/usr/bin/env python3
"""Where nginx-http1's throughput goes: nginx pinned to CPU 0, wrk to CPU 1
(8 keep-alive connections, closed loop), the agent free to run on either.

Each round runs the baseline (no agent) and every variant in a rotating
order; per variant it prints the median throughput ratio over the round's
baseline, the idle share of each CPU, the context switches per request and
the agent's CPU per request (its threads' on-CPU time). With --rate the
client is h2load at that fixed total rate instead of a saturating wrk, to
compare two agent builds where the CPU is not saturated.
Pinning removes the scheduler's placement of client and server from the
comparison, so the steps between variants are the agent's own cost.

Variants are NAME=COMMAND: an agent binary (and extra arguments) started
with the same arguments as in bench/run.py; a variant whose name starts
with `hooks` selects a port nobody listens on (programs attached, nothing
captured). Default: hooks-only and ratatosk with target/release/ratatosk.

    sudo bench/pinned.py --rounds 3
    sudo bench/pinned.py --variant 'ratatosk=target/release/ratatosk' \\
        --variant 'ring1m=target/release/ratatosk --ringbuf-mib 1'
    sudo bench/pinned.py --rate 10000 --variant 'old=/tmp/ratatosk-old' \\
        --variant 'new=target/release/ratatosk'
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True

from ratabench.agent import Agent  # noqa: E402
from ratabench.cpu import proc_cpu_ns  # noqa: E402
from ratabench.errors import BenchError  # noqa: E402
from ratabench.load import h2load_rps, parse_wrk  # noqa: E402
from ratabench.paths import REPO  # noqa: E402
from ratabench.procs import free_port, on_cpu, run_cmd, stop  # noqa: E402
from ratabench.servers import start_nginx  # noqa: E402


def cpu_idle() -> list[tuple[int, int]]:
    """(idle + iowait, total) jiffies per CPU."""
    out = []
    for line in open("/proc/stat"):
        if re.match(r"cpu\d", line):
            f = [int(x) for x in line.split()[1:]]
            out.append((f[3] + f[4], sum(f)))
    return out


def context_switches() -> int:
    for line in open("/proc/stat"):
        if line.startswith("ctxt "):
            return int(line.split()[1])
    raise BenchError("no ctxt line in /proc/stat")


def one_run(port: int, duration: int, agent_pid: int | None, rate: int | None) -> dict:
    """wrk (or, at a fixed `rate`, h2load) on CPU 1; CPU figures over the
    run minus its first and last second."""
    agent_ns = (lambda: proc_cpu_ns(agent_pid)) if agent_pid else (lambda: 0)
    url = f"http://127.0.0.1:{port}/file"
    if rate:
        cmd = [*on_cpu(1), "h2load", "--h1", "-c8", "-m1", "--rps", f"{rate / 8:g}",
               "-D", str(duration + 2), url]
    else:
        cmd = [*on_cpu(1), "wrk", "-t1", "-c8", f"-d{duration + 2}s", "--latency", url]
    wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        idle0, cs0, a0 = cpu_idle(), context_switches(), agent_ns()
        time.sleep(duration)
        idle1, cs1, a1 = cpu_idle(), context_switches(), agent_ns()
        out, _ = wrk.communicate(timeout=duration + 30)
    finally:
        if wrk.poll() is None:
            wrk.kill()
    rps = h2load_rps(out) if rate else parse_wrk(out).rps
    return {"rps": rps,
            "idle": [100 * (b[0] - a[0]) / max(1, b[1] - a[1]) for a, b in zip(idle0, idle1)],
            "cs_per_req": (cs1 - cs0) / (rps * duration),
            # Threads' on-CPU time over the client's mean rate in the window.
            "agent_us_per_req": (a1 - a0) / 1000 / (rps * duration)}


def measure(variants: dict[str, list[str]], rounds: int, duration: int,
            rate: int | None = None) -> dict[str, list[dict]]:
    """Runs the baseline and every variant (NAME -> agent argv) once per
    round, in a rotating order, against one nginx pinned to CPU 0."""
    kinds = ["baseline", *variants]
    tmp = Path(tempfile.mkdtemp(prefix="ratatosk-pinned-"))
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    server = None
    try:
        server = start_nginx(tmp, cpu=0)
        port = server.main.port
        run_cmd([*on_cpu(1), "wrk", "-t1", "-c8", "-d1s", f"http://127.0.0.1:{port}/file"], 30, "wrk")
        for rnd in range(rounds):
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            for kind in order:
                agent_proc = None
                if kind != "baseline":
                    argv = variants[kind]
                    selected = free_port() if kind.startswith("hooks") else port
                    agent_proc = Agent(Path(argv[0]), selected, tmp / f"{kind}.log", "socket", extra=tuple(argv[1:]))
                try:
                    r = one_run(port, duration, agent_proc.proc.pid if agent_proc else None, rate)
                finally:
                    if agent_proc:
                        agent_proc.stop()
                results[kind].append(r)
                print(f"round {rnd + 1} {kind:17} {r['rps']:9.0f} req/s  idle per CPU "
                      f"{' '.join(f'{x:4.1f}%' for x in r['idle'])}  {r['cs_per_req']:.2f} cs/req  "
                      f"agent {r['agent_us_per_req']:.2f} µs/req",
                      file=sys.stderr, flush=True)
    finally:
        if server:
            for proc in reversed(server.procs):
                stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def table(results: dict[str, list[dict]], rounds: int, duration: int, rate: int | None = None) -> str:
    """Markdown: per run kind, median req/s and ratio to its round's baseline."""
    med = statistics.median
    client = f"h2load -c8 at {rate:,} req/s" if rate else "wrk -c8"
    lines = [f"nginx on CPU 0, {client} on CPU 1; {rounds} rounds x {duration} s; medians",
             "| run | req/s | ratio (min-max) | idle CPU 0 | idle CPU 1 | context switches/req "
             "| agent CPU µs/req (min-max) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for kind, runs in results.items():
        ratios = [r["rps"] / b["rps"] for r, b in zip(runs, results["baseline"])]
        agent = [r["agent_us_per_req"] for r in runs]
        agent_cell = "—" if kind == "baseline" else f"{med(agent):.2f} ({min(agent):.2f}-{max(agent):.2f})"
        lines.append(f"| {kind} | {med([r['rps'] for r in runs]):,.0f} | {med(ratios):.3f} "
                     f"({min(ratios):.3f}-{max(ratios):.3f}) | {med([r['idle'][0] for r in runs]):.1f} % | "
                     f"{med([r['idle'][1] for r in runs]):.1f} % | {med([r['cs_per_req'] for r in runs]):.2f} | "
                     f"{agent_cell} |")
    return "\n".join(lines)


def preflight() -> str | None:
    """Why this machine cannot run the pinned comparison, or None."""
    if os.geteuid() != 0:
        return "run as root (the agent loads BPF programs)"
    missing = [t for t in ("nginx", "wrk", "h2load", "taskset", "bpftool") if not shutil.which(t)]
    if missing:
        return f"missing: {', '.join(missing)} (run bench/setup.sh as root)"
    if (os.cpu_count() or 1) < 2:
        return "needs 2 CPUs"
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="measured seconds per run")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=COMMAND")
    p.add_argument("--rate", type=int, help="total req/s with h2load --rps (default: wrk, saturating)")
    opts = p.parse_args()
    why = preflight()
    if why:
        print(f"pinned: {why}", file=sys.stderr)
        return 1
    agent = REPO / "target/release/ratatosk"
    specs = opts.variant or [f"hooks-only={agent}", f"ratatosk={agent}"]
    variants = {}
    for spec in specs:
        name, sep, command = spec.partition("=")
        argv = shlex.split(command)
        if not sep or not name or not argv:
            p.error(f"--variant {spec!r}: expected NAME=COMMAND")
        if not Path(argv[0]).exists():
            p.error(f"--variant {name}: {argv[0]} does not exist (cargo build --release -p ratatosk)")
        variants[name] = argv
    try:
        results = measure(variants, opts.rounds, opts.duration, opts.rate)
    except BenchError as e:
        print(f"pinned failed: {e}", file=sys.stderr)
        return 1
    print(table(results, opts.rounds, opts.duration, opts.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
