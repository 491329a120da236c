"""Processes a dead function server left behind are re-parented to the scheduler, and killed.

When a server process dies abruptly (SIGKILL, a crash), what it started outlives it:
its process group is killed at once (process.py), but a child that called setsid()
has left the group. The scheduler is therefore a child subreaper (PR_SET_CHILD_SUBREAPER):
such orphans are re-parented to it instead of to init, and every time a server exits,
each child of the scheduler that is not a live server is killed with its own tree and
reaped. A sweep waits while a spawn is under way (its child exists before its pid is
known here).

Enabled by the scheduler process only (LocalBackend(reap_orphans=True)): every child of
it is a function server, so any other child is an orphan. Linux only; elsewhere `enable`
is False and nothing is swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

from nanofaas_scheduler.dispatch.local.process_tree import children, kill_tree

_PR_SET_CHILD_SUBREAPER = 36


class OrphanReaper:
    def __init__(self) -> None:
        self._servers: set[int] = set()
        self._spawning = 0
        self._swept_later = False
        self._enabled: bool | None = None
        self._reaping: set[asyncio.Future[None]] = set()

    def enable(self) -> bool:
        """Become a child subreaper (once); False where that is not available."""
        if self._enabled is None:
            self._enabled = False
            if sys.platform.startswith("linux"):
                with contextlib.suppress(OSError, AttributeError):
                    libc = ctypes.CDLL(None, use_errno=True)
                    self._enabled = int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
        return self._enabled

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        self._spawning += 1
        try:
            yield
        finally:
            self._spawning -= 1
            if self._spawning == 0 and self._swept_later:
                self._swept_later = False
                self.sweep()

    def server_started(self, pid: int) -> None:
        self._servers.add(pid)

    def server_exited(self, pid: int) -> None:
        self._servers.discard(pid)
        self.sweep()

    def sweep(self) -> None:
        """Kill and reap every child of ours that is no live server (with what it started)."""
        if not self._enabled:
            return
        if self._spawning:
            self._swept_later = True
            return
        for pid in children(os.getpid()) - self._servers:
            kill_tree(pid, include_root=True)
            reaped = asyncio.ensure_future(asyncio.to_thread(_reap, pid))
            self._reaping.add(reaped)
            reaped.add_done_callback(self._reaping.discard)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


REAPER = OrphanReaper()
