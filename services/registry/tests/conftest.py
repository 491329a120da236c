"""Shared fixtures: a real registry gRPC server on a free 127.0.0.1 port and a stub talking to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from nanofaas.v1 import registry_pb2_grpc, types_pb2
from nanofaas_registry.config import RegistrySettings
from nanofaas_registry.server import RegistryServer, start_server

SpecFactory = Callable[..., types_pb2.FunctionSpec]


def build_spec(name: str = "echo", **fields: object) -> types_pb2.FunctionSpec:
    """A minimal valid spec; keyword arguments set further proto fields."""
    spec = types_pb2.FunctionSpec(name=name, image="nanofaas/python-runtime:latest")
    for key, value in fields.items():
        if key == "env":
            assert isinstance(value, dict)
            spec.env.update(value)
        elif key == "command":
            assert isinstance(value, list)
            spec.command.extend(value)
        elif key == "resources":
            assert isinstance(value, types_pb2.Resources)
            spec.resources.CopyFrom(value)
        else:
            setattr(spec, key, value)
    return spec


@pytest.fixture
def make_spec() -> SpecFactory:
    return build_spec


@pytest.fixture
def settings() -> RegistrySettings:
    return RegistrySettings(host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_s=0.5)


@pytest.fixture
async def server(settings: RegistrySettings) -> AsyncIterator[RegistryServer]:
    running = await start_server(settings)
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def channel(server: RegistryServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as open_channel:
        yield open_channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> registry_pb2_grpc.RegistryAsyncStub:
    return registry_pb2_grpc.RegistryStub(channel)
