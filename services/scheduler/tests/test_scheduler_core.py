"""The scheduler core against a scripted dispatcher: no processes, real event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from nanofaas_scheduler.core.errors import Rejected, ShuttingDown
from nanofaas_scheduler.core.execution import Request, State
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.policies.retry import RetryPolicy

from .conftest import make_spec

OK = Outcome(kind=OutcomeKind.SUCCESS, output=b"1")
CRASH = Outcome(kind=OutcomeKind.CRASH, error_code="CRASH", message="died")
FAIL = Outcome(kind=OutcomeKind.FUNCTION_ERROR, error_code="FUNCTION_ERROR", message="boom")


def submission(sync: bool = False, **kwargs: object) -> Submission:
    return Submission(request=Request(b'"x"', "application/json", {}), sync=sync, **kwargs)  # type: ignore[arg-type]


class Gate:
    """A dispatcher behaviour whose attempts block until released, recording concurrency."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.order: list[str] = []
        self.started = asyncio.Condition()

    async def __call__(self, attempt: Attempt) -> Outcome:
        self.order.append(attempt.execution_id)
        self.running += 1
        self.peak = max(self.peak, self.running)
        async with self.started:
            self.started.notify_all()
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return OK

    async def wait_running(self, n: int) -> None:
        async with self.started:
            await self.started.wait_for(lambda: self.running >= n)


def scripted(*outcomes: Outcome) -> Callable[[Attempt], asyncio.Future[Outcome]]:
    queue = list(outcomes)

    async def behaviour(attempt: Attempt) -> Outcome:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return behaviour  # type: ignore[return-value]


def no_backoff() -> RetryPolicy:
    return RetryPolicy(base_delay_s=0.0, max_delay_s=0.0)


async def test_concurrency_is_never_exceeded_and_order_is_fifo() -> None:
    gate = Gate()
    scheduler = Scheduler(StubDispatcher(gate))
    spec = make_spec(concurrency=2)
    executions = [scheduler.submit(spec, submission())[0] for _ in range(6)]
    await gate.wait_running(2)
    assert scheduler.inflight("fn") == 2
    assert scheduler.queue_depth("fn") == 4
    gate.release.set()
    await asyncio.gather(*(e.done.wait() for e in executions))
    assert gate.peak == 2
    assert gate.order == [e.id for e in executions]
    assert all(e.state is State.SUCCESS for e in executions)


async def test_full_queue_is_rejected_with_reason() -> None:
    gate = Gate()
    scheduler = Scheduler(StubDispatcher(gate))
    spec = make_spec(concurrency=1, queue_size=2)
    first = scheduler.submit(spec, submission())[0]
    await gate.wait_running(1)
    scheduler.submit(spec, submission())
    scheduler.submit(spec, submission())
    with pytest.raises(Rejected) as rejected:
        scheduler.submit(spec, submission())
    assert rejected.value.reason == "depth"
    assert rejected.value.retry_after_s >= 1
    gate.release.set()
    await first.done.wait()


async def test_crash_is_retried_until_success() -> None:
    stub = StubDispatcher(scripted(CRASH, CRASH, OK))
    scheduler = Scheduler(stub, retry=no_backoff())
    execution, _ = scheduler.submit(make_spec(max_retries=3), submission())
    await execution.done.wait()
    assert execution.state is State.SUCCESS
    assert execution.attempts == 3
    assert [a.number for a in stub.attempts] == [1, 2, 3]


async def test_retries_stop_at_max_retries() -> None:
    stub = StubDispatcher(scripted(CRASH))
    scheduler = Scheduler(stub, retry=no_backoff())
    execution, _ = scheduler.submit(make_spec(max_retries=2), submission())
    await execution.done.wait()
    assert execution.state is State.ERROR
    assert execution.attempts == 3
    assert execution.error_code == "CRASH"


async def test_function_error_is_never_retried() -> None:
    stub = StubDispatcher(scripted(FAIL, OK))
    scheduler = Scheduler(stub, retry=no_backoff())
    execution, _ = scheduler.submit(make_spec(max_retries=3), submission())
    await execution.done.wait()
    assert execution.state is State.ERROR
    assert execution.error_code == "FUNCTION_ERROR"
    assert execution.error_message == "boom"
    assert execution.attempts == 1


async def test_timeout_is_reported_and_not_retried() -> None:
    async def hang(attempt: Attempt) -> Outcome:
        await asyncio.sleep(attempt.timeout)
        return Outcome(kind=OutcomeKind.TIMEOUT, error_code="TIMEOUT", message="late")

    stub = StubDispatcher(hang)
    scheduler = Scheduler(stub, retry=no_backoff())
    execution, _ = scheduler.submit(make_spec(timeout_ms=20, max_retries=3), submission())
    await execution.done.wait()
    assert execution.state is State.TIMEOUT
    assert execution.attempts == 1


async def test_caller_timeout_only_lowers_the_function_timeout() -> None:
    stub = StubDispatcher()
    scheduler = Scheduler(stub)
    lowered, _ = scheduler.submit(make_spec(timeout_ms=5000), submission(timeout_ms=100))
    capped, _ = scheduler.submit(make_spec(timeout_ms=200), submission(timeout_ms=100_000))
    await asyncio.gather(lowered.done.wait(), capped.done.wait())
    assert lowered.timeout_ms == 100
    assert capped.timeout_ms == 200


async def test_same_idempotency_key_runs_once() -> None:
    stub = StubDispatcher()
    scheduler = Scheduler(stub)
    spec = make_spec()
    first, created_first = scheduler.submit(spec, submission(idempotency_key="k"))
    second, created_second = scheduler.submit(spec, submission(idempotency_key="k"))
    other_fn, _ = scheduler.submit(make_spec("other"), submission(idempotency_key="k"))
    await asyncio.gather(first.done.wait(), other_fn.done.wait())
    third, _ = scheduler.submit(spec, submission(idempotency_key="k"))
    assert (created_first, created_second) == (True, False)
    assert first is second is third
    assert other_fn is not first
    assert len(stub.attempts) == 2


async def test_sync_deadline_expires_in_queue_without_dispatch() -> None:
    gate = Gate()
    stub = StubDispatcher(gate)
    scheduler = Scheduler(stub)
    spec = make_spec(concurrency=1)
    blocker, _ = scheduler.submit(spec, submission())
    await gate.wait_running(1)
    waiting, _ = scheduler.submit(spec, submission(sync=True, timeout_ms=10))
    await waiting.done.wait()
    assert waiting.state is State.TIMEOUT
    assert waiting.attempts == 0
    assert scheduler.queue_depth("fn") == 0
    gate.release.set()
    await blocker.done.wait()
    assert len(stub.attempts) == 1


async def test_delete_ends_queued_work_and_lets_inflight_finish() -> None:
    gate = Gate()
    stub = StubDispatcher(gate)
    scheduler = Scheduler(stub)
    spec = make_spec(concurrency=1)
    running, _ = scheduler.submit(spec, submission())
    await gate.wait_running(1)
    queued, _ = scheduler.submit(spec, submission())
    await scheduler.function_changed("fn", None)
    assert queued.state is State.ERROR
    assert queued.error_code == "FUNCTION_DELETED"
    assert stub.removed == ["fn"]
    gate.release.set()
    await running.done.wait()
    assert running.state is State.SUCCESS


async def test_update_raises_concurrency_for_queued_work() -> None:
    gate = Gate()
    scheduler = Scheduler(StubDispatcher(gate))
    executions = [scheduler.submit(make_spec(concurrency=1), submission())[0] for _ in range(3)]
    await gate.wait_running(1)
    await scheduler.function_changed("fn", make_spec(concurrency=3, revision=2))
    await gate.wait_running(3)
    gate.release.set()
    await asyncio.gather(*(e.done.wait() for e in executions))


async def test_external_completion_wins_once() -> None:
    gate = Gate()
    scheduler = Scheduler(StubDispatcher(gate))
    spec = make_spec(concurrency=1)
    running, _ = scheduler.submit(spec, submission())
    queued, _ = scheduler.submit(spec, submission())
    await gate.wait_running(1)
    # Without a completion token only an operator (API authentication on) may end it.
    assert scheduler.complete(queued.id, 0, Outcome(kind=OutcomeKind.SUCCESS, output=b"42"), operator=True)
    assert queued.state is State.SUCCESS and queued.output == b"42"
    assert scheduler.complete(queued.id, 0, FAIL, operator=True) is False  # already ended: ignored
    assert queued.state is State.SUCCESS
    assert scheduler.complete("missing", 0, OK, operator=True) is None
    gate.release.set()
    await running.done.wait()
    assert gate.order == [running.id]


async def test_shutdown_ends_queued_work_and_refuses_new() -> None:
    gate = Gate()
    scheduler = Scheduler(StubDispatcher(gate))
    spec = make_spec(concurrency=1)
    running, _ = scheduler.submit(spec, submission())
    await gate.wait_running(1)
    queued, _ = scheduler.submit(spec, submission())
    shutdown = asyncio.create_task(scheduler.shutdown(grace_s=5))
    await queued.done.wait()
    assert queued.error_code == "SHUTTING_DOWN"
    with pytest.raises(ShuttingDown):
        scheduler.submit(spec, submission())
    gate.release.set()
    await shutdown
    assert running.state is State.SUCCESS


async def test_shutdown_grace_expiry_ends_inflight_work() -> None:
    gate = Gate()
    scheduler = Scheduler(StubDispatcher(gate))
    running, _ = scheduler.submit(make_spec(), submission())
    await gate.wait_running(1)
    await scheduler.shutdown(grace_s=0.01)
    assert running.state is State.ERROR
    assert running.error_code == "SHUTTING_DOWN"


async def test_cancelled_sync_caller_removes_queued_item() -> None:
    gate = Gate()
    stub = StubDispatcher(gate)
    scheduler = Scheduler(stub)
    spec = make_spec(concurrency=1)
    running, _ = scheduler.submit(spec, submission())
    await gate.wait_running(1)
    queued, _ = scheduler.submit(spec, submission(sync=True))
    assert scheduler.cancel_queued(queued)
    assert queued.state is State.ERROR and queued.error_code == "CANCELLED"
    assert not scheduler.cancel_queued(running)
    gate.release.set()
    await running.done.wait()
    assert len(stub.attempts) == 1
