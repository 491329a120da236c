"""The Stream's batches, through a real gRPC server: responses waiting together share one
message, and a batch never grows past its size bound (a response too large to share goes
alone), so no combination of calls can pass the channel's message limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from prometheus_client import CollectorRegistry

from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.grpc_service import STREAM_BATCH_BYTES
from nanofaas_scheduler.server import SchedulerServer

from .conftest import make_spec
from .test_server import FakeRegistry

CALLS = 24
LARGE = STREAM_BATCH_BYTES * 2 // 5  # two fit in one batch, three do not


async def test_responses_waiting_together_share_bounded_messages() -> None:
    registry = grpc.aio.server()
    fake = FakeRegistry(make_spec("fn", concurrency=CALLS, queue_size=CALLS))  # type: ignore[abstract]
    registry_pb2_grpc.add_RegistryServicer_to_server(fake, registry)
    registry_port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()
    release = asyncio.Event()
    started = 0
    all_started = asyncio.Event()

    async def gated(attempt: Attempt) -> Outcome:
        nonlocal started
        started += 1
        if started == CALLS:
            all_started.set()
        await release.wait()
        return Outcome(kind=OutcomeKind.SUCCESS, output=attempt.request.data)

    settings = Settings(port=0, metrics_port=0, registry_address=f"127.0.0.1:{registry_port}")
    server = SchedulerServer(settings, StubDispatcher(gated), metrics_registry=CollectorRegistry())
    await server.start()
    sizes = {call_id: (LARGE if call_id % 4 == 0 else 8) for call_id in range(1, CALLS + 1)}
    sizes[CALLS] = STREAM_BATCH_BYTES + 4096  # too large to share: goes alone
    calls = [
        scheduler_pb2.StreamRequest(
            call_id=call_id,
            invoke=scheduler_pb2.InvokeRequest(
                function_name="fn",
                input=types_pb2.Payload(
                    data=b'"' + b"x" * (size - 2) + b'"', content_type="application/json"
                ),
            ),
        )
        for call_id, size in sizes.items()
    ]
    done = asyncio.Event()

    async def requests() -> AsyncIterator[scheduler_pb2.StreamRequests]:
        yield scheduler_pb2.StreamRequests(calls=calls)
        await done.wait()

    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
            stream = scheduler_pb2_grpc.SchedulerStub(channel).Stream(requests())
            await asyncio.wait_for(all_started.wait(), 10)
            release.set()  # every response is queued in one turn
            batches: list[scheduler_pb2.StreamResponses] = []
            answered: dict[int, int] = {}
            async with asyncio.timeout(10):
                async for batch in stream:
                    batches.append(batch)
                    for response in batch.results:
                        answered[response.call_id] = len(response.invoke.output.data)
                    if len(answered) == CALLS:
                        break
            done.set()
            assert answered == sizes  # every call answered once, with its own output
            assert len(batches) < CALLS  # shared messages
            assert all(len(b.results) == 1 or b.ByteSize() <= STREAM_BATCH_BYTES for b in batches)
            assert max(len(b.results) for b in batches) > 1
            (alone,) = [b for b in batches if any(r.call_id == CALLS for r in b.results)]
            assert len(alone.results) == 1
            stream.cancel()
    finally:
        await server.stop()
        await registry.stop(None)
