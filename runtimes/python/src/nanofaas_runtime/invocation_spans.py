"""The runtime's spans: `invoke` (kind SERVER, continuing the caller's W3C traceparent) and,
as its child, `handler` around the user's code.

Imported only when tracing is on (or a test injects a tracer provider): it loads the
OpenTelemetry API, which a runtime with tracing off must never pay for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from nanofaas_runtime.handler import Context

INVOKE_SPAN = "invoke"
HANDLER_SPAN = "handler"
INSTRUMENTATION_NAME = "nanofaas_runtime"


class InvocationSpans:
    """Starts the spans of one invocation with a tracer of the given provider."""

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        self._tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME)

    @contextmanager
    def invoke(self, traceparent: str, trigger: str = "http") -> Iterator[Span]:
        """The invocation's server span, a child of `traceparent` when one is given (else a new trace)."""
        parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
        with self._tracer.start_as_current_span(
            INVOKE_SPAN, context=parent, kind=SpanKind.SERVER, attributes={"faas.trigger": trigger}
        ) as span:
            yield span

    def handler(self) -> AbstractContextManager[Span]:
        """The span around the user's code; an exception it raises is recorded on it."""
        return self._tracer.start_as_current_span(HANDLER_SPAN)


def annotate(context: Context, *, keep_trace_id: bool) -> Context:
    """Records the invocation on the current span and returns the handler's context.

    Unless the caller named a trace id itself (X-Trace-Id / TRACE_ID, `keep_trace_id`),
    the context's trace_id becomes the OpenTelemetry trace id, so logs and the handler
    see the id a user can paste into Jaeger.
    """
    span = trace.get_current_span()
    attributes: dict[str, str] = {}
    if context.execution_id:
        attributes["faas.execution"] = context.execution_id
        attributes["nanofaas.execution_id"] = context.execution_id
    if context.function_name:
        attributes["faas.name"] = context.function_name
    if keep_trace_id and context.trace_id:
        attributes["nanofaas.x_trace_id"] = context.trace_id
    span.set_attributes(attributes)
    span_context = span.get_span_context()
    if keep_trace_id or not span_context.is_valid:
        return context
    return dataclasses.replace(context, trace_id=trace.format_trace_id(span_context.trace_id))


def record_http_status(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def record_exit_code(span: Span, exit_code: int) -> None:
    """A one-shot invocation failed when its process exits non-zero."""
    span.set_attribute("process.exit.code", exit_code)
    if exit_code != 0:
        span.set_status(Status(StatusCode.ERROR, f"exit code {exit_code}"))


def current_traceparent() -> str:
    """The traceparent of the current span (for the Job's completion callback), or ""."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")
