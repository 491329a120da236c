"""Admission policies: rate limit, estimated wait, and their wiring in the scheduler."""

from __future__ import annotations

import asyncio

import pytest

from nanofaas_scheduler.core.errors import Rejected
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.policies.rate_limit import TokenBucket
from nanofaas_scheduler.policies.wait_estimate import WaitEstimator

from .conftest import make_spec


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, clock=clock, burst=2)
    assert bucket.try_take() and bucket.try_take()
    assert not bucket.try_take()
    assert bucket.retry_after_s() == 1
    clock.now += 0.5
    assert bucket.try_take()
    assert not bucket.try_take()
    clock.now += 10
    assert [bucket.try_take() for _ in range(3)] == [True, True, False]


def test_wait_estimate_from_recent_durations() -> None:
    estimator = WaitEstimator(window=4)
    assert estimator.estimate_s(queued=100, inflight=4, concurrency=4) == 0.0  # no samples, no guess
    for duration in (1.0, 1.0, 3.0, 3.0):
        estimator.record(duration)
    assert estimator.mean_s == 2.0
    assert estimator.estimate_s(queued=0, inflight=1, concurrency=2) == 0.0  # a slot is free
    assert estimator.estimate_s(queued=0, inflight=2, concurrency=2) == 2.0
    assert estimator.estimate_s(queued=3, inflight=2, concurrency=2) == 4.0
    estimator.record(10.0)  # the window slides: 1.0 drops out
    assert estimator.mean_s == pytest.approx(17 / 4)
    assert estimator.retry_after_s(concurrency=2) == 3


def submission(sync: bool, timeout_ms: int | None = None, data: bytes = b"1") -> Submission:
    return Submission(request=Request(data, "application/json", {}), sync=sync, timeout_ms=timeout_ms)


async def test_sync_call_that_cannot_finish_in_time_is_rejected_early() -> None:
    release = asyncio.Event()

    async def slow(attempt: Attempt) -> Outcome:
        if attempt.request.data == b'"measured"':
            await asyncio.sleep(0.5)  # the function's duration the estimate learns from
        else:
            await release.wait()
        return Outcome(kind=OutcomeKind.SUCCESS, output=b"1")

    scheduler = Scheduler(StubDispatcher(slow))
    spec = make_spec(concurrency=1)
    measured, _ = scheduler.submit(spec, submission(sync=False, data=b'"measured"'))
    await measured.done.wait()
    running, _ = scheduler.submit(spec, submission(sync=False))
    with pytest.raises(Rejected) as rejected:
        scheduler.submit(spec, submission(sync=True, timeout_ms=200))
    assert rejected.value.reason == "estimated_wait"
    assert rejected.value.retry_after_s >= 1
    queued, _ = scheduler.submit(spec, submission(sync=True, timeout_ms=20_000))  # ~0.5 s fits in 20 s
    scheduler.submit(spec, submission(sync=False))  # async work is never rejected on the estimate
    release.set()
    await asyncio.gather(running.done.wait(), queued.done.wait())


async def test_global_rate_limit_rejects_with_reason() -> None:
    scheduler = Scheduler(StubDispatcher(), max_per_second=2)
    spec = make_spec()
    results = []
    for _ in range(3):
        try:
            results.append(scheduler.submit(spec, submission(sync=False))[0])
        except Rejected as exc:
            assert exc.reason == "rate"
            assert exc.retry_after_s >= 1
            break
    else:
        raise AssertionError("the third admission within a second should be rejected")
    assert len(results) == 2
    await asyncio.gather(*(e.done.wait() for e in results))


async def test_function_rate_limit_applies_per_function_and_follows_updates() -> None:
    scheduler = Scheduler(StubDispatcher())
    limited = make_spec("limited", rate_limit_per_second=1)
    first, _ = scheduler.submit(limited, submission(sync=False))
    with pytest.raises(Rejected) as rejected:
        scheduler.submit(limited, submission(sync=False))
    assert rejected.value.reason == "rate"
    assert "1 invocations per second" in str(rejected.value)
    other, _ = scheduler.submit(make_spec("other"), submission(sync=False))  # unaffected
    await scheduler.function_changed("limited", make_spec("limited", revision=2))  # limit removed
    again, _ = scheduler.submit(limited, submission(sync=False))
    await asyncio.gather(first.done.wait(), other.done.wait(), again.done.wait())
