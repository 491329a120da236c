from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.dispatch.base import Attempt, BackendObserver


def make_spec(name: str = "fn", **overrides: Any) -> types_pb2.FunctionSpec:
    """A spec with the registry's defaults applied, as the scheduler receives it."""
    fields: dict[str, object] = {
        "name": name,
        "image": "nanofaas/python-runtime:latest",
        "timeout_ms": 30_000,
        "concurrency": 4,
        "queue_size": 100,
        "max_retries": 3,
        "execution_mode": types_pb2.EXECUTION_MODE_JOB,
        "runtime_mode": types_pb2.RUNTIME_MODE_HTTP,
        "revision": 1,
    }
    fields.update(overrides)
    return types_pb2.FunctionSpec(**fields)  # type: ignore[arg-type]


def make_attempt(
    spec: types_pb2.FunctionSpec,
    data: bytes = b"null",
    *,
    content_type: str = "application/json",
    number: int = 1,
    timeout: float = 20.0,
    execution_id: str = "",
    trace_id: str = "t-1",
) -> Attempt:
    """One attempt as the scheduler hands it to a backend."""
    return Attempt(
        execution_id=execution_id or f"e-{time.monotonic_ns()}",
        function_name=spec.name,
        spec=spec,
        request=Request(data, content_type, {}),
        number=number,
        deadline_epoch=time.time() + timeout,
        timeout=timeout,
        timeout_ms=int(timeout * 1000),
        trace_id=trace_id,
    )


class RecordingObserver(BackendObserver):
    """Keeps every backend event, for assertions."""

    def __init__(self) -> None:
        self.cold_starts: list[tuple[str, float]] = []
        self.replicas: dict[str, int] = {}

    def cold_start(self, function: str, seconds: float) -> None:
        self.cold_starts.append((function, seconds))

    def replicas_changed(self, function: str, replicas: int) -> None:
        self.replicas[function] = replicas


def python_command(code: str) -> list[str]:
    """argv running a small (dedented) Python program, never through a shell."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def child_env(**extra: str) -> dict[str, str]:
    """A minimal child environment, like the backend builds one, plus `extra`."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **extra}


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


async def wait_pid_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until `pid` has exited (a zombie counts), with a pidfd as the event; TimeoutError if not."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await asyncio.wait_for(exited, timeout)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
