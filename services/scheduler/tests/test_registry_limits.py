"""The registry's limits reach the scheduler on Watch SYNCED and bound a caller's timeout_ms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.registry_cache import FunctionCache
from nanofaas_scheduler.server import SchedulerServer

from .conftest import make_spec

WAIT_S = 10.0


class ScriptedRegistry(registry_pb2_grpc.RegistryServicer):
    """One function; each Watch stream sends the next scripted SYNCED (limits or none), then stays open."""

    def __init__(self, *synced: registry_pb2.Limits | None) -> None:
        self._synced: Iterator[registry_pb2.Limits | None] = iter(synced)
        self.end_stream = asyncio.Event()

    async def Get(self, request: registry_pb2.GetFunctionRequest, context: Any) -> types_pb2.FunctionSpec:
        return make_spec("fn")

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: Any
    ) -> AsyncIterator[registry_pb2.WatchEvent]:
        limits = next(self._synced, None)
        event = registry_pb2.WatchEvent(type=registry_pb2.WatchEvent.SYNCED, revision=1)
        if limits is not None:
            event.limits.CopyFrom(limits)
        yield event
        await self.end_stream.wait()
        self.end_stream.clear()


def scripted(*synced: registry_pb2.Limits | None) -> ScriptedRegistry:
    return ScriptedRegistry(*synced)  # type: ignore[abstract]  # the scheduler needs only Get and Watch


@asynccontextmanager
async def registry_serving(fake: ScriptedRegistry) -> AsyncIterator[str]:
    server = grpc.aio.server()
    registry_pb2_grpc.add_RegistryServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_the_cache_keeps_the_latest_limits_across_resyncs() -> None:
    fake = scripted(registry_pb2.Limits(max_timeout_ms=5000), None, registry_pb2.Limits(max_timeout_ms=7000))
    async with registry_serving(fake) as address, grpc.aio.insecure_channel(address) as channel:
        cache = FunctionCache(registry_pb2_grpc.RegistryStub(channel))
        follow = asyncio.create_task(cache.run())
        try:
            async with asyncio.timeout(WAIT_S):
                assert await cache.max_timeout_ms() == 5000
                for expected in (5000, 7000):  # a SYNCED without limits keeps the last ones
                    cache.synced.clear()
                    fake.end_stream.set()
                    await cache.synced.wait()
                    assert await cache.max_timeout_ms() == expected
        finally:
            follow.cancel()


async def test_limits_never_synced_are_unknown() -> None:
    async with (
        registry_serving(scripted(None)) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        cache = FunctionCache(registry_pb2_grpc.RegistryStub(channel))
        follow = asyncio.create_task(cache.run())
        try:
            async with asyncio.timeout(WAIT_S):
                await cache.synced.wait()
                assert await cache.max_timeout_ms() is None
        finally:
            follow.cancel()


@asynccontextmanager
async def scheduler_with(fake: ScriptedRegistry) -> AsyncIterator[scheduler_pb2_grpc.SchedulerAsyncStub]:
    async def succeed(invocation: Any) -> Outcome:
        return Outcome(kind=OutcomeKind.SUCCESS, output=b"1")

    async with registry_serving(fake) as address:
        settings = Settings(port=0, metrics_port=0, registry_address=address)
        server = SchedulerServer(settings, StubDispatcher(succeed), metrics_registry=CollectorRegistry())
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                yield scheduler_pb2_grpc.SchedulerStub(channel)
        finally:
            await server.stop()


def invoke_request(timeout_ms: int) -> scheduler_pb2.InvokeRequest:
    return scheduler_pb2.InvokeRequest(
        function_name="fn",
        timeout_ms=timeout_ms,
        input=types_pb2.Payload(data=b"1", content_type="application/json"),
    )


async def test_timeout_ms_is_bounded_by_the_registrys_limit_whatever_its_size() -> None:
    async with scheduler_with(scripted(registry_pb2.Limits(max_timeout_ms=5000))) as stub:
        answered = await stub.Invoke(invoke_request(5000), timeout=WAIT_S)
        assert answered.status == types_pb2.EXECUTION_STATE_SUCCESS
        for bad in (0, -1, 5001, 2**40, 2**63 - 1, -(2**63)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Invoke(invoke_request(bad), timeout=WAIT_S)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert refused.value.details() == "timeout_ms: must be between 1 and 5000", bad


async def test_timeout_ms_is_refused_as_unavailable_while_the_limits_are_unknown() -> None:
    async with scheduler_with(scripted(None)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Invoke(invoke_request(1000), timeout=WAIT_S)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        answered = await stub.Invoke(
            scheduler_pb2.InvokeRequest(function_name="fn", input=types_pb2.Payload(data=b"1")),
            timeout=WAIT_S,
        )
        assert answered.status == types_pb2.EXECUTION_STATE_SUCCESS  # without timeout_ms nothing is needed
