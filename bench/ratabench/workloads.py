"""The workload table: a server, how to load it and which runs to compare.
Adding a workload is one Workload(...) entry (see bench/README.md)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .load import (LoadResult, private_libssl_env, run_grpc_h2load, run_h2load, run_pgbench,
                   run_redis_benchmark, run_sysbench_point_select, run_wrk)
from .servers import (Server, start_flask, start_grpc, start_mariadb, start_nginx, start_node_tls, start_postgres,
                      start_redis, with_collector)


@dataclass
class Workload:
    """A server under test plus how to load it.

    start(tmpdir, opts) -> Server (everything it started, to stop at the end);
    load(port, opts, duration) -> LoadResult;
    kinds: runs per round besides the baseline: "ratatosk" (agent selecting
    the server's port), "ratatosk-otlp" (the same, exporting traces and
    metrics over OTLP/gRPC to the Server's collector), "hooks-only" (agent
    attached, selecting a port nobody listens on), "ratatosk-tlscalls" (the
    agent with --tls-decrypt=false: OpenSSL's SSL_read/SSL_write probed),
    "otel-sdk" (the Server's
    sdk target, no agent);
    parsed: None when the agent parses the protocol, else what it is (the
    agent captures but does not parse it yet: 0 spans is expected);
    fixed_rate: the load asks for --rate req/s (the report says when the
    baseline could not serve that much: the run then saturates).
    """
    name: str
    what: str
    needs: list[str]
    start: Callable[[Path, argparse.Namespace], Server]
    load: Callable[[int, argparse.Namespace, int], LoadResult]
    kinds: tuple[str, ...] = ("ratatosk",)
    unparsed: str | None = None
    fixed_rate: bool = False


WORKLOADS = {w.name: w for w in [
    Workload("nginx-http1", "nginx, HTTP/1.1 keep-alive, wrk closed loop (saturating); ratatosk-otlp also "
             "exports every span and the metrics over OTLP/gRPC to a local rotel", ["nginx", "wrk"],
             lambda tmp, o: with_collector(start_nginx(tmp), tmp, o),
             lambda port, o, d: run_wrk(f"http://127.0.0.1:{port}/file", o, d),
             kinds=("hooks-only", "ratatosk", "ratatosk-otlp")),
    Workload("nginx-http1-1conn", "nginx, HTTP/1.1 keep-alive, wrk closed loop over one connection, nginx and "
             "wrk pinned to CPU 0: one request in flight and no idle wake-ups, so +p50 is what the agent adds "
             "to a request's round trip",
             ["nginx", "wrk", "taskset"], lambda tmp, o: start_nginx(tmp, cpu=0),
             lambda port, o, d: run_wrk(f"http://127.0.0.1:{port}/file", o, d, connections=1, cpu=0),
             kinds=("hooks-only", "ratatosk")),
    Workload("nginx-http1-rate", "nginx, HTTP/1.1 keep-alive, h2load --h1 at a fixed rate (--rate)",
             ["nginx", "h2load"], lambda tmp, o: start_nginx(tmp),
             lambda port, o, d: run_h2load(f"http://127.0.0.1:{port}/file", o, d, h1=True, rate=o.rate),
             fixed_rate=True),
    Workload("nginx-tls", "nginx, HTTPS (TLS 1.3, OpenSSL 3 as a shared libssl), wrk closed loop, keep-alive",
             ["nginx", "wrk", "openssl"],
             lambda tmp, o: start_nginx(tmp, "tls"),
             lambda port, o, d: run_wrk(f"https://127.0.0.1:{port}/file", o, d, env=private_libssl_env()),
             kinds=("ratatosk", "ratatosk-tlscalls")),
    Workload("node-tls", "Node 20 https (OpenSSL 3 linked into the node executable), wrk closed loop, keep-alive",
             ["node", "wrk", "openssl"],
             lambda tmp, o: start_node_tls(tmp),
             lambda port, o, d: run_wrk(f"https://127.0.0.1:{port}/", o, d, env=private_libssl_env()),
             kinds=("ratatosk", "ratatosk-tlscalls")),
    Workload("flask", "Flask on gunicorn (2 sync workers: a connection per request), wrk closed loop; "
             "bare / Ratatosk / OTel SDK",
             ["wrk"], start_flask,
             lambda port, o, d: run_wrk(f"http://127.0.0.1:{port}/hello", o, d),
             kinds=("ratatosk", "ratatosk-otlp", "otel-sdk")),
    Workload("redis", "redis-server, redis-benchmark GET (closed loop)", ["redis-server", "redis-benchmark"],
             lambda tmp, o: start_redis(tmp), run_redis_benchmark, kinds=("hooks-only", "ratatosk")),
    Workload("redis-P16", "redis-server, redis-benchmark GET, 16 pipelined per write (closed loop)",
             ["redis-server", "redis-benchmark"], lambda tmp, o: start_redis(tmp),
             lambda port, o, d: run_redis_benchmark(port, o, d, pipeline=16), kinds=("hooks-only", "ratatosk")),
    Workload("postgres", "PostgreSQL 15 private cluster, pgbench -S (select only) over TCP",
             ["pgbench", "pg_isready", "initdb", "postgres"], lambda tmp, o: start_postgres(tmp), run_pgbench,
             kinds=("hooks-only", "ratatosk")),
    Workload("mariadb", "MariaDB 10.11 private datadir, sysbench oltp_point_select (one primary-key SELECT per "
             "query, server-side prepared statements, libmariadb) over TCP",
             ["sysbench", "mariadbd", "mariadb-install-db", "mariadb"], lambda tmp, o: start_mariadb(tmp),
             run_sysbench_point_select, kinds=("hooks-only", "ratatosk")),
    Workload("nginx-h2c", "nginx, cleartext HTTP/2 (prior knowledge), h2load closed loop, 1 stream per connection",
             ["nginx", "h2load"], lambda tmp, o: start_nginx(tmp, "h2c"),
             lambda port, o, d: run_h2load(f"http://127.0.0.1:{port}/file", o, d), kinds=("hooks-only", "ratatosk")),
    Workload("grpc", "Python grpcio server, unary helloworld.Greeter/SayHello, h2load making gRPC calls "
             "(one in flight per connection)", ["h2load"], start_grpc, run_grpc_h2load,
             kinds=("hooks-only", "ratatosk")),
]}
