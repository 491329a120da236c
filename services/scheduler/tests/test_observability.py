"""Metrics and tracing of the scheduler, fed by a known sequence of executions."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import get_current_span
from prometheus_client import CollectorRegistry

from nanofaas_scheduler.core.errors import Rejected
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.observability.metrics import (
    BackendMetrics,
    LaneGauges,
    MeteredDispatcher,
    SchedulerMetrics,
)
from nanofaas_scheduler.observability.tracing import (
    QUEUE_WAIT_ATTRIBUTE,
    ColdStartMarker,
    TracingDispatcher,
    make_provider,
    parse_traceparent,
    rpc_span,
)
from nanofaas_scheduler.policies.retry import RetryPolicy

from .conftest import make_spec

OUTCOMES = {
    "ok": Outcome(kind=OutcomeKind.SUCCESS, output=b"1"),
    "fail": Outcome(kind=OutcomeKind.FUNCTION_ERROR, error_code="FUNCTION_ERROR", message="boom"),
    "late": Outcome(kind=OutcomeKind.TIMEOUT, error_code="TIMEOUT"),
    "crash": Outcome(kind=OutcomeKind.CRASH, error_code="CRASH"),
}


async def scripted(attempt: Attempt) -> Outcome:
    """The input names the outcome; "flaky" crashes on its first attempt only."""
    word = attempt.request.data.decode().strip('"')
    if word == "flaky":
        return OUTCOMES["crash"] if attempt.number == 1 else OUTCOMES["ok"]
    return OUTCOMES[word]


def submission(word: str) -> Submission:
    return Submission(request=Request(f'"{word}"'.encode(), "application/json", {}), sync=False)


async def test_counters_and_histograms_match_what_happened() -> None:
    registry = CollectorRegistry()
    metrics = SchedulerMetrics(registry)
    scheduler = Scheduler(
        MeteredDispatcher(StubDispatcher(scripted), metrics), retry=RetryPolicy(base_delay_s=0, max_delay_s=0)
    )
    scheduler.on_admit.append(metrics.admitted)
    scheduler.on_reject.append(metrics.refused)
    scheduler.on_end.append(metrics.ended)
    registry.register(LaneGauges(scheduler.lane_stats, lambda name: 3))
    spec = make_spec(queue_size=5)
    executions = [scheduler.submit(spec, submission(w))[0] for w in ("ok", "ok", "fail", "late", "flaky")]
    with pytest.raises(Rejected):
        scheduler.submit(make_spec("tiny", queue_size=1, concurrency=1, revision=1), submission("ok"))
        scheduler.submit(make_spec("tiny", queue_size=1, concurrency=1, revision=1), submission("ok"))
        scheduler.submit(make_spec("tiny", queue_size=1, concurrency=1, revision=1), submission("ok"))
    await asyncio.gather(*(e.done.wait() for e in executions))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"function": "fn", **labels})

    assert value("function_enqueue_total") == 5
    assert value("function_dispatch_total") == 6  # the flaky one twice
    assert value("function_retry_total") == 1
    assert value("function_success_total") == 3
    assert value("function_error_total") == 1
    assert value("function_timeout_total") == 1
    assert value("function_latency_seconds_count") == 5
    assert value("function_queue_wait_seconds_count") == 5
    assert value("function_execution_seconds_count") == 6
    assert registry.get_sample_value("function_rejected_total", {"function": "tiny", "reason": "depth"}) == 1
    assert value("function_queue_depth") == 0
    assert value("function_inflight") == 0
    assert value("function_warm_pool_size") == 3

    BackendMetrics(metrics).cold_start("fn", 0.08)
    assert value("function_cold_start_seconds_count") == 1
    metrics.forget("fn")
    metrics.forget("tiny")
    assert value("function_enqueue_total") is None
    assert (
        registry.get_sample_value("function_rejected_total", {"function": "tiny", "reason": "depth"}) is None
    )


async def test_spans_form_one_trace_under_the_callers_span() -> None:
    exporter = InMemorySpanExporter()
    provider = make_provider(exporter)
    seen: list[Attempt] = []

    async def record(attempt: Attempt) -> Outcome:
        seen.append(attempt)
        ColdStartMarker().cold_start(attempt.spec.name, 0.05)
        return OUTCOMES["ok"] if attempt.number > 1 else OUTCOMES["crash"]

    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier)
    scheduler = Scheduler(
        TracingDispatcher(StubDispatcher(record), tracer), retry=RetryPolicy(base_delay_s=0, max_delay_s=0)
    )
    scheduler.otel_trace_ids = True
    execution, _ = scheduler.submit(
        make_spec(),
        Submission(
            request=Request(b"1", "application/json", {}), sync=False, traceparent=carrier["traceparent"]
        ),
    )
    await execution.done.wait()
    provider.force_flush()
    spans = {span.name: span for span in exporter.get_finished_spans() if span.name != "caller"}
    dispatches = [span for span in exporter.get_finished_spans() if span.name == "dispatch"]
    trace_id = caller.get_span_context().trace_id
    assert execution.trace_id == f"{trace_id:032x}"
    assert set(spans) == {"dispatch"}  # the queue wait is an attribute, not a span
    assert len(dispatches) == 2
    for span in dispatches:
        assert span.context is not None and span.parent is not None
        assert span.context.trace_id == trace_id
        assert span.parent.span_id == caller.get_span_context().span_id
    assert [d.attributes["nanofaas.attempt"] for d in dispatches if d.attributes] == [1, 2]
    # Only the first attempt waited in the queue: admission to its dispatch span's start.
    first, retry = (dict(d.attributes or {}) for d in dispatches)
    assert QUEUE_WAIT_ATTRIBUTE not in retry
    assert dispatches[0].start_time is not None
    wait_ms = first[QUEUE_WAIT_ATTRIBUTE]
    assert isinstance(wait_ms, float) and wait_ms >= 0
    expected = max(dispatches[0].start_time / 1e6 - execution.enqueued_at_ms, 0.0)
    assert wait_ms == pytest.approx(expected, abs=0.01)
    assert all(d.attributes and d.attributes["faas.coldstart"] is True for d in dispatches)
    # The function process continues the dispatch span.
    for attempt, dispatch in zip(seen, dispatches, strict=True):
        assert dispatch.context is not None
        assert attempt.traceparent.split("-")[2] == f"{dispatch.context.span_id:016x}"


async def test_without_a_traceparent_tracing_still_gives_an_otel_trace_id() -> None:
    scheduler = Scheduler(StubDispatcher())
    scheduler.otel_trace_ids = True
    execution, _ = scheduler.submit(
        make_spec(), Submission(request=Request(b"1", "application/json", {}), sync=False, trace_id="mine")
    )
    assert len(execution.trace_id) == 32 and execution.trace_id in execution.traceparent
    assert execution.caller_trace_id == "mine"
    await execution.done.wait()


CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


async def test_a_not_sampled_parent_gets_no_spans_and_its_trace_is_still_handed_down() -> None:
    """Parent-based sampling (the SDK default) follows the gateway's "not sampled" decision:
    no dispatch span, but the function still gets a traceparent of the trace."""
    exporter = InMemorySpanExporter()
    provider = make_provider(exporter)
    seen: list[Attempt] = []

    async def record(attempt: Attempt) -> Outcome:
        seen.append(attempt)
        return OUTCOMES["ok"]

    scheduler = Scheduler(TracingDispatcher(StubDispatcher(record), provider.get_tracer("test")))
    scheduler.otel_trace_ids = True
    traceparent = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-00"
    execution, _ = scheduler.submit(
        make_spec(),
        Submission(request=Request(b"1", "application/json", {}), sync=False, traceparent=traceparent),
    )
    await execution.done.wait()
    provider.force_flush()
    assert exporter.get_finished_spans() == ()
    assert execution.trace_id == CALLER_TRACE_ID
    version, trace_id, _, flags = seen[0].traceparent.split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE_ID, "00")


def test_the_scheduler_opens_a_server_span_only_as_the_edge() -> None:
    exporter = InMemorySpanExporter()
    provider = make_provider(exporter)
    tracer = provider.get_tracer("test")
    given = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
    with rpc_span(tracer, "Invoke", given, "x-1") as continued:
        assert continued == given  # the gateway's span is the parent, as is
        current = get_current_span().get_span_context()  # what log lines meanwhile carry
        assert (f"{current.trace_id:032x}", f"{current.span_id:016x}") == (CALLER_TRACE_ID, CALLER_SPAN_ID)
    assert not get_current_span().get_span_context().is_valid
    assert exporter.get_finished_spans() == ()
    with rpc_span(tracer, "Invoke", "", "x-2") as started:
        assert parse_traceparent(started) is not None
    (server,) = exporter.get_finished_spans()
    assert server.name == "nanofaas.v1.Scheduler/Invoke" and server.parent is None
    assert server.context is not None and started.split("-")[2] == f"{server.context.span_id:016x}"
    assert server.attributes is not None and server.attributes["nanofaas.x_trace_id"] == "x-2"
    with rpc_span(None, "Invoke", "", "") as untraced:
        assert untraced == ""


@pytest.mark.parametrize(
    "traceparent",
    ["", "garbage", f"00-{'0' * 32}-{CALLER_SPAN_ID}-01", f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01-x"],
)
def test_an_invalid_traceparent_is_not_continued(traceparent: str) -> None:
    assert parse_traceparent(traceparent) is None


async def test_a_sampler_that_ignores_the_parent_still_records_a_not_sampled_dispatch() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    scheduler = Scheduler(TracingDispatcher(StubDispatcher(), provider.get_tracer("test")))
    traceparent = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-00"
    execution, _ = scheduler.submit(
        make_spec(),
        Submission(request=Request(b"1", "application/json", {}), sync=False, traceparent=traceparent),
    )
    await execution.done.wait()
    assert [span.name for span in exporter.get_finished_spans()] == ["dispatch"]


def test_the_providers_resource_hashes_once_and_still_equals_the_sdks() -> None:
    """The exporter groups spans by resource: the cached hash must agree with an equal Resource's."""
    from opentelemetry.sdk.resources import Resource

    resource = make_provider(InMemorySpanExporter()).resource
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource.attributes["service.name"] == "nanofaas-scheduler"
    assert resource == plain and hash(resource) == hash(plain)
    assert {resource: 1}[plain] == 1
