"""WARM mode on this machine: long-lived runtime servers reused across invocations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.dispatch.local.replica import Replica

log = logging.getLogger(__name__)

# How long a healthy replica the pool no longer needs gets to stop on SIGTERM.
_STOP_GRACE_S = 1.0
# After a replica started ahead of demand fails, how long until the next such start (doubling).
_PREWARM_BACKOFF_S = (1.0, 60.0)


class WarmPool:
    """The replicas of one function at one spec revision.

    A replica serves one invocation at a time. Until the autoscaler sets a
    target, the pool grows on demand to `concurrency` replicas (the most the
    scheduler ever runs at once); with a target (scale_to), it starts or stops
    replicas to match it, and an acquire that finds every replica busy waits
    for one to be released or started rather than exceeding the target. Idle
    replicas are reused last-in-first-out to keep the hottest ones hot, and the
    coldest go first when it shrinks; a dead replica is dropped and replaced.

    The limit is a hard limit on processes, not only on invocations: a replica
    counts until it is really gone. One abandoned by a timed-out invocation (its
    handler may still run), or stopping because the pool shrinks, keeps its slot
    while it drains or is killed, so the next acquire waits for it (bounded by
    the caller's own timeout) instead of starting one more process beside it.
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
        self._launching = 0  # replicas being spawned, not yet in _replicas
        self.target: int | None = None  # None: grow on demand up to concurrency
        self._changed = asyncio.Event()  # set (and replaced) when a replica frees up or the target grows
        self._starting: set[asyncio.Task[None]] = set()  # replicas started ahead of demand
        self._stopping: set[asyncio.Task[None]] = set()  # idle replicas beyond the target, stopping
        self._leaving: set[Replica] = set()  # those replicas (they count until they are gone)
        # A function whose replicas fail to start is not restarted at every decision (a crash
        # loop): starts ahead of demand back off; an invocation's own start still reports why.
        self._backoff_s = 0.0
        self._no_prewarm_until = 0.0

    @property
    def limit(self) -> int:
        return self.target if self.target is not None else max(1, self.spec.concurrency)

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
        self._leaving.discard(replica)
        if replica in self._replicas:
            self._replicas.discard(replica)
            self._signal()  # a slot is free
            if self._on_resized is not None:
                self._on_resized()

    async def _stop(self, replica: Replica, grace: float) -> None:
        """Stop, then give up the slot: only a replica that is gone frees one."""
        try:
            await asyncio.shield(replica.stop(grace=grace))
        finally:
            self._discard(replica)

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def take_idle(self) -> Replica | None:
        """An idle live replica at once, else None (then `acquire`, which also clears dead ones)."""
        if self._idle and self._idle[-1].alive():
            return self._idle.pop()
        return None

    async def acquire(self, ready_timeout: float) -> Replica:
        """An idle replica, a new one if the pool is below its limit, else the next one freed."""
        while True:
            while self._idle:
                replica = self._idle.pop()
                if replica.alive():
                    return replica
                await self._stop(replica, 0.0)
            if self._planned < self.limit:
                return await self._start_ready(ready_timeout)
            await self._changed.wait()

    @property
    def _planned(self) -> int:
        return len(self._replicas) + self._launching

    async def _start_ready(self, ready_timeout: float) -> Replica:
        spawned = time.perf_counter()
        self._launching += 1
        try:
            replica = await self._start()
        except BaseException:
            self._launching -= 1
            self._signal()  # the slot it held is free again
            raise
        self._launching -= 1
        self._add(replica)
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
        if keep and len(self._replicas) - len(self._leaving) <= self.limit:
            self._idle.append(replica)
            self._signal()
            return
        await self._stop(replica, _STOP_GRACE_S if healthy else 0.0)

    def scale_to(self, target: int) -> None:
        """Aim for `target` replicas: start the missing ones now, stop idle ones beyond it.

        Busy replicas beyond the target stop when they are released.
        """
        if self._retired:
            return
        grew = self.target is None or target > self.target
        self.target = target
        excess = len(self._replicas) - len(self._leaving) - target
        while excess > 0 and self._idle:
            replica = self._idle.pop(0)  # the coldest
            self._leaving.add(replica)
            stop = asyncio.ensure_future(self._stop(replica, _STOP_GRACE_S))
            self._stopping.add(stop)
            stop.add_done_callback(self._stopping.discard)
            excess -= 1
        backing_off = asyncio.get_running_loop().time() < self._no_prewarm_until
        for _ in range(0 if backing_off else target - self._planned):
            task = asyncio.ensure_future(self._prewarm())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        if grew:  # waiting acquires may start replicas themselves now
            self._signal()

    async def _prewarm(self) -> None:
        try:
            replica = await self._start_ready(max(self.spec.timeout_ms / 1000, 1.0))
        except Exception as exc:
            first, most = _PREWARM_BACKOFF_S
            self._backoff_s = min(max(first, self._backoff_s * 2), most)
            self._no_prewarm_until = asyncio.get_running_loop().time() + self._backoff_s
            log.warning(
                "could not start a replica",
                extra={"function": self.spec.name, "error": str(exc), "retry_in_s": self._backoff_s},
            )
            return
        self._backoff_s = 0.0
        await self.release(replica, healthy=True)

    async def retire(self) -> None:
        """No new work; idle replicas stop now, busy ones when they are released."""
        self._retired = True
        idle, self._idle = self._idle, []
        stops = (self._stop(replica, _STOP_GRACE_S) for replica in idle)
        await asyncio.gather(*stops, return_exceptions=True)

    async def close(self) -> None:
        self._retired = True
        for task in self._starting:
            task.cancel()
        await asyncio.gather(*self._starting, *self._stopping, return_exceptions=True)
        replicas, self._idle = list(self._replicas), []
        self._replicas.clear()
        self._ready.clear()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(replica.stop() for replica in replicas), return_exceptions=True)
