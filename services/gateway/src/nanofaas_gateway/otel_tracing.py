"""The OpenTelemetry side of gateway tracing; imported by tracing.py only when tracing is on.

Keeping every SDK and instrumentation import here means a gateway with tracing
off never loads them, and its hot path runs none of their code.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.grpc.filters import health_check, negate
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, format_trace_id, use_span
from opentelemetry.util.http import ExcludeList, get_excluded_urls
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from nanofaas_gateway.route_templates import KNOWN_METHODS, RouteTemplates
from nanofaas_gateway.tracing import X_TRACE_ID_ATTRIBUTE

_X_TRACE_ID_HEADER = "x-trace-id"
INSTRUMENTATION_NAME = "nanofaas_gateway"


def build_resource(default_service_name: str) -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; the service's own name replaces the SDK's
    "unknown_service" placeholder."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    return _HashedResource(resource)


class _HashedResource(Resource):
    """A Resource that hashes once: the OTLP encoder groups every exported span by its
    resource (a dict lookup per span), and the SDK's Resource.__hash__ serialises all
    its attributes to JSON each time (~4 µs, a sixth of encoding a span). Immutable, as
    every Resource is, so the hash cannot go stale.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def build_provider(default_service_name: str, exporter: SpanExporter | None) -> TracerProvider:
    """A provider exporting to `exporter` synchronously (tests), else to OTLP/gRPC in batches.

    The sampler is left to the SDK, which reads OTEL_TRACES_SAMPLER itself; the
    OTLP exporter reads its endpoint and TLS settings from OTEL_EXPORTER_OTLP_*.
    """
    provider = TracerProvider(resource=build_resource(default_service_name))
    processor: SpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    return provider


class ActiveTracing:
    """Tracing as installed in this process: the provider and what the gateway wires to it.

    Everything receives the provider explicitly rather than through the global one,
    which can be set only once per process; tests install a provider of their own.
    """

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    def instrument_app(self, app: Starlette, templates: RouteTemplates) -> None:
        """Wrap the app (outermost) in the server-span middleware (ServerSpans)."""
        add = getattr(app, "wrap", app.add_middleware)  # the gateway's edge, outside FastAPI's stack
        add(
            ServerSpans,
            tracer=self.provider.get_tracer(INSTRUMENTATION_NAME),
            templates=templates,
            excluded_urls=get_excluded_urls("ASGI"),
        )

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """Client-span interceptors for a gRPC channel; health checks (readiness probes) are left out."""
        not_health = negate(health_check())
        return list(aio_client_interceptors(tracer_provider=self.provider, filter_=not_health))  # type: ignore[no-untyped-call]

    def traceparent(self) -> str:
        return current_traceparent()

    def shutdown(self) -> None:
        """Export what is buffered, then stop the processors (blocking: call off the event loop)."""
        self.provider.force_flush()
        self.provider.shutdown()


def follows_unsampled_parents(sampler: object) -> bool:
    """Whether `sampler` never samples a span whose remote parent was not sampled.

    True for every OTEL_TRACES_SAMPLER=parentbased_* (and the default): the SDK's
    ParentBased sampler, with its AlwaysOff delegate for a remote parent not sampled.
    Read from the sampler's description, the SDK's public account of its configuration.
    """
    describe = getattr(sampler, "get_description", None)
    return callable(describe) and "remoteParentNotSampled:AlwaysOffSampler" in str(describe())


class ServerSpans:
    """The gateway's server span per HTTP request: "METHOD /route/{template}" (or the method alone).

    Written for the gateway instead of the generic ASGI instrumentation, which cost
    ~180 µs of CPU per request against ~70 here (docs/performance.md, "Round two,
    perf-tracing"): it builds a dozen attributes (URL, peer, host, user agent...)
    before sampling and wraps every send and receive. Here the parent
    is extracted with the configured propagators (OTEL_PROPAGATORS; this is the edge,
    where callers' headers arrive), the span is started, and only a sampled span gets
    its few attributes: http.request.method, url.path, http.route, the caller's
    X-Trace-Id and http.response.status_code (5xx marks it as an error). The template
    is looked up after the request, from the route FastAPI chose when it routed it: a
    raw path never becomes a span name (it would be unbounded).
    OTEL_PYTHON_ASGI_EXCLUDED_URLS / OTEL_PYTHON_EXCLUDED_URLS still exclude URLs.
    """

    def __init__(
        self, app: ASGIApp, *, tracer: Tracer, templates: RouteTemplates, excluded_urls: ExcludeList
    ) -> None:
        self.app = app
        self._tracer = tracer
        self._templates = templates
        self._excluded = excluded_urls
        self._skip_unsampled = follows_unsampled_parents(getattr(tracer, "sampler", None))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        if self._excluded.url_disabled(
            f"{scope.get('scheme', 'http')}://{carrier.get('host', '')}{scope['path']}"
        ):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        method = method if method in KNOWN_METHODS else "HTTP"
        parent = propagate.extract(carrier)
        if self._skip_unsampled:
            caller = trace.get_current_span(parent)
            caller_context = caller.get_span_context()
            if caller_context.is_valid and not caller_context.trace_flags.sampled:
                # The caller decided "not sampled" and the sampler follows it: no span of
                # ours; the caller's context is handed on as it came (flags 00).
                with use_span(caller):
                    await self.app(scope, receive, send)
                return
        span = self._tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        if not span.is_recording():
            with use_span(span, end_on_exit=True):
                await self.app(scope, receive, send)
            return
        attributes: dict[str, str] = {"http.request.method": method, "url.path": scope["path"]}
        if x_trace_id := carrier.get(_X_TRACE_ID_HEADER):
            attributes[X_TRACE_ID_ATTRIBUTE] = x_trace_id
        span.set_attributes(attributes)
        status = _StatusOf(send)
        with use_span(span, end_on_exit=True):
            try:
                await self.app(scope, receive, status.send)
            finally:
                template = self._templates.routed(scope) or self._templates.match(scope)
                if template is not None:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                if status.code:
                    span.set_attribute("http.response.status_code", status.code)
                    if status.code >= 500:
                        span.set_status(Status(StatusCode.ERROR))


class _StatusOf:
    """An ASGI send that notes the response's status code on its way out."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code = 0

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.code = int(message["status"])
        await self._send(message)


def current_traceparent() -> str:
    """The W3C traceparent of the current span ("" without one), for InvokeRequest.traceparent.

    Formatted directly: the field is W3C by contract, whatever OTEL_PROPAGATORS says.
    """
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside any span."""
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def set_global_provider(provider: TracerProvider) -> None:
    trace.set_tracer_provider(provider)
