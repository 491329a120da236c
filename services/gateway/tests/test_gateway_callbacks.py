"""Completion callbacks: the gateway subscribes to a fake scheduler's Callbacks stream and POSTs
what it offers to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from nanofaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_gateway.callbacks import CallbackDelivery, CallbackMetrics, Reconnect, RetryPolicy
from nanofaas_gateway.convert import execution_status_body

from .gateway_fakes import FakeCallbacks
from .gateway_harness import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_S = 10.0
FAST = RetryPolicy(attempts=4, base_delay_s=0.001, timeout_s=5.0)


@dataclass
class Receiver:
    """A callback receiver answering the scripted statuses in turn (then 204)."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    # Requests for these executions wait for their event before answering.
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    calls: int = 0
    url: str = ""
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.read()
        self.bodies.append(body)
        async with self._changed:
            self._changed.notify_all()
        hold = self.held.get(orjson.loads(body)["executionId"])
        if hold is not None:
            await hold.wait()
        status = self.statuses.pop(0) if self.statuses else 204
        return web.Response(status=status)

    async def wait_for_calls(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.calls >= count)


@asynccontextmanager
async def receiver(statuses: list[int] | None = None) -> AsyncIterator[Receiver]:
    target = Receiver(statuses=list(statuses or []))
    app = web.Application()
    app.router.add_post("/hook/{token}", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    target.url = f"http://127.0.0.1:{port}/hook/secret"
    try:
        yield target
    finally:
        await runner.cleanup()


@dataclass
class Subscriber:
    delivery: CallbackDelivery
    metrics: CollectorRegistry
    fake: FakeCallbacks

    def count(self, outcome: str) -> float:
        return self.metrics.get_sample_value("gateway_callbacks_total", {"outcome": outcome}) or 0.0

    async def until(self, predicate: Callable[[FakeCallbacks], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            await self.fake.wait_for(predicate)


@asynccontextmanager
async def subscriber(gateway: Gateway, policy: RetryPolicy = FAST) -> AsyncIterator[Subscriber]:
    metrics = CollectorRegistry()
    async with grpc.aio.insecure_channel(gateway.scheduler_backend.address) as channel:
        delivery = CallbackDelivery(
            scheduler_pb2_grpc.SchedulerStub(channel),
            CallbackMetrics(metrics),
            policy=policy,
            reconnect=Reconnect(first_s=0.01, max_s=0.05),
        )
        delivery.start()
        try:
            yield Subscriber(delivery, metrics, gateway.scheduler.callbacks)
        finally:
            await delivery.close(grace_s=WAIT_S)


def due(delivery_id: int, url: str, execution_id: str = "ex-1") -> scheduler_pb2.CallbackDue:
    status = types_pb2.ExecutionStatus(
        execution_id=execution_id,
        function_name="echo",
        status=types_pb2.EXECUTION_STATE_SUCCESS,
        attempts=1,
        trace_id="t-1",
        enqueued_at_ms=1_714_564_800_000,
        started_at_ms=1_714_564_800_005,
        finished_at_ms=1_714_564_800_010,
        output=types_pb2.Payload(data=b'{"ok": [1, 2.50]}', content_type="application/json"),
    )
    return scheduler_pb2.CallbackDue(delivery_id=delivery_id, url=url, status=status)


async def test_delivers_the_rest_json_of_the_execution_and_acknowledges(gateway: Gateway) -> None:
    async with receiver() as target, subscriber(gateway) as sub:
        await sub.until(lambda fake: fake.subscriptions == 1)
        offered = due(7, target.url)
        sub.fake.offer(offered)
        await sub.until(lambda fake: fake.acks == [7])
        assert target.bodies == [execution_status_body(offered.status)]
        assert orjson.loads(target.bodies[0]) == {
            "executionId": "ex-1",
            "functionName": "echo",
            "status": "success",
            "attempts": 1,
            "traceId": "t-1",
            "enqueuedAt": "2024-05-01T12:00:00.000Z",
            "startedAt": "2024-05-01T12:00:00.005Z",
            "finishedAt": "2024-05-01T12:00:00.010Z",
            "output": {"ok": [1, 2.5]},
        }
        assert (sub.count("delivered"), sub.count("failed")) == (1.0, 0.0)


@pytest.mark.parametrize(
    ("statuses", "calls", "outcome"),
    [
        ([503, 500], 3, "delivered"),
        ([408, 429], 3, "delivered"),
        ([400], 1, "failed"),
        ([410], 1, "failed"),
        ([503, 503, 503, 503], 4, "failed"),
    ],
)
async def test_retry_policy(gateway: Gateway, statuses: list[int], calls: int, outcome: str) -> None:
    """4 attempts with back-off; a 4xx other than 408/429 is final; acknowledged either way."""
    async with receiver(statuses) as target, subscriber(gateway) as sub:
        sub.fake.offer(due(1, target.url))
        await sub.until(lambda fake: fake.acks == [1])
        assert target.calls == calls
        assert sub.count(outcome) == 1.0


async def test_an_unreachable_receiver_is_given_up_and_logged_without_its_path(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with subscriber(gateway) as sub:
        sub.fake.offer(due(2, f"http://127.0.0.1:{port}/hook/secret-token"))
        await sub.until(lambda fake: fake.acks == [2])
        assert sub.count("failed") == 1.0
    warnings = [record for record in caplog.records if record.getMessage() == "callback not delivered"]
    assert len(warnings) == 1
    assert warnings[0].__dict__["target"] == f"http://127.0.0.1:{port}"
    assert "secret-token" not in caplog.text


async def test_resubscribes_after_the_stream_drops(gateway: Gateway) -> None:
    async with receiver() as target, subscriber(gateway) as sub:
        await sub.until(lambda fake: fake.subscriptions == 1)
        sub.fake.drop()
        await sub.until(lambda fake: fake.subscriptions == 2)
        sub.fake.offer(due(3, target.url))
        await sub.until(lambda fake: fake.acks == [3])
        assert target.calls == 1


async def test_an_offer_again_of_a_delivery_under_way_is_posted_once(gateway: Gateway) -> None:
    """The stream broke mid-delivery; the scheduler offers it again: one POST, acked on the new stream."""
    async with receiver() as target, subscriber(gateway) as sub:
        hold = target.held["ex-1"] = asyncio.Event()
        sub.fake.offer(due(4, target.url))
        async with asyncio.timeout(WAIT_S):
            await target.wait_for_calls(1)
        sub.fake.drop()
        await sub.until(lambda fake: fake.subscriptions == 2)
        sub.fake.offer(due(4, target.url))
        hold.set()
        await sub.until(lambda fake: fake.acks == [4])
        assert target.calls == 1
        assert sub.count("delivered") == 1.0


async def test_close_acknowledges_what_finished_and_leaves_the_rest_to_the_next_gateway(
    gateway: Gateway,
) -> None:
    async with receiver() as target:
        metrics = CollectorRegistry()
        async with grpc.aio.insecure_channel(gateway.scheduler_backend.address) as channel:
            delivery = CallbackDelivery(
                scheduler_pb2_grpc.SchedulerStub(channel), CallbackMetrics(metrics), policy=FAST
            )
            fake = gateway.scheduler.callbacks
            delivery.start()
            stuck = target.held["stuck"] = asyncio.Event()  # held past the grace period
            fake.offer(due(5, target.url, "done"))
            fake.offer(due(6, target.url, "stuck"))
            async with asyncio.timeout(WAIT_S):
                await target.wait_for_calls(2)
                await fake.wait_for(lambda f: f.acks == [5])
                await delivery.close(grace_s=0.01)
            stuck.set()
        assert fake.acks == [5]
        assert fake.half_closed == 1


async def test_a_scheduler_without_callbacks_never_blocks_the_gateway(gateway: Gateway) -> None:
    """Nothing listens at the address: the subscriber keeps retrying in the background."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        delivery = CallbackDelivery(
            scheduler_pb2_grpc.SchedulerStub(channel),
            CallbackMetrics(CollectorRegistry()),
            reconnect=Reconnect(first_s=0.01, max_s=0.02),
        )
        delivery.start()
        async with gateway.session.get(gateway.url("/healthz")) as response:
            assert response.status == 200
        assert not delivery.subscribed.is_set()
        async with asyncio.timeout(WAIT_S):
            await delivery.close(grace_s=1.0)
