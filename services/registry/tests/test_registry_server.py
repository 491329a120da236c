"""Server plumbing: standard health service, reflection, metrics endpoint, port conflicts."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from nanofaas_registry.config import RegistrySettings
from nanofaas_registry.server import RegistryServer, start_server

SpecFactory = Callable[..., types_pb2.FunctionSpec]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("service", ["", "nanofaas.v1.Registry"])
async def test_health_is_serving(channel: grpc.aio.Channel, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_unknown_service_is_not_found(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def reflect(
    channel: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield request

    async for response in stub.ServerReflectionInfo(requests(), timeout=5):
        return response
    raise AssertionError("no reflection response")


async def test_reflection_lists_services(channel: grpc.aio.Channel) -> None:
    response = await reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in response.list_services_response.service}
    assert {"nanofaas.v1.Registry", "grpc.health.v1.Health"} <= names


async def test_reflection_describes_registry(channel: grpc.aio.Channel) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="nanofaas.v1.Registry")
    response = await reflect(channel, request)
    assert response.HasField("file_descriptor_response")
    protos = response.file_descriptor_response.file_descriptor_proto
    assert any(b"nanofaas/v1/registry.proto" in proto for proto in protos)


@pytest.fixture
async def server_with_metrics() -> AsyncIterator[RegistryServer]:
    running = await start_server(RegistrySettings(host="127.0.0.1", port=0, metrics_port=free_port()))
    try:
        yield running
    finally:
        await running.stop(0.5)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


async def test_metrics_endpoint(server_with_metrics: RegistryServer, make_spec: SpecFactory) -> None:
    async with grpc.aio.insecure_channel(server_with_metrics.address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        await stub.Register(registry_pb2.RegisterRequest(spec=make_spec("fn")))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Get(registry_pb2.GetFunctionRequest(name="ghost"))
    assert server_with_metrics.metrics_port is not None
    text = await asyncio.to_thread(fetch, f"http://127.0.0.1:{server_with_metrics.metrics_port}/metrics")
    assert "registry_functions 1.0" in text
    assert 'registry_rpc_total{code="OK",method="Register"} 1.0' in text
    assert 'registry_rpc_total{code="NOT_FOUND",method="Get"} 1.0' in text


async def test_metrics_disabled_with_port_zero(server: RegistryServer) -> None:
    assert server.metrics_port is None


async def test_port_in_use_fails_to_start() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with pytest.raises(RuntimeError):
            await start_server(RegistrySettings(host="127.0.0.1", port=port, metrics_port=0))


async def test_stop_is_idempotent(server: RegistryServer) -> None:
    await server.stop(0)
    await server.stop(0)
    await asyncio.wait_for(server.wait_stopped(), 5)
