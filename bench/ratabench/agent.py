"""One agent process per run: start, wait for ready, scrape its self-metrics,
check its exit; and perf stat on it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from .bpf import agent_prog_ids
from .errors import BenchError
from .procs import ANSI, free_port, http_get, log_tail, spawn, stop, wait_until


def scrape(mport: int) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in http_get(f"http://127.0.0.1:{mport}/metrics").splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if m and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def agent_counters(mport: int, port: int) -> dict[str, float]:
    """The agent's self-metrics we report, as a flat dict of totals. Spans
    are the server spans of the load's port only."""
    c: dict[str, float] = {}
    for name, labels, value in scrape(mport):
        key = {"ratatosk_spans_emitted_total": "spans_all",
               "ratatosk_bpf_events_total": "bpf_events",
               "ratatosk_capture_truncated_total": "capture_truncated",
               "ratatosk_unparsed_bytes_total": "unparsed_bytes"}.get(name)
        if name == "ratatosk_otlp_exported_total" and labels.get("signal") == "traces":
            key = "otlp_spans_exported"
        elif name == "ratatosk_otlp_dropped_total":
            key = f"otlp_dropped_{labels.get('signal')}_{labels.get('reason')}"
        if name == "http_server_request_duration_seconds_count" and labels.get("server_port") == str(port):
            key = "spans"
        elif name == "ratatosk_ringbuf_dropped_total":
            key = f"ringbuf_dropped_{labels.get('kind')}"
        elif name == "ratatosk_queue_dropped_total":
            key = f"queue_dropped_{labels.get('queue')}"
        elif name == "ratatosk_parser_errors_total":
            key = f"parser_errors_{labels.get('reason')}"
        elif name == "ratatosk_unparsed_connections_total":
            key = f"unparsed_connections_{labels.get('reason')}"
        if key:
            c[key] = c.get(key, 0) + value
    return c


class Agent:
    """One agent process, started for one run."""

    def __init__(self, binary: Path, port: int, log: Path, hooks: str, otlp: str | None = None,
                 extra: tuple[str, ...] = ()):
        self.mport, self.log = free_port(), log
        # otlp: a collector's gRPC endpoint: traces and metrics exported to it
        # (every second for metrics, so their cost shows in a short run).
        env = None if otlp is None else {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
                                         "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                         "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
        # A variant's own --syscall-hooks (bench/pinned.py) wins.
        hook_args = [] if "--syscall-hooks" in extra else ["--syscall-hooks", hooks]
        self.proc = spawn([str(binary), "--open-port", str(port), "--trace-printer", "disabled",
                           *hook_args,
                           "--prometheus-port", str(self.mport), "--prometheus-address", "127.0.0.1", *extra],
                          log, env=env)
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
