"""API authentication of the scheduler's gRPC API, and completion tokens over gRPC (issue 17).

Real gRPC servers: the scheduler, and a registry that demands the same bearer
tokens (so an invocation that works proves the scheduler sent its credentials).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.api_auth import BearerAuth, TokenFile
from nanofaas_scheduler.config import ConfigError, Settings
from nanofaas_scheduler.core.outcome import Outcome, success
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.server import SchedulerServer

from .conftest import make_spec
from .test_server import FakeRegistry

WAIT_S = 10.0
JSON = "application/json"


def write_tokens(path: Path, *tokens: str) -> None:
    """Replace the file at once, as a Secret volume update does (a new inode)."""
    staged = path.with_suffix(".new")
    staged.write_text("# API tokens\n" + "".join(f"{token}\n" for token in tokens))
    os.replace(staged, path)


class Attempts:
    """A backend whose attempts wait until released, so a test can report them out of band."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[Attempt] = asyncio.Queue()
        self.release = asyncio.Event()

    async def __call__(self, attempt: Attempt) -> Outcome:
        await self.started.put(attempt)
        await self.release.wait()
        return success(b'"in-band"')


class RecordingAuth(BearerAuth):
    """The registry's interceptor, noting each method a call came in with the platform's token."""

    def __init__(self, tokens: TokenFile) -> None:
        super().__init__(tokens)
        self.watched = asyncio.Event()

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        metadata = dict(handler_call_details.invocation_metadata or ())
        if handler_call_details.method.endswith("/Watch") and metadata.get("authorization", "").startswith(
            "Bearer platform-token"
        ):
            self.watched.set()
        return await super().intercept_service(continuation, handler_call_details)


@dataclass
class Platform:
    scheduler: SchedulerServer
    address: str
    tokens: Path
    backend: Attempts
    registry_auth: RecordingAuth


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    tokens = tmp_path / "tokens"
    write_tokens(tokens, "platform-token", "client-token")
    registry_auth = RecordingAuth(TokenFile(str(tokens)))
    registry = grpc.aio.server(interceptors=[registry_auth])
    registry_pb2_grpc.add_RegistryServicer_to_server(FakeRegistry(make_spec("fn")), registry)  # type: ignore[abstract]
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()
    backend = Attempts()
    settings = Settings(
        port=0,
        metrics_port=0,
        registry_address=f"127.0.0.1:{registry_port}",
        api_tokens_file=str(tokens),
        shutdown_grace_s=0.5,
    )
    server = SchedulerServer(settings, StubDispatcher(backend), metrics_registry=CollectorRegistry())
    await server.start()
    try:
        yield Platform(server, f"127.0.0.1:{server.port}", tokens, backend, registry_auth)
    finally:
        backend.release.set()
        await server.stop()
        await registry.stop(None)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def invoke_request() -> scheduler_pb2.InvokeRequest:
    return scheduler_pb2.InvokeRequest(
        function_name="fn", input=types_pb2.Payload(data=b"1", content_type=JSON)
    )


def completion(
    execution_id: str, token: str = "", attempt: int = 0
) -> scheduler_pb2.CompleteExecutionRequest:
    return scheduler_pb2.CompleteExecutionRequest(
        execution_id=execution_id,
        status=types_pb2.EXECUTION_STATE_SUCCESS,
        output=types_pb2.Payload(data=b'{"forged":true}', content_type=JSON),
        attempt=attempt,
        completion_token=token,
    )


async def test_calls_without_credentials_are_refused_but_health_is_open(platform: Platform) -> None:
    async with grpc.aio.insecure_channel(platform.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        calls: dict[str, Awaitable[object]] = {
            "Invoke": stub.Invoke(invoke_request(), timeout=WAIT_S),
            "Enqueue": stub.Enqueue(invoke_request(), timeout=WAIT_S),
            "CompleteExecution": stub.CompleteExecution(completion("e-1"), timeout=WAIT_S),
            "GetExecution": stub.GetExecution(
                scheduler_pb2.GetExecutionRequest(execution_id="e"), timeout=WAIT_S
            ),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            trailers = cast("tuple[tuple[str, str], ...]", refused.value.trailing_metadata() or ())
            assert ("x-error-code", "UNAUTHENTICATED") in tuple(trailers)
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await stub.Enqueue(invoke_request(), metadata=bearer("guess"), timeout=WAIT_S)
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "guess" not in (wrong.value.details() or "")
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # Any token of the file is accepted; the function was found, so the scheduler's
        # own registry calls carried the platform's token.
        admitted = await stub.Enqueue(invoke_request(), metadata=bearer("client-token"), timeout=WAIT_S)
        assert admitted.execution_id
        # Streams too: the registry watch (a server stream) carried it.
        await asyncio.wait_for(platform.registry_auth.watched.wait(), WAIT_S)


async def test_completion_needs_the_attempts_token_and_is_idempotent_for_its_owner(
    platform: Platform,
) -> None:
    async with grpc.aio.insecure_channel(platform.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        creds = bearer("client-token")
        admitted = await stub.Enqueue(invoke_request(), metadata=creds, timeout=WAIT_S)
        attempt = await asyncio.wait_for(platform.backend.started.get(), WAIT_S)
        assert attempt.execution_id == admitted.execution_id
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.CompleteExecution(completion(admitted.execution_id, "forged"), metadata=creds)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        bad_status = completion(admitted.execution_id, attempt.completion_token)
        bad_status.status = types_pb2.EXECUTION_STATE_QUEUED
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.CompleteExecution(bad_status, metadata=creds)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        owner = completion(admitted.execution_id, attempt.completion_token, attempt=1)
        assert (await stub.CompleteExecution(owner, metadata=creds)).accepted
        assert not (await stub.CompleteExecution(owner, metadata=creds)).accepted  # repeated: no effect
        ended = await stub.GetExecution(
            scheduler_pb2.GetExecutionRequest(execution_id=admitted.execution_id), metadata=creds
        )
        assert ended.status == types_pb2.EXECUTION_STATE_SUCCESS
        assert attempt.completion_token.encode() not in ended.SerializeToString()


async def test_rotating_the_tokens_file_needs_no_restart(platform: Platform) -> None:
    async with grpc.aio.insecure_channel(platform.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        await stub.Enqueue(invoke_request(), metadata=bearer("client-token"), timeout=WAIT_S)
        write_tokens(platform.tokens, "platform-token-2", "client-token-2")
        with pytest.raises(grpc.aio.AioRpcError) as old:
            await stub.Enqueue(invoke_request(), metadata=bearer("client-token"), timeout=WAIT_S)
        assert old.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The registry re-read the file too, and the scheduler now sends the new first token.
        admitted = await stub.Enqueue(invoke_request(), metadata=bearer("client-token-2"), timeout=WAIT_S)
        assert admitted.execution_id


async def test_without_auth_a_completion_needs_its_token_and_the_external_listener_serves_only_health() -> (
    None
):
    registry = grpc.aio.server()
    registry_pb2_grpc.add_RegistryServicer_to_server(FakeRegistry(make_spec("fn")), registry)  # type: ignore[abstract]
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()
    settings = Settings(
        port=0,
        metrics_port=0,
        registry_address=f"127.0.0.1:{registry_port}",
        external_host="127.0.0.2",  # another loopback address, the same port: as a pod IP is
    )
    backend = Attempts()
    server = SchedulerServer(settings, StubDispatcher(backend), metrics_registry=CollectorRegistry())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scheduler_pb2_grpc.SchedulerStub(channel)
            admitted = await stub.Enqueue(invoke_request(), timeout=WAIT_S)
            await asyncio.wait_for(backend.started.get(), WAIT_S)
            with pytest.raises(grpc.aio.AioRpcError) as missing:  # nobody is an operator with auth off
                await stub.CompleteExecution(completion(admitted.execution_id), timeout=WAIT_S)
            assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with grpc.aio.insecure_channel(f"127.0.0.2:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT_S)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await scheduler_pb2_grpc.SchedulerStub(channel).Enqueue(invoke_request(), timeout=WAIT_S)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        backend.release.set()
        await server.stop()
        await registry.stop(None)


@pytest.mark.parametrize("content", [None, "", "# only a comment\n\n"])
def test_an_unusable_tokens_file_stops_the_scheduler_at_start(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "tokens"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="NANOFAAS_API_TOKENS_FILE"):
        Settings.from_env({"NANOFAAS_API_TOKENS_FILE": str(path)})
