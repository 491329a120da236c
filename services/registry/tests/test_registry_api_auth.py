"""API authentication of the registry's gRPC API (issue 17: Register and Delete needed no credentials)."""

from __future__ import annotations

import os
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nanofaas.v1 import registry_pb2, registry_pb2_grpc
from nanofaas_registry.config import ConfigError, RegistrySettings
from nanofaas_registry.server import start_server

from .conftest import build_spec

WAIT_S = 10.0


def write_tokens(path: Path, *tokens: str) -> None:
    """Replace the file at once, as a Secret volume update does (a new inode)."""
    staged = path.with_suffix(".new")
    staged.write_text("".join(f"{token}\n" for token in tokens))
    os.replace(staged, path)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def refused(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value.code()


async def test_mutations_and_reads_need_a_token_when_auth_is_on(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    write_tokens(tokens, "platform-token", "ops-token")
    settings = RegistrySettings(
        host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_s=0.5, api_tokens_file=str(tokens)
    )
    server = await start_server(settings)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            register = registry_pb2.RegisterRequest(spec=build_spec("fn"))
            unauthenticated = grpc.StatusCode.UNAUTHENTICATED
            assert await refused(stub.Register(register, timeout=WAIT_S)) == unauthenticated
            assert (
                await refused(stub.Register(register, metadata=bearer("nope"), timeout=WAIT_S))
                == unauthenticated
            )
            created = await stub.Register(register, metadata=bearer("ops-token"), timeout=WAIT_S)
            assert created.name == "fn"
            delete = registry_pb2.DeleteFunctionRequest(name="fn")
            assert await refused(stub.Delete(delete, timeout=WAIT_S)) == unauthenticated
            get = registry_pb2.GetFunctionRequest(name="fn")
            assert await refused(stub.Get(get, timeout=WAIT_S)) == unauthenticated
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT_S)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

            # Rotation: the file changes, the registry keeps running.
            write_tokens(tokens, "platform-token-2")
            assert (
                await refused(stub.Delete(delete, metadata=bearer("ops-token"), timeout=WAIT_S))
                == unauthenticated
            )
            await stub.Delete(delete, metadata=bearer("platform-token-2"), timeout=WAIT_S)
            assert (
                await refused(stub.Get(get, metadata=bearer("platform-token-2"))) == grpc.StatusCode.NOT_FOUND
            )
    finally:
        await server.stop(0.5)


async def test_the_external_listener_serves_only_health_without_auth() -> None:
    # Another loopback address on the same port, as a pod IP beside 127.0.0.1.
    settings = RegistrySettings(host="127.0.0.1", port=0, metrics_port=0, external_host="127.0.0.2")
    server = await start_server(settings)
    external = f"127.0.0.2:{server.port}"
    try:
        register = registry_pb2.RegisterRequest(spec=build_spec("fn"))
        async with grpc.aio.insecure_channel(server.address) as channel:  # the pod's own containers
            await registry_pb2_grpc.RegistryStub(channel).Register(register, timeout=WAIT_S)
        async with grpc.aio.insecure_channel(external) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            get = registry_pb2.GetFunctionRequest(name="fn")
            assert await refused(stub.Get(get, timeout=WAIT_S)) == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT_S)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0.5)


def test_an_empty_tokens_file_stops_the_registry_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("\n# nothing\n")
    with pytest.raises(ConfigError, match="NANOFAAS_API_TOKENS_FILE"):
        RegistrySettings.from_env({"NANOFAAS_API_TOKENS_FILE": str(path)})
