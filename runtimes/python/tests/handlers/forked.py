"""Handlers for the fork server's tests: each shows what a forked child shares with its parent."""

from __future__ import annotations

import ctypes
import os
import random
import time
from typing import Any

from nanofaas_runtime.handler import Context

COUNT = 0
_INVOCATION_VARIABLES = ("EXECUTION_ID", "NANOFAAS_ATTEMPT", "TRACE_ID", "TRACEPARENT")


def count(request: dict[str, Any], context: Context | None = None) -> int:
    """Increments a module global: a fresh child always answers 1."""
    global COUNT
    COUNT += 1
    return COUNT


def draw(request: dict[str, Any], context: Context | None = None) -> float:
    return random.random()


def descriptors(request: dict[str, Any], context: Context | None = None) -> dict[str, str]:
    """What every open descriptor of this process points at."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return found


def identity(request: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "env": {k: os.environ.get(k) for k in _INVOCATION_VARIABLES},
        "executionId": context.execution_id if context is not None else None,
    }


def exit_abruptly(request: dict[str, Any], context: Context | None = None) -> None:
    os._exit(9)


def segfault(request: dict[str, Any], context: Context | None = None) -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def block(request: dict[str, Any], context: Context | None = None) -> None:
    """Writes its pid to $PID_FILE, then blocks until killed."""
    with open(os.environ["PID_FILE"], "w") as out:
        out.write(str(os.getpid()))
    time.sleep(600)
