"""Executions named by their caller (InvokeRequest.execution_id), through a real gRPC server.

The name's shape is checked, a name in use is refused (never merged), and a name looked up
with retire_if_missing and not found is never admitted afterwards: the race a broken gateway
stream leaves (the lookup overtakes a request the scheduler already read) ends with the
request refused, not run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.core.execution import Execution
from nanofaas_scheduler.core.execution_names import RetiredNames
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.server import SchedulerServer

from .conftest import make_spec
from .test_server import FakeRegistry

WAIT_S = 10.0


class Running:
    def __init__(self, registry: FakeRegistry, server: SchedulerServer, channel: grpc.aio.Channel) -> None:
        self.registry = registry
        self.server = server
        self.stub = scheduler_pb2_grpc.SchedulerStub(channel)
        self.admitted: list[Execution] = []
        assert server.scheduler is not None
        server.scheduler.on_admit.append(self.admitted.append)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    registry = grpc.aio.server()
    fake = FakeRegistry(make_spec("fn"))  # type: ignore[abstract]
    registry_pb2_grpc.add_RegistryServicer_to_server(fake, registry)
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()

    async def echo(attempt: Attempt) -> Outcome:
        return Outcome(kind=OutcomeKind.SUCCESS, output=attempt.request.data)

    settings = Settings(port=0, metrics_port=0, registry_address=f"127.0.0.1:{registry_port}")
    server = SchedulerServer(settings, StubDispatcher(echo), metrics_registry=CollectorRegistry())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield Running(fake, server, channel)
    finally:
        await server.stop()
        await registry.stop(None)


def _request(name: str = "", key: str = "") -> scheduler_pb2.InvokeRequest:
    return scheduler_pb2.InvokeRequest(
        function_name="fn",
        input=types_pb2.Payload(data=b"1", content_type="application/json"),
        execution_id=name,
        idempotency_key=key,
    )


async def test_a_named_execution_keeps_its_name_and_a_name_in_use_is_refused(running: Running) -> None:
    name = uuid.uuid4().hex
    result = await running.stub.Invoke(_request(name), timeout=WAIT_S)
    assert result.execution_id == name and result.status == types_pb2.EXECUTION_STATE_SUCCESS
    found = await running.stub.GetExecution(scheduler_pb2.GetExecutionRequest(execution_id=name))
    assert found.execution_id == name
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.stub.Enqueue(_request(name), timeout=WAIT_S)
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert len(running.admitted) == 1  # not merged into the first one


@pytest.mark.parametrize("name", ["not-a-uuid", uuid.uuid4().hex.upper(), str(uuid.uuid4()), "a" * 33])
async def test_a_name_of_the_wrong_shape_is_refused(running: Running, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.stub.Enqueue(_request(name), timeout=WAIT_S)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "execution_id" in (caught.value.details() or "")
    assert not running.admitted


async def test_an_idempotent_call_returns_the_earlier_execution_under_its_own_id(running: Running) -> None:
    first = await running.stub.Enqueue(_request(uuid.uuid4().hex, key="k"), timeout=WAIT_S)
    again = await running.stub.Enqueue(_request(uuid.uuid4().hex, key="k"), timeout=WAIT_S)
    assert again.execution_id == first.execution_id
    assert len(running.admitted) == 1


async def test_a_plain_lookup_does_not_retire_a_name(running: Running) -> None:
    name = uuid.uuid4().hex
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.stub.GetExecution(scheduler_pb2.GetExecutionRequest(execution_id=name))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert (await running.stub.Enqueue(_request(name), timeout=WAIT_S)).execution_id == name


async def test_a_name_found_missing_is_never_admitted_even_from_a_request_already_read(
    running: Running,
) -> None:
    """The lookup overtakes a stream request the scheduler holds (waiting for the registry)."""
    name = uuid.uuid4().hex
    running.registry.get_gate.clear()
    outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[scheduler_pb2.StreamRequests]:
        while (message := await outbox.get()) is not None:
            yield scheduler_pb2.StreamRequests(calls=[message])

    call = running.stub.Stream(requests())
    outbox.put_nowait(scheduler_pb2.StreamRequest(call_id=1, invoke=_request(name), deadline_ms=10_000))
    await asyncio.wait_for(running.registry.get_waiting.wait(), WAIT_S)  # read, admission pending
    lookup = scheduler_pb2.GetExecutionRequest(execution_id=name, retire_if_missing=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.stub.GetExecution(lookup, timeout=WAIT_S)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    running.registry.get_gate.set()
    (response,) = (await asyncio.wait_for(anext(aiter(call)), WAIT_S)).results
    assert response.call_id == 1
    assert response.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert not running.admitted  # it did not run: the NOT_FOUND stays true
    outbox.put_nowait(None)
    call.cancel()


def test_retired_names_expire_after_their_ttl_and_are_bounded() -> None:
    now = [0.0]
    retired = RetiredNames(10.0, lambda: now[0], max_names=2)
    retired.retire("a")
    now[0] = 5.0
    retired.retire("b")
    assert "a" in retired and "b" in retired and "c" not in retired
    now[0] = 8.0
    retired.retire("c")  # over the bound: the oldest goes first
    assert "a" not in retired and "b" in retired and "c" in retired
    now[0] = 16.0
    assert "b" not in retired and "c" in retired  # b expired at 15, c expires at 18
