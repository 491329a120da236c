"""OpenTelemetry for the scheduler, configured only by the standard OTEL_* variables.

With no exporter configured nothing here imports the SDK: the API's no-op
tracer is all that runs, and the wrappers below are not even installed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.base import Attempt, BackendObserver, Dispatcher, DispatcherWrapper

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from nanofaas_scheduler.core.outcome import Outcome

DEFAULT_SERVICE_NAME = "nanofaas-scheduler"


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
    """A provider exporting over OTLP/gRPC (or to `exporter`, for tests)."""
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": DEFAULT_SERVICE_NAME}).merge(OTELResourceDetector().detect())
    if "OTEL_SERVICE_NAME" in os.environ:
        resource = resource.merge(Resource.create({"service.name": os.environ["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Export what is buffered before the process exits."""
    if provider is not None:
        provider.force_flush(5_000)
        provider.shutdown()


def _parent(traceparent: str) -> Any:
    from opentelemetry.propagate import extract

    return extract({"traceparent": traceparent}) if traceparent else None


def _traceparent() -> str:
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def rpc_span(tracer: Tracer | None, method: str, traceparent: str, x_trace_id: str) -> Iterator[str]:
    """The scheduler's server span for one RPC; yields the traceparent its children continue."""
    if tracer is None:
        yield traceparent
        return
    from opentelemetry.trace import SpanKind

    attributes = {"rpc.system": "grpc", "rpc.service": "nanofaas.v1.Scheduler", "rpc.method": method}
    if x_trace_id:
        attributes["nanofaas.x_trace_id"] = x_trace_id
    with tracer.start_as_current_span(
        f"nanofaas.v1.Scheduler/{method}",
        context=_parent(traceparent),
        kind=SpanKind.SERVER,
        attributes=attributes,
    ):
        yield _traceparent()


class TracingDispatcher(DispatcherWrapper):
    """`queue wait` once per execution and a `dispatch` span per attempt, around the real dispatcher.

    The function process continues the dispatch span: its traceparent replaces
    the execution's on the attempt handed down.
    """

    def __init__(self, inner: Dispatcher, tracer: Tracer) -> None:
        super().__init__(inner)
        self._tracer = tracer

    async def dispatch(self, attempt: Attempt) -> Outcome:
        from opentelemetry.trace import Status, StatusCode

        parent = _parent(attempt.traceparent)
        attributes: dict[str, str | int | bool] = {
            "faas.name": attempt.function_name,
            "faas.execution": attempt.execution_id,
            "nanofaas.execution_id": attempt.execution_id,
            "nanofaas.attempt": attempt.number,
            "faas.coldstart": False,
        }
        if attempt.number == 1:
            wait = self._tracer.start_span(
                "queue wait",
                context=parent,
                start_time=attempt.enqueued_at_ms * 1_000_000,
                attributes={
                    "faas.name": attempt.function_name,
                    "nanofaas.execution_id": attempt.execution_id,
                },
            )
            wait.end()
        with self._tracer.start_as_current_span("dispatch", context=parent, attributes=attributes) as span:
            outcome = await self.inner.dispatch(replace(attempt, traceparent=_traceparent()))
            span.set_attribute("nanofaas.outcome", outcome.kind.value)
            if outcome.kind is not OutcomeKind.SUCCESS:
                span.set_status(Status(StatusCode.ERROR, outcome.message[:200]))
            return outcome


class ColdStartMarker(BackendObserver):
    """Marks the current dispatch span when the backend had to start a process for it."""

    def cold_start(self, function: str, seconds: float) -> None:
        from opentelemetry import trace

        trace.get_current_span().set_attribute("faas.coldstart", True)
