"""Spans of the HTTP runtime, in-process: the ASGI app with an injected tracer provider.

The provider is passed to RuntimeApp, so these tests never touch the process-global one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    TraceIdRatioBased,
)

from nanofaas_runtime.handler import Context, Handler
from nanofaas_runtime.invocation_spans import follows_unsampled_parents, parse_traceparent
from nanofaas_runtime.server import RuntimeApp

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


def current_ids() -> dict[str, str]:
    """What the user's code sees as the current span (proves it runs inside `invoke`)."""
    span_context = trace.get_current_span().get_span_context()
    return {
        "trace_id": trace.format_trace_id(span_context.trace_id),
        "span_id": trace.format_span_id(span_context.span_id),
    }


def sync_handler(request: dict[str, Any], context: Context) -> Any:
    if request["input"] == "fail":
        raise ValueError("boom")
    return {"context_trace_id": context.trace_id, "current": current_ids()}


async def async_handler(request: dict[str, Any], context: Context) -> Any:
    await asyncio.sleep(0)
    return {"context_trace_id": context.trace_id, "current": current_ids()}


HANDLERS = {
    "sync": Handler(func=sync_handler, name="t.sync", is_async=False, context_mode="positional"),
    "async": Handler(func=async_handler, name="t.async", is_async=True, context_mode="positional"),
}


@dataclass
class Response:
    status: int = 0
    body: bytes = b""
    messages: list[dict[str, Any]] = field(default_factory=list)

    def json(self) -> Any:
        return orjson.loads(self.body)


async def call(app: RuntimeApp, body: bytes, headers: dict[str, str], path: str = "/invoke") -> Response:
    """Drives the ASGI app the way uvicorn does, for one request."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    response = Response()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        response.messages.append(dict(message))
        if message["type"] == "http.response.start":
            response.status = message["status"]
        else:
            response.body += message.get("body", b"")

    await app(scope, receive, send)
    return response


@dataclass
class Traced:
    exporter: InMemorySpanExporter
    make_app: Callable[[str], RuntimeApp]

    def spans(self) -> dict[str, ReadableSpan]:
        finished = self.exporter.get_finished_spans()
        named = {span.name: span for span in finished}
        assert len(named) == len(finished), [span.name for span in finished]
        return named


@pytest.fixture
async def traced() -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def make_app(kind: str) -> RuntimeApp:
        return RuntimeApp(HANDLERS[kind], function_name="fn-env", tracer_provider=provider)

    yield Traced(exporter, make_app)
    provider.shutdown()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    assert span.attributes is not None
    return dict(span.attributes)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_one_invoke_span_continues_the_traceparent(traced: Traced, kind: str) -> None:
    headers = {"Content-Type": "application/json", "traceparent": TRACEPARENT, "X-Execution-Id": "exec-1"}
    response = await call(traced.make_app(kind), b'{"input": 1}', headers)
    assert response.status == 200
    spans = traced.spans()
    assert set(spans) == {"invoke"}
    invoke = spans["invoke"]
    assert invoke.kind is trace.SpanKind.SERVER
    assert trace.format_trace_id(invoke.context.trace_id) == TRACE_ID
    assert invoke.parent is not None and invoke.parent.is_remote
    assert trace.format_span_id(invoke.parent.span_id) == PARENT_SPAN_ID
    assert attributes(invoke) == {
        "faas.trigger": "http",
        "nanofaas.execution_id": "exec-1",
        "faas.name": "fn-env",
        "http.response.status_code": 200,
    }
    # The user's code runs inside `invoke` (also in the worker thread of a sync handler).
    result = response.json()
    assert result["current"] == {
        "trace_id": TRACE_ID,
        "span_id": trace.format_span_id(invoke.context.span_id),
    }
    assert result["context_trace_id"] == TRACE_ID


async def test_without_traceparent_a_new_trace_becomes_the_context_trace_id(traced: Traced) -> None:
    response = await call(traced.make_app("sync"), b'{"input": 1}', {"X-Function-Name": "hdr-fn"})
    assert response.status == 200
    invoke = traced.spans()["invoke"]
    assert invoke.parent is None
    trace_id = trace.format_trace_id(invoke.context.trace_id)
    assert response.json()["context_trace_id"] == trace_id
    assert attributes(invoke)["faas.name"] == "hdr-fn"


async def test_x_trace_id_is_kept_and_recorded(traced: Traced) -> None:
    headers = {"traceparent": TRACEPARENT, "X-Trace-Id": "legacy-trace"}
    response = await call(traced.make_app("sync"), b'{"input": 1}', headers)
    assert response.json()["context_trace_id"] == "legacy-trace"
    invoke = traced.spans()["invoke"]
    assert attributes(invoke)["nanofaas.x_trace_id"] == "legacy-trace"
    assert trace.format_trace_id(invoke.context.trace_id) == TRACE_ID


async def test_handler_error_is_recorded_on_the_invoke_span(traced: Traced) -> None:
    response = await call(traced.make_app("sync"), b'{"input": "fail"}', {"traceparent": TRACEPARENT})
    assert response.status == 500
    invoke = traced.spans()["invoke"]
    assert [event.name for event in invoke.events] == ["exception"]
    assert invoke.events[0].attributes is not None
    assert invoke.events[0].attributes["exception.type"] == "ValueError"
    assert invoke.status.status_code is trace.StatusCode.ERROR
    assert attributes(invoke)["http.response.status_code"] == 500


async def test_bad_request_gets_an_invoke_span_without_an_exception(traced: Traced) -> None:
    response = await call(traced.make_app("sync"), b"not json", {"traceparent": TRACEPARENT})
    assert response.status == 400
    spans = traced.spans()
    assert set(spans) == {"invoke"}
    assert attributes(spans["invoke"])["http.response.status_code"] == 400


async def test_health_is_not_traced(traced: Traced) -> None:
    app = traced.make_app("sync")
    scope = {"type": "http", "method": "GET", "path": "/health", "headers": []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert traced.exporter.get_finished_spans() == ()


async def test_without_a_provider_no_span_and_traceparent_still_gives_the_trace_id() -> None:
    app = RuntimeApp(HANDLERS["sync"])
    response = await call(app, b'{"input": 1}', {"traceparent": TRACEPARENT})
    result = response.json()
    assert result["context_trace_id"] == TRACE_ID
    assert result["current"]["trace_id"] == "0" * 32  # no span: the API's invalid span


async def test_a_not_sampled_traceparent_records_nothing_and_still_gives_the_trace_id() -> None:
    """Parent-based sampling: the caller decided "not sampled" (flags 00); nothing is exported,
    yet the handler still sees the caller's trace id and a span context continuing it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = RuntimeApp(HANDLERS["sync"], function_name="fn-env", tracer_provider=provider)
    response = await call(app, b'{"input": 1}', {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-00"})
    assert response.status == 200
    result = response.json()
    assert result["context_trace_id"] == TRACE_ID
    assert result["current"] == {"trace_id": TRACE_ID, "span_id": PARENT_SPAN_ID}  # the caller's, as is
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "garbage",
        f"00-{'0' * 32}-{PARENT_SPAN_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE_ID}-{PARENT_SPAN_ID}-01",  # forbidden version
        f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE_ID[:-1]}x-{PARENT_SPAN_ID}-01",  # not hex
    ],
)
def test_an_invalid_traceparent_is_not_continued(traceparent: str) -> None:
    assert parse_traceparent(traceparent) is None


def test_a_valid_traceparent_is_continued_with_its_sampled_flag() -> None:
    for flags, sampled in (("01", True), ("00", False), ("03", True)):
        context = parse_traceparent(f"00-{TRACE_ID}-{PARENT_SPAN_ID}-{flags}")
        parent = trace.get_current_span(context).get_span_context()
        assert (trace.format_trace_id(parent.trace_id), trace.format_span_id(parent.span_id)) == (
            TRACE_ID,
            PARENT_SPAN_ID,
        )
        assert parent.is_remote and parent.trace_flags.sampled is sampled
    # A later version may append fields; its first four are still read.
    assert parse_traceparent(f"01-{TRACE_ID}-{PARENT_SPAN_ID}-01-future") is not None


async def test_a_sampler_that_ignores_the_parent_still_decides_on_a_not_sampled_call() -> None:
    """Only a parent-based sampler lets the runtime skip its span; ALWAYS_ON samples anyway."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = RuntimeApp(HANDLERS["sync"], function_name="fn-env", tracer_provider=provider)
    response = await call(app, b'{"input": 1}', {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-00"})
    assert response.status == 200
    (invoke,) = exporter.get_finished_spans()
    assert invoke.parent is not None and trace.format_span_id(invoke.parent.span_id) == PARENT_SPAN_ID
    provider.shutdown()


def test_parent_based_samplers_are_recognised_from_their_description() -> None:
    assert follows_unsampled_parents(ParentBased(ALWAYS_ON))
    assert follows_unsampled_parents(ParentBasedTraceIdRatio(0.05))
    assert not follows_unsampled_parents(ALWAYS_ON)
    assert not follows_unsampled_parents(TraceIdRatioBased(0.05))
    assert not follows_unsampled_parents(ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON))
    assert not follows_unsampled_parents(None)


def test_the_providers_resource_hashes_once_and_still_equals_the_sdks() -> None:
    """The exporter groups spans by resource: the cached hash must agree with an equal Resource's."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from nanofaas_runtime.tracing import create_tracer_provider

    resource = create_tracer_provider(exporter=InMemorySpanExporter(), function_name="fn").resource
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource.attributes["faas.name"] == "fn"
    assert resource == plain and hash(resource) == hash(plain)
    assert {resource: 1}[plain] == 1
