"""The agent's BPF programs: which ones are ours (its prog fds), their
run-time statistics, and other agents' programs loaded beside them."""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from .procs import run_cmd

BPF_PROG_NAMES = {"sys_exit", "sched_process_fork", "sched_process_exec", "sched_process_exit"}
# The OpenSSL uprobe programs (names cut at 15 bytes by the kernel).
UPROBE_PROG_PREFIX = "ssl_"
BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


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


def all_progs() -> list[dict]:
    out = run_cmd(["bpftool", "prog", "show", "-j"], 10, "bpftool prog show")
    return json.loads(out.stdout or "[]")


def agent_like_progs() -> list[dict]:
    """Loaded BPF programs named like the agent's (ours or anyone else's)."""
    # Names are cut at 15 bytes: the per-syscall programs show as sys_exit_….
    return [p for p in all_progs()
            if p.get("name") in BPF_PROG_NAMES or p.get("name", "").startswith(("sys_exit_", UPROBE_PROG_PREFIX))]


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
    """Run time and count per program of ours, keyed by name:type.
    Uprobe programs have type kprobe (this kernel has no kprobes at all)."""
    out: dict[str, dict[str, int]] = {}
    for p in all_progs():
        if p["id"] in ids:
            s = out.setdefault(f"{p.get('name', '?')}:{p.get('type', '?')}", {"ns": 0, "cnt": 0})
            s["ns"] += p.get("run_time_ns", 0)
            s["cnt"] += p.get("run_cnt", 0)
    return out
