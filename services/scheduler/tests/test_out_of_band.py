"""Attempts completed from outside dispatch(): a runtime's report, fenced by attempt number.

The reported outcome must take the same path as an in-band one (retries,
metrics, tracing), end what the backend started, and a stale or duplicate
report must change nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

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
    assert scheduler.complete(attempt.execution_id, attempt.number, success(b'{"done":true}')) is True
    await asyncio.wait_for(execution.done.wait(), WAIT_S)
    assert execution.state is State.SUCCESS and execution.output == b'{"done":true}'
    assert backend.stopped == [1]
    assert scheduler.complete(attempt.execution_id, attempt.number, success(b"2")) is False  # duplicate


async def test_a_reported_crash_is_retried_like_an_in_band_one() -> None:
    backend = AwaitsReport(in_band={2: success(b'"second"')})
    scheduler, stub = build(backend)
    execution = submit(scheduler, max_retries=3)
    first = await backend.next_attempt()
    assert scheduler.complete(first.execution_id, 1, crash("pod evicted")) is True
    second = await backend.next_attempt()
    assert second.number == 2
    # A late report of the first attempt is stale: ignored, the second goes on.
    assert scheduler.complete(first.execution_id, 1, success(b'"stale"')) is False
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
    assert scheduler.complete(attempt.execution_id, 7, success(b"1")) is False
    assert execution.state is State.RUNNING
    assert scheduler.complete(attempt.execution_id, 0, success(b"3")) is True  # unfenced: the current one
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
    scheduler.complete(attempt.execution_id, attempt.number, crash("node lost"))
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
