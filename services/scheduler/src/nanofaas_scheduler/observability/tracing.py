"""OpenTelemetry for the scheduler, configured only by the standard OTEL_* variables.

With no exporter configured nothing here imports the SDK: the API's no-op
tracer is all that runs, and the wrappers below are not even installed.

Spans are few on purpose (each costs CPU to build and to export): per attempt a
`dispatch`, a child of the caller's span; the first one carries the queue wait
(admission to that dispatch) as `nanofaas.queue_wait_ms`. The
scheduler opens a server span of its own only when it is the edge (a call without a
traceparent), so that the execution still forms one trace. Under a parent-based
sampler an execution its caller did not sample gets no span at all (its traceparent
is handed down as it came); with any other sampler a span that is not sampled gets
no attributes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.base import Attempt, BackendObserver, Dispatcher, DispatcherWrapper

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from nanofaas_scheduler.core.outcome import Outcome

DEFAULT_SERVICE_NAME = "nanofaas-scheduler"
QUEUE_WAIT_ATTRIBUTE = "nanofaas.queue_wait_ms"
"""On the first `dispatch` span: milliseconds from admission to that dispatch."""


def tracing_configured(env: Mapping[str, str] | None = None) -> bool:
    """On when an OTLP endpoint is configured, unless the SDK or the traces exporter is disabled."""
    source = os.environ if env is None else env
    if source.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if source.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        source.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or source.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def make_provider(exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider exporting over OTLP/gRPC (or to `exporter`, for tests).

    The sampler is the SDK's, from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
    """
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": DEFAULT_SERVICE_NAME}).merge(OTELResourceDetector().detect())
    if "OTEL_SERVICE_NAME" in os.environ:
        resource = resource.merge(Resource.create({"service.name": os.environ["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=hashed_once(resource))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def hashed_once(resource: Resource) -> Resource:
    """`resource` as a Resource that hashes once.

    The OTLP encoder groups every exported span by its resource (a dict lookup per
    span), and the SDK's Resource.__hash__ serialises all its attributes to JSON each
    time (~4 µs, a sixth of encoding a span). A Resource is immutable, so the hash
    cannot go stale.
    """
    from opentelemetry.sdk.resources import Resource

    class HashedResource(Resource):
        def __init__(self) -> None:
            super().__init__(resource.attributes, resource.schema_url)
            self._hash = super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    return HashedResource()


def shutdown(provider: TracerProvider | None) -> None:
    """Export what is buffered before the process exits."""
    if provider is not None:
        provider.force_flush(5_000)
        provider.shutdown()


def traceparent_ids(traceparent: str) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a valid W3C traceparent, else None.

    The field is W3C by contract (InvokeRequest.traceparent, the runtime's header), so it
    is parsed as such rather than through the configured propagators (which might not
    include W3C, and run a regex plus the baggage propagator for nothing).
    """
    parts = traceparent.split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_hex, span_hex, flags_hex = parts[:4]
    if (
        len(trace_hex) != 32
        or len(span_hex) != 16
        or len(flags_hex) != 2
        or (version == "00" and len(parts) != 4)
    ):
        return None
    try:
        trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, flags


def context_of(ids: tuple[int, int, int] | None) -> Any:
    """The OpenTelemetry context continuing the remote span `ids` names (None for None)."""
    if ids is None:
        return None
    from opentelemetry import trace

    trace_id, span_id, flags = ids
    context = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags & 0x01))
    return trace.set_span_in_context(trace.NonRecordingSpan(context))


def parse_traceparent(traceparent: str) -> Any:
    """The OpenTelemetry context continuing a W3C traceparent, or None when it is absent or invalid."""
    return context_of(traceparent_ids(traceparent))


def follows_unsampled_parents(sampler: object) -> bool:
    """Whether `sampler` never samples a span whose remote parent was not sampled.

    True for every OTEL_TRACES_SAMPLER=parentbased_* (and the default): the SDK's
    ParentBased sampler, with its AlwaysOff delegate for a remote parent not sampled.
    Read from the sampler's description, the SDK's public account of its configuration.
    """
    describe = getattr(sampler, "get_description", None)
    return callable(describe) and "remoteParentNotSampled:AlwaysOffSampler" in str(describe())


def format_traceparent(span: Span) -> str:
    """The W3C traceparent naming `span` as the parent ("" for an invalid span)."""
    context = span.get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


@contextlib.contextmanager
def rpc_span(tracer: Tracer | None, method: str, traceparent: str, x_trace_id: str) -> Iterator[str]:
    """Yields the traceparent the execution's spans continue.

    With a valid traceparent the caller (the gateway) already has a server span: it is
    continued as is, without a scheduler span in between; the caller's span is the
    current one meanwhile, so a line logged while serving the call carries its traceId
    and spanId. Without one the scheduler is the edge: a server span starts the trace
    (and takes the sampling decision).
    """
    if tracer is None:
        yield traceparent
        return
    from opentelemetry.trace import SpanKind, get_current_span, use_span

    parent = parse_traceparent(traceparent)
    if parent is not None:
        with use_span(get_current_span(parent)):
            yield traceparent
        return

    attributes = {"rpc.system": "grpc", "rpc.service": "nanofaas.v1.Scheduler", "rpc.method": method}
    if x_trace_id:
        attributes["nanofaas.x_trace_id"] = x_trace_id
    with tracer.start_as_current_span(
        f"nanofaas.v1.Scheduler/{method}", kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        yield format_traceparent(span)


class TracingDispatcher(DispatcherWrapper):
    """A `dispatch` span per attempt (the first with the queue wait), around the real dispatcher.

    The function process continues the dispatch span: its traceparent replaces
    the execution's on the attempt handed down.
    """

    def __init__(self, inner: Dispatcher, tracer: Tracer) -> None:
        super().__init__(inner)
        self._tracer = tracer
        # Under a parent-based sampler a not-sampled execution is handed down untouched:
        # the SDK would only make a non-recording span with a new id that nobody sees.
        self._skip_unsampled = follows_unsampled_parents(getattr(tracer, "sampler", None))

    async def dispatch(self, attempt: Attempt) -> Outcome:
        from opentelemetry.trace import Status, StatusCode, use_span

        ids = traceparent_ids(attempt.traceparent)
        if self._skip_unsampled and ids is not None and not ids[2] & 0x01:
            return await self.inner.dispatch(attempt)  # no OpenTelemetry object at all
        parent = context_of(ids)
        span = self._tracer.start_span("dispatch", context=parent)
        recording = span.is_recording()
        if recording:
            span.set_attributes(
                {
                    "faas.name": attempt.function_name,
                    "nanofaas.execution_id": attempt.execution_id,
                    "nanofaas.attempt": attempt.number,
                    "faas.coldstart": False,
                }
            )
            if attempt.number == 1:
                # Admission to this dispatch, as an attribute rather than a span of its own
                # (a span costs ~4x more to build and export, and the gap between the
                # caller's span start and this one shows the wait in a trace viewer).
                started_ns = getattr(span, "start_time", None) or time.time_ns()
                wait_ms = max(started_ns / 1_000_000 - attempt.enqueued_at_ms, 0.0)
                span.set_attribute(QUEUE_WAIT_ATTRIBUTE, round(wait_ms, 3))
        with use_span(span, end_on_exit=True):
            outcome = await self.inner.dispatch(replace(attempt, traceparent=format_traceparent(span)))
            if recording:
                span.set_attribute("nanofaas.outcome", outcome.kind.value)
                if outcome.kind is not OutcomeKind.SUCCESS:
                    span.set_status(Status(StatusCode.ERROR, outcome.message[:200]))
            return outcome


class ColdStartMarker(BackendObserver):
    """Marks the current dispatch span when the backend had to start a process for it."""

    def cold_start(self, function: str, seconds: float) -> None:
        from opentelemetry import trace

        trace.get_current_span().set_attribute("faas.coldstart", True)
