"""Facts about the machine, the commit and the tools' versions, recorded with
every result."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .paths import REPO
from .servers import pg_bin


def machine_facts(agent: Path, venv: Path) -> dict:
    git = lambda *a: subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True,
                                    timeout=30).stdout.strip()
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    status = git("status", "--porcelain", "--untracked-files=all").splitlines()
    mem = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)

    def version(cmd: list[str], pattern: str = r"(\d+\.\d+(?:\.\d+)?)") -> str | None:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(pattern, r.stdout + r.stderr)
        return m.group(1) if m else None

    pip = {}
    if (venv / "bin/python").exists():
        out = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=json"],
                             capture_output=True, text=True, timeout=60).stdout
        want = {"flask", "gunicorn", "opentelemetry-sdk", "opentelemetry-instrumentation-flask", "rotel",
                "matplotlib"}
        pip = {p["name"].lower(): p["version"] for p in json.loads(out or "[]") if p["name"].lower() in want}
    return {"host": socket.gethostname(), "nproc": os.cpu_count(), "kernel": os.uname().release,
            "cpu": cpu.group(1) if cpu else "unknown",
            "mem_gib": round(int(mem.group(1)) / 2**20) if mem else None,
            "commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "commit_utc": git("log", "-1", "--format=%cI"),
            # Uncommitted changes outside bench/ (the agent's sources and
            # the like); the harness's own are told apart.
            "dirty": any(not l.split(maxsplit=1)[1].startswith("bench/") for l in status),
            "bench_dirty": any(l.split(maxsplit=1)[1].startswith("bench/")
                               and not l.split(maxsplit=1)[1].startswith("bench/results/")
                               for l in status),
            # The binary may predate HEAD if nobody rebuilt it.
            "agent_binary": str(agent), "agent_built_utc": datetime.fromtimestamp(
                agent.stat().st_mtime, timezone.utc).isoformat(timespec="seconds"),
            "versions": {"nginx": version(["nginx", "-v"]), "wrk": version(["wrk", "-v"]),
                         "h2load": version(["h2load", "--version"]),
                         "redis": version(["redis-server", "--version"]),
                         "postgres": version([pg_bin("postgres") or "postgres", "--version"]),
                         "python_venv": version([str(venv / "bin/python"), "--version"]), **pip}}
