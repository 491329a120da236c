"""OpenTelemetry tracing of the registry, configured only by the standard OTEL_* variables.

With tracing off nothing is installed and neither the SDK, the exporter nor the gRPC
instrumentation is imported, so RPCs pay nothing. With it on, a grpc.aio server
interceptor turns each registry RPC into a server span that continues the caller's
trace from the `traceparent` in the gRPC metadata.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

DEFAULT_SERVICE_NAME = "nanofaas-registry"
SHUTDOWN_TIMEOUT_MS = 5_000

# Health probes and reflection would only add noise to every trace backend.
_UNTRACED_SERVICE_PREFIXES = ("grpc.health.", "grpc.reflection.")

logger = logging.getLogger(__name__)

_provider: TracerProvider | None = None


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
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


def create_tracer_provider(
    service_name: str = DEFAULT_SERVICE_NAME, exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider exporting in batches to `exporter` (default: OTLP/gRPC configured from env).

    OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over the default service name;
    the sampler comes from OTEL_TRACES_SAMPLER (the SDK reads it).
    """
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    attributes: dict[str, str] = {}
    if "service.name" not in OTELResourceDetector().detect().attributes:
        attributes["service.name"] = service_name
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def setup_tracing(service_name: str = DEFAULT_SERVICE_NAME, *, exporter: SpanExporter | None = None) -> bool:
    """Installs the global tracer provider when tracing is enabled; returns whether it did.

    An injected exporter turns tracing on regardless of the environment.
    """
    global _provider
    if _provider is not None:
        return True
    if exporter is None and not tracing_enabled():
        return False
    from opentelemetry import trace

    _provider = create_tracer_provider(service_name, exporter)
    trace.set_tracer_provider(_provider)
    logger.info("tracing enabled", extra={"serviceName": service_name})
    return True


def active_tracer_provider() -> TracerProvider | None:
    """The provider installed by setup_tracing, or None when tracing is off."""
    return _provider


def server_interceptors(
    tracer_provider: TracerProvider | None = None,
) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """The interceptors to give grpc.aio.server(): none without a provider (tracing off)."""
    provider = tracer_provider or _provider
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    untraced = [filters.service_prefix(prefix) for prefix in _UNTRACED_SERVICE_PREFIXES]
    traced = filters.negate(filters.any_of(*untraced))
    interceptor: grpc.aio.ServerInterceptor[Any, Any] = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=traced
    )
    return [interceptor]


def shutdown_tracing(timeout_ms: int = SHUTDOWN_TIMEOUT_MS) -> None:
    """Exports what is still buffered, then stops the provider (graceful stop, before exit)."""
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return
    if not provider.force_flush(timeout_ms):
        logger.warning("tracing flush timed out", extra={"timeoutMs": timeout_ms})
    provider.shutdown()
