"""The shared invocation stream when it breaks, or when one call would break it (issue 17, finding 1).

A real gRPC server plays a scheduler whose stream breaks the way a too-large message
breaks it (RESOURCE_EXHAUSTED). A call never handed to the stream did not run: UNAVAILABLE,
never the 429-looking RESOURCE_EXHAUSTED. A sent call is looked up by the name the gateway
gave it (GetExecution, retiring the name if missing): found, it is followed to its result,
or reported as a CRASH when that is lost; not found on a stream the scheduler had answered
on, it may have run (a CRASH, 502); on a stream never answered on, it did not run (503).
An oversized call is refused before it is sent, and the stream keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from nanofaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_gateway.scheduler_stream import SchedulerStream

Context = grpc.aio.ServicerContext[Any, Any]


class BreakingScheduler(scheduler_pb2_grpc.SchedulerServicer):
    """Answers "ok" calls; any other call ends the stream; "run-<state>" admits it first.

    An admitted call's execution is the one the request named, in the given state.
    """

    def __init__(self) -> None:
        self.executions: dict[str, types_pb2.ExecutionStatus] = {}
        self.lookups: list[scheduler_pb2.GetExecutionRequest] = []
        self.batches: list[scheduler_pb2.StreamRequests] = []
        self.unreachable_lookups = 0
        # Set once `lookups_wanted` lookups have come.
        self.lookups_wanted = 1
        self.lookups_reached = asyncio.Event()

    async def Stream(
        self, request_iterator: AsyncIterator[scheduler_pb2.StreamRequests], context: Context
    ) -> AsyncIterator[scheduler_pb2.StreamResponses]:
        async for batch in request_iterator:
            self.batches.append(batch)
            for message in batch.calls:
                call = message.enqueue if message.HasField("enqueue") else message.invoke
                name = call.function_name
                if name == "ok":
                    result = scheduler_pb2.InvokeResponse(
                        execution_id="e-ok", status=types_pb2.EXECUTION_STATE_SUCCESS
                    )
                    response = scheduler_pb2.StreamResponse(call_id=message.call_id, invoke=result)
                    yield scheduler_pb2.StreamResponses(results=[response])
                elif name.startswith("run-"):
                    execution_id = call.execution_id
                    self.executions[execution_id] = types_pb2.ExecutionStatus(
                        execution_id=execution_id,
                        status=types_pb2.ExecutionState.Value(f"EXECUTION_STATE_{name[4:].upper()}"),
                        output=types_pb2.Payload(data=b'"ran once"', content_type="application/json"),
                    )
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max")
                else:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max")

    async def GetExecution(
        self, request: scheduler_pb2.GetExecutionRequest, context: Context
    ) -> types_pb2.ExecutionStatus:
        self.lookups.append(request)
        if len(self.lookups) >= self.lookups_wanted:
            self.lookups_reached.set()
        if self.unreachable_lookups:
            self.unreachable_lookups -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scheduler unreachable")
        status = self.executions.get(request.execution_id)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such execution")
        return status


@pytest.fixture
async def stream() -> AsyncIterator[tuple[SchedulerStream, BreakingScheduler]]:
    servicer = BreakingScheduler()  # type: ignore[abstract]  # only the two RPCs used here
    server = grpc.aio.server()
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    calls = SchedulerStream(scheduler_pb2_grpc.SchedulerStub(channel), max_message_bytes=64 * 1024)
    yield calls, servicer
    await calls.close()
    await channel.close(None)
    await server.stop(0)


def _invoke(name: str, data: bytes = b"1") -> scheduler_pb2.InvokeRequest:
    return scheduler_pb2.InvokeRequest(function_name=name, input=types_pb2.Payload(data=data))


async def test_a_sent_call_the_scheduler_does_not_know_may_have_run_and_the_stream_is_reopened(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    """A scheduler that restarted since would not know it either: NOT_FOUND is no proof."""
    calls, scheduler = stream
    assert (await calls.invoke(_invoke("ok"), timeout=10)).execution_id == "e-ok"  # it answers here
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.invoke(_invoke("breaks"), timeout=10)
    (lookup,) = scheduler.lookups
    assert lookup.retire_if_missing and len(lookup.execution_id) == 32  # the name the gateway gave
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # not RESOURCE_EXHAUSTED: no 429
    assert "may have run" in (caught.value.details() or "")
    trailers: dict[str, Any] = dict(caught.value.trailing_metadata() or ())  # type: ignore[arg-type]
    assert trailers["x-error-code"] == "CRASH"  # 502, not 503
    assert (await calls.invoke(_invoke("ok"), timeout=10)).execution_id == "e-ok"


async def test_a_call_on_a_stream_the_scheduler_never_answered_on_did_not_run(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    """Nothing says such a call reached the scheduler (it might be unreachable): retryable."""
    calls, _ = stream
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.invoke(_invoke("breaks"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "did not run" in (caught.value.details() or "")


async def test_a_call_never_handed_to_the_stream_did_not_run(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    """A call still waiting in the outbox when the stream breaks reached nobody: retryable.

    White box, to be deterministic: a pending call that gRPC never took from the outbox
    (never marked sent) is there when another call breaks the stream.
    """
    calls, _ = stream
    assert (await calls.invoke(_invoke("ok"), timeout=10)).execution_id == "e-ok"  # established
    waiting: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    calls._pending[10**9] = waiting  # as _call registers it, before the outbox hands it on
    with pytest.raises(grpc.aio.AioRpcError):
        await calls.invoke(_invoke("breaks"), timeout=10)
    broken = waiting.exception()
    assert broken is not None and "did not run" in str(broken)
    assert "x-error-code" not in dict(broken.failure.trailing_metadata() or ())  # type: ignore[attr-defined]
    calls._pending.pop(10**9)


async def test_a_found_call_is_followed_to_its_result_even_on_a_stream_never_answered_on(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    calls, _ = stream
    request = _invoke("run-success")
    result = await calls.invoke(request, timeout=10)
    assert result.status == types_pb2.EXECUTION_STATE_SUCCESS
    assert result.output.data == b'"ran once"'
    assert result.execution_id == request.execution_id  # the name the gateway gave it


async def test_a_found_call_is_followed_while_it_runs_and_after_the_scheduler_was_unreachable(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    calls, scheduler = stream
    scheduler.unreachable_lookups = 2  # a few bounded retries while it cannot be reached
    request = _invoke("run-running")
    task = asyncio.create_task(calls.invoke(request, timeout=10))
    scheduler.lookups_wanted = 4  # the retries, the find, then at least one poll
    await asyncio.wait_for(scheduler.lookups_reached.wait(), 5)
    assert not task.done()
    scheduler.executions[request.execution_id].status = types_pb2.EXECUTION_STATE_SUCCESS
    result = await asyncio.wait_for(task, 5)
    assert result.status == types_pb2.EXECUTION_STATE_SUCCESS


async def test_a_found_call_that_is_lost_is_a_crash_not_a_retry(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    calls, scheduler = stream
    request = _invoke("run-running")
    task = asyncio.create_task(calls.invoke(request, timeout=10))
    await asyncio.wait_for(scheduler.lookups_reached.wait(), 5)
    scheduler.executions.clear()  # as a scheduler that restarted meanwhile
    result = await asyncio.wait_for(task, 5)
    assert result.status == types_pb2.EXECUTION_STATE_ERROR
    assert result.error.code == "CRASH"
    assert "may have run" in result.error.message


async def test_a_sent_call_the_scheduler_cannot_be_asked_about_is_answered_after_bounded_retries(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    """Unreachable after a few attempts: on a stream never answered on it did not run (503);
    on one the scheduler had answered on it may have run (a CRASH naming the execution)."""
    calls, scheduler = stream
    scheduler.unreachable_lookups = 10**6
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.invoke(_invoke("breaks"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "did not run" in (caught.value.details() or "")
    assert len(scheduler.lookups) == 4  # bounded retries
    assert (await calls.invoke(_invoke("ok"), timeout=10)).execution_id == "e-ok"
    request = _invoke("breaks")
    result = await calls.invoke(request, timeout=10)
    assert (result.status, result.error.code) == (types_pb2.EXECUTION_STATE_ERROR, "CRASH")
    assert result.execution_id == request.execution_id and "may have run" in result.error.message


async def test_a_found_enqueue_is_answered_and_a_lost_one_is_not_a_blind_retry(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    calls, _ = stream
    request = _invoke("run-queued")
    admitted = await calls.enqueue(request, timeout=10)
    assert admitted.execution_id == request.execution_id
    assert admitted.status == types_pb2.EXECUTION_STATE_QUEUED
    assert (await calls.invoke(_invoke("ok"), timeout=10)).execution_id == "e-ok"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.enqueue(_invoke("breaks"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "Idempotency-Key" in (caught.value.details() or "")


async def test_an_oversized_call_is_refused_alone_before_it_is_sent(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    calls, _ = stream
    ok = asyncio.create_task(calls.invoke(_invoke("ok"), timeout=10))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.invoke(_invoke("ok", b"x" * (65 * 1024)), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    metadata: Any = caught.value.trailing_metadata() or ()
    assert {str(item[0]): str(item[1]) for item in metadata}.get("x-error-code") == "PAYLOAD_TOO_LARGE"
    assert (await ok).execution_id == "e-ok"


async def test_calls_waiting_together_share_a_message_within_the_channel_limit(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    """Five small calls go as one batch; three that fit alone but not together go apart."""
    calls, scheduler = stream
    small = await asyncio.gather(*(calls.invoke(_invoke("ok"), timeout=10) for _ in range(5)))
    assert [result.execution_id for result in small] == ["e-ok"] * 5
    assert len(scheduler.batches) < 5
    scheduler.batches.clear()
    large = await asyncio.gather(
        *(calls.invoke(_invoke("ok", b"x" * (40 * 1024)), timeout=10) for _ in range(3))
    )
    assert [result.execution_id for result in large] == ["e-ok"] * 3
    assert [len(batch.calls) for batch in scheduler.batches] == [1, 1, 1]
    assert all(batch.ByteSize() <= 64 * 1024 for batch in scheduler.batches)
