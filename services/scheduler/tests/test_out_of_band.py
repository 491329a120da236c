"""Attempts completed from outside dispatch(): a runtime's report, fenced by attempt number.

The reported outcome must take the same path as an in-band one (retries,
metrics, tracing), end what the backend started, and a stale or duplicate
report must change nothing. A report counts only with the completion token of
the attempt it names (finding 2 of issue 17: an execution id is no credential).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from nanofaas_scheduler.core.errors import CompletionRefused
from nanofaas_scheduler.core.execution import Execution, Request, State
from nanofaas_scheduler.core.outcome import Outcome, crash, success
from nanofaas_scheduler.core.reports import ReportBoard
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.out_of_band import OutOfBandCompletion
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.observability.metrics import MeteredDispatcher, SchedulerMetrics
from nanofaas_scheduler.observability.tracing import TracingDispatcher, make_provider
from nanofaas_scheduler.policies.retry import RetryPolicy

from .conftest import make_attempt, make_spec

WAIT_S = 10.0


class AwaitsReport:
    """A backend like a Kubernetes Job's: it starts the attempt and waits until stopped."""

    def __init__(self, in_band: dict[int, Outcome] | None = None) -> None:
        self.started: asyncio.Queue[Attempt] = asyncio.Queue()
        self.stopped: list[int] = []
        self._in_band = in_band or {}
        self._release = asyncio.Event()

    async def __call__(self, attempt: Attempt) -> Outcome:
        await self.started.put(attempt)
        if attempt.number in self._in_band:
            await self._release.wait()
            return self._in_band[attempt.number]
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopped.append(attempt.number)  # what it started is cleaned up here
            raise
        raise AssertionError("unreachable")

    def release(self) -> None:
        self._release.set()

    async def next_attempt(self) -> Attempt:
        return await asyncio.wait_for(self.started.get(), WAIT_S)


def build(behaviour: AwaitsReport) -> tuple[Scheduler, StubDispatcher]:
    reports = ReportBoard()
    stub = StubDispatcher(behaviour)
    scheduler = Scheduler(
        OutOfBandCompletion(stub, reports), reports=reports, retry=RetryPolicy(base_delay_s=0, max_delay_s=0)
    )
    return scheduler, stub


def submit(scheduler: Scheduler, **spec: Any) -> Execution:
    execution, _ = scheduler.submit(
        make_spec(**spec), Submission(request=Request(b"1", "application/json", {}), sync=False)
    )
    return execution


async def test_a_report_ends_the_running_attempt_and_stops_what_it_started() -> None:
    backend = AwaitsReport()
    scheduler, _ = build(backend)
    execution = submit(scheduler)
    attempt = await backend.next_attempt()
    token = attempt.completion_token
    assert scheduler.complete(attempt.execution_id, attempt.number, success(b'{"done":true}'), token) is True
    await asyncio.wait_for(execution.done.wait(), WAIT_S)
    assert execution.state is State.SUCCESS and execution.output == b'{"done":true}'
    assert backend.stopped == [1]
    # The owner repeating itself is answered alike, without effect.
    assert scheduler.complete(attempt.execution_id, attempt.number, success(b"2"), token) is False
    assert scheduler.complete(attempt.execution_id, 0, success(b"2"), token) is False


async def test_a_reported_crash_is_retried_like_an_in_band_one() -> None:
    backend = AwaitsReport(in_band={2: success(b'"second"')})
    scheduler, stub = build(backend)
    execution = submit(scheduler, max_retries=3)
    first = await backend.next_attempt()
    assert scheduler.complete(first.execution_id, 1, crash("pod evicted"), first.completion_token) is True
    second = await backend.next_attempt()
    assert second.number == 2
    assert second.completion_token != first.completion_token
    # A late report of the first attempt is stale: ignored, the second goes on.
    assert scheduler.complete(first.execution_id, 1, success(b'"stale"'), first.completion_token) is False
    assert scheduler.complete(first.execution_id, 0, success(b'"stale"'), first.completion_token) is False
    # The first attempt's token does not speak for the second.
    with pytest.raises(CompletionRefused) as refused:
        scheduler.complete(first.execution_id, 2, success(b'"forged"'), first.completion_token)
    assert refused.value.authenticated
    backend.release()
    await asyncio.wait_for(execution.done.wait(), WAIT_S)
    assert execution.output == b'"second"'
    assert execution.attempts == 2
    assert [a.number for a in stub.attempts] == [1, 2]


async def test_a_report_naming_a_future_attempt_is_ignored() -> None:
    backend = AwaitsReport()
    scheduler, _ = build(backend)
    execution = submit(scheduler)
    attempt = await backend.next_attempt()
    with pytest.raises(CompletionRefused):  # no attempt 7 has this token
        scheduler.complete(attempt.execution_id, 7, success(b"1"), attempt.completion_token)
    assert scheduler.complete(attempt.execution_id, 7, success(b"1"), operator=True) is False
    assert execution.state is State.RUNNING
    # Attempt 0: the attempt the token belongs to.
    assert scheduler.complete(attempt.execution_id, 0, success(b"3"), attempt.completion_token) is True
    await asyncio.wait_for(execution.done.wait(), WAIT_S)
    assert execution.output == b"3"


async def test_metrics_and_tracing_see_the_reported_outcome() -> None:
    backend = AwaitsReport()
    reports = ReportBoard()
    metrics = SchedulerMetrics(CollectorRegistry())
    exporter = InMemorySpanExporter()
    provider = make_provider(exporter)
    chain = TracingDispatcher(
        MeteredDispatcher(OutOfBandCompletion(StubDispatcher(backend), reports), metrics),
        provider.get_tracer("test"),
    )
    scheduler = Scheduler(chain, reports=reports)
    execution = submit(scheduler, max_retries=0)
    attempt = await backend.next_attempt()
    scheduler.complete(attempt.execution_id, attempt.number, crash("node lost"), attempt.completion_token)
    await asyncio.wait_for(execution.done.wait(), WAIT_S)
    assert metrics.registry.get_sample_value("function_dispatch_total", {"function": "fn"}) == 1
    assert metrics.registry.get_sample_value("function_execution_seconds_count", {"function": "fn"}) == 1
    provider.force_flush()
    (dispatch,) = [span for span in exporter.get_finished_spans() if span.name == "dispatch"]
    assert dispatch.attributes is not None and dispatch.attributes["nanofaas.outcome"] == "crash"


async def test_a_cancelled_caller_is_not_mistaken_for_a_report() -> None:
    """Cancelling the attempt from outside (a deadline) stops the backend and propagates."""
    backend = AwaitsReport()
    reports = ReportBoard()
    wrapper = OutOfBandCompletion(StubDispatcher(backend), reports)
    task = asyncio.ensure_future(wrapper.dispatch(make_attempt(make_spec(), execution_id="e-1")))
    await backend.next_attempt()
    assert reports.current("e-1") == 1
    task.cancel()
    await asyncio.wait({task}, timeout=WAIT_S)
    assert task.cancelled()
    assert backend.stopped == [1]
    assert reports.current("e-1") == 0  # the slot is closed: a late report is stale
    assert reports.report("e-1", 1, success(b"1")) is False


async def test_a_report_without_the_attempts_token_is_refused_and_changes_nothing() -> None:
    """Finding 2: knowing the execution id (it leaks through headers, logs, callbacks) is not enough."""
    backend = AwaitsReport(in_band={1: success(b'"real"')})
    scheduler, _ = build(backend)
    execution = submit(scheduler)
    attempt = await backend.next_attempt()
    forged = success(b'{"forged":true}')
    with pytest.raises(CompletionRefused) as missing:
        scheduler.complete(attempt.execution_id, attempt.number, forged)
    assert not missing.value.authenticated
    real = attempt.completion_token
    one_off = real[:-1] + ("B" if real[-1] == "A" else "A")  # differs in its last character only
    for token in ("x", one_off, "\udcff", real + "="):
        with pytest.raises(CompletionRefused) as wrong:
            scheduler.complete(attempt.execution_id, attempt.number, forged, token)
        assert wrong.value.authenticated
        assert len(token) == 1 or token not in str(wrong.value)
    assert execution.state is State.RUNNING
    backend.release()
    await asyncio.wait_for(execution.done.wait(), WAIT_S)
    assert execution.output == b'"real"'


async def test_tokens_are_per_attempt_unguessable_and_never_in_a_repr() -> None:
    backend = AwaitsReport()
    scheduler, _ = build(backend)
    first, second = submit(scheduler), submit(scheduler)
    a, b = await backend.next_attempt(), await backend.next_attempt()
    assert {a.execution_id, b.execution_id} == {first.id, second.id}
    assert a.completion_token != b.completion_token
    assert len(a.completion_token) >= 43  # 256 bits, URL-safe base64
    assert a.completion_token not in repr(a)
    with pytest.raises(CompletionRefused):
        scheduler.complete(b.execution_id, 0, success(b"1"), a.completion_token)
