"""The shared invocation stream when it breaks, or when one call would break it (issue 17, finding 1).

A real gRPC server plays a scheduler whose stream breaks the way a too-large message
breaks it (RESOURCE_EXHAUSTED). A call never handed to the stream did not run: UNAVAILABLE,
never the 429-looking RESOURCE_EXHAUSTED; one sent but not seen admitted may have run (a
CRASH, 502). A call it had admitted may have run: it is
followed to its result with GetExecution, or reported as a CRASH when that is lost.
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
    """Answers "ok" calls; on "break-admitted" says admitted and then ends the stream."""

    def __init__(self) -> None:
        self.executions: dict[str, types_pb2.ExecutionStatus] = {}

    async def Stream(
        self, request_iterator: AsyncIterator[scheduler_pb2.StreamRequest], context: Context
    ) -> AsyncIterator[scheduler_pb2.StreamResponse]:
        async for message in request_iterator:
            name = message.invoke.function_name
            if name == "ok":
                result = scheduler_pb2.InvokeResponse(
                    execution_id="e-ok", status=types_pb2.EXECUTION_STATE_SUCCESS
                )
                yield scheduler_pb2.StreamResponse(call_id=message.call_id, invoke=result)
            elif name.startswith("admitted"):
                notice = scheduler_pb2.Admitted(execution_id=name)
                yield scheduler_pb2.StreamResponse(call_id=message.call_id, admitted=notice)
                await asyncio.sleep(0.05)  # let the notice reach the gateway before the break
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max")
            else:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max")

    async def GetExecution(
        self, request: scheduler_pb2.GetExecutionRequest, context: Context
    ) -> types_pb2.ExecutionStatus:
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


async def test_a_sent_call_whose_admission_was_not_seen_may_have_run_and_the_stream_is_reopened(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    """The scheduler took the call; its admitted notice may have been queued behind others."""
    calls, _ = stream
    assert (await calls.invoke(_invoke("ok"), timeout=10)).execution_id == "e-ok"  # it answers here
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls.invoke(_invoke("breaks"), timeout=10)
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


async def test_an_admitted_call_is_followed_to_its_result(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    calls, scheduler = stream
    scheduler.executions["admitted-1"] = types_pb2.ExecutionStatus(
        execution_id="admitted-1",
        status=types_pb2.EXECUTION_STATE_SUCCESS,
        output=types_pb2.Payload(data=b'"ran once"', content_type="application/json"),
    )
    result = await calls.invoke(_invoke("admitted-1"), timeout=10)
    assert result.status == types_pb2.EXECUTION_STATE_SUCCESS
    assert result.output.data == b'"ran once"'


async def test_an_admitted_call_that_is_lost_is_a_crash_not_a_retry(
    stream: tuple[SchedulerStream, BreakingScheduler],
) -> None:
    calls, _ = stream
    result = await calls.invoke(_invoke("admitted-lost"), timeout=10)
    assert result.status == types_pb2.EXECUTION_STATE_ERROR
    assert result.error.code == "CRASH"
    assert "may have run" in result.error.message


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
