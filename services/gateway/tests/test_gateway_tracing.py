"""Tracing: server spans by route template, traceparent continuation and hand-off, registry client spans,
trace ids in logs, nothing loaded when off, and spans flushed by a real process on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from nanofaas_gateway import GatewayClients
from nanofaas_gateway.logging_setup import JsonFormatter
from nanofaas_gateway.tracing import (
    X_TRACE_ID_ATTRIBUTE,
    setup_tracing,
    shutdown_tracing,
    tracer_provider,
    tracing_requested,
)

from .gateway_fakes import FakeRegistry, FakeScheduler, start_registry, start_scheduler
from .gateway_harness import make_settings, serve_gateway
from .test_gateway_process import STARTUP_TIMEOUT_S, gateway_process
from .tracing_harness import AwaitableSpanExporter, OtlpReceiver, named, start_otlp_receiver

INVOKE_SPAN = "POST /v1/functions/{name}:invoke"
CALLER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"


@dataclass
class TracedGateway:
    base_url: str
    session: aiohttp.ClientSession
    spans: AwaitableSpanExporter
    registry: FakeRegistry
    scheduler: FakeScheduler

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest_asyncio.fixture
async def traced() -> AsyncIterator[TracedGateway]:
    """A gateway built after setup_tracing() with an in-memory exporter (the test hook)."""
    spans = AwaitableSpanExporter()
    assert setup_tracing(exporter=spans)
    registry_fake, scheduler_fake = FakeRegistry(), FakeScheduler()
    registry_backend = await start_registry(registry_fake)
    scheduler_backend = await start_scheduler(scheduler_fake)
    settings = make_settings(registry_backend.address, scheduler_backend.address)
    clients = GatewayClients.connect(settings)
    try:
        async with serve_gateway(settings, clients) as (base_url, _), aiohttp.ClientSession() as session:
            yield TracedGateway(base_url, session, spans, registry_fake, scheduler_fake)
    finally:
        await clients.close()
        await scheduler_backend.stop()
        await registry_backend.stop()
        shutdown_tracing()


def span_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format_trace_id(span.context.trace_id), format_span_id(span.context.span_id)


def traceparent_ids(traceparent: str) -> tuple[str, str]:
    """(trace id, span id) of a sampled W3C traceparent; new roots may also set the "random" flag."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 0x01
    return trace_id, span_id


def parent_span_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else format_span_id(span.parent.span_id)


async def test_server_spans_are_named_by_route_template(traced: TracedGateway) -> None:
    async with traced.session.post(traced.url("/v1/functions/secret-name:invoke"), json={}) as response:
        assert response.status == 200
    async with traced.session.get(traced.url("/no/such/route")) as response:
        assert response.status == 404
    invoke = await traced.spans.wait_for(named(INVOKE_SPAN))
    assert invoke.kind is SpanKind.SERVER
    assert invoke.attributes is not None and invoke.attributes["http.route"] == "/v1/functions/{name}:invoke"
    unmatched = await traced.spans.wait_for(named("GET"))
    assert unmatched.kind is SpanKind.SERVER
    names = [span.name for span in traced.spans.get_finished_spans()]
    assert names == [INVOKE_SPAN, "GET"]
    assert not any("secret-name" in name or "no/such" in name for name in names)


async def test_incoming_traceparent_is_continued_and_handed_to_the_scheduler(traced: TracedGateway) -> None:
    headers = {"traceparent": CALLER_TRACEPARENT, "X-Trace-Id": "caller-trace-7"}
    url = traced.url("/v1/functions/echo:invoke")
    async with traced.session.post(url, json={"input": 1}, headers=headers) as response:
        assert response.status == 200
    server = await traced.spans.wait_for(named(INVOKE_SPAN))
    trace_id, span_id = span_ids(server)
    assert trace_id == CALLER_TRACE_ID
    assert parent_span_id(server) == CALLER_SPAN_ID
    assert server.parent is not None and server.parent.is_remote
    assert server.attributes is not None and server.attributes[X_TRACE_ID_ATTRIBUTE] == "caller-trace-7"
    sent = traced.scheduler.invokes[-1]
    # The scheduler continues from the gateway's span, not from the gateway's caller.
    assert sent.traceparent == f"00-{CALLER_TRACE_ID}-{span_id}-01"
    assert sent.trace_id == "caller-trace-7"


async def test_the_server_span_carries_only_the_few_attributes_a_user_reads(traced: TracedGateway) -> None:
    async with traced.session.post(traced.url("/v1/functions/echo:invoke"), json={"input": 1}) as response:
        assert response.status == 200
    server = await traced.spans.wait_for(named(INVOKE_SPAN))
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/v1/functions/echo:invoke",
        "http.route": "/v1/functions/{name}:invoke",
        "http.response.status_code": 200,
    }


async def test_a_not_sampled_caller_gets_no_span_and_its_trace_still_reaches_the_scheduler(
    traced: TracedGateway,
) -> None:
    """Parent-based sampling (the SDK default): the caller's "not sampled" flag is followed."""
    url = traced.url("/v1/functions/echo:invoke")
    headers = {"traceparent": f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-00"}
    async with traced.session.post(url, json={"input": 1}, headers=headers) as response:
        assert response.status == 200
    version, trace_id, span_id, flags = traced.scheduler.invokes[-1].traceparent.split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE_ID, "00") and len(span_id) == 16
    # Spans are exported as they end, in order: once a sampled call's span has arrived, a span
    # of the earlier call would be there too.
    async with traced.session.post(url, json={"input": 2}) as response:
        assert response.status == 200
    sampled = await traced.spans.wait_for(named(INVOKE_SPAN))
    assert [span_ids(span) for span in traced.spans.get_finished_spans()] == [span_ids(sampled)]
    assert span_ids(sampled)[0] != CALLER_TRACE_ID


async def test_enqueue_without_traceparent_starts_a_trace_the_scheduler_joins(traced: TracedGateway) -> None:
    async with traced.session.post(traced.url("/v1/functions/echo:enqueue"), json={}) as response:
        assert response.status == 202
    server = await traced.spans.wait_for(named("POST /v1/functions/{name}:enqueue"))
    assert server.parent is None
    assert server.attributes is not None and X_TRACE_ID_ATTRIBUTE not in server.attributes
    trace_id, span_id = span_ids(server)
    assert trace_id != CALLER_TRACE_ID
    assert traceparent_ids(traced.scheduler.enqueues[-1].traceparent) == (trace_id, span_id)


async def test_registry_calls_get_client_spans_but_health_checks_do_not(traced: TracedGateway) -> None:
    async with traced.session.post(traced.url("/v1/functions"), json={"name": "f", "image": "i"}) as response:
        assert response.status == 201
    async with traced.session.get(traced.url("/v1/functions/f")) as response:
        assert response.status == 200
    async with traced.session.get(traced.url("/readyz")) as response:
        assert response.status == 200
    server = await traced.spans.wait_for(named("GET /v1/functions/{name}"))
    client = await traced.spans.wait_for(named("/nanofaas.v1.Registry/Get"))
    await traced.spans.wait_for(named("GET /readyz"))
    assert client.kind is SpanKind.CLIENT
    trace_id, server_span_id = span_ids(server)
    client_trace_id, client_span_id = span_ids(client)
    assert (client_trace_id, parent_span_id(client)) == (trace_id, server_span_id)
    # The registry receives the client span's context as gRPC metadata.
    metadata = traced.registry.get_metadata[-1]["traceparent"]
    assert isinstance(metadata, str) and traceparent_ids(metadata) == (trace_id, client_span_id)
    assert not any("Health" in span.name for span in traced.spans.get_finished_spans())


async def test_log_lines_inside_a_span_carry_its_trace_and_span_ids(traced: TracedGateway) -> None:
    provider = tracer_provider()
    assert provider is not None
    record = logging.LogRecord("nanofaas_gateway", logging.ERROR, __file__, 1, "boom", None, None)
    formatter = JsonFormatter()
    assert not {"traceId", "spanId"} & set(orjson.loads(formatter.format(record)))
    with provider.get_tracer("test").start_as_current_span("work") as span:
        entry = orjson.loads(formatter.format(record))
    assert entry["traceId"] == format_trace_id(span.get_span_context().trace_id)
    assert entry["spanId"] == format_span_id(span.get_span_context().span_id)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "otlp"}, True),
    ],
)
def test_tracing_is_on_only_with_an_endpoint_and_not_disabled(
    environ: dict[str, str], expected: bool
) -> None:
    assert tracing_requested(environ) is expected


def test_service_name_defaults_to_the_gateway_and_otel_service_name_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nanofaas_gateway.otel_tracing import build_resource

    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    default = build_resource("nanofaas-gateway").attributes
    assert (default["service.name"], default["deployment.environment"]) == ("nanofaas-gateway", "test")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-gateway")
    assert build_resource("nanofaas-gateway").attributes["service.name"] == "edge-gateway"


_TRACING_OFF_PROBE = """
import asyncio, json, sys
from starlette.datastructures import Headers
from nanofaas_gateway import GatewayClients, Settings, create_app
from nanofaas_gateway.invocation_body import build_invoke_request
from nanofaas_gateway.tracing import setup_tracing

async def main():
    on = setup_tracing()
    settings = Settings()
    clients = GatewayClients.connect(settings)
    app = create_app(settings, clients)
    headers = Headers({"traceparent": "caller-header"})
    request = build_invoke_request(
        "f", headers, "application/json", b"{}", timeout_ms=None, min_registry_revision=0
    )
    await clients.close()
    prefixes = ("opentelemetry.sdk", "opentelemetry.instrumentation", "opentelemetry.exporter")
    loaded = sorted(m for m in sys.modules if m.startswith(prefixes))
    middleware = [m.cls.__name__ for m in app.user_middleware] + app.edge_layers()
    report = {"on": on, "loaded": loaded, "middleware": middleware, "traceparent": request.traceparent}
    print(json.dumps(report))

asyncio.run(main())
"""


def test_tracing_off_loads_and_installs_nothing() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", _TRACING_OFF_PROBE], env=env, capture_output=True, timeout=60, check=True
    )
    report = orjson.loads(result.stdout)
    assert report == {
        "on": False,
        "loaded": [],
        "middleware": ["MetricsMiddleware", "BodyLimitMiddleware", "InvocationFastPath"],
        "traceparent": "caller-header",
    }


async def test_process_exports_its_spans_over_otlp_when_stopped() -> None:
    """A real gateway process: spans buffered by the batch processor are flushed on SIGTERM."""
    receiver = OtlpReceiver()
    otlp_server, otlp_port = await start_otlp_receiver(receiver)
    registry_fake, scheduler_fake = FakeRegistry(), FakeScheduler()
    registry = await start_registry(registry_fake)
    scheduler = await start_scheduler(scheduler_fake)
    overrides = {
        "NANOFAAS_REGISTRY_ADDRESS": registry.address,
        "NANOFAAS_SCHEDULER_ADDRESS": scheduler.address,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        # Far beyond the test: only the flush at shutdown can export the spans.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    try:
        async with gateway_process(overrides) as gateway, aiohttp.ClientSession() as session:
            await asyncio.wait_for(gateway.read_until("gateway listening"), STARTUP_TIMEOUT_S)
            url = gateway.base_url + "/v1/functions/proc:invoke"
            async with session.post(url, json={"input": 1}, headers={"X-Trace-Id": "t-1"}) as response:
                assert response.status == 200
            assert not receiver.requests
            gateway.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(gateway.process.wait(), STARTUP_TIMEOUT_S) == 0
            await gateway.drain()
    finally:
        await scheduler.stop()
        await registry.stop()
        await otlp_server.stop(grace=None)
    assert any(entry["msg"] == "tracing on" for entry in gateway.log_lines)
    spans = [(resource, span) for resource, span in receiver.spans() if span.name == INVOKE_SPAN]
    assert len(spans) == 1
    resource, span = spans[0]
    assert resource["service.name"] == "nanofaas-gateway"
    attributes = {attribute.key: attribute.value.string_value for attribute in span.attributes}
    assert attributes[X_TRACE_ID_ATTRIBUTE] == "t-1"
    expected = (span.trace_id.hex(), span.span_id.hex())
    assert traceparent_ids(scheduler_fake.invokes[-1].traceparent) == expected


def test_parent_based_samplers_are_recognised_from_their_description() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, ParentBasedTraceIdRatio

    from nanofaas_gateway.otel_tracing import follows_unsampled_parents

    assert follows_unsampled_parents(ParentBasedTraceIdRatio(0.05))
    assert not follows_unsampled_parents(ALWAYS_ON)
    assert not follows_unsampled_parents(ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON))


async def test_server_spans_mark_a_5xx_and_honour_the_excluded_urls() -> None:
    """ServerSpans alone, around a tiny ASGI app: a 503 is an error; an excluded URL gets no span."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode
    from opentelemetry.util.http import ExcludeList
    from starlette.routing import Route

    from nanofaas_gateway.otel_tracing import ServerSpans
    from nanofaas_gateway.route_templates import RouteTemplates

    async def unavailable(scope: object, receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    templates = RouteTemplates([Route("/v1/functions/{name}:invoke", unavailable, methods=["POST"])])
    app = ServerSpans(
        unavailable,
        tracer=provider.get_tracer("t"),
        templates=templates,
        excluded_urls=ExcludeList(["readyz"]),
    )

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    for path in ("/readyz", "/v1/functions/f:invoke"):
        scope = {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "headers": [(b"host", b"gw")],
        }
        await app(scope, receive, send)
    (span,) = exporter.get_finished_spans()
    assert span.name == INVOKE_SPAN and span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 503
    provider.shutdown()


def test_the_resource_hashes_once_and_still_equals_the_sdks() -> None:
    """The exporter groups spans by resource: the cached hash must agree with an equal Resource's."""
    from opentelemetry.sdk.resources import Resource

    from nanofaas_gateway.otel_tracing import build_resource

    resource = build_resource("nanofaas-gateway")
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource == plain and hash(resource) == hash(plain)
    assert {resource: 1}[plain] == 1
