"""Registry RPCs become server spans that continue the caller's trace (W3C traceparent in metadata)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from nanofaas_registry import tracing
from nanofaas_registry.config import RegistrySettings
from nanofaas_registry.server import RegistryServer, start_server

SpecFactory = Callable[..., types_pb2.FunctionSpec]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


@dataclass
class Traced:
    server: RegistryServer
    exporter: InMemorySpanExporter


def in_memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
async def traced(settings: RegistrySettings) -> AsyncIterator[Traced]:
    provider, exporter = in_memory_provider()
    running = await start_server(settings, tracer_provider=provider)
    try:
        yield Traced(running, exporter)
    finally:
        await running.stop(0.5)
        provider.shutdown()


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind is trace.SpanKind.SERVER]


async def test_rpc_continues_a_traceparent_sent_in_metadata(traced: Traced, make_spec: SpecFactory) -> None:
    traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
    async with grpc.aio.insecure_channel(traced.server.address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        await stub.Register(
            registry_pb2.RegisterRequest(spec=make_spec("fn")), metadata=(("traceparent", traceparent),)
        )
    (span,) = server_spans(traced.exporter)
    assert span.name == "/nanofaas.v1.Registry/Register"
    assert trace.format_trace_id(span.context.trace_id) == TRACE_ID
    assert span.parent is not None and span.parent.is_remote
    assert trace.format_span_id(span.parent.span_id) == PARENT_SPAN_ID


async def test_rpc_joins_the_trace_of_an_instrumented_client(traced: Traced, make_spec: SpecFactory) -> None:
    """The gateway and scheduler call the registry through the client interceptors: one trace."""
    client_provider, client_exporter = in_memory_provider()
    interceptors = aio_client_interceptors(tracer_provider=client_provider)  # type: ignore[no-untyped-call]
    async with grpc.aio.insecure_channel(traced.server.address, interceptors=interceptors) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        await stub.Register(registry_pb2.RegisterRequest(spec=make_spec("fn")))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Get(registry_pb2.GetFunctionRequest(name="ghost"))
    client_provider.shutdown()
    clients = {span.name: span for span in client_exporter.get_finished_spans()}
    servers = {span.name: span for span in server_spans(traced.exporter)}
    assert set(servers) == set(clients) == {"/nanofaas.v1.Registry/Register", "/nanofaas.v1.Registry/Get"}
    for name, server_span in servers.items():
        client_span = clients[name]
        assert server_span.context.trace_id == client_span.context.trace_id
        assert server_span.parent is not None
        assert server_span.parent.span_id == client_span.context.span_id
    get_attributes = servers["/nanofaas.v1.Registry/Get"].attributes
    assert get_attributes is not None
    assert get_attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_health_checks_are_not_traced(traced: Traced) -> None:
    async with grpc.aio.insecure_channel(traced.server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        await registry_pb2_grpc.RegistryStub(channel).List(registry_pb2.ListFunctionsRequest())
    assert [span.name for span in traced.exporter.get_finished_spans()] == ["/nanofaas.v1.Registry/List"]


def test_no_interceptor_without_a_provider() -> None:
    assert tracing.active_tracer_provider() is None
    assert tracing.server_interceptors() == []


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_tracing_enabled_from_env(env: dict[str, str], enabled: bool) -> None:
    assert tracing.tracing_enabled(env) is enabled


def test_service_name_defaults_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    provider = tracing.create_tracer_provider(exporter=InMemorySpanExporter())
    assert provider.resource.attributes["service.name"] == "nanofaas-registry"
    assert provider.resource.attributes["deployment.environment"] == "test"
    provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "my-registry")
    provider = tracing.create_tracer_provider(exporter=InMemorySpanExporter())
    assert provider.resource.attributes["service.name"] == "my-registry"
    provider.shutdown()
