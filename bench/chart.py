#!/usr/bin/env python3
"""Chart of a bench/run.py result: throughput ratio and CPU per request, one
row per workload and run kind. Needs matplotlib (bench/setup.sh puts it in
the bench venv); run.py calls it after every run:

    /opt/ratatosk-bench-venv/bin/python bench/chart.py RESULT.json OUT.png
"""
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RATATOSK, RATATOSK_LIGHT = "#1f5fa8", "#8fb8e3"
RATATOSK_OTLP = "#0b2f5a"   # darker: the same agent, also exporting
SDK, SDK_LIGHT = "#d9731a", "#f2bf8f"
HOOKS = "#8a8a8a"
FLOOR = 0.01    # µs: where the log axis starts; smaller (or negative) values sit on it


def median(s: dict, key: str) -> float | None:
    return s[key]["median"] if key in s else None


def rows_of(data: dict) -> list[dict]:
    rows = []
    for name, w in data["workloads"].items():
        if "summary" not in w:
            rows.append({"label": f"{name}: failed", "failed": True})
            continue
        for kind, s in w["summary"].items():
            run = kind.split("/")[0]
            label = f"{name} · {kind}" + (" (partial)" if "error" in w else "")
            if w.get("unparsed") and run == "ratatosk":
                label += f"\n({w['unparsed']}: captured, not parsed yet)"
            row = {"label": label, "run": run, "ratio": s["throughput_ratio"]}
            if run == "otel-sdk":
                row["cpu"] = [("SDK in the app (added server CPU)", median(s, "added_server_cpu_us_per_req"), SDK),
                              ("OTel collector (rotel)", median(s, "collector_cpu_us_per_req"), SDK_LIGHT)]
            elif run == "ratatosk-otlp":
                row["cpu"] = [("agent userspace, exporting OTLP", median(s, "agent_cpu_us_per_req"), RATATOSK_OTLP),
                              ("agent BPF (all its programs)", median(s, "bpf_us_per_req"), RATATOSK_LIGHT),
                              ("OTel collector (rotel)", median(s, "collector_cpu_us_per_req"), SDK_LIGHT)]
            else:
                hooks_only = run == "hooks-only"
                row["cpu"] = [("agent userspace" + (" (hooks-only run)" if hooks_only else ""),
                               median(s, "agent_cpu_us_per_req"), HOOKS if hooks_only else RATATOSK),
                              ("agent BPF (all its programs)", median(s, "bpf_us_per_req"), RATATOSK_LIGHT)]
            rows.append(row)
    return rows


def main() -> int:
    src, out = sys.argv[1], sys.argv[2]
    data = json.load(open(src))
    rows = rows_of(data)
    if not rows:
        print("no workloads in", src, file=sys.stderr)
        return 1
    m, o = data["machine"], data["options"]
    height = 1.6 + 0.62 * len(rows)
    fig, (ax_r, ax_c) = plt.subplots(1, 2, figsize=(15, height + 0.5), sharey=True, layout="constrained",
                                     gridspec_kw={"width_ratios": [1, 1.25]})
    ys = list(range(len(rows)))

    # Throughput ratio, with the min–max over rounds as an error bar.
    for y, row in zip(ys, rows):
        if row.get("failed"):
            ax_r.text(0.02, y, "workload failed (see the .md)", va="center", color="#b00020")
            continue
        r = row["ratio"]
        color = HOOKS if row["run"] == "hooks-only" else SDK if row["run"] == "otel-sdk" else RATATOSK
        ax_r.barh(y, r["median"], height=0.6, color=color,
                  xerr=[[r["median"] - r["min"]], [r["max"] - r["median"]]], capsize=3, ecolor="#333")
        ax_r.text(min(r["max"], 1.12) + 0.025, y, f"{r['median']:.2f}", va="center", fontsize=9)
    ax_r.axvline(1.0, color="#444", linestyle="--", linewidth=1)
    ax_r.set_xlim(0, 1.25)
    ax_r.set_xlabel("throughput ratio: req/s of the run / baseline req/s (median; bar: min–max over rounds)")
    ax_r.set_title("Throughput kept (higher is better)")

    # CPU per request, two components per row, log scale.
    top = FLOOR
    seen: set[str] = set()
    for y, row in zip(ys, rows):
        parts = row.get("cpu", [])
        # The row's bars share 0.64 of its height, so a row of three does not run into the next.
        step = 0.64 / max(len(parts), 1)
        for j, (name, value, color) in enumerate(parts):
            if value is None:
                continue
            shown = max(value, FLOOR)
            top = max(top, shown)
            at = y - 0.32 + step * (j + 0.5)
            ax_c.barh(at, shown, height=step * 0.92, color=color, label=None if name in seen else name)
            seen.add(name)
            ax_c.text(shown * 1.12, at, f"{value:.2f}" if value > 0 else "0" if value == 0 else "<0 (noise)",
                      va="center", fontsize=8)
    ax_c.set_xscale("log")
    ax_c.set_xlim(FLOOR, top * 6)
    ax_c.set_xlabel("µs of CPU per request (median, log scale)")
    ax_c.set_title("CPU per request spent on instrumentation (lower is better)")
    handles, labels = ax_c.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (
        "hooks-only" in labels[i], "SDK" in labels[i] or "collector" in labels[i], "BPF" in labels[i]))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center",
               ncols=5, fontsize=9, frameon=False)

    for ax in (ax_r, ax_c):
        ax.grid(axis="x", color="#ddd", linewidth=0.6)
        ax.set_axisbelow(True)
    ax_r.set_yticks(ys, [r["label"] for r in rows], fontsize=9)
    ax_r.invert_yaxis()
    fig.suptitle(f"Ratatosk overhead — {m['host']}: {m['cpu']}, {m['nproc']} CPUs, kernel {m['kernel']}; "
                 f"commit {m['commit']}{' (dirty)' if m['dirty'] else ''}; {data['started_utc'][:16].replace('T', ' ')} UTC; "
                 f"{o['rounds']} rounds × {o['duration']} s", fontsize=10)
    fig.savefig(out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
