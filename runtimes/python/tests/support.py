"""Helpers for the runtime's tests that start function processes (test support, not shipped)."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path


def runtime_command(mode: str | None = None) -> list[str]:
    """argv running this Python runtime with the current interpreter."""
    argv = [sys.executable, "-m", "nanofaas_runtime"]
    return [*argv, "--mode", mode] if mode else argv


def watchdog_command(mode: str, command: Sequence[str]) -> list[str]:
    """argv running the watchdog (`nanofaas-watchdog`) in `mode` around `command`, current interpreter."""
    return [sys.executable, "-m", "nanofaas_runtime.watchdog", "--mode", mode, "--", *command]


def python_command(code: str) -> list[str]:
    """argv running a small (dedented) Python program, never through a shell."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def child_env(**extra: str) -> dict[str, str]:
    """A minimal child environment, like the scheduler builds one, plus `extra`."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def handler_env(
    pythonpath: str | Path, module: str, function: str = "handle", **extra: str
) -> dict[str, str]:
    """Environment for the runtime serving `module.function` found on `pythonpath`."""
    return child_env(PYTHONPATH=str(pythonpath), HANDLER_MODULE=module, HANDLER_FUNCTION=function, **extra)


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
