"""The scheduler's gRPC server: ready once synced with the registry, reflection, readiness drops on stop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.core.execution import Execution
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.server import SchedulerServer

from .conftest import make_spec


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeRegistry(registry_pb2_grpc.RegistryServicer):
    """Just enough registry for the scheduler: a watch that syncs empty, and Get."""

    def __init__(self, *specs: types_pb2.FunctionSpec) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.sync_gate = asyncio.Event()  # cleared: the watch holds its SYNCED back
        self.sync_gate.set()
        self.get_gate = asyncio.Event()  # cleared: Get waits (admission is then pending)
        self.get_gate.set()
        self.get_waiting = asyncio.Event()

    async def Get(self, request: registry_pb2.GetFunctionRequest, context: Any) -> types_pb2.FunctionSpec:
        self.get_waiting.set()
        await self.get_gate.wait()
        if request.name not in self.specs:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such function")
        return self.specs[request.name]

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: Any
    ) -> AsyncIterator[registry_pb2.WatchEvent]:
        await self.sync_gate.wait()
        yield registry_pb2.WatchEvent(type=registry_pb2.WatchEvent.SYNCED, revision=0)
        await asyncio.Event().wait()


async def test_ready_only_after_the_first_registry_sync_then_reflection_and_graceful_stop() -> None:
    registry = grpc.aio.server()
    fake = FakeRegistry()  # type: ignore[abstract]
    fake.sync_gate.clear()
    registry_pb2_grpc.add_RegistryServicer_to_server(fake, registry)
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()
    settings = Settings(
        port=0, metrics_port=0, registry_address=f"127.0.0.1:{registry_port}", shutdown_grace_s=1
    )
    server = SchedulerServer(settings, StubDispatcher(), metrics_registry=CollectorRegistry())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            updates = health.Watch(health_pb2.HealthCheckRequest(service=""))
            first = await asyncio.wait_for(updates.read(), 15)
            assert first.status == health_pb2.HealthCheckResponse.NOT_SERVING  # listening, not synced
            fake.sync_gate.set()
            second = await asyncio.wait_for(updates.read(), 15)
            assert second.status == health_pb2.HealthCheckResponse.SERVING
            updates.cancel()
            for service in ("", "nanofaas.v1.Scheduler"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for answer in reflection.ServerReflectionInfo(iter([request])):
                names = {service.name for service in answer.list_services_response.service}
                break
            assert {"nanofaas.v1.Scheduler", "grpc.health.v1.Health"} <= names
    finally:
        await server.stop()
        await registry.stop(None)


async def test_the_rpc_deadline_bounds_the_execution() -> None:
    registry = grpc.aio.server()
    fake = FakeRegistry(make_spec("slow", timeout_ms=60_000))  # type: ignore[abstract]
    registry_pb2_grpc.add_RegistryServicer_to_server(fake, registry)
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()
    started = asyncio.Event()

    async def hang(attempt: Attempt) -> Outcome:
        started.set()
        await asyncio.sleep(attempt.timeout)
        return Outcome(kind=OutcomeKind.TIMEOUT, error_code="TIMEOUT")

    settings = Settings(port=0, metrics_port=0, registry_address=f"127.0.0.1:{registry_port}")
    server = SchedulerServer(settings, StubDispatcher(hang), metrics_registry=CollectorRegistry())
    await server.start()
    assert server.scheduler is not None
    admitted: list[Execution] = []
    server.scheduler.on_admit.append(admitted.append)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scheduler_pb2_grpc.SchedulerStub(channel)
            request = scheduler_pb2.InvokeRequest(
                function_name="slow", input=types_pb2.Payload(data=b"1", content_type="application/json")
            )
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.Invoke(request, timeout=1.0)
        await started.wait()
        (execution,) = [e for e in admitted if e.function_name == "slow"]
        await execution.done.wait()
        assert execution.timeout_ms <= 1500  # the 60 s function timeout was lowered to the RPC's deadline
        assert execution.state.value in ("timeout", "error")
    finally:
        await server.stop()
        await registry.stop(None)


async def test_stream_multiplexes_calls_errors_and_cancellation() -> None:
    registry = grpc.aio.server()
    fake = FakeRegistry(make_spec("fn", concurrency=1))  # type: ignore[abstract]
    registry_pb2_grpc.add_RegistryServicer_to_server(fake, registry)
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()
    release = asyncio.Event()

    async def gated(attempt: Attempt) -> Outcome:
        if attempt.request.data == b'"block"':
            await release.wait()
        return Outcome(kind=OutcomeKind.SUCCESS, output=attempt.request.data)

    settings = Settings(port=0, metrics_port=0, registry_address=f"127.0.0.1:{registry_port}")
    server = SchedulerServer(settings, StubDispatcher(gated), metrics_registry=CollectorRegistry())
    await server.start()
    assert server.scheduler is not None
    cancelled: list[Execution] = []
    one_cancelled = asyncio.Event()

    def on_end(execution: Execution) -> None:
        if execution.error_code == "CANCELLED":
            cancelled.append(execution)
            one_cancelled.set()

    server.scheduler.on_end.append(on_end)
    outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[scheduler_pb2.StreamRequests]:
        while (message := await outbox.get()) is not None:
            yield scheduler_pb2.StreamRequests(calls=[message])

    def invoke(
        call_id: int, function: str, value: bytes, kind: str = "invoke"
    ) -> scheduler_pb2.StreamRequest:
        request = scheduler_pb2.InvokeRequest(
            function_name=function, input=types_pb2.Payload(data=value, content_type="application/json")
        )
        message = scheduler_pb2.StreamRequest(call_id=call_id)
        getattr(message, kind).CopyFrom(request)
        return message

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = scheduler_pb2_grpc.SchedulerStub(channel).Stream(requests())
            outbox.put_nowait(invoke(1, "fn", b'"block"'))  # occupies the only slot
            outbox.put_nowait(invoke(2, "fn", b'"queued"'))  # waits behind it...
            outbox.put_nowait(invoke(3, "missing", b"1"))
            outbox.put_nowait(invoke(4, "fn", b"4", kind="enqueue"))
            responses = {}
            async for batch in call:
                for response in batch.results:
                    responses[response.call_id] = response
                if {3, 4} <= responses.keys():
                    break
            assert responses[3].error.code == grpc.StatusCode.NOT_FOUND.value[0]
            assert responses[4].enqueue.status == types_pb2.EXECUTION_STATE_QUEUED
            outbox.put_nowait(scheduler_pb2.StreamRequest(call_id=2, cancel=scheduler_pb2.CancelCall()))
            # ...until its caller cancels it: it is dropped, not run.
            await asyncio.wait_for(one_cancelled.wait(), 10)
            assert len(cancelled) == 1
            release.set()
            async for batch in call:
                for response in batch.results:
                    responses[response.call_id] = response
                if 1 in responses:
                    break
            assert responses[1].invoke.status == types_pb2.EXECUTION_STATE_SUCCESS
            assert responses[1].invoke.output.data == b'"block"'
            assert 2 not in responses
            outbox.put_nowait(None)
    finally:
        await server.stop()
        await registry.stop(None)
