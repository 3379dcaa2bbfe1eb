"""Runs: a workload's rounds, each one load run per run kind, and what is
measured around each load."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from .agent import Agent, agent_counters, start_perf, stop_perf
from .bpf import bpf_stats, foreign_progs
from .cpu import children_cpu_s, machine_busy_s, proc_cpu_ns, proc_mem_mb, self_cpu_s, session_cpu_s
from .procs import free_port, stop
from .servers import Server, Target
from .workloads import Workload


def settle(read: Callable[[], float], timeout: float, still: float = 0.2,
           enough: Callable[[float], bool] = lambda v: False) -> float:
    """Read until the value stops moving for `still` seconds (or is
    enough): the agent drains its ring buffer on a timer, and the SDK
    exports in batches every few seconds, so the last spans come late."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while True:
        time.sleep(0.2)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        if enough(now) or time.monotonic() - since >= still or time.monotonic() > deadline:
            return now


def one_run(kind: str, w: Workload, server: Server, opts: argparse.Namespace, tmp: Path, rnd: int) -> dict:
    """One load run of one kind; raw counters sampled right around the load
    so idle time and our own scrapes stay out."""
    target = server.sdk if kind == "otel-sdk" else server.main
    agent = None
    if kind.startswith(("ratatosk/", "ratatosk-otlp/", "ratatosk-tlscalls/", "hooks-only/")):
        what, hooks = kind.split("/")
        # hooks-only: the agent selects a port nobody listens on.
        select = free_port() if what == "hooks-only" else target.port
        otlp = server.otlp_endpoint if what == "ratatosk-otlp" else None
        # ratatosk-tlscalls: OpenSSL probed at every SSL_read/SSL_write
        # instead of decrypted from the handshake's secrets.
        extra = ("--tls-decrypt=false",) if what == "ratatosk-tlscalls" else ()
        agent = Agent(opts.agent, select, tmp / f"agent-{rnd}-{what}-{hooks}.log", hooks, otlp, extra)
    try:
        res = measure(agent, kind, w, server, target, opts, tmp / f"perf-{rnd}.log")
    finally:
        if agent:
            agent.stop()     # never raises, so it cannot mask an error in flight
    if agent:
        agent.check_exit()
        res["agent_warnings"] = agent.warnings()
    return res


def measure(agent: Agent | None, kind: str, w: Workload, server: Server, target: Target,
            opts: argparse.Namespace, perf_log: Path) -> dict:
    foreign = foreign_progs(agent.prog_ids if agent else frozenset())
    exports = kind == "otel-sdk" or kind.startswith("ratatosk-otlp/")
    sid, coll = target.proc.pid, server.collector if exports else None
    served0 = target.served()
    counters0 = agent_counters(agent.mport, target.port) if agent else {}
    sdk0 = server.sdk_spans() if kind == "otel-sdk" else None
    perf = None
    # The agent's threads' on-CPU time (schedstat, ns): /proc's utime+stime
    # count 10 ms ticks, ~20 of them per 5 s run, so medians came out
    # quantised by ~5 %.
    agent_s = lambda: proc_cpu_ns(agent.proc.pid) / 1e9
    try:
        if agent and opts.perf:
            perf = start_perf(agent.proc.pid, perf_log)
        if agent:
            bpf0, cpu0 = bpf_stats(agent.prog_ids), agent_s()
        acpu = agent_s if agent else (lambda: 0.0)
        sample = lambda: (time.monotonic(), machine_busy_s(), session_cpu_s(sid),
                          session_cpu_s(coll.pid) if coll else 0.0, acpu(), children_cpu_s(), self_cpu_s())
        s0 = sample()
        load = w.load(target.port, opts, opts.duration)
        s1 = sample()
        scpu0, scpu1, ccpu0, ccpu1 = s0[2], s1[2], s0[3], s1[3]
        if agent:
            cpu1, bpf1 = agent_s(), bpf_stats(agent.prog_ids)
        perf_s = stop_perf(perf, perf_log) if perf else None
    finally:
        if perf:
            stop(perf, signal.SIGINT, 10)
    served1 = target.served()
    served = served1 - served0 if served0 is not None else load.requests
    per_req = lambda x: x / served if served else float("nan")
    # Machine CPU nobody we know used (another engineer's tests, kernel
    # threads): noise. Steal: the hypervisor ran someone else on our CPUs.
    wall, known = s1[0] - s0[0], sum(s1[i] - s0[i] for i in (2, 3, 4, 5, 6))
    ncpu = os.cpu_count() or 1
    res = {**vars(load), "served": served, "foreign_bpf_progs": foreign,
           # Includes BPF time spent in the server's own syscalls.
           "server_cpu_us_per_req": per_req((scpu1 - scpu0) * 1e6),
           "client_cpu_us_per_req": per_req((s1[5] - s0[5]) * 1e6),
           "other_cpu_pct": 100 * (s1[1][0] - s0[1][0] - known) / (wall * ncpu),
           "steal_pct": 100 * (s1[1][1] - s0[1][1]) / (wall * ncpu)}
    if kind == "otel-sdk":
        # The batch span processor exports every 5 s or per 512 spans.
        sdk1 = settle(server.sdk_spans, 10, still=6, enough=lambda v: v - sdk0 >= served)
        res |= {"spans_per_req": per_req(sdk1 - sdk0), "collector_cpu_us_per_req": per_req((ccpu1 - ccpu0) * 1e6)}
    if kind.startswith("ratatosk-otlp/"):
        res["collector_cpu_us_per_req"] = per_req((ccpu1 - ccpu0) * 1e6)
    if not agent:
        return res
    agent.check_alive()
    counters1: dict[str, float] = {}

    def progress() -> tuple:
        counters1.update(agent_counters(agent.mport, target.port))
        return tuple(counters1.get(k) for k in ("spans_all", "bpf_events", "unparsed_bytes"))
    settle(progress, 5)
    c = {k: counters1.get(k, 0) - counters0.get(k, 0) for k in counters1.keys() | counters0.keys()}
    bpf = {n: {k: bpf1[n][k] - bpf0[n][k] for k in ("ns", "cnt")} for n in bpf1 if n in bpf0}
    uprobes = [v for n, v in bpf.items() if n.endswith(":kprobe")]
    uprobe_entries = [v for n, v in bpf.items() if n.endswith(":kprobe") and "_ret" not in n and "_re:" not in n]
    return res | {
        "agent_cpu_us_per_req": per_req((cpu1 - cpu0) * 1e6),
        # Includes draining what was still queued when the load ended.
        "agent_cpu_drained_us_per_req": per_req((agent_s() - cpu0) * 1e6),
        "perf_task_clock_us_per_req": per_req(perf_s * 1e6) if perf_s is not None else None,
        "bpf_us_per_req": per_req(sum(p["ns"] for p in bpf.values()) / 1e3),
        "bpf_hits_per_req": per_req(sum(p["cnt"] for p in bpf.values())),
        "uprobe_hits_per_req": per_req(sum(p["cnt"] for p in uprobes)),
        "uprobe_entries_per_req": per_req(sum(p["cnt"] for p in uprobe_entries)),
        "uprobe_us_per_req": per_req(sum(p["ns"] for p in uprobes) / 1e3),
        "bpf_per_prog": bpf, **proc_mem_mb(agent.proc.pid),
        # Database server spans feed no metric: every span then (the agent
        # selects the server's port only, which serves nothing else).
        "spans_per_req": per_req(c["spans"] if "spans" in c else c.get("spans_all", 0)),
        "drops": sum(v for k, v in c.items() if k.startswith(("ringbuf_dropped", "queue_dropped", "otlp_dropped"))),
        "otlp_spans_per_req": per_req(c["otlp_spans_exported"]) if "otlp_spans_exported" in c else None,
        "parser_errors": sum(v for k, v in c.items() if k.startswith("parser_errors")),
        "unparsed_bytes_per_req": per_req(c.get("unparsed_bytes", 0)),
        "agent_counters_delta": c}


def run_workload(w: Workload, opts: argparse.Namespace, tmp: Path, result: dict) -> None:
    """Fills `result` as rounds finish, so an error or the time limit keeps
    the finished rounds."""
    extra = ("hooks-only",) if opts.hooks_only and "hooks-only" not in w.kinds else ()
    kinds = ["baseline"] + [k if k == "otel-sdk" else f"{k}/{m}" for k in extra + w.kinds
                            for m in (opts.hooks if k != "otel-sdk" else [None])]
    rounds: list[dict] = []
    result |= {"what": w.what, "unparsed": w.unparsed, "fixed_rate": w.fixed_rate, "kinds": kinds, "rounds": rounds}
    tmp.mkdir()
    server = w.start(tmp, opts)
    try:
        if opts.warmup > 0:
            for t in (server.main, server.sdk):
                if t:
                    w.load(t.port, opts, opts.warmup)
        if server.sdk_spans:
            # The SDK's last partial batch leaves up to 5 s later: let it
            # arrive now rather than count in the first measured run.
            settle(server.sdk_spans, 10, still=6)
        for rnd in range(1, opts.rounds + 1):
            # Rotate the order so slow drift (thermal, caches) cancels out.
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            r = {"round": rnd, "order": order}
            for kind in order:
                r[kind] = one_run(kind, w, server, opts, tmp, rnd)
                print(f"{w.name} round {rnd} {kind:>16}: {r[kind]['rps']:,.0f} req/s, "
                      f"p50 {r[kind]['p50_us']:.0f} µs, p99 {r[kind]['p99_us']:.0f} µs", file=sys.stderr)
            rounds.append(r)
    finally:
        for p in server.procs:
            stop(p)
