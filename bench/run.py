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
import glob
import json
import math
import os
import re
import resource
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
BENCH = REPO / "bench"
BPF_PROG_NAMES = {"sys_exit", "sched_process_fork", "sched_process_exec", "sched_process_exit"}
# The OpenSSL uprobe programs (names cut at 15 bytes by the kernel).
UPROBE_PROG_PREFIX = "ssl_"
BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_VENV = Path(os.environ.get("RATATOSK_BENCH_VENV", "/opt/ratatosk-bench-venv"))


class BenchError(Exception):
    """A failure that ends a workload (or the run) with one clear line."""


class Terminated(BaseException):
    """SIGTERM: clean up like Ctrl-C."""


def on_sigterm(*_):
    raise Terminated()


class SuiteTimeout(Exception):
    """--time-limit reached: stop everything, keep what is finished."""


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd: list[str], log: Path, stop_signal: int = signal.SIGTERM, **kw) -> subprocess.Popen:
    # A new session keeps Ctrl-C away from children: we stop them ourselves,
    # in order, so the agent detaches cleanly. It also makes the session id
    # (= this pid) name every process the server forks, for CPU accounting.
    with open(log, "wb") as f:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True, **kw)
    p.stop_signal = stop_signal
    return p


class signals_deferred:
    """Ctrl-C, SIGTERM and --time-limit's alarm wait until a cleanup step is
    done, so an interruption never leaves a half-stopped process tree."""
    SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}

    def __enter__(self):
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)

    def __exit__(self, *_):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


def stop(proc: subprocess.Popen, sig: int | None = None, timeout: float = 15) -> int:
    """Signal one process we started and wait; SIGKILL its group if it hangs,
    and whatever it left behind in its group (e.g. workers) afterwards."""
    with signals_deferred():
        return _stop(proc, sig, timeout)


def _stop(proc: subprocess.Popen, sig: int | None, timeout: float) -> int:
    if proc.poll() is None:
        proc.send_signal(sig or getattr(proc, "stop_signal", signal.SIGTERM))
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Its own session and group, so the group holds only what it started.
    # The group id cannot be reused while any member lives.
    for s in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            break
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.1)
    proc.wait()
    return proc.returncode


def log_tail(log: Path, lines: int = 8) -> str:
    text = ANSI.sub("", log.read_text(errors="replace")) if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def tcp_up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               alive: Callable[[], bool] = lambda: True, detail: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if not alive() or time.monotonic() > deadline:
            raise BenchError(f"{what}\n{detail()}".rstrip())
        time.sleep(0.05)


def run_cmd(cmd: list[str], timeout: float, what: str, **kw) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} did not finish within {timeout:.0f} s: {' '.join(cmd)}") from None
    if r.returncode != 0:
        raise BenchError(f"{what} failed ({r.returncode}): {(r.stderr.strip() or r.stdout.strip())[-600:]}")
    return r


def machine_busy_s() -> tuple[float, float]:
    """(busy, steal) seconds of all CPUs from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def children_cpu_s() -> float:
    """CPU of our reaped children: the load generator, once it has exited."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def session_cpu_s(sid: int) -> float:
    """utime+stime of every process in a session, plus what its members
    reaped from children that already exited (cutime+cstime): a server that
    forks per connection (postgres) keeps its backends' CPU that way."""
    ticks = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(f[3]) == sid:
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


# ---------------------------------------------------------------- load generators

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


def run_wrk(url: str, opts: argparse.Namespace, duration: int, env: dict[str, str] | None = None) -> LoadResult:
    cmd = ["wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{duration}s", "--latency", url]
    r = run_cmd(cmd, duration + 30, "wrk", env=env)
    return LoadResult(**{**vars(parse_wrk(r.stdout)), "cmd": " ".join(cmd)})


def run_h2load(url: str, opts: argparse.Namespace, duration: int, h1: bool = False,
               rate: float | None = None) -> LoadResult:
    """h2load, closed loop (one request in flight per connection) or, with
    `rate`, at a fixed total request rate (--rps is per connection; h2load
    catches up on missed ticks, so the rate is exact while the server keeps
    up). Percentiles from its per-request log (microsecond resolution)."""
    log = Path(tempfile.mkstemp(prefix="h2load-", suffix=".log", dir=SCRATCH)[1])
    cmd = ["h2load", *(["--h1"] if h1 else []), "-c", str(opts.connections), "-t", str(opts.threads),
           "-m", "1", "-D", str(duration), "--log-file", str(log), url]
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
    return LoadResult(rps=float(find(r"^finished in [\d.]+\w+, ([\d.]+) req/s", out, "h2load").group(1)),
                      requests=int(m.group(2)), p50_us=percentile(lat, 0.50), p99_us=percentile(lat, 0.99),
                      errors=sum(int(x) for x in m.groups()[2:]) + sum(int(x) for x in non2xx.groups()),
                      cmd=" ".join(cmd))


_redis_rate: dict[int, float] = {}


def run_redis_benchmark(port: int, opts: argparse.Namespace, duration: int) -> LoadResult:
    """redis-benchmark GET. It runs a request count, not a duration: the
    count is set from the rate of the previous run on this port (the first
    one is the warm-up), so each run lasts about `duration` seconds."""
    n = max(10_000, int(_redis_rate.get(port, 50_000) * duration))
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(opts.connections),
           "-n", str(n), "-t", "get", "--csv"]
    out = run_cmd(cmd, 6 * duration + 30, "redis-benchmark").stdout
    m = find(r'^"GET","([\d.]+)","[\d.]+","[\d.]+","([\d.]+)","[\d.]+","([\d.]+)"', out, "redis-benchmark")
    rps = float(m.group(1))
    _redis_rate.setdefault(port, rps)    # keep the warm-up's rate: every run gets the same count
    return LoadResult(rps=rps, requests=n, p50_us=float(m.group(2)) * 1e3, p99_us=float(m.group(3)) * 1e3,
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


# ---------------------------------------------------------------- servers

@dataclass
class Target:
    """One server process tree the load hits."""
    port: int
    proc: subprocess.Popen                               # session leader: its whole session's CPU counts
    served: Callable[[], int | None] = lambda: None      # cumulative requests served; None: the client's count


@dataclass
class Server:
    """What a workload's start() returns."""
    main: Target                                          # the agent's --open-port
    procs: list[subprocess.Popen]                         # everything to stop, in this order
    sdk: Target | None = None                             # the same app under the OpenTelemetry SDK
    collector: subprocess.Popen | None = None             # where the SDK exports to
    sdk_spans: Callable[[], int] | None = None            # spans the collector received so far


def started(procs: list[subprocess.Popen], start: Callable[[], Server]) -> Server:
    """Run start(); on any failure stop what was already started."""
    try:
        return start()
    except BaseException:
        for p in reversed(procs):
            stop(p)
        raise


NGINX_CONF = """\
daemon off; master_process on; worker_processes 1;
pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 1000000;
  client_body_temp_path {d}/client_body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port}{listen};
    {extra}
    root {d}/www;
  }}
  # Plain HTTP on another port: the agent's spans there carry another
  # server_port, so they never count as load.
  server {{
    listen 127.0.0.1:{status_port};
    location = /nginx_status {{ stub_status; }}
  }}
}}
"""


def start_nginx(tmp: Path, variant: str = "http1") -> Server:
    www = tmp / "www"
    www.mkdir()
    (www / "file").write_text("Hello, world!")       # 13 bytes
    # The worker runs as nobody: everything it serves must be world-readable.
    for p in (tmp, www, www / "file"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    listen, extra = (" http2", "") if variant == "h2c" else ("", "")
    if variant == "tls":
        run_cmd(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp / "key.pem"),
                 "-out", str(tmp / "cert.pem"), "-days", "30", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], 60, "openssl req")
        (tmp / "key.pem").chmod(0o644)
        # nginx 1.22 enables TLS 1.3 only when asked.
        listen, extra = " ssl", (f"ssl_certificate {tmp}/cert.pem; ssl_certificate_key {tmp}/key.pem; "
                                 "ssl_protocols TLSv1.3;")
    port, status_port = free_port(), free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=tmp, port=port, status_port=status_port, listen=listen, extra=extra))
    proc = spawn(["nginx", "-p", str(tmp), "-c", str(conf)], tmp / "nginx.log")

    def up() -> Server:
        wait_until(lambda: nginx_up(status_port) and tcp_up(port), 10, "nginx did not start",
                   lambda: proc.poll() is None, lambda: log_tail(tmp / "error.log"))
        return Server(Target(port, proc, lambda: nginx_requests(status_port)), [proc])
    return started([proc], up)


_status_reads: dict[int, int] = {}


def nginx_requests(status_port: int) -> int:
    """Requests nginx served so far, not counting our own status-page reads
    (nginx counts each one, including the one being answered)."""
    try:
        text = http_get(f"http://127.0.0.1:{status_port}/nginx_status")
    except OSError as e:
        raise BenchError(f"nginx status page unreachable: {e}") from e
    _status_reads[status_port] = _status_reads.get(status_port, 0) + 1
    return int(text.splitlines()[2].split()[2]) - _status_reads[status_port]


def nginx_up(status_port: int) -> bool:
    try:
        return nginx_requests(status_port) >= 0
    except BenchError:
        return False


# gunicorn's default sync workers, one per core: each closes the connection
# after its response, so every request is a new connection. gthread
# workers keep connections alive but were bimodal here (2.4k or 7.5k req/s,
# depending on how the client's connections split between the workers).
GUNICORN = ["--workers", "2", "--worker-class", "sync", "--chdir", str(BENCH / "apps"), "flask_app:app"]


def start_flask(tmp: Path, opts: argparse.Namespace) -> Server:
    """The same gunicorn (2 sync workers) twice: bare (the baseline
    and the Ratatosk runs) and under `opentelemetry-instrument`, exporting
    traces and metrics over OTLP/gRPC to a rotel collector that discards
    them. rotel logs one line per batch it receives: that counts the spans."""
    venv = opts.venv
    procs: list[subprocess.Popen] = []
    bare_port, sdk_port, grpc_port, http_port = (free_port() for _ in range(4))

    def up() -> Server:
        procs.append(spawn([str(rotel_agent(venv)), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                            "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--exporter", "blackhole",
                            "--debug-log", "traces", "--debug-log-verbosity", "basic"], tmp / "rotel.log"))
        collector = procs[-1]
        wait_until(lambda: tcp_up(grpc_port), 20, "rotel did not start", lambda: collector.poll() is None,
                   lambda: log_tail(tmp / "rotel.log"))
        procs.append(spawn([str(venv / "bin/gunicorn"), "--bind", f"127.0.0.1:{bare_port}", *GUNICORN],
                           tmp / "gunicorn-bare.log"))
        bare = procs[-1]
        env = {**os.environ, "OTEL_SERVICE_NAME": "flask", "OTEL_TRACES_EXPORTER": "otlp",
               "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "none",
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc_port}"}
        procs.append(spawn([str(venv / "bin/opentelemetry-instrument"), str(venv / "bin/gunicorn"),
                            "--bind", f"127.0.0.1:{sdk_port}", *GUNICORN], tmp / "gunicorn-sdk.log", env=env))
        sdk = procs[-1]
        for p, port, log in ((bare, bare_port, "gunicorn-bare.log"), (sdk, sdk_port, "gunicorn-sdk.log")):
            wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/hello"), 30, f"gunicorn ({log}) did not start",
                       lambda: p.poll() is None, lambda: log_tail(tmp / log))
        spans = lambda: rotel_spans(tmp / "rotel.log")
        # The SDK is working only if its spans reach the collector.
        wait_until(lambda: spans() > 0, 15, "the OpenTelemetry SDK exported no spans to rotel within 15 s",
                   lambda: sdk.poll() is None, lambda: log_tail(tmp / "gunicorn-sdk.log"))
        # Stop the apps before the collector, so the SDK can flush.
        return Server(Target(bare_port, bare), [bare, sdk, collector], Target(sdk_port, sdk), collector, spans)
    return started(procs, up)


def http_ok(url: str) -> bool:
    try:
        return bool(http_get(url, 2))
    except OSError:
        return False


def rotel_agent(venv: Path) -> Path:
    found = glob.glob(str(venv / "lib/python3*/site-packages/rotel/rotel-agent"))
    return Path(found[0]) if found else venv / "lib/python3/site-packages/rotel/rotel-agent"


def rotel_spans(log: Path) -> int:
    # "Received traces. data_type="traces" resource_spans=1 spans=512"
    text = ANSI.sub("", log.read_text(errors="replace"))
    return sum(int(n) for n in re.findall(r"Received traces\..*?\bspans=(\d+)", text))


def start_redis(tmp: Path) -> Server:
    port = free_port()
    proc = spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--daemonize", "no",
                  "--save", "", "--appendonly", "no", "--dir", str(tmp)], tmp / "redis.log")

    def up() -> Server:
        wait_until(lambda: tcp_up(port), 10, "redis-server did not start", lambda: proc.poll() is None,
                   lambda: log_tail(tmp / "redis.log"))
        # The key redis-benchmark GETs (`key:__rand_int__` without -r).
        run_cmd(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", "1", "-c", "1", "-t", "set"],
                30, "redis-benchmark SET")
        return Server(Target(port, proc), [proc])
    return started([proc], up)


def pg_bin(name: str) -> str | None:
    """Debian keeps initdb and postgres off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


def pg_ready(port: int) -> bool:
    try:
        return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)], timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def start_postgres(tmp: Path) -> Server:
    """A private cluster (initdb into the temp dir, trust auth, no fsync:
    the select-only load never writes, and disk noise stays out)."""
    tmp.chmod(0o755)
    data = tmp / "data"
    data.mkdir(mode=0o700)
    shutil.chown(data, "postgres", "postgres")
    run_cmd([pg_bin("initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            120, "initdb", user="postgres", cwd=tmp)
    port = free_port()
    proc = spawn([pg_bin("postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
                  "-c", f"unix_socket_directories={data}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                  "-c", "full_page_writes=off", "-c", "max_connections=64"],
                 tmp / "postgres.log", stop_signal=signal.SIGINT, user="postgres", cwd=tmp)   # SIGINT: fast shutdown

    def up() -> Server:
        wait_until(lambda: pg_ready(port), 30, "postgres did not start", lambda: proc.poll() is None,
                   lambda: log_tail(tmp / "postgres.log"))
        run_cmd(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-i", "-s", "1", "-q", "postgres"],
                120, "pgbench -i")
        return Server(Target(port, proc), [proc])
    return started([proc], up)


# ---------------------------------------------------------------- workloads

@dataclass
class Workload:
    """A server under test plus how to load it.

    start(tmpdir, opts) -> Server (everything it started, to stop at the end);
    load(port, opts, duration) -> LoadResult;
    kinds: runs per round besides the baseline: "ratatosk" (agent selecting
    the server's port), "hooks-only" (agent attached, selecting a port
    nobody listens on), "otel-sdk" (the Server's sdk target, no agent);
    parsed: None when the agent parses the protocol, else what it is (the
    agent captures but does not parse it yet: 0 spans is expected).
    """
    name: str
    what: str
    needs: list[str]
    start: Callable[[Path, argparse.Namespace], Server]
    load: Callable[[int, argparse.Namespace, int], LoadResult]
    kinds: tuple[str, ...] = ("ratatosk",)
    unparsed: str | None = None


WORKLOADS = {w.name: w for w in [
    Workload("nginx-http1", "nginx, HTTP/1.1 keep-alive, wrk closed loop (saturating)", ["nginx", "wrk"],
             lambda tmp, o: start_nginx(tmp),
             lambda port, o, d: run_wrk(f"http://127.0.0.1:{port}/file", o, d),
             kinds=("hooks-only", "ratatosk")),
    Workload("nginx-http1-rate", "nginx, HTTP/1.1 keep-alive, h2load --h1 at a fixed rate (--rate)",
             ["nginx", "h2load"], lambda tmp, o: start_nginx(tmp),
             lambda port, o, d: run_h2load(f"http://127.0.0.1:{port}/file", o, d, h1=True, rate=o.rate)),
    Workload("nginx-tls", "nginx, HTTPS (TLS 1.3, OpenSSL 3 as a shared libssl), wrk closed loop, keep-alive",
             ["nginx", "wrk", "openssl"],
             lambda tmp, o: start_nginx(tmp, "tls"),
             lambda port, o, d: run_wrk(f"https://127.0.0.1:{port}/file", o, d, env=private_libssl_env())),
    Workload("flask", "Flask on gunicorn (2 sync workers: a connection per request), wrk closed loop; "
             "bare / Ratatosk / OTel SDK",
             ["wrk"], start_flask,
             lambda port, o, d: run_wrk(f"http://127.0.0.1:{port}/hello", o, d),
             kinds=("ratatosk", "otel-sdk")),
    Workload("redis", "redis-server, redis-benchmark GET (closed loop)", ["redis-server", "redis-benchmark"],
             lambda tmp, o: start_redis(tmp), run_redis_benchmark, unparsed="Redis"),
    Workload("postgres", "PostgreSQL 15 private cluster, pgbench -S (select only) over TCP",
             ["pgbench", "pg_isready", "initdb", "postgres"], lambda tmp, o: start_postgres(tmp), run_pgbench,
             unparsed="PostgreSQL"),
    Workload("nginx-h2c", "nginx, cleartext HTTP/2 (prior knowledge), h2load closed loop, 1 stream per connection",
             ["nginx", "h2load"], lambda tmp, o: start_nginx(tmp, "h2c"),
             lambda port, o, d: run_h2load(f"http://127.0.0.1:{port}/file", o, d), unparsed="HTTP/2"),
]}


# ---------------------------------------------------------------- agent probes

def proc_cpu_s(pid: int) -> float:
    # utime and stime are fields 14 and 15; split after the ")" of comm.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


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


# ---------------------------------------------------------------- runs

def one_run(kind: str, w: Workload, server: Server, opts: argparse.Namespace, tmp: Path, rnd: int) -> dict:
    """One load run of one kind; raw counters sampled right around the load
    so idle time and our own scrapes stay out."""
    target = server.sdk if kind == "otel-sdk" else server.main
    agent = None
    if kind.startswith(("ratatosk/", "hooks-only/")):
        what, hooks = kind.split("/")
        # hooks-only: the agent selects a port nobody listens on.
        select = free_port() if what == "hooks-only" else target.port
        agent = Agent(opts.agent, select, tmp / f"agent-{rnd}-{what}-{hooks}.log", hooks)
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
    sid, coll = target.proc.pid, server.collector if kind == "otel-sdk" else None
    served0 = target.served()
    counters0 = agent_counters(agent.mport, target.port) if agent else {}
    sdk0 = server.sdk_spans() if kind == "otel-sdk" else None
    perf = None
    try:
        if agent and opts.perf:
            perf = start_perf(agent.proc.pid, perf_log)
        if agent:
            bpf0, cpu0 = bpf_stats(agent.prog_ids), proc_cpu_s(agent.proc.pid)
        acpu = (lambda: proc_cpu_s(agent.proc.pid)) if agent else (lambda: 0.0)
        sample = lambda: (time.monotonic(), machine_busy_s(), session_cpu_s(sid),
                          session_cpu_s(coll.pid) if coll else 0.0, acpu(), children_cpu_s(), self_cpu_s())
        s0 = sample()
        load = w.load(target.port, opts, opts.duration)
        s1 = sample()
        scpu0, scpu1, ccpu0, ccpu1 = s0[2], s1[2], s0[3], s1[3]
        if agent:
            cpu1, bpf1 = proc_cpu_s(agent.proc.pid), bpf_stats(agent.prog_ids)
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
        "agent_cpu_drained_us_per_req": per_req((proc_cpu_s(agent.proc.pid) - cpu0) * 1e6),
        "perf_task_clock_us_per_req": per_req(perf_s * 1e6) if perf_s is not None else None,
        "bpf_us_per_req": per_req(sum(p["ns"] for p in bpf.values()) / 1e3),
        "bpf_hits_per_req": per_req(sum(p["cnt"] for p in bpf.values())),
        "uprobe_hits_per_req": per_req(sum(p["cnt"] for p in uprobes)),
        "uprobe_entries_per_req": per_req(sum(p["cnt"] for p in uprobe_entries)),
        "uprobe_us_per_req": per_req(sum(p["ns"] for p in uprobes) / 1e3),
        "bpf_per_prog": bpf, **proc_mem_mb(agent.proc.pid),
        "spans_per_req": per_req(c.get("spans", 0)),
        "drops": sum(v for k, v in c.items() if k.startswith(("ringbuf_dropped", "queue_dropped"))),
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
    result |= {"what": w.what, "unparsed": w.unparsed, "kinds": kinds, "rounds": rounds}
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


# ---------------------------------------------------------------- summary

# (label, key in summary, format); None format: not in the detail table.
DETAIL_ROWS = [
    ("baseline req/s", "baseline_rps", "{:,.0f}"),
    ("req/s", "rps", "{:,.0f}"),
    ("throughput ratio (run/baseline)", "throughput_ratio", "{:.3f}"),
    ("added p50 latency (µs)", "added_p50_us", "{:+.1f}"),
    ("added p99 latency (µs)", "added_p99_us", "{:+.1f}"),
    ("baseline server CPU (µs/req)", "baseline_server_cpu_us_per_req", "{:.2f}"),
    ("added server CPU (µs/req)", "added_server_cpu_us_per_req", "{:+.2f}"),
    ("agent CPU user+sys (µs/req)", "agent_cpu_us_per_req", "{:.3f}"),
    ("BPF CPU (µs/req)", "bpf_us_per_req", "{:.3f}"),
    ("BPF program hits/req", "bpf_hits_per_req", "{:.2f}"),
    ("uprobe hits/req", "uprobe_hits_per_req", "{:.2f}"),
    ("uprobe entries (traps)/req", "uprobe_entries_per_req", "{:.2f}"),
    ("perf task-clock (µs/req)", "perf_task_clock_us_per_req", "{:.3f}"),
    ("agent RSS end of run (MB)", "rss_mb", "{:.1f}"),
    ("agent RSS peak (MB)", "hwm_mb", "{:.1f}"),
    ("spans / requests served", "spans_per_req", "{:.4f}"),
    ("unparsed bytes captured / request", "unparsed_bytes_per_req", "{:.1f}"),
    ("ring-buffer + queue drops", "drops", "{:,.0f}"),
    ("parser errors", "parser_errors", "{:,.0f}"),
    ("collector CPU (µs/req)", "collector_cpu_us_per_req", "{:.2f}"),
    ("load generator CPU (µs/req)", "client_cpu_us_per_req", "{:.2f}"),
    ("other CPU on the machine (% of all CPUs)", "other_cpu_pct", "{:.1f}"),
    ("steal (% of all CPUs)", "steal_pct", "{:.1f}"),
    ("load errors (both runs)", "load_errors", "{:,.0f}"),
]


def summarize(rounds: list[dict], kinds: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per non-baseline run kind, median/min/max over rounds of each metric;
    comparisons are against the same round's baseline."""
    out = {}
    for kind in kinds[1:]:
        per: dict[str, list[float]] = {}
        for r in rounds:
            b, i = r["baseline"], r[kind]
            vals = {"baseline_rps": b["rps"], "throughput_ratio": i["rps"] / b["rps"],
                    "added_p50_us": i["p50_us"] - b["p50_us"], "added_p99_us": i["p99_us"] - b["p99_us"],
                    "baseline_server_cpu_us_per_req": b["server_cpu_us_per_req"],
                    "added_server_cpu_us_per_req": i["server_cpu_us_per_req"] - b["server_cpu_us_per_req"],
                    "load_errors": b["errors"] + i["errors"], "rps": i["rps"]}
            vals |= {k: i.get(k) for _, k, _ in DETAIL_ROWS if k not in vals}
            for k, v in vals.items():
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    per.setdefault(k, []).append(v)
        out[kind] = {k: {"median": statistics.median(v), "min": min(v), "max": max(v)} for k, v in per.items()}
    return out


def cell(s: dict, key: str, spec: str, spread: bool = False) -> str:
    if key not in s:
        return "—"
    v = s[key]
    text = spec.format(v["median"])
    return f"{text} ({spec.format(v['min'])}–{spec.format(v['max'])})" if spread else text


NOISY_PCT = 5


def markdown(results: dict, meta: dict) -> str:
    m, o = meta["machine"], meta["options"]
    title = "suite" if o["suite"] else ", ".join(results)
    lines = [f"## Ratatosk overhead: {title}", "",
             f"{m['cpu']}, {m['nproc']} CPUs, {m['mem_gib']} GiB, kernel {m['kernel']}, host `{m['host']}`; "
             f"commit {m['commit']}{' (dirty)' if m['dirty'] else ''}"
             f"{' (bench/ uncommitted)' if m['bench_dirty'] else ''}, agent built {m['agent_built_utc']}; "
             f"{meta['started_utc']}; {o['rounds']} rounds × {o['duration']} s, {o['threads']} load thread(s), "
             f"{o['connections']} connections, fixed rate {o['rate']:,.0f} req/s, hooks {','.join(o['hooks'])}.", "",
             "Medians over rounds; each run is compared with the baseline of its own round. "
             "Ratio: req/s of the run over the baseline's (min–max over rounds).", ""]
    try:
        stale = datetime.fromisoformat(m["agent_built_utc"]) < datetime.fromisoformat(m["commit_utc"])
    except (KeyError, ValueError):
        stale = False
    if stale:
        lines += ["**Warning:** the agent binary is older than the commit: rebuild it "
                  "(`cargo build --release -p ratatosk`) for figures that belong to this commit.", ""]
    tainted = sum(1 for w in results.values() for r in w.get("rounds", []) for k in r["order"]
                  if r[k]["foreign_bpf_progs"])
    if tainted:
        lines += [f"**Warning:** another agent's BPF programs were loaded during {tainted} runs; "
                  "every syscall paid for them, baseline included.", ""]
    for key, what in (("other_cpu_pct", "used by processes outside the benchmark"),
                      ("steal_pct", "stolen by the hypervisor")):
        noisy = sorted(((r[k].get(key, 0), f"{name} {k} round {r['round']}") for name, w in results.items()
                        for r in w.get("rounds", []) for k in r["order"] if r[k].get(key, 0) > NOISY_PCT),
                       reverse=True)
        if noisy:
            lines += [f"**Noise:** in {len(noisy)} runs more than {NOISY_PCT} % of the machine's CPU was {what} "
                      f"(most: {noisy[0][0]:.0f} % in {noisy[0][1]}); those figures are less reliable.", ""]
    lines += ["| workload | run | baseline req/s | ratio | +p50 µs | +p99 µs | +server CPU µs/req "
              "| agent CPU µs/req | BPF µs/req | BPF hits/req | uprobe hits/req | RSS MB steady / peak "
              "| spans / req | unparsed B/req | drops | errors |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for name, w in results.items():
        if "error" in w:
            done = f" after {len(w['rounds'])} rounds" if w.get("rounds") else ""
            lines.append(f"| {name} | **failed{done}**: {w['error'].splitlines()[0][:200]} |" + " |" * 14)
        for kind, s in w.get("summary", {}).items():
            agent = kind.startswith(("ratatosk", "hooks-only"))
            spans = cell(s, "spans_per_req", "{:.4f}")
            if w["unparsed"] and kind.startswith("ratatosk"):
                spans += f" ({w['unparsed']} not parsed yet)"
            rss = f"{cell(s, 'rss_mb', '{:.1f}')} / {cell(s, 'hwm_mb', '{:.1f}')}" if agent else "—"
            agent_cpu = cell(s, "agent_cpu_us_per_req", "{:.2f}")
            if kind == "otel-sdk":   # the SDK runs inside the app: its cost is the added server CPU
                agent_cpu = f"in-app; collector {cell(s, 'collector_cpu_us_per_req', '{:.1f}')}"
            lines.append(" | ".join([
                f"| {name}", kind, cell(s, "baseline_rps", "{:,.0f}"), cell(s, "throughput_ratio", "{:.3f}", True),
                cell(s, "added_p50_us", "{:+.0f}"), cell(s, "added_p99_us", "{:+.0f}"),
                cell(s, "added_server_cpu_us_per_req", "{:+.2f}"), agent_cpu, cell(s, "bpf_us_per_req", "{:.2f}"),
                cell(s, "bpf_hits_per_req", "{:.1f}"), cell(s, "uprobe_hits_per_req", "{:.2f}"), rss, spans,
                cell(s, "unparsed_bytes_per_req", "{:.0f}"), cell(s, "drops", "{:,.0f}"),
                cell(s, "load_errors", "{:,.0f}")]) + " |")
    lines += ["", "Workloads:", ""]
    for name, w in results.items():
        if "what" in w:
            lines.append(f"- **{name}**: {w['what']}")
    lines += ["", "Columns: +server CPU is the server's own CPU per request (all its processes, including BPF "
              "run in its syscalls) over the baseline's; agent CPU is the agent's userspace (user+sys from "
              "/proc); BPF is every program of the agent (run_time_ns with kernel.bpf_stats_enabled), whoever "
              "made the syscall; hits/req include the load generator's syscalls; uprobe hits are runs of the "
              "agent's OpenSSL uprobe programs (entries, which trap, and returns). For otel-sdk the SDK runs in the app (see +server CPU) and "
              "exports to a local rotel collector, whose CPU is shown; spans are what rotel received.", ""]
    return "\n".join(lines) + "\n"


def markdown_details(results: dict) -> str:
    lines = []
    for name, w in results.items():
        if "summary" not in w:
            continue
        lines += [f"### {name}", "", f"{w['what']}", "", "| metric | run | median | min | max |",
                  "|---|---|---:|---:|---:|"]
        for kind, s in w["summary"].items():
            for label, key, spec in DETAIL_ROWS:
                if key in s and not (key == "baseline_rps" and kind != next(iter(w["summary"]))):
                    v = s[key]
                    lines.append(f"| {label} | {kind} | {spec.format(v['median'])} | {spec.format(v['min'])} "
                                 f"| {spec.format(v['max'])} |")
        lines.append("")
    return "\n".join(lines)


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


# ---------------------------------------------------------------- main

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
    p.add_argument("--rate", type=float, default=20000, help="total req/s of the fixed-rate workload")
    p.add_argument("--hooks-only", action="store_true",
                   help="add a hooks-only run (agent attached, nothing selected) to every workload")
    p.add_argument("--perf", action="store_true", help="also record perf stat task-clock of the agent")
    p.add_argument("--hooks", type=lambda v: v.split(","), default=["raw"],
                   help="agent --syscall-hooks modes to compare, e.g. raw,per-syscall")
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


SCRATCH: str | None = None     # temp dir for load generators' files


def on_alarm(*_):
    signal.alarm(0)
    raise SuiteTimeout()


def main() -> int:
    global SCRATCH
    opts = parse_args()
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
            SCRATCH = tmp
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


if __name__ == "__main__":
    sys.exit(main())
