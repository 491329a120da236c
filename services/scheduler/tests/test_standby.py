"""JOB standbys: taken once, replaced at once, stopped when idle or dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import cast

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.dispatch.local.replica import Replica
from nanofaas_scheduler.dispatch.local.standby import Standbys

from .conftest import make_spec


class FakeReplica:
    def __init__(self, n: int) -> None:
        self.n = n
        self.stopped = asyncio.Event()

    def alive(self) -> bool:
        return not self.stopped.is_set()

    async def wait_ready(self, timeout: float) -> None:
        return None

    async def stop(self, grace: float = 1.0) -> None:
        self.stopped.set()


class Harness:
    def __init__(self, idle_s: float = 60.0) -> None:
        self.started: list[FakeReplica] = []
        self.any_started = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.standbys = Standbys(self.start, self.track, idle_s=idle_s)

    async def start(self, spec: types_pb2.FunctionSpec) -> Replica:
        replica = FakeReplica(len(self.started))
        self.started.append(replica)
        self.any_started.set()
        return cast(Replica, replica)

    def track(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)


async def test_each_standby_is_taken_once_and_replaced() -> None:
    harness = Harness()
    spec = make_spec()
    assert await harness.standbys.take(spec) is None  # nothing ready yet; #0 starts for the next call
    first = await harness.standbys.take(spec)  # takes #0, starts #1
    second = await harness.standbys.take(spec)  # takes #1, starts #2
    assert [cast(FakeReplica, r).n for r in (first, second)] == [0, 1]
    assert not any(r.stopped.is_set() for r in harness.started)  # taken ones are the caller's
    await harness.standbys.close()
    assert all(r.stopped.is_set() for r in harness.started[2:])  # a standby left over is stopped


async def test_a_new_revision_never_gets_the_old_standby() -> None:
    harness = Harness()
    await harness.standbys.take(make_spec(revision=1))
    assert await harness.standbys.take(make_spec(revision=2)) is None
    await asyncio.wait_for(asyncio.gather(*harness.tasks), 5)
    assert harness.started[0].stopped.is_set()
    await harness.standbys.close()


async def test_idle_standby_is_stopped() -> None:
    harness = Harness(idle_s=0.05)
    await harness.standbys.take(make_spec())
    await asyncio.wait_for(harness.any_started.wait(), 5)
    await asyncio.wait_for(harness.started[0].stopped.wait(), 5)
    assert await harness.standbys.take(make_spec()) is None  # expired: the next call starts cold
    await harness.standbys.close()
