"""The scaler loop between a real Scheduler and backends: what it samples and what it applies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.autoscaler import Autoscaler
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind, success
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.dispatch.base import Attempt, ReplicaCounts
from nanofaas_scheduler.dispatch.local import LocalBackend
from nanofaas_scheduler.dispatch.local.process import StartError
from nanofaas_scheduler.dispatch.local.replica import Replica
from nanofaas_scheduler.dispatch.local.warm_pool import WarmPool
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.policies.autoscale import Windows

from .conftest import RecordingObserver, make_attempt, make_spec

WINDOWS = Windows(stable_s=10.0, panic_s=2.0, panic_threshold=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScaledStub(StubDispatcher):
    """Holds every attempt until released; records each scale decision."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        super().__init__(self._held)
        self.decisions: list[tuple[str, int]] = []

    async def _held(self, attempt: Attempt) -> Outcome:
        await self.release.wait()
        return success(b"1", "application/json")

    def scale(self, spec: types_pb2.FunctionSpec, desired: int) -> None:
        self.decisions.append((spec.name, desired))

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        desired = next((d for name, d in reversed(self.decisions) if name == spec.name), 0)
        return ReplicaCounts(desired, desired, desired, 0, 0)


def submission() -> Submission:
    return Submission(request=Request(b'"x"', "application/json", {}), sync=False)


def warm(name: str = "fn", **fields: Any) -> types_pb2.FunctionSpec:
    return make_spec(name, execution_mode=types_pb2.EXECUTION_MODE_WARM, **fields)


async def test_admissions_scale_up_at_once_and_ticks_scale_down_after_the_delay() -> None:
    stub, clock = ScaledStub(), Clock()
    scheduler = Scheduler(stub)
    scaler = Autoscaler(scheduler, stub, WINDOWS, clock=clock)
    scheduler.on_admit.append(scaler.admitted)
    spec = warm(concurrency=4, min_replicas=0, max_replicas=3, scale_down_delay_ms=5000)
    executions = [scheduler.submit(spec, submission())[0] for _ in range(5)]
    # Each admission was sampled as it came: 1, 2, 3 and then clamped to maxReplicas.
    assert [desired for _, desired in stub.decisions] == [1, 2, 3, 3, 3]
    stub.release.set()
    async with asyncio.timeout(10):
        for execution in executions:
            await execution.done.wait()
    stub.decisions.clear()
    for _ in range(30):  # 30 s of idle ticks
        clock.now += 1
        scaler.tick()
    timeline = [desired for _, desired in stub.decisions]
    assert timeline[0] == 3  # no drop while recent demand and the delay say otherwise
    assert timeline == sorted(timeline, reverse=True) and timeline[-1] == 0  # minReplicas 0
    assert timeline.index(0) >= 5  # not before scaleDownDelayMs


async def test_only_warm_functions_are_scaled() -> None:
    stub = ScaledStub()
    scheduler = Scheduler(stub)
    scaler = Autoscaler(scheduler, stub, WINDOWS, clock=Clock())
    scheduler.on_admit.append(scaler.admitted)
    scheduler.submit(make_spec("job"), submission())
    scaler.tick()
    assert stub.decisions == []
    stub.release.set()


class StartObserver(RecordingObserver):
    """Wakes waiters at every cold start."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

        self.resized = asyncio.Event()

    def cold_start(self, function: str, seconds: float) -> None:
        super().cold_start(function, seconds)
        self.started.set()

    def replicas_changed(self, function: str, replicas: int) -> None:
        super().replicas_changed(function, replicas)
        self.resized.set()

    async def wait_starts(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.cold_starts) < count:
                self.started.clear()
                await self.started.wait()

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Until `done()` holds, re-checked at every replica count change (bounded)."""
        async with asyncio.timeout(20):
            while not done():
                self.resized.clear()
                await self.resized.wait()


HANDLER = """
import os
def handle(request, context=None):
    return os.getpid()
"""


async def test_the_local_pool_starts_and_stops_processes_as_it_is_scaled(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    backend = LocalBackend()
    events = StartObserver()
    backend.attach(events)
    spec = warm(env={"PYTHONPATH": str(tmp_path)}, min_replicas=0, max_replicas=3)
    try:
        assert backend.replicas(spec) == ReplicaCounts(0, 0, 0, 0, 3)
        backend.scale(spec, 3)
        assert backend.replicas(spec).desired == 3
        outcomes = await asyncio.gather(
            *(backend.dispatch(make_attempt(spec, orjson.dumps(n))) for n in range(6))
        )
        assert all(outcome.kind is OutcomeKind.SUCCESS for outcome in outcomes)
        assert len({orjson.loads(outcome.output) for outcome in outcomes}) <= 3  # never above the target
        await events.wait_starts(3)  # the three were started ahead of demand
        assert backend.replicas(spec) == ReplicaCounts(3, 3, 3, 0, 3)
        assert len(events.cold_starts) == 3
        backend.scale(spec, 1)
        assert backend.replicas(spec).desired == 1
        # Idle replicas stop now; each counts until its process is gone (a hard limit on processes).
        await events.wait_until(lambda: backend.replicas(spec).current == 1)
        backend.scale(spec, 0)
        await events.wait_until(lambda: backend.replicas(spec).current == 0)
        assert backend.replicas(spec) == ReplicaCounts(0, 0, 0, 0, 3)
        # At zero, an invocation waits for the replica the next decision starts.
        pending = asyncio.ensure_future(backend.dispatch(make_attempt(spec, orjson.dumps("again"))))
        await asyncio.sleep(0)  # let it reach the pool
        assert not pending.done()
        backend.scale(spec, 1)
        outcome = await asyncio.wait_for(pending, 20)
        assert outcome.kind is OutcomeKind.SUCCESS, outcome.message
        assert len(events.cold_starts) == 4
    finally:
        await backend.close()
    backend.scale(spec, 2)  # a decision that arrives as the scheduler stops starts nothing
    assert backend.replicas(spec) == ReplicaCounts(0, 0, 0, 0, 3)


async def test_replicas_that_fail_to_start_are_not_restarted_at_every_decision() -> None:
    starts = 0

    async def broken() -> Replica:
        nonlocal starts
        starts += 1
        raise StartError("exited with code 1: ModuleNotFoundError")

    pool = WarmPool(warm(), broken)
    pool.scale_to(2)
    await asyncio.gather(*pool._starting)  # the two starts ahead of demand, both failed
    assert starts == 2
    for _ in range(10):  # the next decisions, within the back-off
        pool.scale_to(2)
    assert not pool._starting and starts == 2
    # An invocation still tries (and reports why it cannot run).
    with pytest.raises(StartError, match="ModuleNotFoundError"):
        await pool.acquire(1.0)
    assert starts == 3
    await pool.close()
