"""`python -m nanofaas_registry` as a real process: serves, logs JSON lines, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2

TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_serving(address: str) -> None:
    """Follows the health Watch stream (which waits for the server to come up) until SERVING."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="nanofaas.v1.Registry")
        stream = stub.Watch(request, wait_for_ready=True)
        async for response in stream:
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                stream.cancel()
                return
    raise AssertionError("health stream ended before SERVING")


@pytest.fixture
async def registry_process() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    env = {
        **os.environ,
        "NANOFAAS_REGISTRY_HOST": "127.0.0.1",
        "NANOFAAS_REGISTRY_PORT": str(port),
        "NANOFAAS_REGISTRY_METRICS_PORT": str(free_port()),
        "LOG_LEVEL": "INFO",
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nanofaas_registry",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_process_serves_and_stops_cleanly_on_sigterm(
    registry_process: tuple[asyncio.subprocess.Process, str],
) -> None:
    process, address = registry_process
    await asyncio.wait_for(wait_until_serving(address), TIMEOUT_S)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        spec = types_pb2.FunctionSpec(name="echo", image="nanofaas/python-runtime")
        created = await stub.Register(registry_pb2.RegisterRequest(spec=spec), timeout=5)
        assert created.revision == 1
    process.send_signal(signal.SIGTERM)
    assert process.stderr is not None
    stderr, returncode = await asyncio.wait_for(
        asyncio.gather(process.stderr.read(), process.wait()), TIMEOUT_S
    )
    assert returncode == 0, stderr.decode(errors="replace")
    records = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    assert all({"ts", "level", "service", "msg"} <= record.keys() for record in records)
    messages = [record["msg"] for record in records]
    assert "registry listening" in messages
    assert "function registered" in messages
    assert messages[-1] == "registry stopped"


async def test_process_exits_nonzero_on_bad_config() -> None:
    env = {**os.environ, "NANOFAAS_REGISTRY_PORT": "not-a-port"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nanofaas_registry",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    assert stderr.decode().splitlines() == [
        "nanofaas-registry: NANOFAAS_REGISTRY_PORT: must be an integer between 0 and 65535 (got 'not-a-port')"
    ]


async def run_to_exit(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nanofaas_registry",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")


async def test_process_exits_2_on_an_unknown_store() -> None:
    returncode, stderr = await run_to_exit({**os.environ, "NANOFAAS_REGISTRY_STORE": "etcd"})
    assert returncode == 2
    assert stderr.splitlines() == [
        "nanofaas-registry: NANOFAAS_REGISTRY_STORE: must be one of memory, sqlite, kubernetes (got 'etcd')"
    ]


async def test_process_exits_1_with_one_line_on_a_corrupt_store_file(tmp_path: Path) -> None:
    (tmp_path / "registry.db").write_bytes(b"not a database" * 200)
    env = {
        **os.environ,
        "NANOFAAS_REGISTRY_STORE": "sqlite",
        "NANOFAAS_DATA_DIR": str(tmp_path),
        "NANOFAAS_REGISTRY_PORT": str(free_port()),
        "NANOFAAS_REGISTRY_METRICS_PORT": "0",
    }
    returncode, stderr = await run_to_exit(env)
    assert returncode == 1
    assert "Traceback" not in stderr
    last = json.loads(stderr.splitlines()[-1])
    assert (last["level"], last["msg"]) == ("ERROR", "function store unusable")
    assert last["reason"].startswith(f"{tmp_path / 'registry.db'}: cannot read the function store")


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC trace receiver: keeps every exported span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []  # (service.name, span name)
        self.received = asyncio.Event()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((attributes.get("service.name", ""), span.name))
        self.received.set()
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_spans_are_exported_on_graceful_stop() -> None:
    """The batch processor would wait seconds; SIGTERM must flush the last RPC's span before exit."""
    receiver = OtlpReceiver()
    collector = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, collector)  # type: ignore[no-untyped-call]
    collector_port = collector.add_insecure_port("127.0.0.1:0")
    await collector.start()
    port = free_port()
    env = {
        **os.environ,
        "NANOFAAS_REGISTRY_HOST": "127.0.0.1",
        "NANOFAAS_REGISTRY_PORT": str(port),
        "NANOFAAS_REGISTRY_METRICS_PORT": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
    }
    env.pop("OTEL_SERVICE_NAME", None)
    env.pop("OTEL_SDK_DISABLED", None)
    env.pop("OTEL_TRACES_EXPORTER", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nanofaas_registry",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        address = f"127.0.0.1:{port}"
        await asyncio.wait_for(wait_until_serving(address), TIMEOUT_S)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            await stub.List(registry_pb2.ListFunctionsRequest(), timeout=5)
        assert receiver.spans == []
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        stderr, returncode = await asyncio.wait_for(
            asyncio.gather(process.stderr.read(), process.wait()), TIMEOUT_S
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await collector.stop(0)
    assert returncode == 0, stderr.decode(errors="replace")
    assert receiver.spans == [("nanofaas-registry", "/nanofaas.v1.Registry/List")]


def test_tracing_off_imports_no_sdk() -> None:
    """Without OTEL_* settings the registry must not load the SDK, exporter or instrumentation."""
    code = (
        "import sys\n"
        "from nanofaas_registry import __main__, server, tracing\n"
        "assert not tracing.setup_tracing()\n"
        "assert tracing.server_interceptors() == []\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('opentelemetry'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
