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


class SchedulerStream:
    """The shared stream; `max_message_bytes` is the channel's limit, which no call may pass.

    One message over the limit would end the stream for every call on it, so each call is
    measured before it is sent (and refused alone, as 413). When the stream breaks anyway
    (the scheduler went away), its pending calls fail with UNAVAILABLE, never with the
    stream's own status (a RESOURCE_EXHAUSTED there is no queue refusal: no 429).
    """

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerAsyncStub, max_message_bytes: int = 0) -> None:
        self._stub = stub
        self._max_message_bytes = max_message_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[scheduler_pb2.StreamResponse]] = {}
        self._outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._unary_only = False

    async def invoke(
        self, request: scheduler_pb2.InvokeRequest, timeout: float
    ) -> scheduler_pb2.InvokeResponse:
        if self._unary_only:
            return await self._stub.Invoke(request, timeout=timeout)
        message = scheduler_pb2.StreamRequest(invoke=request, deadline_ms=max(int(timeout * 1000), 1))
        response = await self._call(message, timeout)
        if response is None:
            return await self._stub.Invoke(request, timeout=timeout)
        return response.invoke

    async def enqueue(
        self, request: scheduler_pb2.InvokeRequest, timeout: float
    ) -> scheduler_pb2.EnqueueResponse:
        if self._unary_only:
            return await self._stub.Enqueue(request, timeout=timeout)
        response = await self._call(scheduler_pb2.StreamRequest(enqueue=request), timeout)
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
            call = self._stub.Stream(_drain(outbox))
            self._reader = asyncio.get_running_loop().create_task(self._read(call, outbox))
        return self._outbox

    async def _read(
        self,
        call: grpc.aio.StreamStreamCall[scheduler_pb2.StreamRequest, scheduler_pb2.StreamResponse],
        outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None],
    ) -> None:
        failure = _rpc_error(grpc.StatusCode.UNAVAILABLE, "the stream to the scheduler ended")
        try:
            async for response in call:
                answer = self._pending.get(response.call_id)
                if answer is not None and not answer.done():
                    answer.set_result(response)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                failure = exc
            else:
                log.warning("scheduler stream failed", extra={"code": exc.code().name})
                failure = _rpc_error(
                    grpc.StatusCode.UNAVAILABLE, f"the stream to the scheduler broke ({exc.code().name})"
                )
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            if self._outbox is outbox:
                self._outbox = None  # the next call opens a new stream
            outbox.put_nowait(None)
            for answer in list(self._pending.values()):
                if not answer.done():
                    answer.set_exception(failure)

    async def close(self) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(None)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


async def _drain(
    outbox: asyncio.Queue[scheduler_pb2.StreamRequest | None],
) -> AsyncIterator[scheduler_pb2.StreamRequest]:
    while (message := await outbox.get()) is not None:
        yield message
