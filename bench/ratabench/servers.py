"""Servers under test (nginx in its variants, Flask on gunicorn bare and
under the OpenTelemetry SDK with a rotel collector, Redis, PostgreSQL,
MariaDB):
each start_* returns a Server, or stops what it started and raises."""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import BenchError
from .paths import BENCH
from .procs import ANSI, free_port, http_get, log_tail, on_cpu, run_cmd, spawn, stop, tcp_up, wait_until


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
    otlp_endpoint: str | None = None                      # the collector's gRPC endpoint, for ratatosk-otlp runs


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


def make_cert(tmp: Path) -> None:
    """A self-signed certificate, key.pem and cert.pem in `tmp`."""
    run_cmd(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp / "key.pem"),
             "-out", str(tmp / "cert.pem"), "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], 60, "openssl req")
    (tmp / "key.pem").chmod(0o644)


NODE_HTTPS = """
const https = require('https'), fs = require('fs'), dir = process.argv[2];
https.createServer({ key: fs.readFileSync(dir + '/key.pem'), cert: fs.readFileSync(dir + '/cert.pem') },
  (req, res) => { res.setHeader('Content-Length', '13'); res.end('Hello, world!'); })
  .listen(Number(process.argv[1]), '127.0.0.1');
"""


def start_node_tls(tmp: Path) -> Server:
    """Node's https module: OpenSSL 3 linked into the node executable."""
    make_cert(tmp)
    port = free_port()
    proc = spawn(["node", "-e", NODE_HTTPS, str(port), str(tmp)], tmp / "node.log")

    def up() -> Server:
        wait_until(lambda: tcp_up(port), 20, "node did not start", lambda: proc.poll() is None,
                   lambda: log_tail(tmp / "node.log"))
        return Server(Target(port, proc), [proc])
    return started([proc], up)


def start_nginx(tmp: Path, variant: str = "http1", cpu: int | None = None) -> Server:
    """nginx with one worker; `cpu` pins it (master and worker) to that CPU."""
    www = tmp / "www"
    www.mkdir()
    (www / "file").write_text("Hello, world!")       # 13 bytes
    # The worker runs as nobody: everything it serves must be world-readable.
    for p in (tmp, www, www / "file"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    listen, extra = (" http2", "") if variant == "h2c" else ("", "")
    if variant == "tls":
        make_cert(tmp)
        # nginx 1.22 enables TLS 1.3 only when asked.
        listen, extra = " ssl", (f"ssl_certificate {tmp}/cert.pem; ssl_certificate_key {tmp}/key.pem; "
                                 "ssl_protocols TLSv1.3;")
    port, status_port = free_port(), free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=tmp, port=port, status_port=status_port, listen=listen, extra=extra))
    proc = spawn([*on_cpu(cpu), "nginx", "-p", str(tmp), "-c", str(conf)], tmp / "nginx.log")

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
        return Server(Target(bare_port, bare), [bare, sdk, collector], Target(sdk_port, sdk), collector, spans,
                      f"http://127.0.0.1:{grpc_port}")
    return started(procs, up)


def with_collector(server: Server, tmp: Path, opts: argparse.Namespace) -> Server:
    """Adds a rotel collector that discards what it receives, for the
    ratatosk-otlp runs of a workload that has none."""
    grpc_port, http_port = free_port(), free_port()
    log = tmp / "rotel-otlp.log"
    try:
        collector = spawn([str(rotel_agent(opts.venv)), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                           "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--exporter", "blackhole"], log)
        server.procs.append(collector)
        wait_until(lambda: tcp_up(grpc_port), 20, "rotel did not start", lambda: collector.poll() is None,
                   lambda: log_tail(log))
    except BaseException:
        for p in server.procs:
            stop(p)
        raise
    server.collector, server.otlp_endpoint = collector, f"http://127.0.0.1:{grpc_port}"
    return server


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


def start_mariadb(tmp: Path) -> Server:
    """A private MariaDB datadir (no binary log, no durable commits: the
    select-only load never writes) with a `bench` user and sysbench's
    table (one, 10000 rows)."""
    data = tmp / "data"
    run_cmd(["mariadb-install-db", "--user=root", f"--datadir={data}", "--auth-root-authentication-method=socket"],
            120, "mariadb-install-db")
    port = free_port()
    sock = tmp / "mariadb.sock"
    proc = spawn(["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
                  f"--pid-file={tmp / 'mariadb.pid'}", f"--port={port}", "--bind-address=127.0.0.1",
                  "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0", "--max-connections=200"],
                 tmp / "mariadb.log")

    def root_sql(sql: str) -> bool:
        return subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e", sql],
                              capture_output=True, timeout=30).returncode == 0

    def up() -> Server:
        wait_until(lambda: tcp_up(port) and root_sql("SELECT 1"), 60, "mariadbd did not start",
                   lambda: proc.poll() is None, lambda: log_tail(tmp / "mariadb.log"))
        if not root_sql("CREATE DATABASE sbtest; CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY 'bench'; "
                        "GRANT ALL ON sbtest.* TO 'bench'@'127.0.0.1'"):
            raise BenchError("mariadb: creating the bench user failed")
        run_cmd(["sysbench", "oltp_point_select", *sysbench_mysql_args(port), "prepare"], 120, "sysbench prepare")
        return Server(Target(port, proc), [proc])
    return started([proc], up)


def sysbench_mysql_args(port: int) -> list[str]:
    return ["--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}", "--mysql-user=bench",
            "--mysql-password=bench", "--mysql-db=sbtest", "--mysql-ssl=off", "--tables=1", "--table-size=10000"]


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


def start_grpc(tmp: Path, opts: argparse.Namespace) -> Server:
    """bench/apps/grpc_server.py (grpcio, unary SayHello) in the bench venv."""
    port = free_port()
    proc = spawn([str(opts.venv / "bin/python"), str(BENCH / "apps/grpc_server.py"), str(port)], tmp / "grpc.log")

    def up() -> Server:
        wait_until(lambda: tcp_up(port), 30, "the gRPC server did not start", lambda: proc.poll() is None,
                   lambda: log_tail(tmp / "grpc.log"))
        return Server(Target(port, proc), [proc])
    return started([proc], up)
