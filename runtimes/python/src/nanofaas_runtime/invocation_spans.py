"""The runtime's span: `invoke` (kind SERVER, continuing the caller's W3C traceparent),
around the request and the user's code.

One span per invocation on purpose: every span costs CPU to build and to export, and a
separate span around the handler told a user nothing the `invoke` span does not (an
exception the handler raises is recorded on `invoke`). A span that is not sampled gets
no attributes.

Imported only when tracing is on (or a test injects a tracer provider): it loads the
OpenTelemetry API, which a runtime with tracing off must never pay for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from nanofaas_runtime.handler import Context

INVOKE_SPAN = "invoke"
INSTRUMENTATION_NAME = "nanofaas_runtime"


def remote_parent(traceparent: str) -> trace.NonRecordingSpan | None:
    """The caller's span named by a W3C traceparent, or None when it is absent or malformed.

    Parsed directly: the header is W3C by the function protocol, whatever OTEL_PROPAGATORS
    says, and this is a few string operations instead of the propagators' regex and baggage.
    """
    parts = traceparent.split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_hex, span_hex, flags_hex = parts[:4]
    if len(trace_hex) != 32 or len(span_hex) != 16 or len(flags_hex) != 2:
        return None
    if version == "00" and len(parts) != 4:
        return None
    try:
        trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return trace.NonRecordingSpan(
        trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags & 0x01))
    )


def parse_traceparent(traceparent: str) -> Any:
    """The context continuing a W3C traceparent, or None when it is absent or malformed."""
    caller = remote_parent(traceparent)
    return None if caller is None else trace.set_span_in_context(caller)


def follows_unsampled_parents(sampler: object) -> bool:
    """Whether `sampler` never samples a span whose remote parent was not sampled.

    True for every OTEL_TRACES_SAMPLER=parentbased_* (and the default): the SDK's
    ParentBased sampler, with its AlwaysOff delegate for a remote parent not sampled.
    Read from the sampler's description, the SDK's public account of its configuration.
    """
    describe = getattr(sampler, "get_description", None)
    return callable(describe) and "remoteParentNotSampled:AlwaysOffSampler" in str(describe())


@contextmanager
def current(span: Span) -> Iterator[None]:
    """`span` as the current span: attached directly, not through trace.use_span, which
    also wraps the body to record exceptions on it (nothing to record on a caller's span)."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


class InvocationSpans:
    """Starts the span of one invocation with a tracer of the given provider."""

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        self._tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME)
        self._skip_unsampled = follows_unsampled_parents(getattr(tracer_provider, "sampler", None))

    def unsampled_caller(self, traceparent: str) -> Span | None:
        """The caller's span when the caller did not sample this call and the sampler follows it.

        Such a call needs no span of ours, no attributes and no exception recording: making
        the caller's context the current one (so the handler and the logs still see the
        trace id) is all there is to do, and the server does only that.
        """
        if not self._skip_unsampled or not traceparent:
            return None
        caller = remote_parent(traceparent)
        if caller is None or caller.get_span_context().trace_flags.sampled:
            return None
        return caller

    @contextmanager
    def invoke(self, traceparent: str, trigger: str = "http") -> Iterator[Span]:
        """The invocation's server span, a child of `traceparent` when one is given (else a new trace).

        A call `unsampled_caller` names gets the caller's span as the current one instead.
        """
        unsampled = self.unsampled_caller(traceparent)
        if unsampled is not None:
            with current(unsampled):
                yield unsampled
            return
        parent = parse_traceparent(traceparent) if traceparent else None
        with self._tracer.start_as_current_span(INVOKE_SPAN, context=parent, kind=SpanKind.SERVER) as span:
            if span.is_recording():
                span.set_attribute("faas.trigger", trigger)
            yield span

    @contextmanager
    def handler(self) -> Iterator[None]:
        """Around the user's code: an exception it raises is recorded on the current (invoke) span.

        No span of its own (see the module docstring); the exception still propagates.
        """
        try:
            yield
        except BaseException as exc:
            span = trace.get_current_span()
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


def annotate(context: Context, *, keep_trace_id: bool) -> Context:
    """Records the invocation on the current span and returns the handler's context.

    Unless the caller named a trace id itself (X-Trace-Id / TRACE_ID, `keep_trace_id`),
    the context's trace_id becomes the OpenTelemetry trace id, so logs and the handler
    see the id a user can paste into Jaeger (also when the span is not sampled).
    """
    span = trace.get_current_span()
    if span.is_recording():
        attributes: dict[str, str] = {}
        if context.execution_id:
            attributes["nanofaas.execution_id"] = context.execution_id
        if context.function_name:
            attributes["faas.name"] = context.function_name
        if keep_trace_id and context.trace_id:
            attributes["nanofaas.x_trace_id"] = context.trace_id
        span.set_attributes(attributes)
    span_context = span.get_span_context()
    if keep_trace_id or not span_context.is_valid:
        return context
    trace_id = trace.format_trace_id(span_context.trace_id)
    if trace_id == context.trace_id:  # already read from the traceparent (a continued trace)
        return context
    return dataclasses.replace(context, trace_id=trace_id)


def record_http_status(span: Span, status: int) -> None:
    if not span.is_recording():
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def record_exit_code(span: Span, exit_code: int) -> None:
    """A one-shot invocation failed when its process exits non-zero."""
    if not span.is_recording():
        return
    span.set_attribute("process.exit.code", exit_code)
    if exit_code != 0:
        span.set_status(Status(StatusCode.ERROR, f"exit code {exit_code}"))


def current_traceparent() -> str:
    """The W3C traceparent of the current span (for the Job's completion callback), or ""."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
