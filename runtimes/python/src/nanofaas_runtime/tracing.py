"""OpenTelemetry set-up of the runtime, configured only by the standard OTEL_* variables.

Cold start is what users feel, so this module imports nothing of OpenTelemetry until
tracing is found to be on: with tracing off, `python -m nanofaas_runtime` never loads
the API, the SDK or the exporter. The spans themselves live in `invocation_spans`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from nanofaas_runtime.invocation_spans import InvocationSpans

DEFAULT_SERVICE_NAME = "nanofaas-runtime"
SHUTDOWN_TIMEOUT_S = 5.0
"""How long a stopping HTTP runtime waits for its last spans to be exported."""
ONESHOT_FLUSH_TIMEOUT_S = 2.0
"""How long a one-shot process (STDIO/FILE/Job) may delay its exit to export its spans."""

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
    service_name: str = DEFAULT_SERVICE_NAME,
    exporter: SpanExporter | None = None,
    function_name: str | None = None,
) -> TracerProvider:
    """A provider exporting in batches to `exporter` (default: OTLP/gRPC configured from env).

    The resource carries service.name (OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over
    the default) and faas.name = FUNCTION_NAME. No atexit hook: every mode flushes explicitly,
    with a bound, so a dead collector can never hold the process at exit.
    """
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    function_name = os.environ.get("FUNCTION_NAME", "") if function_name is None else function_name
    attributes: dict[str, str] = {}
    if "service.name" not in OTELResourceDetector().detect().attributes:
        attributes["service.name"] = service_name
    if function_name:
        attributes["faas.name"] = function_name
    provider = TracerProvider(resource=hashed_once(Resource.create(attributes)), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
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
    return True


def active_tracer_provider() -> TracerProvider | None:
    """The provider installed by setup_tracing, or None when tracing is off."""
    return _provider


def start_invocation_spans() -> InvocationSpans | None:
    """Sets tracing up from the environment: the span factory when on, None (nothing loaded) when off."""
    if not setup_tracing() or _provider is None:
        return None
    from nanofaas_runtime.invocation_spans import InvocationSpans

    return InvocationSpans(_provider)


def shutdown_tracing(timeout_s: float = SHUTDOWN_TIMEOUT_S) -> bool:
    """Exports buffered spans and stops the provider, waiting at most `timeout_s`.

    The export runs in a daemon thread because the SDK's own flush is bounded only by the
    exporter's timeout; returns False when it did not finish in time (the spans are lost).
    """
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return True

    import threading

    def flush_and_stop() -> None:
        provider.force_flush(int(timeout_s * 1000))
        provider.shutdown()

    worker = threading.Thread(target=flush_and_stop, name="otel-flush", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return not worker.is_alive()
