"""Processes of the platform under test, found by pid in /proc, awaited by pidfd, killed by pid.

The chaos and lifecycle tests kill platform processes and then prove that nothing is
left: every wait here is on an event (a pidfd turning readable, a file appearing is
the one polled exception, bounded), and `kill_leftovers` cleans up after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

WAIT_S = 30.0


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children_of(parent: int) -> dict[int, str]:
    """The live children of `parent`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[1]) == parent:
                with contextlib.suppress(OSError):
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def processes_with_env(name: str, value: str) -> set[int]:
    """Live pids whose environment has name=value (a function's processes and what they started)."""
    marker = f"{name}={value}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0") and pid_alive(int(entry.name)):
                    found.add(int(entry.name))
    return found


async def wait_gone(pids: Iterable[int], timeout: float = WAIT_S) -> None:
    """Return once every pid has exited (a zombie counts as exited); AssertionError naming the rest."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for pid in pids:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        exited = asyncio.Event()
        loop.add_reader(pidfd, exited.set)
        try:
            if pid_alive(pid):
                await asyncio.wait_for(exited.wait(), max(deadline - loop.time(), 0.01))
        except TimeoutError:
            raise AssertionError(f"pid {pid} still running: {children_of(pid) or 'no children'}") from None
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)


def kill_leftovers(pids: Iterable[int]) -> None:
    """SIGKILL whatever of `pids` a failed test left running."""
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _written_pids(path: Path) -> list[int] | None:
    try:
        return [int(pid) for pid in path.read_text().split()]
    except FileNotFoundError:
        return None


async def wait_for_pids(path: Path, timeout: float = WAIT_S) -> list[int]:
    """The pids a handler wrote to `path` (renamed into place, so complete once it exists).

    The function process offers no event to await, so this polls, bounded.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (pids := _written_pids(path)) is None:
        if loop.time() >= deadline:
            raise AssertionError(f"{path} never written")
        await asyncio.sleep(0.02)
    return pids
