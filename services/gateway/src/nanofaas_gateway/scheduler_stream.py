"""Invoke and Enqueue multiplexed over one long-lived Stream RPC to the scheduler.

A unary gRPC call costs the gateway and the scheduler hundreds of microseconds
of CPU each; a message on an open stream costs a fraction of that. Calls are
matched to responses by id. A call's failure arrives as a CallError and is
raised as the grpc.aio.AioRpcError a unary call would have raised, so error
mapping is the same either way. Against a scheduler without Stream the calls
fall back to unary RPCs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator

import grpc

from nanofaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}
_PAYLOAD_TOO_LARGE = types_pb2.ErrorCode.Name(types_pb2.ERROR_CODE_PAYLOAD_TOO_LARGE).removeprefix(
    "ERROR_CODE_"
)


def _rpc_error(
    code: grpc.StatusCode, message: str, metadata: dict[str, str] | None = None
) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata(*(metadata or {}).items())
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=message, debug_error_string=None)


_NOT_RUN = "the stream to the scheduler broke before the call was admitted ({reason}): it did not run"
# Sent but not (yet) known to be admitted: the notice may have been on its way.
_MAY_HAVE_RUN = (
    "the stream to the scheduler broke after the call was sent and before its admission was seen "
    "({reason}): it may have run; retry only with an Idempotency-Key"
)
# An enqueue is answered right after its admission: a break between the two cannot be told apart.
_ENQUEUE_UNKNOWN = (
    "the stream to the scheduler broke before the enqueue was answered: it may have been admitted; "
    "retry with the same Idempotency-Key"
)
_TERMINAL = frozenset(
    {types_pb2.EXECUTION_STATE_SUCCESS, types_pb2.EXECUTION_STATE_ERROR, types_pb2.EXECUTION_STATE_TIMEOUT}
)
_CANCELLED = types_pb2.ErrorCode.Name(types_pb2.ERROR_CODE_CANCELLED).removeprefix("ERROR_CODE_")
_CRASH = types_pb2.ErrorCode.Name(types_pb2.ERROR_CODE_CRASH).removeprefix("ERROR_CODE_")
_FOLLOW_FIRST_DELAY_S = 0.02
_FOLLOW_MAX_DELAY_S = 1.0


class _StreamBroken(Exception):
    """The stream ended before a call's answer; execution_id is set if it had been admitted."""

    def __init__(self, failure: grpc.aio.AioRpcError, execution_id: str) -> None:
        super().__init__(failure.details())
        self.failure = failure
        self.execution_id = execution_id


def _lost(execution_id: str) -> scheduler_pb2.InvokeResponse:
    """An admitted execution nobody can follow any more: a CRASH, which says it may have run."""
    message = (
        "the scheduler went away while the execution was admitted or running: it may have run "
        f"(GET /v1/executions/{execution_id})"
    )
    return scheduler_pb2.InvokeResponse(
        execution_id=execution_id,
        status=types_pb2.EXECUTION_STATE_ERROR,
        error=types_pb2.ErrorInfo(code=_CRASH, message=message),
    )


class SchedulerStream:
    """The shared stream; `max_message_bytes` is the channel's limit, which no call may pass.

    One message over the limit would end the stream for every call on it, so each call is
    measured before it is sent (and refused alone, as 413). When the stream breaks anyway
    (the scheduler went away), a pending call that was never handed to the stream did not
    run: it fails with UNAVAILABLE (503, retryable), never with the stream's own status (a
    RESOURCE_EXHAUSTED there is no queue refusal: no 429). One that was sent on a stream the
    scheduler had answered on, but whose admission was not seen, may have run (the notice
    queues behind other answers): a CRASH (502), so that no client retries it blindly. An
    invoke the scheduler had
    admitted (it said so: StreamResponse.admitted) may have run, so it is followed by
    GetExecution to its real result; if the execution cannot be found, it ends as a CRASH
    (502, "may have run") so that no client retries work that ran.
    """

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerAsyncStub, max_message_bytes: int = 0) -> None:
        self._stub = stub
        self._max_message_bytes = max_message_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[scheduler_pb2.StreamResponse]] = {}
        self._outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._unary_only = False
        # Invoke calls the scheduler admitted, by call id: their execution ids.
        self._admitted: dict[int, str] = {}
        # Calls handed to the stream (taken from the outbox), by call id.
        self._sent: set[int] = set()

    async def invoke(
        self, request: scheduler_pb2.InvokeRequest, timeout: float
    ) -> scheduler_pb2.InvokeResponse:
        if self._unary_only:
            return await self._stub.Invoke(request, timeout=timeout)
        message = scheduler_pb2.StreamRequest(invoke=request, deadline_ms=max(int(timeout * 1000), 1))
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            response = await self._call(message, timeout)
        except _StreamBroken as broken:
            if not broken.execution_id:
                raise broken.failure from None
            return await self._follow(broken.execution_id, deadline)
        if response is None:
            return await self._stub.Invoke(request, timeout=timeout)
        return response.invoke

    async def enqueue(
        self, request: scheduler_pb2.InvokeRequest, timeout: float
    ) -> scheduler_pb2.EnqueueResponse:
        if self._unary_only:
            return await self._stub.Enqueue(request, timeout=timeout)
        try:
            response = await self._call(scheduler_pb2.StreamRequest(enqueue=request), timeout)
        except _StreamBroken:
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE, _ENQUEUE_UNKNOWN) from None
        if response is None:
            return await self._stub.Enqueue(request, timeout=timeout)
        return response.enqueue

    async def _call(
        self, message: scheduler_pb2.StreamRequest, timeout: float
    ) -> scheduler_pb2.StreamResponse | None:
        """The call's response, or None when the scheduler has no Stream (use the unary RPC)."""
        size = message.ByteSize()
        if self._max_message_bytes and size > self._max_message_bytes:
            raise _rpc_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request is {size} bytes, over the limit of {self._max_message_bytes} bytes",
                {"x-error-code": _PAYLOAD_TOO_LARGE},
            )
        outbox = self._open()
        call_id = message.call_id = next(self._ids)
        answer: asyncio.Future[scheduler_pb2.StreamResponse] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = answer
        outbox.put_nowait(message)
        try:
            async with asyncio.timeout(timeout):
                response = await answer
        except TimeoutError:
            self._cancel(call_id)
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded") from None
        except asyncio.CancelledError:
            self._cancel(call_id)  # the caller went away: let the scheduler drop the call
            raise
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                self._unary_only = True
                return None
            raise
        finally:
            self._pending.pop(call_id, None)
            self._admitted.pop(call_id, None)
            self._sent.discard(call_id)
        if response.WhichOneof("result") == "error":
            error = response.error
            raise _rpc_error(
                _CODES.get(error.code, grpc.StatusCode.UNKNOWN), error.message, dict(error.metadata)
            )
        return response

    def _cancel(self, call_id: int) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(
                scheduler_pb2.StreamRequest(call_id=call_id, cancel=scheduler_pb2.CancelCall())
            )

    def _open(self) -> asyncio.Queue[scheduler_pb2.StreamRequest | None]:
        """The outbox of the current stream, opening one if there is none."""
        if self._outbox is None:
            outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None] = asyncio.Queue()
            self._outbox = outbox
            call = self._stub.Stream(_drain(outbox, self._sent))
            self._reader = asyncio.get_running_loop().create_task(self._read(call, outbox))
        return self._outbox

    async def _read(
        self,
        call: grpc.aio.StreamStreamCall[scheduler_pb2.StreamRequest, scheduler_pb2.StreamResponse],
        outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None],
    ) -> None:
        reason = "it ended"
        failure = _rpc_error(grpc.StatusCode.UNAVAILABLE, _NOT_RUN.format(reason=reason))
        # Until the scheduler has answered on this stream, nothing says it ever got there (a
        # scheduler that cannot be reached takes no call, even one gRPC took from the outbox).
        established = False
        try:
            async for response in call:
                established = True
                if response.WhichOneof("result") == "admitted":
                    if response.call_id in self._pending:
                        self._admitted[response.call_id] = response.admitted.execution_id
                    continue
                answer = self._pending.get(response.call_id)
                if answer is not None and not answer.done():
                    answer.set_result(response)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                failure = exc
            else:
                log.warning("scheduler stream failed", extra={"code": exc.code().name})
                reason = exc.code().name
                failure = _rpc_error(grpc.StatusCode.UNAVAILABLE, _NOT_RUN.format(reason=reason))
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            if self._outbox is outbox:
                self._outbox = None  # the next call opens a new stream
            outbox.put_nowait(None)
            for call_id, answer in list(self._pending.items()):
                if answer.done():
                    continue
                if failure.code() == grpc.StatusCode.UNIMPLEMENTED:
                    answer.set_exception(failure)
                elif established and call_id in self._sent and call_id not in self._admitted:
                    message = _MAY_HAVE_RUN.format(reason=reason)
                    unknown = _rpc_error(grpc.StatusCode.UNAVAILABLE, message, {"x-error-code": _CRASH})
                    answer.set_exception(_StreamBroken(unknown, ""))
                else:
                    answer.set_exception(_StreamBroken(failure, self._admitted.get(call_id, "")))

    async def _follow(self, execution_id: str, deadline: float) -> scheduler_pb2.InvokeResponse:
        """The result of an admitted invoke whose answer the broken stream lost."""
        loop = asyncio.get_running_loop()
        delay = _FOLLOW_FIRST_DELAY_S
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
            try:
                status = await self._stub.GetExecution(
                    scheduler_pb2.GetExecutionRequest(execution_id=execution_id), timeout=remaining
                )
            except grpc.aio.AioRpcError:
                return _lost(execution_id)  # the scheduler is gone (or restarted without it)
            if status.status in _TERMINAL:
                if status.error.code == _CANCELLED:  # dropped while queued: it never ran
                    raise _rpc_error(grpc.StatusCode.UNAVAILABLE, _NOT_RUN.format(reason="cancelled"))
                return scheduler_pb2.InvokeResponse(
                    execution_id=execution_id,
                    status=status.status,
                    output=status.output if status.HasField("output") else None,
                    error=status.error if status.HasField("error") else None,
                )
            # Polling a rare failure path; each wait is bounded by the call's deadline.
            await asyncio.sleep(min(delay, max(remaining, 0.0)))
            delay = min(delay * 2, _FOLLOW_MAX_DELAY_S)

    async def close(self) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(None)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


async def _drain(
    outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None], sent: set[int]
) -> AsyncIterator[scheduler_pb2.StreamRequest]:
    """The outbox's messages, each call marked sent as gRPC takes it (from then on it may run)."""
    while (message := await outbox.get()) is not None:
        if message.HasField("invoke"):
            sent.add(message.call_id)
        yield message
