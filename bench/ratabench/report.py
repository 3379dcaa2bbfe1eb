"""Summary over rounds and the Markdown report (summary and detail tables)."""
from __future__ import annotations

import math
import statistics
from datetime import datetime


# (label, key in summary, format); None format: not in the detail table.
DETAIL_ROWS = [
    ("baseline req/s", "baseline_rps", "{:,.0f}"),
    ("req/s", "rps", "{:,.0f}"),
    ("throughput ratio (run/baseline)", "throughput_ratio", "{:.3f}"),
    ("added p50 latency (µs)", "added_p50_us", "{:+.1f}"),
    ("added p99 latency (µs)", "added_p99_us", "{:+.1f}"),
    ("baseline server CPU (µs/req)", "baseline_server_cpu_us_per_req", "{:.2f}"),
    ("added server CPU (µs/req)", "added_server_cpu_us_per_req", "{:+.2f}"),
    ("agent CPU, threads on CPU (µs/req)", "agent_cpu_us_per_req", "{:.3f}"),
    ("BPF CPU (µs/req)", "bpf_us_per_req", "{:.3f}"),
    ("BPF program hits/req", "bpf_hits_per_req", "{:.2f}"),
    ("uprobe hits/req", "uprobe_hits_per_req", "{:.2f}"),
    ("uprobe entries (traps)/req", "uprobe_entries_per_req", "{:.2f}"),
    ("perf task-clock (µs/req)", "perf_task_clock_us_per_req", "{:.3f}"),
    ("agent RSS end of run (MB)", "rss_mb", "{:.1f}"),
    ("agent RSS peak (MB)", "hwm_mb", "{:.1f}"),
    ("spans / requests served", "spans_per_req", "{:.4f}"),
    ("spans exported over OTLP / requests served", "otlp_spans_per_req", "{:.4f}"),
    ("unparsed bytes captured / request", "unparsed_bytes_per_req", "{:.1f}"),
    ("ring-buffer + queue + OTLP drops", "drops", "{:,.0f}"),
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
    rate = meta["options"]["rate"]
    for name, w in results.items():
        served = [s["baseline_rps"]["median"] for s in w.get("summary", {}).values() if "baseline_rps" in s]
        if w.get("fixed_rate") and served and max(served) < 0.98 * rate:
            lines += [f"**Rate not reached:** {name} asked for {rate:,.0f} req/s and the baseline served "
                      f"{max(served):,.0f}: this machine cannot serve that rate, so the run saturates and its "
                      "figures are not those of a fixed rate.", ""]
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
            elif kind.startswith("ratatosk-otlp"):
                agent_cpu += f"; collector {cell(s, 'collector_cpu_us_per_req', '{:.1f}')}"
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
              "run in its syscalls) over the baseline's; agent CPU is the on-CPU time of the agent's threads "
              "(user and kernel, from schedstat); BPF is every program of the agent (run_time_ns with kernel.bpf_stats_enabled), whoever "
              "made the syscall; hits/req include the load generator's syscalls; uprobe hits are runs of the "
              "agent's OpenSSL uprobe programs (entries, which trap, and returns). For otel-sdk the SDK runs in the app (see +server CPU) and "
              "exports to a local rotel collector, whose CPU is shown; spans are what rotel received. ratatosk-otlp: the agent "
              "also exports every span and the metrics (each second) over OTLP/gRPC to a local rotel; its CPU is "
              "shown after the agent's.", ""]
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
