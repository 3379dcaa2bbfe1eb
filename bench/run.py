#!/usr/bin/env python3
"""Overhead benchmark for the Ratatosk agent.

For each workload: start a server once, then run R rounds of (baseline load
run without the agent, instrumented load run with a freshly started agent),
alternating which goes first. Report medians of throughput, latency and the
agent's own costs. See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
BPF_PROG_NAMES = {"sys_exit", "sched_process_fork", "sched_process_exec", "sched_process_exit"}
BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BenchError(Exception):
    """A failure that ends the run with one clear line."""


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    # A new session keeps Ctrl-C away from children: we stop them ourselves,
    # in order, so the agent detaches cleanly.
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Signal one process we started and wait; SIGKILL its group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Its own session, so the group holds only what it started (e.g. nginx workers).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return proc.returncode


def log_tail(log: Path, lines: int = 8) -> str:
    text = ANSI.sub("", log.read_text(errors="replace")) if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# ---------------------------------------------------------------- load generators

@dataclass
class LoadResult:
    rps: float
    requests: int          # as counted by the client (excludes requests in flight at the end)
    p50_us: float
    p99_us: float
    errors: int            # socket errors + non-2xx responses


def to_us(value: str, unit: str) -> float:
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[unit]


def parse_wrk(out: str) -> LoadResult:
    def find(pattern: str) -> re.Match:
        m = re.search(pattern, out, re.M)
        if not m:
            raise BenchError(f"cannot parse wrk output ({pattern!r}):\n{out}")
        return m
    p50, p99 = (find(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$") for q in (50, 99))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return LoadResult(
        rps=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        requests=int(find(r"^\s*(\d+) requests in").group(1)),
        p50_us=to_us(*p50.groups()), p99_us=to_us(*p99.groups()),
        errors=errors + (int(non2xx.group(1)) if non2xx else 0))


def run_wrk(url: str, opts: argparse.Namespace, duration: int) -> LoadResult:
    cmd = ["wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{duration}s", "--latency", url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    if r.returncode != 0:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return parse_wrk(r.stdout)


# ---------------------------------------------------------------- workloads

@dataclass
class Workload:
    """A server under test plus how to load it and count what it served.

    start(tmpdir, port) -> list of processes to stop at the end (in order);
    load(port, opts, duration) -> LoadResult;
    served(port) -> cumulative requests the server handled (or None: then the
    client's count is used); load_routes: routes the load hits, so spans for
    bookkeeping requests (e.g. a status page) are not counted.
    """
    name: str
    needs: list[str]
    start: Callable[[Path, int], list[subprocess.Popen]]
    load: Callable[[int, argparse.Namespace, int], LoadResult]
    served: Callable[[int], int | None]
    load_routes: set[str]


NGINX_CONF = """\
daemon off; master_process on; worker_processes 1;
pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 1000000;
  client_body_temp_path {d}/client_body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {d}/www;
    location = /nginx_status {{ stub_status; }}
  }}
}}
"""


def start_nginx(tmp: Path, port: int) -> list[subprocess.Popen]:
    www = tmp / "www"
    www.mkdir()
    (www / "file").write_text("Hello, world!")       # 13 bytes
    # The worker runs as nobody: everything it serves must be world-readable.
    for p in (tmp, www, www / "file"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=tmp, port=port))
    proc = spawn(["nginx", "-p", str(tmp), "-c", str(conf)], tmp / "nginx.log")
    try:
        wait_until(lambda: nginx_up(port), 10, "nginx did not start",
                   lambda: proc.poll() is None, lambda: log_tail(tmp / "error.log"))
    except BaseException:
        stop(proc)
        raise
    return [proc]


_status_reads: dict[int, int] = {}


def nginx_requests(port: int) -> int:
    """Requests nginx served so far, not counting our own status-page reads
    (nginx counts each one, including the one being answered)."""
    try:
        text = http_get(f"http://127.0.0.1:{port}/nginx_status")
    except OSError as e:
        raise BenchError(f"nginx status page unreachable: {e}") from e
    _status_reads[port] = _status_reads.get(port, 0) + 1
    return int(text.splitlines()[2].split()[2]) - _status_reads[port]


def nginx_up(port: int) -> bool:
    try:
        return nginx_requests(port) >= 0
    except BenchError:
        return False


WORKLOADS = {
    "nginx-http1": Workload(
        name="nginx-http1", needs=["nginx", "wrk"], start=start_nginx,
        load=lambda port, o, d: run_wrk(f"http://127.0.0.1:{port}/file", o, d),
        served=nginx_requests, load_routes={"/file"}),
}


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               alive: Callable[[], bool] = lambda: True, detail: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if not alive() or time.monotonic() > deadline:
            raise BenchError(f"{what}\n{detail()}".rstrip())
        time.sleep(0.05)


# ---------------------------------------------------------------- agent probes

def proc_cpu_s(pid: int) -> float:
    # utime and stime are fields 14 and 15; split after the ")" of comm.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    kb = lambda key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1))
    return {"rss_mb": kb("VmRSS") / 1024, "hwm_mb": kb("VmHWM") / 1024}


def agent_prog_ids(pid: int) -> set[int]:
    # Exact attribution: the prog fds the agent holds (other agents may run
    # programs with the same names).
    ids = set()
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            m = re.search(r"^prog_id:\s+(\d+)", fd.read_text(), re.M)
        except OSError:      # an fd closed while we looked
            continue
        if m:
            ids.add(int(m.group(1)))
    if not ids:
        print("warning: the agent holds no BPF program fds; BPF costs will read 0", file=sys.stderr)
    return ids


def agent_like_progs() -> list[dict]:
    """Loaded BPF programs named like the agent's (ours or anyone else's)."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, timeout=10)
    # Names are cut at 15 bytes: the per-syscall programs show as sys_exit_….
    return [p for p in json.loads(out.stdout)
            if p.get("name") in BPF_PROG_NAMES or p.get("name", "").startswith("sys_exit_")]


def foreign_progs(ours: set[int] = frozenset(), grace: float = 5) -> int:
    """Agent-like BPF programs not ours. Another agent (e.g. a concurrent
    test) taxes every syscall, baseline included, so count them. A stopped
    agent's programs are freed asynchronously (RCU), so give them time to go."""
    deadline = time.monotonic() + grace
    while (n := sum(1 for p in agent_like_progs() if p["id"] not in ours)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if n:
        print(f"warning: {n} BPF programs of another agent-like process are loaded", file=sys.stderr)
    return n


def bpf_stats(ids: set[int]) -> dict[str, dict[str, int]]:
    return {p["name"]: {"ns": p.get("run_time_ns", 0), "cnt": p.get("run_cnt", 0)}
            for p in agent_like_progs() if p["id"] in ids}


def scrape(mport: int) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in http_get(f"http://127.0.0.1:{mport}/metrics").splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if m and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def agent_counters(mport: int, load_routes: set[str]) -> dict[str, float]:
    """The agent's self-metrics we report, as a flat dict of totals."""
    c: dict[str, float] = {}
    for name, labels, value in scrape(mport):
        key = {"ratatosk_spans_emitted_total": "spans_all",
               "ratatosk_queue_dropped_total": "queue_dropped",
               "ratatosk_bpf_events_total": "bpf_events",
               "ratatosk_capture_truncated_total": "capture_truncated"}.get(name)
        if name == "http_server_request_duration_seconds_count" and labels.get("http_route") in load_routes:
            key = "spans"
        elif name == "ratatosk_ringbuf_dropped_total":
            key = f"ringbuf_dropped_{labels.get('kind')}"
        elif name == "ratatosk_parser_errors_total":
            key = f"parser_errors_{labels.get('reason')}"
        if key:
            c[key] = c.get(key, 0) + value
    return c


class Agent:
    """One agent process, started for one instrumented run."""

    def __init__(self, binary: Path, port: int, log: Path, hooks: str):
        self.mport, self.log = free_port(), log
        self.proc = spawn([str(binary), "--open-port", str(port), "--trace-printer", "disabled",
                           "--syscall-hooks", hooks,
                           "--prometheus-port", str(self.mport), "--prometheus-address", "127.0.0.1"], log)
        ready = lambda: re.search(r"\bready\b", ANSI.sub("", log.read_text(errors="replace"))) is not None
        try:
            wait_until(ready, 30, "agent did not become ready within 30 s; its last log lines:",
                       lambda: self.proc.poll() is None, lambda: log_tail(log))
            self.prog_ids = agent_prog_ids(self.proc.pid)
        except BaseException as e:
            rc = self.proc.poll()
            stop(self.proc)
            if isinstance(e, BenchError) and rc is not None:
                raise BenchError(f"agent exited with {rc} before it was ready:\n{log_tail(log)}") from None
            raise

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"agent exited with {self.proc.returncode} mid-run:\n{log_tail(self.log)}")

    def stop(self) -> int:
        return stop(self.proc)

    def warnings(self, limit: int = 10) -> list[str]:
        text = ANSI.sub("", self.log.read_text(errors="replace"))
        return [l for l in text.splitlines() if re.search(r"\b(WARN|ERROR)\b", l)][:limit]

    def check_exit(self) -> None:
        if self.proc.returncode != 0:
            raise BenchError(f"agent exited with {self.proc.returncode} on SIGTERM:\n{log_tail(self.log)}")


def start_perf(pid: int, log: Path) -> subprocess.Popen:
    return spawn(["perf", "stat", "-x", ",", "-e", "task-clock", "-p", str(pid)], log)


def stop_perf(proc: subprocess.Popen, log: Path) -> float | None:
    """perf stat prints its counts on SIGINT; returns task-clock in seconds."""
    stop(proc, signal.SIGINT, 10)
    m = re.search(r"^([\d.]+),msec,task-clock", log.read_text(errors="replace"), re.M)
    return float(m.group(1)) / 1e3 if m else None


# ---------------------------------------------------------------- runs

def baseline_run(w: Workload, port: int, opts: argparse.Namespace) -> dict:
    foreign = foreign_progs()
    before = w.served(port)
    load = w.load(port, opts, opts.duration)
    after = w.served(port)
    served = after - before if before is not None else load.requests
    return {**vars(load), "served": served, "foreign_bpf_progs": foreign}


def instrumented_run(w: Workload, port: int, opts: argparse.Namespace, tmp: Path, rnd: int,
                     hooks: str, select_port: int | None = None) -> dict:
    """With `select_port` the agent selects a port nobody listens on: its
    programs are attached (every syscall on the host pays the hook and the
    filter) but nothing is captured: the cost of the hooks alone."""
    agent = Agent(opts.agent, select_port or port, tmp / f"agent-{rnd}-{hooks}-{select_port or port}.log", hooks)
    try:
        raw = measure_with_agent(agent, w, port, opts, tmp / f"perf-{rnd}.log")
    finally:
        agent.stop()     # never raises, so it cannot mask an error in flight
    agent.check_exit()
    return {**per_request(raw), "agent_warnings": agent.warnings()}


def measure_with_agent(agent: Agent, w: Workload, port: int, opts: argparse.Namespace, perf_log: Path) -> dict:
    """Raw counters around one load run. CPU and BPF are sampled right
    around the load so idle time and our own scrapes stay out."""
    pid, perf = agent.proc.pid, None
    foreign = foreign_progs(agent.prog_ids)
    served0, counters0 = w.served(port), agent_counters(agent.mport, w.load_routes)
    try:
        if opts.perf:
            perf = start_perf(pid, perf_log)
        bpf0, cpu0 = bpf_stats(agent.prog_ids), proc_cpu_s(pid)
        load = w.load(port, opts, opts.duration)
        cpu1, bpf1 = proc_cpu_s(pid), bpf_stats(agent.prog_ids)
        perf_s = stop_perf(perf, perf_log) if perf else None
    finally:
        if perf:
            stop(perf, signal.SIGINT, 10)
    served1 = w.served(port)
    agent.check_alive()
    counters1 = settle(agent.mport, w.load_routes)
    return {"load": load, "served": served1 - served0 if served0 is not None else load.requests,
            "foreign": foreign, "cpu_s": cpu1 - cpu0, "perf_s": perf_s,
            # Includes draining what was still queued when the load ended.
            "cpu_drained_s": proc_cpu_s(pid) - cpu0,
            "bpf": {n: {k: bpf1[n][k] - bpf0[n][k] for k in ("ns", "cnt")} for n in bpf1 if n in bpf0},
            "mem": proc_mem_mb(pid),
            "counters": {k: counters1.get(k, 0) - counters0.get(k, 0) for k in counters1.keys() | counters0.keys()}}


def per_request(raw: dict) -> dict:
    served, c = raw["served"], raw["counters"]
    per_req = lambda x: x / served if served else float("nan")
    return {**vars(raw["load"]), "served": served, "foreign_bpf_progs": raw["foreign"],
            "agent_cpu_us_per_req": per_req(raw["cpu_s"] * 1e6),
            "agent_cpu_drained_us_per_req": per_req(raw["cpu_drained_s"] * 1e6),
            "perf_task_clock_us_per_req": per_req(raw["perf_s"] * 1e6) if raw["perf_s"] is not None else None,
            "bpf_us_per_req": per_req(sum(p["ns"] for p in raw["bpf"].values()) / 1e3),
            "bpf_hits_per_req": per_req(sum(p["cnt"] for p in raw["bpf"].values())),
            "bpf_per_prog": raw["bpf"], **raw["mem"],
            "spans_per_req": per_req(c.get("spans", 0)),
            "drops": sum(v for k, v in c.items() if k.startswith(("ringbuf_dropped", "queue_dropped"))),
            "parser_errors": sum(v for k, v in c.items() if k.startswith("parser_errors")),
            "agent_counters_delta": c}


def settle(mport: int, load_routes: set[str], timeout: float = 5) -> dict[str, float]:
    """Scrape until the span count stops moving: the agent drains its ring
    buffer on a timer, so the last spans arrive shortly after the load ends."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        time.sleep(0.2)
        now = agent_counters(mport, load_routes)
        if (last is not None and now.get("spans_all") == last.get("spans_all")) or time.monotonic() > deadline:
            return now
        last = now


# ---------------------------------------------------------------- summary

SUMMARY_ROWS = [  # (label, key in summary, format)
    ("baseline req/s", "baseline_rps", "{:,.0f}"),
    ("instrumented req/s", "instrumented_rps", "{:,.0f}"),
    ("throughput ratio (instr/base)", "throughput_ratio", "{:.3f}"),
    ("hooks attached, nothing selected: ratio", "hooks_only_ratio", "{:.3f}"),
    ("hooks attached, nothing selected: BPF µs/req", "hooks_only_bpf_us_per_req", "{:.3f}"),
    ("added p50 latency (µs)", "added_p50_us", "{:+.1f}"),
    ("added p99 latency (µs)", "added_p99_us", "{:+.1f}"),
    ("agent CPU user+sys (µs/req)", "agent_cpu_us_per_req", "{:.3f}"),
    ("BPF CPU (µs/req)", "bpf_us_per_req", "{:.3f}"),
    ("BPF program hits/req", "bpf_hits_per_req", "{:.2f}"),
    ("perf task-clock (µs/req)", "perf_task_clock_us_per_req", "{:.3f}"),
    ("agent RSS end of run (MB)", "rss_mb", "{:.1f}"),
    ("agent RSS peak (MB)", "hwm_mb", "{:.1f}"),
    ("spans / requests served", "spans_per_req", "{:.4f}"),
    ("ring-buffer + queue drops", "drops", "{:,.0f}"),
    ("parser errors", "parser_errors", "{:,.0f}"),
    ("load errors (both runs)", "load_errors", "{:,.0f}"),
]


def summarize(rounds: list[dict], modes: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per hook mode, per-round values of each summary metric (the median
    is taken later)."""
    out: dict[str, dict[str, list[float]]] = {}
    for mode in modes:
        per = out.setdefault(mode, {})
        for r in rounds:
            b, i, h = r["baseline"], r[f"instrumented/{mode}"], r[f"hooks_only/{mode}"]
            vals = {"baseline_rps": b["rps"], "instrumented_rps": i["rps"],
                    "throughput_ratio": i["rps"] / b["rps"],
                    "hooks_only_ratio": h["rps"] / b["rps"], "hooks_only_bpf_us_per_req": h["bpf_us_per_req"],
                    "added_p50_us": i["p50_us"] - b["p50_us"], "added_p99_us": i["p99_us"] - b["p99_us"],
                    "load_errors": b["errors"] + i["errors"]}
            vals |= {k: i[k] for _, k, _ in SUMMARY_ROWS if k not in vals}
            for k, v in vals.items():
                if v is not None:
                    per.setdefault(k, []).append(v)
    return out


def markdown(per_mode: dict[str, dict[str, list[float]]], meta: dict, rounds: list[dict]) -> str:
    m, o = meta["machine"], meta["options"]
    lines = [f"## Ratatosk overhead: {meta['workload']}", "",
             f"{m['cpu']}, {m['nproc']} CPUs, kernel {m['kernel']}, "
             f"commit {m['commit']}{' (dirty)' if m['dirty'] else ''}; "
             f"{o['rounds']} rounds × {o['duration']} s, {o['threads']} load threads, {o['connections']} connections", ""]
    tainted = sum(1 for r in rounds for k in r["order"] if r[k]["foreign_bpf_progs"])
    if tainted:
        lines += [f"**Warning:** another agent's BPF programs were loaded during {tainted} runs; "
                  "every syscall paid for them, baseline included.", ""]
    lines += ["| metric | median | min | max |", "|---|---:|---:|---:|"]
    for mode, per in per_mode.items():
        # With several hook modes, each row says which one it measured.
        tag = f" [{mode}]" if len(per_mode) > 1 else ""
        for label, key, fmt in SUMMARY_ROWS:
            if key in per and not (tag and key == "baseline_rps" and mode != next(iter(per_mode))):
                v = per[key]
                lines.append(f"| {label}{'' if key == 'baseline_rps' else tag} | {fmt.format(statistics.median(v))} "
                             f"| {fmt.format(min(v))} | {fmt.format(max(v))} |")
    return "\n".join(lines) + "\n"


def machine_facts(agent: Path) -> dict:
    git = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return {"nproc": os.cpu_count(), "kernel": os.uname().release,
            "cpu": cpu.group(1) if cpu else "unknown",
            "commit": git("rev-parse", "--short", "HEAD") or "unknown",
            # Our own result files do not make the tree dirty.
            "dirty": any("bench/results/" not in l for l in git("status", "--porcelain").splitlines()),
            # The binary may predate HEAD if nobody rebuilt it.
            "agent_binary": str(agent), "agent_built_utc": datetime.fromtimestamp(
                agent.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")}


# ---------------------------------------------------------------- main

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="nginx-http1")
    p.add_argument("--agent", type=Path, default=REPO / "target/release/ratatosk")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=5, help="seconds per load run")
    p.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before round 1")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--perf", action="store_true", help="also record perf stat task-clock of the agent")
    p.add_argument("--hooks", type=lambda v: v.split(","), default=["raw"],
                   help="agent --syscall-hooks modes to compare, e.g. raw,per-syscall")
    p.add_argument("--out", type=Path, default=REPO / "bench/results")
    return p.parse_args()


def preflight(w: Workload, opts: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise BenchError("must run as root (the agent loads BPF programs)")
    for tool in [*w.needs, "bpftool"]:
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found on PATH (apt-get install -y {tool})")
    if not os.access(opts.agent, os.X_OK):
        raise BenchError(f"agent binary {opts.agent} missing; run `cargo build --release -p ratatosk`")
    if opts.perf and (not shutil.which("perf") or subprocess.run(
            ["perf", "stat", "-e", "task-clock", "--", "true"], capture_output=True).returncode != 0):
        print("warning: perf stat is not usable, skipping --perf", file=sys.stderr)
        opts.perf = False


def run(opts: argparse.Namespace, tmp: Path) -> tuple[list[dict], dict]:
    w = WORKLOADS[opts.workload]
    port = free_port()
    servers = w.start(tmp, port)
    rounds = []
    try:
        if opts.warmup > 0:
            w.load(port, opts, opts.warmup)
        for rnd in range(1, opts.rounds + 1):
            # Alternate the order so slow drift (thermal, caches) cancels out.
            kinds = ["baseline"] + [f"{k}/{m}" for m in opts.hooks for k in ("hooks_only", "instrumented")]
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            r = {"round": rnd, "order": order}
            for kind in order:
                if kind == "baseline":
                    r[kind] = baseline_run(w, port, opts)
                else:
                    what, mode = kind.split("/")
                    # hooks_only: the agent selects a port nobody listens on.
                    select = free_port() if what == "hooks_only" else None
                    r[kind] = instrumented_run(w, port, opts, tmp, rnd, mode, select)
                print(f"round {rnd} {kind:>12}: {r[kind]['rps']:,.0f} req/s, "
                      f"p50 {r[kind]['p50_us']:.0f} µs, p99 {r[kind]['p99_us']:.0f} µs", file=sys.stderr)
            rounds.append(r)
    finally:
        for s in servers:
            stop(s)
    return rounds, {"workload": w.name}


def main() -> int:
    opts = parse_args()
    # SIGTERM to the script should clean up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stats_before = None
    try:
        preflight(WORKLOADS[opts.workload], opts)
        stats_before = BPF_STATS_SYSCTL.read_text().strip()
        BPF_STATS_SYSCTL.write_text("1")
        started = datetime.now(timezone.utc)
        with tempfile.TemporaryDirectory(prefix="ratatosk-bench-", dir="/tmp") as tmp:
            rounds, meta = run(opts, Path(tmp))
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    finally:
        if stats_before is not None:
            BPF_STATS_SYSCTL.write_text(stats_before)
    meta |= {"started_utc": started.isoformat(timespec="seconds"), "machine": machine_facts(opts.agent),
             "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}}
    per = summarize(rounds, opts.hooks)
    md = markdown(per, meta, rounds)
    print(md)
    opts.out.mkdir(parents=True, exist_ok=True)
    stem = opts.out / f"{meta['workload']}-{started.strftime('%Y%m%dT%H%M%SZ')}"
    summary = {mode: {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in vals.items()}
               for mode, vals in per.items()}
    stem.with_suffix(".json").write_text(json.dumps({**meta, "summary": summary, "rounds": rounds}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(md)
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
