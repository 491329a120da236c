"""The Scheduler gRPC service: translates RPCs to scheduler calls and errors to status codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NoReturn

import grpc

from nanofaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.errors import CompletionRefused, NameTaken, Rejected, ShuttingDown
from nanofaas_scheduler.core.execution import Execution, Request, State
from nanofaas_scheduler.core.execution_names import valid_execution_name
from nanofaas_scheduler.core.outcome import Outcome, crash, function_error, success
from nanofaas_scheduler.core.outcome import timeout as timed_out
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.core.store import UnknownCursor
from nanofaas_scheduler.dispatch.http_invoke import max_output_bytes, output_too_large
from nanofaas_scheduler.dispatch.logs import LogLine, LogQuery, TooManyFollowers
from nanofaas_scheduler.observability.tracing import rpc_span
from nanofaas_scheduler.registry_cache import FunctionCache
from nanofaas_scheduler.request_limits import RequestLimits, RequestRefused, check_invoke_request

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from nanofaas_scheduler.callbacks import CallbackOutbox

log = logging.getLogger(__name__)

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

STATE_TO_PROTO = {
    State.QUEUED: types_pb2.EXECUTION_STATE_QUEUED,
    State.RUNNING: types_pb2.EXECUTION_STATE_RUNNING,
    State.SUCCESS: types_pb2.EXECUTION_STATE_SUCCESS,
    State.ERROR: types_pb2.EXECUTION_STATE_ERROR,
    State.TIMEOUT: types_pb2.EXECUTION_STATE_TIMEOUT,
}


def _error_info(execution: Execution) -> types_pb2.ErrorInfo | None:
    if not execution.error_code:
        return None
    return types_pb2.ErrorInfo(code=execution.error_code, message=execution.error_message)


def _output(execution: Execution) -> types_pb2.Payload | None:
    if execution.state is not State.SUCCESS or execution.output_evicted:
        return None
    return types_pb2.Payload(data=execution.output, content_type=execution.output_content_type)


# ListExecutions: the default and the largest page.
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000
# GetLogs: the largest tail one can ask for.
MAX_LOG_TAIL = 10_000
_STATE_FROM_PROTO = {value: state for state, value in STATE_TO_PROTO.items()}


def status_message(execution: Execution, *, with_output: bool = True) -> types_pb2.ExecutionStatus:
    return types_pb2.ExecutionStatus(
        execution_id=execution.id,
        function_name=execution.function_name,
        status=STATE_TO_PROTO[execution.state],
        attempts=execution.attempts,
        trace_id=execution.trace_id,
        enqueued_at_ms=execution.enqueued_at_ms,
        started_at_ms=execution.started_at_ms,
        finished_at_ms=execution.finished_at_ms,
        output=_output(execution) if with_output else None,
        error=_error_info(execution),
    )


def _log_message(line: LogLine) -> scheduler_pb2.LogLine:
    return scheduler_pb2.LogLine(
        ts_ms=line.ts_ms,
        stream=line.stream,
        execution_id=line.execution_id,
        level=line.level,
        message=line.message,
    )


def _request(message: scheduler_pb2.InvokeRequest) -> Request:
    content_type = message.input.content_type or JSON
    data = message.input.data
    if content_type == JSON and not data.strip():
        data = b"null"
    return Request(data=data, content_type=content_type, metadata=dict(message.metadata))


_REPORTABLE_STATES = frozenset(
    {types_pb2.EXECUTION_STATE_SUCCESS, types_pb2.EXECUTION_STATE_ERROR, types_pb2.EXECUTION_STATE_TIMEOUT}
)


def _completion(message: scheduler_pb2.CompleteExecutionRequest) -> Outcome:
    """A runtime's report as an Outcome, judged like the same result in-band would be.

    A code the contract does not list is reported as FUNCTION_ERROR (its message kept).
    """
    if message.status not in _REPORTABLE_STATES:
        raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, "status: must be SUCCESS, ERROR or TIMEOUT")
    if message.status == types_pb2.EXECUTION_STATE_SUCCESS:
        if len(message.output.data) > max_output_bytes():
            return output_too_large(len(message.output.data))
        return success(message.output.data or b"null", message.output.content_type or JSON)
    code, text = message.error.code, message.error.message
    if message.status == types_pb2.EXECUTION_STATE_TIMEOUT or code == codes.TIMEOUT:
        return timed_out(text)
    if code in (codes.CRASH, codes.START_FAILED):
        return crash(text, code)
    return function_error(text, code if code in _REPORTABLE else codes.FUNCTION_ERROR)


# What a runtime may report as the code of a failed attempt (besides the crash codes above).
_REPORTABLE = frozenset({codes.FUNCTION_ERROR, codes.code_name(types_pb2.ERROR_CODE_INVALID_REQUEST)})


class CallFailed(Exception):
    """A call's failure, reported by a unary RPC as its status and by Stream as a CallError."""

    def __init__(
        self, code: grpc.StatusCode, message: str, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = metadata

    async def abort(self, context: grpc.aio.ServicerContext[object, object]) -> NoReturn:
        await context.abort(self.code, self.message, trailing_metadata=self.metadata)
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    def as_message(self) -> scheduler_pb2.CallError:
        return scheduler_pb2.CallError(
            code=self.code.value[0], message=self.message, metadata=dict(self.metadata)
        )


# What an InvokeResponse holds besides its output and texts (ids, status, framing), at most.
_RESPONSE_OVERHEAD_BYTES = 256  # framing in its batch included
# One Stream message carries the responses waiting when it is sent, at most this many and
# this large together (a larger response goes alone, as one message it always fits the
# channel's limit: outputs are bounded by NANOFAAS_MAX_OUTPUT_BYTES, at most 60 MiB).
STREAM_BATCH_COUNT = 256
STREAM_BATCH_BYTES = 1 << 20
# A response's field tag and length in its batch, at most.
_FRAME_BYTES = 16


def _rpc_budget_ms(context: grpc.aio.ServicerContext[object, object]) -> int | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(int(remaining * 1000), 1)


class SchedulerService(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(
        self,
        scheduler: Scheduler,
        functions: FunctionCache,
        tracer: Tracer | None = None,
        *,
        callbacks: CallbackOutbox | None = None,
        operator_completions: bool = False,
        limits: RequestLimits | None = None,
    ) -> None:
        # True when API authentication is on: every caller that got this far presented an
        # API token, so a completion without a completion token is an operator's act.
        self._operator_completions = operator_completions
        self._scheduler = scheduler
        self._limits = limits or RequestLimits()
        self._functions = functions
        self._tracer = tracer
        self._callbacks = callbacks

    # -- the calls, independent of how they arrive ------------------------------

    async def _admit(
        self, request: scheduler_pb2.InvokeRequest, *, sync: bool, traceparent: str, budget_ms: int | None
    ) -> tuple[Execution, bool]:
        try:
            check_invoke_request(request, self._limits)
        except RequestRefused as refused:
            trailer = (("x-error-code", refused.error_code),) if refused.error_code else ()
            raise CallFailed(refused.status, refused.message, trailer) from None
        content_type = request.input.content_type or JSON
        if content_type not in (JSON, OCTET_STREAM):
            raise CallFailed(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input.content_type: unsupported media type {content_type!r}",
            )
        if request.execution_id and not valid_execution_name(request.execution_id):
            raise CallFailed(
                grpc.StatusCode.INVALID_ARGUMENT, "execution_id: must be 32 lowercase hex digits"
            )
        if request.HasField("timeout_ms"):  # bounded by the registry's limit (registry_cache.py)
            max_timeout_ms = await self._functions.max_timeout_ms()
            if max_timeout_ms is None:
                raise CallFailed(grpc.StatusCode.UNAVAILABLE, "registry unavailable: its limits are unknown")
            if not 1 <= request.timeout_ms <= max_timeout_ms:
                message = f"timeout_ms: must be between 1 and {max_timeout_ms}"
                raise CallFailed(grpc.StatusCode.INVALID_ARGUMENT, message)
        try:
            spec = await self._functions.get(
                request.function_name, request.min_registry_revision, request.min_registry_epoch
            )
        except grpc.aio.AioRpcError as exc:
            raise CallFailed(grpc.StatusCode.UNAVAILABLE, f"registry unavailable: {exc.details()}") from None
        if spec is None:
            raise CallFailed(grpc.StatusCode.NOT_FOUND, f"function '{request.function_name}' not found")
        timeout_ms = request.timeout_ms if request.HasField("timeout_ms") else None
        if budget_ms is not None:
            # One deadline for every hop: a sync call never outlives the caller waiting for it.
            timeout_ms = budget_ms if timeout_ms is None else min(timeout_ms, budget_ms)
        submission = Submission(
            request=_request(request),
            sync=sync,
            trace_id=request.trace_id,
            traceparent=traceparent,
            timeout_ms=timeout_ms if sync else None,
            idempotency_key=request.idempotency_key,
            callback_url=request.callback_url,
            execution_id=request.execution_id,
        )
        try:
            return self._scheduler.submit(spec, submission)
        except Rejected as exc:
            raise CallFailed(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                str(exc),
                (("retry-after", str(exc.retry_after_s)), ("x-queue-reject-reason", exc.reason)),
            ) from None
        except ShuttingDown as exc:
            raise CallFailed(
                grpc.StatusCode.UNAVAILABLE, str(exc), (("x-error-code", codes.SHUTTING_DOWN),)
            ) from None
        except NameTaken as exc:  # never merged into the execution that has the name
            raise CallFailed(grpc.StatusCode.ALREADY_EXISTS, str(exc)) from None

    async def invoke(
        self, request: scheduler_pb2.InvokeRequest, budget_ms: int | None
    ) -> scheduler_pb2.InvokeResponse:
        """A sync call: admitted, then waited for to its end."""
        response, _ = await self.invoke_sized(request, budget_ms)
        return response

    async def invoke_sized(
        self, request: scheduler_pb2.InvokeRequest, budget_ms: int | None
    ) -> tuple[scheduler_pb2.InvokeResponse, int]:
        """invoke() and a bound of the response's encoded size, known without encoding it
        (the stream batches responses up to a size; a large output costs ms to measure)."""
        with rpc_span(self._tracer, "Invoke", request.traceparent, request.trace_id) as traceparent:
            execution, _ = await self._admit(request, sync=True, traceparent=traceparent, budget_ms=budget_ms)
            execution.waiters += 1
            try:
                await execution.done.wait()
            except asyncio.CancelledError:
                # The caller went away (cancelled RPC or a CancelCall on the stream).
                execution.waiters -= 1
                if execution.waiters == 0 and execution.sync:
                    self._scheduler.cancel_queued(execution)
                raise
            output = _output(execution)
            response = scheduler_pb2.InvokeResponse(
                execution_id=execution.id,
                status=STATE_TO_PROTO[execution.state],
                output=output,
                error=_error_info(execution),
            )
            # UTF-8 takes at most 4 bytes a character; ids, status and framing fit in the rest.
            text = (
                len(execution.error_code) + len(execution.error_message) + len(execution.output_content_type)
            )
            return response, (len(execution.output) if output else 0) + 4 * text + _RESPONSE_OVERHEAD_BYTES

    async def enqueue(self, request: scheduler_pb2.InvokeRequest) -> scheduler_pb2.EnqueueResponse:
        with rpc_span(self._tracer, "Enqueue", request.traceparent, request.trace_id) as traceparent:
            execution, created = await self._admit(
                request, sync=False, traceparent=traceparent, budget_ms=None
            )
        # A new execution was admitted to the queue, even if dispatch already took it.
        state = State.QUEUED if created else execution.state
        return scheduler_pb2.EnqueueResponse(execution_id=execution.id, status=STATE_TO_PROTO[state])

    # -- unary RPCs ---------------------------------------------------------------

    async def Invoke(
        self, request: scheduler_pb2.InvokeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> scheduler_pb2.InvokeResponse:
        try:
            return await self.invoke(request, _rpc_budget_ms(context))
        except CallFailed as failed:
            await failed.abort(context)

    async def Enqueue(
        self, request: scheduler_pb2.InvokeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> scheduler_pb2.EnqueueResponse:
        try:
            return await self.enqueue(request)
        except CallFailed as failed:
            await failed.abort(context)

    # -- the multiplexed stream ----------------------------------------------------

    async def Stream(
        self,
        request_iterator: AsyncIterator[scheduler_pb2.StreamRequests],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[scheduler_pb2.StreamResponses]:
        # An async generator, so grpc.aio streams it from the event loop.
        async for response in StreamSession(self, request_iterator).responses():
            yield response

    # -- completion callbacks -------------------------------------------------------

    async def Callbacks(
        self,
        request_iterator: AsyncIterator[scheduler_pb2.CallbackAck],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[scheduler_pb2.CallbackDue]:
        """Served by the outbox (callbacks.py); initial metadata tells the gateway it is subscribed."""
        if self._callbacks is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no callback outbox")
        await context.send_initial_metadata(())
        async with contextlib.aclosing(self._callbacks.serve(request_iterator)) as dues:
            async for due in dues:
                yield due

    async def GetExecution(
        self, request: scheduler_pb2.GetExecutionRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> types_pb2.ExecutionStatus:
        if request.retire_if_missing and valid_execution_name(request.execution_id):
            execution = self._scheduler.find_or_retire(request.execution_id)
        else:
            execution = self._scheduler.store.get(request.execution_id)
        if execution is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"execution '{request.execution_id}' not found")
        return status_message(execution)

    async def ListExecutions(
        self, request: scheduler_pb2.ListExecutionsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> scheduler_pb2.ListExecutionsResponse:
        limit = request.limit if request.HasField("limit") else DEFAULT_LIST_LIMIT
        if not 1 <= limit <= MAX_LIST_LIMIT:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"limit: must be between 1 and {MAX_LIST_LIMIT}"
            )
        state = _STATE_FROM_PROTO.get(request.status)
        try:
            found = self._scheduler.store.recent(
                function=request.function_name, state=state, before=request.before, limit=limit
            )
        except UnknownCursor as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return scheduler_pb2.ListExecutionsResponse(
            executions=[status_message(execution, with_output=False) for execution in found]
        )

    async def _known_spec(
        self, name: str, context: grpc.aio.ServicerContext[object, object]
    ) -> types_pb2.FunctionSpec:
        try:
            spec = await self._functions.get(name) if name else None
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"registry unavailable: {exc.details()}")
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"function '{name}' not found")
        return spec

    async def GetFunctionStatus(
        self,
        request: scheduler_pb2.GetFunctionStatusRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> scheduler_pb2.FunctionStatus:
        spec = await self._known_spec(request.function_name, context)
        queued, in_flight, oldest_age_ms = self._scheduler.lane_status(spec.name)
        replicas = self._scheduler.replicas(spec)
        return scheduler_pb2.FunctionStatus(
            name=spec.name,
            replicas=scheduler_pb2.Replicas(
                current=replicas.current,
                ready=replicas.ready,
                desired=replicas.desired,
                min=replicas.min,
                max=replicas.max,
            ),
            in_flight=in_flight,
            queued=queued,
            oldest_queued_age_ms=oldest_age_ms,
        )

    async def GetLogs(
        self, request: scheduler_pb2.GetLogsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[scheduler_pb2.LogLine]:
        """Served by the backend's log source; initial metadata says the request was accepted."""
        if request.tail > MAX_LOG_TAIL:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"tail: must be between 0 and {MAX_LOG_TAIL}"
            )
        spec = await self._known_spec(request.function_name, context)
        query = LogQuery(
            function=spec.name,
            execution_id=request.execution_id,
            since_ms=request.since_ms,
            tail=request.tail,
            follow=request.follow,
        )
        try:
            lines = self._scheduler.logs(query)
        except TooManyFollowers as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        await context.send_initial_metadata((("x-logs", "ready"),))
        try:
            async for line in lines:
                yield _log_message(line)
        finally:
            close = getattr(lines, "aclose", None)
            if close is not None:
                await close()

    async def CompleteExecution(
        self,
        request: scheduler_pb2.CompleteExecutionRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> scheduler_pb2.CompleteExecutionResponse:
        try:
            accepted = self._scheduler.complete(
                request.execution_id,
                request.attempt,
                _completion(request),
                request.completion_token,
                operator=self._operator_completions,
            )
        except CallFailed as failed:
            await failed.abort(context)
        except CompletionRefused as refused:
            await _refuse(context, refused)
        if accepted is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"execution '{request.execution_id}' not found")
        return scheduler_pb2.CompleteExecutionResponse(accepted=accepted)


async def _refuse(context: grpc.aio.ServicerContext[object, object], refused: CompletionRefused) -> NoReturn:
    if refused.authenticated:
        status, code = grpc.StatusCode.PERMISSION_DENIED, types_pb2.ERROR_CODE_PERMISSION_DENIED
    else:
        status, code = grpc.StatusCode.UNAUTHENTICATED, types_pb2.ERROR_CODE_UNAUTHENTICATED
    await context.abort(status, str(refused), trailing_metadata=(("x-error-code", codes.code_name(code)),))
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


class StreamSession:
    """One Stream RPC: each call runs as its own task; responses leave through one queue.

    Each message on the stream is a batch: every call the gateway had waiting, and every
    response waiting here when the writer gets its turn. gRPC pays per message (a core
    op and a wake-up of the loop), so under load one message carries many calls.
    """

    def __init__(
        self, service: SchedulerService, requests: AsyncIterator[scheduler_pb2.StreamRequests]
    ) -> None:
        self._service = service
        self._requests = requests
        self._calls: dict[int, asyncio.Task[None]] = {}
        # Responses with a bound of their encoded size; None ends the stream.
        self._out: asyncio.Queue[tuple[scheduler_pb2.StreamResponse, int] | None] = asyncio.Queue()

    async def responses(self) -> AsyncIterator[scheduler_pb2.StreamResponses]:
        reader = asyncio.get_running_loop().create_task(self._read())
        out = self._out
        try:
            item = await out.get()
            while item is not None:
                batch, size = [item[0]], item[1]
                carried = False  # item is taken but not in batch: it starts the next one
                while not out.empty():
                    item = out.get_nowait()
                    if (
                        item is None
                        or len(batch) == STREAM_BATCH_COUNT
                        or size + item[1] > STREAM_BATCH_BYTES
                    ):
                        carried = True
                        break
                    batch.append(item[0])
                    size += item[1]
                yield scheduler_pb2.StreamResponses(results=batch)
                if not carried:
                    item = await out.get()
        finally:
            reader.cancel()
            for task in list(self._calls.values()):
                task.cancel()

    def _answer(self, response: scheduler_pb2.StreamResponse, size: int = 0) -> None:
        """Queue a response; `size` bounds its encoding (measured here when not given)."""
        self._out.put_nowait((response, size or response.ByteSize() + _FRAME_BYTES))

    async def _read(self) -> None:
        try:
            async for batch in self._requests:
                for message in batch.calls:
                    kind = message.WhichOneof("call")
                    if kind == "cancel":
                        task = self._calls.get(message.call_id)
                        if task is not None:
                            task.cancel()
                    elif kind is not None:
                        task = asyncio.get_running_loop().create_task(self._run(message, kind))
                        self._calls[message.call_id] = task
        finally:
            # The caller closed its side (or the RPC ended): end ours once calls are answered.
            if self._calls:
                await asyncio.wait(set(self._calls.values()))
            self._out.put_nowait(None)

    async def _run(self, message: scheduler_pb2.StreamRequest, kind: str) -> None:
        call_id = message.call_id
        try:
            if kind == "invoke":
                result, size = await self._service.invoke_sized(message.invoke, message.deadline_ms or None)
                self._answer(scheduler_pb2.StreamResponse(call_id=call_id, invoke=result), size)
            else:
                admitted = await self._service.enqueue(message.enqueue)
                self._answer(scheduler_pb2.StreamResponse(call_id=call_id, enqueue=admitted))
        except CallFailed as failed:
            self._answer(scheduler_pb2.StreamResponse(call_id=call_id, error=failed.as_message()))
        except asyncio.CancelledError:
            pass  # cancelled by its caller: nobody waits for an answer
        except Exception as exc:  # never let one call end the stream
            log.exception("stream call failed", extra={"callId": call_id})
            internal = CallFailed(grpc.StatusCode.INTERNAL, f"scheduler error: {exc}")
            self._answer(scheduler_pb2.StreamResponse(call_id=call_id, error=internal.as_message()))
        finally:
            self._calls.pop(call_id, None)
