"""Processes we start and stop (own session, stop by pid, group cleanup),
waits, and the small network probes the waits use."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

from .errors import BenchError

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_cpu(cpu: int | None) -> list[str]:
    """The command prefix that pins a program to one CPU (none for None)."""
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


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
