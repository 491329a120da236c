"""WARM mode on this machine: long-lived runtime servers reused across invocations."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.dispatch.local.replica import Replica

# How long a healthy replica the pool no longer needs gets to stop on SIGTERM.
_STOP_GRACE_S = 1.0


class WarmPool:
    """The replicas of one function at one spec revision.

    The scheduler never runs more than `concurrency` invocations of a function
    at once, so the pool grows on demand to at most that many replicas. Idle
    replicas are reused last-in-first-out to keep the hottest ones hot; a dead
    replica is dropped and replaced by the next acquire.

    `concurrency` is a hard limit on processes, not only on invocations: a replica
    counts until it is really gone. One abandoned by a timed-out invocation (its
    handler may still run) keeps its slot while it drains or is killed, so the next
    acquire waits for it (bounded by the caller's own timeout) instead of starting
    one more process beside it.
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
        # Acquires that passed the limit check and are starting a replica (they hold a slot).
        self._starting = 0
        self._slot_freed = asyncio.Event()
        self._retired = False

    @property
    def _limit(self) -> int:
        return max(1, self.spec.concurrency)

    def _free_slot(self) -> None:
        self._slot_freed.set()
        self._slot_freed = asyncio.Event()

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
            self._free_slot()
            if self._on_resized is not None:
                self._on_resized()

    async def _stop(self, replica: Replica, grace: float) -> None:
        """Stop, then give up the slot: only a replica that is gone frees one."""
        try:
            await asyncio.shield(replica.stop(grace=grace))
        finally:
            self._discard(replica)

    async def acquire(self, ready_timeout: float) -> Replica:
        """An idle replica, a new one if there is a free slot, else the next of either.

        The caller bounds the wait (the attempt's timeout).
        """
        while True:
            while self._idle:
                replica = self._idle.pop()
                if replica.alive():
                    return replica
                await self._stop(replica, 0.0)
            if len(self._replicas) + self._starting < self._limit:
                break
            await self._slot_freed.wait()
        self._starting += 1
        try:
            spawned = time.perf_counter()
            replica = await self._start()
            self._add(replica)
        finally:
            self._starting -= 1
            self._free_slot()  # a failed start gives its slot back; waiters re-check either way
        try:
            await replica.wait_ready(ready_timeout)
        except BaseException:
            await self._stop(replica, 0.0)
            raise
        self._ready.add(replica)
        if self._on_started is not None:
            self._on_started(self.spec.name, time.perf_counter() - spawned)
        return replica

    async def release(self, replica: Replica, *, healthy: bool) -> None:
        """Back to idle, or stopped: gracefully if it is healthy, killed at once if it is not.

        An unhealthy replica is broken or still busy with an abandoned invocation; a SIGTERM
        grace would only keep its slot (and its handler) longer.
        """
        keep = healthy and not self._retired and replica.alive()
        if keep and len(self._replicas) <= self._limit:
            self._idle.append(replica)
            self._free_slot()
            return
        await self._stop(replica, _STOP_GRACE_S if healthy else 0.0)

    async def retire(self) -> None:
        """No new work; idle replicas stop now, busy ones when they are released."""
        self._retired = True
        idle, self._idle = self._idle, []
        stops = (self._stop(replica, _STOP_GRACE_S) for replica in idle)
        await asyncio.gather(*stops, return_exceptions=True)

    async def close(self) -> None:
        self._retired = True
        replicas, self._idle = list(self._replicas), []
        self._replicas.clear()
        self._ready.clear()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(replica.stop() for replica in replicas), return_exceptions=True)
