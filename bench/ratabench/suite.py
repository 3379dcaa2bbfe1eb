"""The whole run: signals, bpf_stats, the temp dir, every selected workload
in turn, then the summary, the report files and the chart."""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import load
from .bpf import BPF_STATS_SYSCTL
from .errors import BenchError, Terminated, SuiteTimeout, on_alarm, on_sigterm
from .machine import machine_facts
from .measure import run_workload
from .paths import BENCH
from .preflight import preflight
from .report import markdown, markdown_details, summarize
from .workloads import WORKLOADS


def run_suite(opts: argparse.Namespace) -> int:
    """Returns the exit status: 0, or 1 if anything failed (the finished
    rounds are still reported)."""
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGALRM, on_alarm)
    stats_before, results, status = None, {}, 0
    try:
        preflight(opts)
        stats_before = BPF_STATS_SYSCTL.read_text().strip()
        BPF_STATS_SYSCTL.write_text("1")
        started_at = datetime.now(timezone.utc)
        signal.alarm(opts.time_limit)
        with tempfile.TemporaryDirectory(prefix="ratatosk-bench-", dir="/tmp") as tmp:
            Path(tmp).chmod(0o755)     # nginx's and postgres' users must reach their files
            load.set_scratch(tmp)
            for name in opts.workload:
                print(f"== {name}: {WORKLOADS[name].what}", file=sys.stderr)
                results[name] = {}
                try:
                    run_workload(WORKLOADS[name], opts, Path(tmp) / name, results[name])
                except BenchError as e:
                    # One workload failing does not lose the others.
                    print(f"bench: workload {name} failed: {e}", file=sys.stderr)
                    results[name]["error"] = str(e)
                    status = 1
    except SuiteTimeout:
        print(f"bench: --time-limit {opts.time_limit} s reached; everything was stopped, "
              "reporting the rounds that finished", file=sys.stderr)
        results[name]["error"] = f"stopped by --time-limit {opts.time_limit} s"
        status = 1
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as e:
        print("bench interrupted; everything it started was stopped", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        signal.alarm(0)
        if stats_before is not None:
            BPF_STATS_SYSCTL.write_text(stats_before)
    for w in results.values():
        if w.get("rounds"):
            w["summary"] = summarize(w["rounds"], w["kinds"])
    if not any(w.get("rounds") for w in results.values()):
        return status or 1
    meta = {"started_utc": started_at.isoformat(timespec="seconds"),
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_facts(opts.agent, opts.venv),
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}}
    md = markdown(results, meta)
    print(md)
    opts.out.mkdir(parents=True, exist_ok=True)
    name = "suite" if opts.suite else "+".join(opts.workload)
    stem = opts.out / f"{name}-{started_at.strftime('%Y%m%dT%H%M%SZ')}"
    stem.with_suffix(".json").write_text(json.dumps({**meta, "workloads": results}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(md + "\n" + markdown_details(results))
    written = [f"{stem}.json", f"{stem}.md"]
    if not opts.no_chart:
        r = subprocess.run([str(opts.venv / "bin/python"), str(BENCH / "chart.py"), f"{stem}.json", f"{stem}.png"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode == 0:
            written.append(f"{stem}.png")
        else:
            print(f"bench: chart failed: {r.stderr.strip()[-500:]}", file=sys.stderr)
            status = 1
    print(f"wrote {', '.join(written)}", file=sys.stderr)
    return status

