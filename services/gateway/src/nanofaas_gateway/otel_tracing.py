"""The OpenTelemetry side of gateway tracing; imported by tracing.py only when tracing is on.

Keeping every SDK and instrumentation import here means a gateway with tracing
off never loads them, and its hot path runs none of their code.
"""

from __future__ import annotations

import grpc
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.grpc.filters import health_check, negate
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, format_trace_id
from opentelemetry.util.http import get_excluded_urls
from starlette.applications import Starlette
from starlette.types import Scope

from nanofaas_gateway.route_templates import KNOWN_METHODS, RouteTemplates
from nanofaas_gateway.tracing import X_TRACE_ID_ATTRIBUTE

_X_TRACE_ID_HEADER = b"x-trace-id"
_TRACEPARENT = "traceparent"


def build_resource(default_service_name: str) -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; the service's own name replaces the SDK's
    "unknown_service" placeholder."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
    return resource


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
        """Wrap the app (outermost) in the ASGI server-span middleware.

        Spans are named by route template; the per-message send/receive spans and the
        instrumentation's own OTel metrics are off (Prometheus covers the metrics).
        """
        add = getattr(app, "wrap", app.add_middleware)  # the gateway's edge, outside FastAPI's stack
        add(
            OpenTelemetryMiddleware,
            default_span_details=_SpanNamer(templates),
            server_request_hook=record_x_trace_id,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),
            exclude_spans=["receive", "send"],
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


class _SpanNamer:
    """ASGI `default_span_details`: "METHOD /route/{template}" plus http.route, or the method alone.

    The name is chosen before routing, so the template is found by matching the
    routes; a raw path never becomes a span name (it would be unbounded).
    """

    def __init__(self, templates: RouteTemplates) -> None:
        self._templates = templates

    def __call__(self, scope: Scope) -> tuple[str, dict[str, str]]:
        method = scope.get("method", "")
        method = method if method in KNOWN_METHODS else "HTTP"
        template = self._templates.match(scope)
        if template is None:
            return method, {}
        return f"{method} {template}", {"http.route": template}


def record_x_trace_id(span: Span, scope: Scope) -> None:
    """ASGI `server_request_hook`: the caller's X-Trace-Id becomes a span attribute."""
    if not span.is_recording():
        return
    for name, value in scope["headers"]:
        if name == _X_TRACE_ID_HEADER:
            span.set_attribute(X_TRACE_ID_ATTRIBUTE, value.decode("latin-1"))
            return


def current_traceparent() -> str:
    """The W3C traceparent of the current span ("" without one), for InvokeRequest.traceparent."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(_TRACEPARENT, "")


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside any span."""
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def set_global_provider(provider: TracerProvider) -> None:
    trace.set_tracer_provider(provider)
