"""Tracing of real runtime processes: nothing of OpenTelemetry is loaded when it is off; when on,
spans reach an in-process OTLP/gRPC receiver before a one-shot process exits and when an
HTTP runtime is stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from nanofaas_runtime.watchdog.process import free_port

from .server_process import ServerProcess
from .support import handler_env, runtime_command

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
TIMEOUT_S = 60
# The batch processor would wait a minute: only the runtime's explicit flush can deliver in time.
BATCH_DELAY_MS = "60000"


@dataclass
class ReceivedSpan:
    resource: dict[str, str]
    span: trace_pb2.Span


@dataclass
class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC trace receiver keeping every exported span."""

    address: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(ReceivedSpan(resource, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def by_name(self) -> dict[str, ReceivedSpan]:
        named = {received.span.name: received for received in self.spans}
        assert len(named) == len(self.spans), [received.span.name for received in self.spans]
        return named

    def tracing_env(self, **extra: str) -> dict[str, str]:
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self.address}",
            "OTEL_BSP_SCHEDULE_DELAY": BATCH_DELAY_MS,
            **extra,
        }


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    servicer = OtlpReceiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    servicer.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    yield servicer
    await server.stop(0)


async def run_stdio(handler_dir: Path, function: str, request: bytes, **env: str) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *runtime_command("stdio"),
        env=handler_env(handler_dir, "funcs", function, **env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(request), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout, stderr


async def invoke_http(url: str, value: Any, **headers: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/invoke",
            data=orjson.dumps({"input": value}),
            headers={"Content-Type": "application/json", **headers},
        ) as response,
    ):
        assert response.status == 200
        return await response.json()


def hex_id(raw: bytes) -> str:
    return raw.hex()


def assert_one_invoke_span(received: OtlpReceiver, execution_id: str) -> None:
    spans = received.by_name()
    assert set(spans) == {"invoke"}
    invoke = spans["invoke"].span
    assert invoke.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert hex_id(invoke.trace_id) == TRACE_ID
    assert hex_id(invoke.parent_span_id) == PARENT_SPAN_ID
    attributes = {a.key: a.value.string_value for a in invoke.attributes}
    assert attributes["nanofaas.execution_id"] == execution_id
    assert attributes["faas.name"] == "traced-fn"
    resource = spans["invoke"].resource
    assert (resource["service.name"], resource["faas.name"]) == ("nanofaas-runtime", "traced-fn")


async def test_stdio_with_tracing_off_loads_no_opentelemetry(handler_dir: Path) -> None:
    code, stdout, stderr = await run_stdio(handler_dir, "loaded_modules", b'{"input": "opentelemetry"}')
    assert code == 0, stderr
    assert orjson.loads(stdout) == []


async def test_http_with_tracing_off_loads_no_opentelemetry(
    handler_dir: Path, receiver: OtlpReceiver
) -> None:
    """The same probe with tracing on does see OpenTelemetry, so the probe itself can fail."""
    loaded: dict[str, Any] = {}
    for label, env in (("off", {}), ("on", receiver.tracing_env())):
        server = await ServerProcess.start(
            runtime_command(),
            env=handler_env(handler_dir, "funcs", "loaded_modules", **env),
            port=free_port(),
        )
        try:
            await server.wait_ready(TIMEOUT_S)
            loaded[label] = await invoke_http(f"http://127.0.0.1:{server.port}", "opentelemetry")
        finally:
            await server.stop(10)
        assert server.returncode == 0, server.stderr_tail()  # SIGTERM is a normal stop
    assert loaded["off"] == []
    assert "opentelemetry.sdk.trace" in loaded["on"]


async def test_stdio_spans_are_exported_before_the_process_exits(
    handler_dir: Path, receiver: OtlpReceiver
) -> None:
    env = receiver.tracing_env(TRACEPARENT=TRACEPARENT, EXECUTION_ID="exec-s", FUNCTION_NAME="traced-fn")
    code, stdout, stderr = await run_stdio(handler_dir, "echo", b'{"input": 1}', **env)
    assert code == 0, stderr
    assert orjson.loads(stdout)["context"]["trace_id"] == TRACE_ID
    assert_one_invoke_span(receiver, "exec-s")
    assert {a.key: a.value.string_value for a in receiver.by_name()["invoke"].span.attributes}[
        "faas.trigger"
    ] == "stdio"


async def test_stdio_handler_error_keeps_its_message_last_and_marks_the_span(
    handler_dir: Path, receiver: OtlpReceiver
) -> None:
    env = receiver.tracing_env(TRACEPARENT=TRACEPARENT, FUNCTION_NAME="traced-fn")
    code, _, stderr = await run_stdio(handler_dir, "fail", b'{"input": 2}', **env)
    assert code == 1
    assert stderr.decode().splitlines()[-1] == "boom: 2"
    spans = receiver.by_name()
    assert [event.name for event in spans["invoke"].span.events] == ["exception"]
    assert spans["invoke"].span.status.code == trace_pb2.Status.STATUS_CODE_ERROR


async def test_http_spans_are_exported_when_the_runtime_stops(
    handler_dir: Path, receiver: OtlpReceiver
) -> None:
    env = receiver.tracing_env(FUNCTION_NAME="traced-fn")
    server = await ServerProcess.start(
        runtime_command(), env=handler_env(handler_dir, "funcs", "echo", **env), port=free_port()
    )
    try:
        await server.wait_ready(TIMEOUT_S)
        result = await invoke_http(
            f"http://127.0.0.1:{server.port}", 1, traceparent=TRACEPARENT, **{"X-Execution-Id": "exec-h"}
        )
        assert result["context"]["trace_id"] == TRACE_ID
        assert receiver.spans == []
    finally:
        await server.stop(10)
    assert server.returncode == 0, server.stderr_tail()
    assert_one_invoke_span(receiver, "exec-h")


async def test_job_spans_are_exported_and_the_callback_continues_the_invoke_span(
    handler_dir: Path, receiver: OtlpReceiver
) -> None:
    callbacks: list[dict[str, str]] = []

    async def complete(request: web.Request) -> web.Response:
        callbacks.append(dict(request.headers))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", complete)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    env = receiver.tracing_env(
        TRACEPARENT=TRACEPARENT,
        EXECUTION_ID="exec-j",
        FUNCTION_NAME="traced-fn",
        CALLBACK_URL=f"http://127.0.0.1:{port}",
        NANOFAAS_REQUEST='{"input": 1}',
    )
    process = await asyncio.create_subprocess_exec(
        *runtime_command("job"),
        env=handler_env(handler_dir, "funcs", "echo", **env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await runner.cleanup()
    assert process.returncode == 0, stderr
    assert_one_invoke_span(receiver, "exec-j")
    invoke = receiver.by_name()["invoke"].span
    [headers] = callbacks
    assert headers["traceparent"] == f"00-{TRACE_ID}-{hex_id(invoke.span_id)}-01"
