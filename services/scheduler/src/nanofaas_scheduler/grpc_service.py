"""The Scheduler gRPC service: translates RPCs to scheduler calls and errors to status codes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc

from nanofaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_runtime.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.errors import Rejected, ShuttingDown
from nanofaas_scheduler.core.execution import Execution, Request, State
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.observability.tracing import rpc_span
from nanofaas_scheduler.registry_cache import FunctionCache

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

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


def status_message(execution: Execution) -> types_pb2.ExecutionStatus:
    return types_pb2.ExecutionStatus(
        execution_id=execution.id,
        function_name=execution.function_name,
        status=STATE_TO_PROTO[execution.state],
        attempts=execution.attempts,
        trace_id=execution.trace_id,
        enqueued_at_ms=execution.enqueued_at_ms,
        started_at_ms=execution.started_at_ms,
        finished_at_ms=execution.finished_at_ms,
        output=_output(execution),
        error=_error_info(execution),
    )


def _caller_timeout_ms(
    request: scheduler_pb2.InvokeRequest, context: grpc.aio.ServicerContext[object, object]
) -> int | None:
    """The caller's budget: X-Timeout-Ms, or less if the RPC's own deadline is sooner.

    One deadline for every hop: a sync call never outlives the gRPC call waiting for it.
    """
    timeout_ms = request.timeout_ms if request.HasField("timeout_ms") else None
    remaining = context.time_remaining()
    if remaining is not None:
        rpc_ms = max(int(remaining * 1000), 1)
        timeout_ms = rpc_ms if timeout_ms is None else min(timeout_ms, rpc_ms)
    return timeout_ms


def _request(message: scheduler_pb2.InvokeRequest) -> Request:
    content_type = message.input.content_type or JSON
    data = message.input.data
    if content_type == JSON and not data.strip():
        data = b"null"
    return Request(data=data, content_type=content_type, metadata=dict(message.metadata))


def _completion(message: scheduler_pb2.CompleteExecutionRequest) -> Outcome:
    if message.status == types_pb2.EXECUTION_STATE_SUCCESS:
        return Outcome(
            kind=OutcomeKind.SUCCESS,
            output=message.output.data or b"null",
            content_type=message.output.content_type or JSON,
        )
    if message.status == types_pb2.EXECUTION_STATE_TIMEOUT:
        return Outcome(kind=OutcomeKind.TIMEOUT, error_code="TIMEOUT", message=message.error.message)
    return Outcome(
        kind=OutcomeKind.FUNCTION_ERROR,
        error_code=message.error.code or "FUNCTION_ERROR",
        message=message.error.message,
    )


class SchedulerService(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, scheduler: Scheduler, functions: FunctionCache, tracer: Tracer | None = None) -> None:
        self._scheduler = scheduler
        self._functions = functions
        self._tracer = tracer

    async def _admit(
        self,
        request: scheduler_pb2.InvokeRequest,
        context: grpc.aio.ServicerContext[object, object],
        *,
        sync: bool,
        traceparent: str,
    ) -> tuple[Execution, bool]:
        if not request.function_name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "function_name: required")
        content_type = request.input.content_type or JSON
        if content_type not in (JSON, OCTET_STREAM):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input.content_type: unsupported media type {content_type!r}",
            )
        if request.HasField("timeout_ms") and not 1 <= request.timeout_ms <= 300_000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "timeout_ms: must be between 1 and 300000")
        try:
            spec = await self._functions.get(request.function_name, request.min_registry_revision)
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"registry unavailable: {exc.details()}")
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"function '{request.function_name}' not found")
        submission = Submission(
            request=_request(request),
            sync=sync,
            trace_id=request.trace_id,
            traceparent=traceparent,
            timeout_ms=_caller_timeout_ms(request, context) if sync else None,
            idempotency_key=request.idempotency_key,
            callback_url=request.callback_url,
        )
        try:
            return self._scheduler.submit(spec, submission)
        except Rejected as exc:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                str(exc),
                trailing_metadata=(
                    ("retry-after", str(exc.retry_after_s)),
                    ("x-queue-reject-reason", exc.reason),
                ),
            )
        except ShuttingDown as exc:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, str(exc), trailing_metadata=(("x-error-code", "SHUTTING_DOWN"),)
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def Invoke(
        self, request: scheduler_pb2.InvokeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> scheduler_pb2.InvokeResponse:
        with rpc_span(self._tracer, "Invoke", request.traceparent, request.trace_id) as traceparent:
            return await self._invoke(request, context, traceparent)

    async def _invoke(
        self,
        request: scheduler_pb2.InvokeRequest,
        context: grpc.aio.ServicerContext[object, object],
        traceparent: str,
    ) -> scheduler_pb2.InvokeResponse:
        execution, _ = await self._admit(request, context, sync=True, traceparent=traceparent)
        execution.waiters += 1
        try:
            await execution.done.wait()
        except asyncio.CancelledError:
            execution.waiters -= 1
            if execution.waiters == 0 and execution.sync:
                self._scheduler.cancel_queued(execution)
            raise
        return scheduler_pb2.InvokeResponse(
            execution_id=execution.id,
            status=STATE_TO_PROTO[execution.state],
            output=_output(execution),
            error=_error_info(execution),
        )

    async def Enqueue(
        self, request: scheduler_pb2.InvokeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> scheduler_pb2.EnqueueResponse:
        with rpc_span(self._tracer, "Enqueue", request.traceparent, request.trace_id) as traceparent:
            execution, created = await self._admit(request, context, sync=False, traceparent=traceparent)
        # A new execution was admitted to the queue, even if dispatch already took it.
        state = State.QUEUED if created else execution.state
        return scheduler_pb2.EnqueueResponse(execution_id=execution.id, status=STATE_TO_PROTO[state])

    async def GetExecution(
        self, request: scheduler_pb2.GetExecutionRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> types_pb2.ExecutionStatus:
        execution = self._scheduler.store.get(request.execution_id)
        if execution is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"execution '{request.execution_id}' not found")
        return status_message(execution)

    async def CompleteExecution(
        self,
        request: scheduler_pb2.CompleteExecutionRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> scheduler_pb2.CompleteExecutionResponse:
        if not self._scheduler.complete(request.execution_id, _completion(request)):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"execution '{request.execution_id}' not found")
        return scheduler_pb2.CompleteExecutionResponse()
