#!/usr/bin/env python3
"""Where nginx-http1's throughput goes, one step of the agent's work at a
time: builds agents that stop after each step from a copy of this tree,
then measures them with bench/pinned.py (nginx on CPU 0, wrk on CPU 1,
baseline and every step interleaved in each round).

The steps, each one adding to the one before:

  hooks-only         the production agent selecting a port nobody serves:
                     every socket call of every process runs the programs,
                     none is captured
  request-64B        each read of nginx (one per request here) sends a
                     64-byte record, writes send nothing; the reader drops
                     data records unread
  record-64B         each socket call of nginx sends a 64-byte record (a
                     header with the clock and pid) and nothing else; the
                     reader drops data records unread
  record-no-payload  the full data record (socket, tuple, queue time, TLS
                     checks) without payload bytes; the reader drops it
  record-payload     the full record with its payload copied from nginx's
                     memory, as in production; the reader drops it
  ratatosk           the production agent: parsing, spans, metrics

The ablations are text edits of the sources, each checked to apply exactly
once: when the code they edit changes, the script says which one to update
instead of measuring something else. Builds go to target/decompose/ (the
first one compiles every dependency, ~5 min; later ones ~1 min each).

    sudo bench/decompose.py --rounds 8        # ~10 min after the builds
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True

import pinned  # noqa: E402
from ratabench.errors import BenchError  # noqa: E402
from ratabench.paths import REPO  # noqa: E402

BPF = "bpf/src/capture.bpf.c"
READER = "crates/agent/src/reader.rs"

# The reader returns on every data record (kind 1, RT_EV_DATA) before
# decoding it; process and connection records still drive discovery.
DROP_DATA = (READER,
             "    fn record(&mut self, raw: &[u8]) {\n",
             "    fn record(&mut self, raw: &[u8]) {\n"
             "        if raw.first() == Some(&1) {\n"
             "            return;\n"
             "        }\n")

# A 64-byte data record per captured call, before anything else is read.
RECORD_64B = (BPF,
              "__u8 sc, __u8 dir, __u64 pid_tgid)\n{\n\tbool cipher = false;\n",
              "__u8 sc, __u8 dir, __u64 pid_tgid)\n{\n"
              "\tstruct rt_header *h64 = bpf_ringbuf_reserve(&events, 64, 0);\n"
              "\tif (h64) {\n"
              "\t\tfill_header(h64, RT_EV_DATA, pid_tgid);\n"
              "\t\tbpf_ringbuf_submit(h64, rb_flags());\n"
              "\t}\n"
              "\tif (pid_tgid)\n"
              "\t\treturn;\n"
              "\tbool cipher = false;\n")

# The same record for reads only (one per request here, the request),
# nothing for writes: less than any design that sends one record per
# request, which must also read the request line and the status from user
# memory and pair them in a per-connection map.
REQUEST_64B = (BPF, RECORD_64B[1], RECORD_64B[2].replace(
    "\tstruct rt_header *h64 = bpf_ringbuf_reserve(&events, 64, 0);\n",
    "\tstruct rt_header *h64 = dir == RT_DIR_INGRESS ? bpf_ringbuf_reserve(&events, 64, 0) : NULL;\n"))

# Nothing copied from user memory: the record ends after its fixed part.
NO_PAYLOAD = (BPF,
              "\tif ((__u64)ret < want)\n\t\twant = ret;\n",
              "\tif ((__u64)ret < want)\n\t\twant = ret;\n\twant = 0;\n")

STEPS: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("request-64B", [DROP_DATA, REQUEST_64B]),
    ("record-64B", [DROP_DATA, RECORD_64B]),
    ("record-no-payload", [DROP_DATA, NO_PAYLOAD]),
    ("record-payload", [DROP_DATA]),
    ("ratatosk", []),
]


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, env=env)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed (exit {r.returncode})")


def copy_tree(dest: Path) -> None:
    """The tracked files of the working tree (uncommitted edits included)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    if dest.exists():
        shutil.rmtree(dest)
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


def apply(src: Path, edits: list[tuple[str, str, str]]) -> None:
    for path, anchor, replacement in edits:
        text = (src / path).read_text()
        n = text.count(anchor)
        if n != 1:
            raise BenchError(f"ablation for {path} matches {n} times (expected 1): update "
                             f"bench/decompose.py to the current code around {anchor.splitlines()[0]!r}")
        (src / path).write_text(text.replace(anchor, replacement))


def build(work: Path) -> dict[str, Path]:
    """One binary per step, built from a fresh copy of the tree each."""
    src, bins = work / "src", work / "bin"
    bins.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CARGO_TARGET_DIR": str(work / "target")}
    out = {}
    for name, edits in STEPS:
        copy_tree(src)
        apply(src, edits)
        # copy2 keeps the sources' times: touch every file an ablation may
        # edit, or cargo would keep the previous step's build of it.
        for path in {BPF, READER}:
            os.utime(src / path)
        print(f"decompose: building {name}", file=sys.stderr, flush=True)
        run(["cargo", "build", "--release", "--quiet", "-p", "ratatosk"], src, env)
        out[name] = bins / name
        shutil.copy2(work / "target/release/ratatosk", out[name])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=int, default=5, help="measured seconds per run")
    opts = p.parse_args()
    why = pinned.preflight()
    if why:
        print(f"decompose: {why}", file=sys.stderr)
        return 1
    try:
        bins = build(REPO / "target/decompose")
        variants = {"hooks-only": [str(bins["ratatosk"])]}
        variants.update({name: [str(path)] for name, path in bins.items()})
        results = pinned.measure(variants, opts.rounds, opts.duration)
    except BenchError as e:
        print(f"decompose failed: {e}", file=sys.stderr)
        return 1
    print(pinned.table(results, opts.rounds, opts.duration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
