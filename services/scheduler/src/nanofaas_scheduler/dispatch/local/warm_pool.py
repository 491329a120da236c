"""WARM mode on this machine: long-lived runtime servers reused across invocations."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.dispatch.local.replica import Replica


class WarmPool:
    """The replicas of one function at one spec revision.

    The scheduler never runs more than `concurrency` invocations of a function
    at once, so the pool grows on demand to at most that many replicas. Idle
    replicas are reused last-in-first-out to keep the hottest ones hot; a dead
    replica is dropped and replaced by the next acquire.
    """

    def __init__(
        self,
        spec: types_pb2.FunctionSpec,
        start: Callable[[], Awaitable[Replica]],
        on_started: Callable[[str, float], None] | None = None,
        on_resized: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self._start = start
        self._on_started = on_started
        self._on_resized = on_resized
        self._idle: list[Replica] = []
        self._replicas: set[Replica] = set()
        # Replicas that have become ready (the others are still starting).
        self._ready: set[Replica] = set()
        self._retired = False

    @property
    def size(self) -> int:
        return len(self._replicas)

    @property
    def ready(self) -> int:
        return sum(1 for replica in self._ready if replica.alive())

    def _add(self, replica: Replica) -> None:
        self._replicas.add(replica)
        if self._on_resized is not None:
            self._on_resized()

    def _discard(self, replica: Replica) -> None:
        self._ready.discard(replica)
        if replica in self._replicas:
            self._replicas.discard(replica)
            if self._on_resized is not None:
                self._on_resized()

    async def acquire(self, ready_timeout: float) -> Replica:
        while self._idle:
            replica = self._idle.pop()
            if replica.alive():
                return replica
            self._discard(replica)
            await replica.stop(grace=0.0)
        spawned = time.perf_counter()
        replica = await self._start()
        self._add(replica)
        try:
            await replica.wait_ready(ready_timeout)
        except BaseException:
            self._discard(replica)
            await asyncio.shield(replica.stop(grace=0.0))
            raise
        self._ready.add(replica)
        if self._on_started is not None:
            self._on_started(self.spec.name, time.perf_counter() - spawned)
        return replica

    async def release(self, replica: Replica, *, healthy: bool) -> None:
        keep = healthy and not self._retired and replica.alive()
        if keep and len(self._replicas) <= max(1, self.spec.concurrency):
            self._idle.append(replica)
            return
        self._discard(replica)
        await replica.stop()

    async def retire(self) -> None:
        """No new work; idle replicas stop now, busy ones when they are released."""
        self._retired = True
        idle, self._idle = self._idle, []
        for replica in idle:
            self._discard(replica)
        await asyncio.gather(*(replica.stop() for replica in idle), return_exceptions=True)

    async def close(self) -> None:
        self._retired = True
        replicas, self._idle = list(self._replicas), []
        self._replicas.clear()
        self._ready.clear()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(replica.stop() for replica in replicas), return_exceptions=True)
