"""Ratatosk's overhead benchmark (bench/run.py is the entry point).

Modules, from the bottom up:
  paths      where the repository, bench/ and the bench venv are
  errors     BenchError and the interruptions (SIGTERM, --time-limit)
  procs      spawn/stop processes (own session, group cleanup), waits, run_cmd
  cpu        CPU and memory figures from /proc and getrusage
  load       wrk, h2load, redis-benchmark, pgbench: run and parse
  servers    nginx, Flask (bare and under the OTel SDK, with rotel), Redis, PostgreSQL
  workloads  the Workload table
  bpf        the agent's BPF programs and their run-time stats
  agent      the agent process per run: start, ready, scrape, exit; perf stat
  measure    rounds, one run per kind, what is sampled around the load
  report     summary over rounds and the Markdown tables
  machine    machine, commit and version facts stored with each result
  preflight  everything checked before anything starts
  suite      the whole run: every workload, then the result files and chart
"""
