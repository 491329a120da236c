"""Span capture for the tracing tests: an in-memory exporter that can be awaited, and an OTLP receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPAN_TIMEOUT_S = 10.0
SpanPredicate = Callable[[ReadableSpan], bool]


class AwaitableSpanExporter(InMemorySpanExporter):
    """Keeps exported spans in memory and wakes tests waiting for a particular one.

    Spans end (and, with a SimpleSpanProcessor, are exported) on the event loop's
    thread, around the moment the client receives its response: tests wait here
    instead of assuming the span is already there.
    """

    def __init__(self) -> None:
        super().__init__()
        self._exported = asyncio.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        self._exported.set()
        return result

    async def wait_for(self, predicate: SpanPredicate) -> ReadableSpan:
        async with asyncio.timeout(SPAN_TIMEOUT_S):
            while True:
                self._exported.clear()
                for span in self.get_finished_spans():
                    if predicate(span):
                        return span
                await self._exported.wait()


def named(name: str) -> SpanPredicate:
    return lambda span: span.name == name


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: the collector's service definition, recording every export."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.received = asyncio.Event()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        self.received.set()
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict[str, str], Any]]:
        """(resource attributes, span) for every span received."""
        found: list[tuple[dict[str, str], Any]] = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {
                    attribute.key: attribute.value.string_value
                    for attribute in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found


async def start_otlp_receiver(receiver: OtlpReceiver) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port
