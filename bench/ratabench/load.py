"""Load generators (wrk, h2load, redis-benchmark, pgbench, sysbench): run each under a
timeout and parse what it reports into a LoadResult."""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BenchError
from .procs import on_cpu, run_cmd

SCRATCH: str | None = None     # temp dir for load generators' files; set by the suite


def set_scratch(path: str | None) -> None:
    global SCRATCH
    SCRATCH = path


@dataclass
class LoadResult:
    rps: float
    requests: int          # as counted by the client
    p50_us: float
    p99_us: float
    errors: int            # socket errors, failed requests, non-2xx responses
    cmd: str = ""


def to_us(value: str, unit: str) -> float:
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[unit]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        raise BenchError("no latencies to take percentiles of")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def find(pattern: str, out: str, tool: str) -> re.Match:
    m = re.search(pattern, out, re.M)
    if not m:
        raise BenchError(f"cannot parse {tool} output ({pattern!r}):\n{out[-1500:]}")
    return m


def h2load_rps(out: str) -> float:
    """The mean rate h2load reports."""
    return float(find(r"^finished in [\d.]+\w+, ([\d.]+) req/s", out, "h2load").group(1))


def parse_wrk(out: str) -> LoadResult:
    p50, p99 = (find(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, "wrk") for q in (50, 99))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return LoadResult(
        rps=float(find(r"^Requests/sec:\s+([\d.]+)", out, "wrk").group(1)),
        requests=int(find(r"^\s*(\d+) requests in", out, "wrk").group(1)),
        p50_us=to_us(*p50.groups()), p99_us=to_us(*p99.groups()),
        errors=errors + (int(non2xx.group(1)) if non2xx else 0))


def private_libssl_env() -> dict[str, str]:
    """An environment whose programs load a private copy of the system
    libssl: the agent's uprobes sit on the system file's inode, so a load
    generator using the copy does not pay (or count) them."""
    d = Path(SCRATCH or tempfile.gettempdir()) / "libssl-private"
    if not (d / "libssl.so.3").exists():
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy("/usr/lib/x86_64-linux-gnu/libssl.so.3", d / "libssl.so.3")
    return {**os.environ, "LD_LIBRARY_PATH": str(d)}


def run_wrk(url: str, opts: argparse.Namespace, duration: int, env: dict[str, str] | None = None,
            connections: int | None = None, cpu: int | None = None) -> LoadResult:
    """wrk closed loop; `connections` overrides --connections (and then
    runs one thread); `cpu` pins wrk to that CPU."""
    threads = 1 if connections else opts.threads
    cmd = [*on_cpu(cpu), "wrk", f"-t{threads}", f"-c{connections or opts.connections}", f"-d{duration}s",
           "--latency", url]
    r = run_cmd(cmd, duration + 30, "wrk", env=env)
    return LoadResult(**{**vars(parse_wrk(r.stdout)), "cmd": " ".join(cmd)})


def run_h2load(url: str, opts: argparse.Namespace, duration: int, h1: bool = False,
               rate: float | None = None, extra: tuple[str, ...] = ()) -> LoadResult:
    """h2load, closed loop (one request in flight per connection) or, with
    `rate`, at a fixed total request rate (--rps is per connection; h2load
    catches up on missed ticks, so the rate is exact while the server keeps
    up). Percentiles from its per-request log (microsecond resolution).
    `extra`: more h2load arguments (headers, a request body)."""
    log = Path(tempfile.mkstemp(prefix="h2load-", suffix=".log", dir=SCRATCH)[1])
    cmd = ["h2load", *(["--h1"] if h1 else []), "-c", str(opts.connections), "-t", str(opts.threads),
           "-m", "1", "-D", str(duration), "--log-file", str(log), *extra, url]
    if rate:
        cmd[1:1] = ["--rps", f"{rate / opts.connections:g}"]
    try:
        out = run_cmd(cmd, duration + 30, "h2load").stdout
        lat = sorted(int(l.split("\t")[2]) for l in log.read_text().splitlines() if l.count("\t") >= 2)
    finally:
        log.unlink(missing_ok=True)
    m = find(r"^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
             r"(\d+) errored, (\d+) timeout", out, "h2load")
    non2xx = find(r"^status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, "h2load")
    return LoadResult(rps=h2load_rps(out),
                      requests=int(m.group(2)), p50_us=percentile(lat, 0.50), p99_us=percentile(lat, 0.99),
                      errors=sum(int(x) for x in m.groups()[2:]) + sum(int(x) for x in non2xx.groups()),
                      cmd=" ".join(cmd))


_redis_rate: dict[int, float] = {}


def run_redis_benchmark(port: int, opts: argparse.Namespace, duration: int, pipeline: int = 1) -> LoadResult:
    """redis-benchmark GET (`pipeline` commands per write with -P). It runs
    a request count, not a duration: the count is set from the rate of the
    previous run on this port (the first one is the warm-up), so each run
    lasts about `duration` seconds. The server also answers the two CONFIG
    GET (save, appendonly) redis-benchmark sends first: counted as
    requests, as they are operations the agent sees."""
    n = max(10_000, int(_redis_rate.get(port, 50_000) * duration))
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(opts.connections),
           "-n", str(n), "-t", "get", "--csv"] + (["-P", str(pipeline)] if pipeline > 1 else [])
    out = run_cmd(cmd, 6 * duration + 30, "redis-benchmark").stdout
    m = find(r'^"GET","([\d.]+)","[\d.]+","[\d.]+","([\d.]+)","[\d.]+","([\d.]+)"', out, "redis-benchmark")
    rps = float(m.group(1))
    _redis_rate.setdefault(port, rps)    # keep the warm-up's rate: every run gets the same count
    return LoadResult(rps=rps, requests=n + 2, p50_us=float(m.group(2)) * 1e3, p99_us=float(m.group(3)) * 1e3,
                      errors=0, cmd=" ".join(cmd))


def run_pgbench(port: int, opts: argparse.Namespace, duration: int) -> LoadResult:
    """pgbench select-only (one primary-key SELECT per transaction) over
    TCP; percentiles from its per-transaction log."""
    prefix = Path(tempfile.mkdtemp(prefix="pgbench-", dir=SCRATCH)) / "lat"
    cmd = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-S", "-n",
           "-c", str(opts.connections), "-j", str(opts.threads), "-T", str(duration),
           "-l", f"--log-prefix={prefix}", "postgres"]
    try:
        out = run_cmd(cmd, duration + 30, "pgbench", cwd=prefix.parent).stdout
        lat = sorted(int(l.split()[2]) for f in glob.glob(f"{prefix}.*") for l in open(f) if l.strip())
    finally:
        shutil.rmtree(prefix.parent, ignore_errors=True)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    return LoadResult(rps=float(find(r"^tps = ([\d.]+)", out, "pgbench").group(1)),
                      requests=int(find(r"^number of transactions actually processed: (\d+)", out,
                                        "pgbench").group(1)),
                      p50_us=percentile(lat, 0.50), p99_us=percentile(lat, 0.99),
                      errors=int(failed.group(1)) if failed else 0, cmd=" ".join(cmd))


def run_sysbench_point_select(port: int, opts: argparse.Namespace, duration: int) -> LoadResult:
    """sysbench oltp_point_select: one primary-key SELECT per event as a
    server-side prepared statement (COM_STMT_EXECUTE), no BEGIN/COMMIT;
    percentiles from its latency histogram."""
    from .servers import sysbench_mysql_args
    cmd = ["sysbench", "oltp_point_select", *sysbench_mysql_args(port), f"--threads={opts.connections}",
           f"--time={duration}", "--skip_trx=on", "--histogram=on", "--db-ps-mode=auto", "run"]
    out = run_cmd(cmd, duration + 60, "sysbench").stdout
    hist = sorted((float(v) * 1e3, int(n)) for v, n in
                  re.findall(r"^\s+([\d.]+) \|\**\s+(\d+)$", out, re.M))
    total = sum(n for _, n in hist)

    def pct(q: float) -> float:
        if not total:
            raise BenchError(f"sysbench printed no latency histogram:\n{out[-1500:]}")
        seen = 0
        for v, n in hist:
            seen += n
            if seen >= q * total:
                return v
        return hist[-1][0]
    errors = int(find(r"^\s+ignored errors:\s+(\d+)", out, "sysbench").group(1))
    return LoadResult(rps=float(find(r"^\s+queries:\s+\d+\s+\(([\d.]+) per sec", out, "sysbench").group(1)),
                      requests=int(find(r"^\s+queries:\s+(\d+)", out, "sysbench").group(1)),
                      p50_us=pct(0.50), p99_us=pct(0.99), errors=errors, cmd=" ".join(cmd))


def grpc_request_body() -> Path:
    """One gRPC message (uncompressed flag, 4-byte length, payload): the
    request body h2load sends for a unary call."""
    payload = b"world"
    body = Path(SCRATCH) / "grpc-request.bin"
    body.write_bytes(b"\x00" + len(payload).to_bytes(4, "big") + payload)
    return body


def run_grpc_h2load(port: int, opts: argparse.Namespace, duration: int) -> LoadResult:
    """h2load making unary gRPC calls (POST with the gRPC headers and one
    message), closed loop, one call in flight per connection."""
    body = grpc_request_body()
    return run_h2load(f"http://127.0.0.1:{port}/helloworld.Greeter/SayHello", opts, duration,
                      extra=("-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"))
