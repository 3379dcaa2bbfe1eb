"""Exceptions that end a workload or the whole run, and the signal handlers
that raise them."""
from __future__ import annotations

import signal


class BenchError(Exception):
    """A failure that ends a workload (or the run) with one clear line."""


class Terminated(BaseException):
    """SIGTERM: clean up like Ctrl-C."""


def on_sigterm(*_):
    raise Terminated()


class SuiteTimeout(Exception):
    """--time-limit reached: stop everything, keep what is finished."""


def on_alarm(*_):
    signal.alarm(0)
    raise SuiteTimeout()
