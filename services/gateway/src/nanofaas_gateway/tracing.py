"""Whether the gateway traces, and the few calls the rest of the gateway makes about it.

Tracing is configured only by the standard OTEL_* variables: on when an OTLP
endpoint is set, unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none.
When off, no OpenTelemetry module is imported and no middleware or interceptor
is installed; every function here then costs one None check.

Call setup_tracing() before create_app() and GatewayClients.connect(): they ask
this module what to install.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc
from starlette.applications import Starlette
from starlette.datastructures import Headers

from nanofaas_gateway import logging_setup
from nanofaas_gateway.route_templates import RouteTemplates

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from nanofaas_gateway.otel_tracing import ActiveTracing

SERVICE_NAME = "nanofaas-gateway"
X_TRACE_ID_ATTRIBUTE = "nanofaas.x_trace_id"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_active: ActiveTracing | None = None


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """The on/off rule shared by every nanofaas service (see docs/observability conventions)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def setup_tracing(service_name: str = SERVICE_NAME, *, exporter: SpanExporter | None = None) -> bool:
    """Install tracing if the environment asks for it, or unconditionally to `exporter`.

    `exporter` is the test hook: its spans are exported synchronously and the global
    tracer provider is left alone (it can be set only once per process). Without it
    spans go to OTLP/gRPC in batches and the provider also becomes the global one.
    Returns whether tracing is on. `service_name` is the default service.name;
    OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES override it.
    """
    global _active
    if _active is not None:
        shutdown_tracing()
    if exporter is None and not tracing_requested(os.environ):
        return False
    from nanofaas_gateway import otel_tracing

    provider = otel_tracing.build_provider(service_name, exporter)
    if exporter is None:
        otel_tracing.set_global_provider(provider)
    _active = otel_tracing.ActiveTracing(provider)
    logging_setup.set_trace_id_source(otel_tracing.current_trace_id)
    return True


def shutdown_tracing() -> None:
    """Flush buffered spans and stop the provider; a no-op when tracing is off.

    Blocks until the export finishes (bounded by the SDK's timeouts): call it from
    a thread when an event loop is running.
    """
    global _active
    active, _active = _active, None
    if active is None:
        return
    logging_setup.set_trace_id_source(None)
    active.shutdown()


def is_enabled() -> bool:
    return _active is not None


def tracer_provider() -> TracerProvider | None:
    """The provider tracing was set up with (None when off)."""
    return None if _active is None else _active.provider


def instrument_app(app: Starlette, templates: RouteTemplates) -> None:
    """Add the server-span middleware, outermost; call after every other middleware."""
    if _active is not None:
        _active.instrument_app(app, templates)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for a traced gRPC channel: client spans plus traceparent metadata ([] when off)."""
    return [] if _active is None else _active.client_interceptors()


def outgoing_traceparent(headers: Headers) -> str:
    """InvokeRequest.traceparent: the gateway's own server span when tracing, else the caller's header."""
    if _active is not None:
        # Empty only outside a server span (a path excluded by OTEL_PYTHON_ASGI_EXCLUDED_URLS).
        traceparent = _active.traceparent()
        if traceparent:
            return traceparent
    return headers.get("traceparent", "")
