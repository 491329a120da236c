"""The callback outbox: due deliveries offered to subscribers, forgotten on ack, offered again when a
stream ends unacknowledged, bounded; directly and through the real gRPC server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.callbacks import CallbackOutbox
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.core.execution import Execution, Request
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.grpc_service import status_message
from nanofaas_scheduler.server import SchedulerServer

from .conftest import make_spec

WAIT_S = 10.0
URL = "http://receiver.example/hook"


def ended(execution_id: str = "e1", url: str = URL) -> Execution:
    execution = Execution(
        id=execution_id,
        function_name="fn",
        request=Request(b"1", "application/json", {}),
        trace_id="t",
        callback_url=url,
    )
    execution.attempts = 1
    execution.finish(Outcome(kind=OutcomeKind.SUCCESS, output=b'{"ok":true}'))
    return execution


class Stream:
    """One subscriber of an outbox, as the Callbacks RPC would drive it."""

    def __init__(self, outbox: CallbackOutbox) -> None:
        self._acks: asyncio.Queue[scheduler_pb2.CallbackAck | None] = asyncio.Queue()
        self.dues: AsyncGenerator[scheduler_pb2.CallbackDue, None] = outbox.serve(self._ack_stream())

    async def _ack_stream(self) -> AsyncIterator[scheduler_pb2.CallbackAck]:
        while (ack := await self._acks.get()) is not None:
            yield ack
            self._acks.task_done()  # the outbox asked for the next: it has handled this one
        self._acks.task_done()

    async def next(self) -> scheduler_pb2.CallbackDue:
        async with asyncio.timeout(WAIT_S):
            return await anext(self.dues)

    async def ack(self, delivery_id: int) -> None:
        """Acknowledge, and return once the outbox has handled it."""
        self._acks.put_nowait(scheduler_pb2.CallbackAck(delivery_id=delivery_id))
        async with asyncio.timeout(WAIT_S):
            await self._acks.join()

    def end_acks(self) -> None:
        """The subscriber closes its side (a gateway leaving)."""
        self._acks.put_nowait(None)


def outbox_with(registry: CollectorRegistry | None = None, **options: Any) -> CallbackOutbox:
    return CallbackOutbox(status_message, registry=registry or CollectorRegistry(), **options)


async def test_a_due_delivery_is_the_execution_status_and_is_forgotten_on_ack() -> None:
    metrics = CollectorRegistry()
    outbox = outbox_with(metrics)
    execution = ended()
    outbox(execution)
    outbox(ended("no-callback", url=""))  # no callback asked for: nothing is queued
    assert outbox.pending == 1
    stream = Stream(outbox)
    due = await stream.next()
    assert due.url == URL
    assert due.status == status_message(execution)
    assert due.status.output.data == b'{"ok":true}'
    assert metrics.get_sample_value("callbacks_pending") == 1.0
    await stream.ack(due.delivery_id)
    stream.end_acks()
    with pytest.raises(StopAsyncIteration):
        await stream.next()  # the subscriber closed its side: the stream ends
    assert outbox.pending == 0
    assert metrics.get_sample_value("callbacks_pending") == 0.0


@pytest.mark.parametrize("how", ["acks ended", "stream closed"])
async def test_unacknowledged_deliveries_go_to_the_next_subscriber(how: str) -> None:
    outbox = outbox_with()
    outbox(ended("e1"))
    outbox(ended("e2"))
    first = Stream(outbox)
    one, two = await first.next(), await first.next()
    await first.ack(one.delivery_id)
    if how == "acks ended":
        first.end_acks()
        with pytest.raises(StopAsyncIteration):
            await first.next()
    else:
        await first.dues.aclose()  # the RPC was cancelled (the gateway vanished)
    assert outbox.pending == 1
    second = Stream(outbox)
    again = await second.next()
    assert again == two
    await second.ack(again.delivery_id)
    assert outbox.pending == 0


async def test_each_delivery_goes_to_one_subscriber_and_the_window_bounds_what_each_holds() -> None:
    outbox = outbox_with(window=1)
    a, b = Stream(outbox), Stream(outbox)
    for n in range(4):
        outbox(ended(f"e{n}"))
    first_a = await a.next()
    first_b = await b.next()  # a holds its window's worth: b gets the next
    pending_a = asyncio.ensure_future(a.next())
    await asyncio.sleep(0)
    assert not pending_a.done()  # nothing more for a until it acknowledges
    await a.ack(first_a.delivery_id)
    second_a = await pending_a
    await b.ack(first_b.delivery_id)
    second_b = await b.next()
    ids = [due.delivery_id for due in (first_a, first_b, second_a, second_b)]
    assert sorted(ids) == [1, 2, 3, 4]
    assert {due.status.execution_id for due in (first_a, first_b, second_a, second_b)} == {
        "e0",
        "e1",
        "e2",
        "e3",
    }


async def test_a_full_outbox_drops_the_oldest_with_a_warning_and_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = CollectorRegistry()
    outbox = outbox_with(metrics, max_pending=2)
    with caplog.at_level(logging.WARNING, logger="nanofaas_scheduler.callbacks"):
        for n in range(3):
            outbox(ended(f"e{n}"))
    assert outbox.pending == 2
    assert metrics.get_sample_value("callbacks_dropped_total") == 1.0
    (warning,) = [r for r in caplog.records if r.getMessage() == "callback dropped: outbox full"]
    assert warning.__dict__["executionId"] == "e0"
    stream = Stream(outbox)
    assert [(await stream.next()).status.execution_id for _ in range(2)] == ["e1", "e2"]


async def test_when_all_pending_are_held_the_oldest_held_is_dropped() -> None:
    outbox = outbox_with(max_pending=1)
    outbox(ended("e0"))
    stream = Stream(outbox)
    held = await stream.next()
    outbox(ended("e1"))
    assert outbox.pending == 1
    await stream.ack(held.delivery_id)  # acknowledging a dropped delivery is harmless
    assert (await stream.next()).status.execution_id == "e1"


async def test_close_waits_for_acknowledgements_then_ends_every_stream() -> None:
    outbox = outbox_with()
    outbox(ended())
    stream = Stream(outbox)
    due = await stream.next()
    closing = asyncio.ensure_future(outbox.close(grace_s=WAIT_S))
    await asyncio.sleep(0)
    assert not closing.done()  # waiting for the gateway to acknowledge
    await stream.ack(due.delivery_id)
    async with asyncio.timeout(WAIT_S):
        await closing
    with pytest.raises(StopAsyncIteration):
        await stream.next()


class FakeRegistry(registry_pb2_grpc.RegistryServicer):
    """One function: Get, and a Watch that syncs it with the registry's limits, then stays open."""

    async def Get(self, request: registry_pb2.GetFunctionRequest, context: Any) -> types_pb2.FunctionSpec:
        return make_spec("fn")

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: Any
    ) -> AsyncIterator[registry_pb2.WatchEvent]:
        yield registry_pb2.WatchEvent(type=registry_pb2.WatchEvent.SNAPSHOT, spec=make_spec("fn"), revision=1)
        yield registry_pb2.WatchEvent(
            type=registry_pb2.WatchEvent.SYNCED,
            revision=1,
            limits=registry_pb2.Limits(max_timeout_ms=300_000),
        )
        await asyncio.Event().wait()


async def test_the_callbacks_rpc_serves_the_outbox() -> None:
    """Real gRPC: an ended execution's callback is offered, re-offered after a dropped stream, acked."""
    registry = grpc.aio.server()
    registry_pb2_grpc.add_RegistryServicer_to_server(FakeRegistry(), registry)  # type: ignore[abstract]
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()

    async def succeed(attempt: Any) -> Outcome:
        return Outcome(kind=OutcomeKind.SUCCESS, output=b'"done"')

    metrics = CollectorRegistry()
    settings = Settings(port=0, metrics_port=0, registry_address=f"127.0.0.1:{registry_port}")
    server = SchedulerServer(settings, StubDispatcher(succeed), metrics_registry=metrics)
    await server.start()

    async def ack_stream(
        acks: asyncio.Queue[scheduler_pb2.CallbackAck | None],
    ) -> AsyncIterator[scheduler_pb2.CallbackAck]:
        while (ack := await acks.get()) is not None:
            yield ack

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scheduler_pb2_grpc.SchedulerStub(channel)
            enqueued = await stub.Enqueue(
                scheduler_pb2.InvokeRequest(
                    function_name="fn",
                    input=types_pb2.Payload(data=b"1", content_type="application/json"),
                    callback_url=URL,
                )
            )
            async with asyncio.timeout(WAIT_S):
                dropped = stub.Callbacks(ack_stream(asyncio.Queue()))
                await dropped.initial_metadata()  # sent at once: subscribed before anything is due
                first = await dropped.read()
                assert isinstance(first, scheduler_pb2.CallbackDue)
                assert first.url == URL
                assert first.status.execution_id == enqueued.execution_id
                assert first.status.status == types_pb2.EXECUTION_STATE_SUCCESS
                assert first.status.output.data == b'"done"'
                dropped.cancel()  # the gateway vanished without acknowledging

                acks: asyncio.Queue[scheduler_pb2.CallbackAck | None] = asyncio.Queue()
                call = stub.Callbacks(ack_stream(acks))
                again = await call.read()
                assert isinstance(again, scheduler_pb2.CallbackDue)
                assert again == first
                acks.put_nowait(scheduler_pb2.CallbackAck(delivery_id=again.delivery_id))
                acks.put_nowait(None)
                assert not isinstance(await call.read(), scheduler_pb2.CallbackDue)  # EOF: the gateway left
                assert await call.code() == grpc.StatusCode.OK
            assert metrics.get_sample_value("callbacks_pending") == 0.0
    finally:
        await server.stop()
        await registry.stop(None)
