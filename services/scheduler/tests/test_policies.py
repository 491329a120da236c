from __future__ import annotations

import random

from nanofaas_scheduler.core.execution import Execution, Request
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.store import ExecutionStore
from nanofaas_scheduler.policies.idempotency import IdempotencyIndex
from nanofaas_scheduler.policies.retry import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_retry_only_crashes_within_budget() -> None:
    policy = RetryPolicy()
    crash = Outcome(kind=OutcomeKind.CRASH)
    assert policy.should_retry(crash, attempt=1, max_retries=1)
    assert not policy.should_retry(crash, attempt=2, max_retries=1)
    assert not policy.should_retry(crash, attempt=1, max_retries=0)
    for kind in (OutcomeKind.FUNCTION_ERROR, OutcomeKind.TIMEOUT, OutcomeKind.SUCCESS):
        assert not policy.should_retry(Outcome(kind=kind), attempt=1, max_retries=5)


def test_retry_delay_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=0.5, rng=random.Random(7))
    assert 0.05 <= policy.delay(1) <= 0.1
    assert 0.1 <= policy.delay(2) <= 0.2
    assert all(0.25 <= policy.delay(n) <= 0.5 for n in range(4, 20))


def test_idempotency_entries_expire_after_ttl() -> None:
    clock = Clock()
    index = IdempotencyIndex(ttl_s=10, clock=clock)
    index.put("fn", "k", "e1")
    clock.now += 9.9
    assert index.get("fn", "k") == "e1"
    assert index.get("other", "k") is None
    clock.now += 0.2
    assert index.get("fn", "k") is None
    assert len(index) == 0


def _execution(n: int) -> Execution:
    return Execution(
        id=f"e{n}", function_name="fn", request=Request(b"null", "application/json", {}), trace_id="t"
    )


async def test_store_evicts_ended_by_ttl_and_cap_but_never_running() -> None:
    clock = Clock()
    store = ExecutionStore(ttl_s=60, max_terminal=2, clock=clock)
    running = _execution(0)
    store.add(running)
    ended = [_execution(n) for n in range(1, 4)]
    for execution in ended:
        store.add(execution)
        execution.finish(Outcome(kind=OutcomeKind.SUCCESS))
        store.ended(execution)
    assert store.get("e1") is None  # over the cap: oldest ended first
    assert store.get("e2") is not None and store.get("e3") is not None
    clock.now += 61
    assert store.evict_expired() == 2
    assert store.get("e0") is running
    assert len(store) == 1


async def test_large_outputs_are_dropped_before_their_executions() -> None:
    clock = Clock()
    store = ExecutionStore(
        ttl_s=600, max_terminal=10, clock=clock, large_output_bytes=10, large_output_ttl_s=5
    )
    small, large = _execution(1), _execution(2)
    for execution, output in ((small, b"1"), (large, b"x" * 11)):
        store.add(execution)
        execution.finish(Outcome(kind=OutcomeKind.SUCCESS, output=output))
        store.ended(execution)
    clock.now += 6
    assert store.evict_expired() == 0
    assert large.output == b"" and large.output_evicted
    assert small.output == b"1" and not small.output_evicted
    assert store.get(large.id) is large
