"""In-process gRPC fakes of the registry and the scheduler, with canned and recording behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, cast

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # stubs lack aio

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2

Context = grpc.aio.ServicerContext[Any, Any]
CREATED_AT_MS = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z


@dataclass
class Failure:
    code: grpc.StatusCode
    details: str
    trailers: tuple[tuple[str, str], ...] = ()


@dataclass
class FailureInjector:
    """One-shot failures per RPC method name, so each test states the error it wants mapped."""

    pending: dict[str, Failure] = field(default_factory=dict)

    def fail(
        self, method: str, code: grpc.StatusCode, details: str = "", trailers: dict[str, str] | None = None
    ) -> None:
        self.pending[method] = Failure(code, details, tuple((trailers or {}).items()))

    async def check(self, method: str, context: Context) -> None:
        failure = self.pending.pop(method, None)
        if failure is not None:
            await context.abort(failure.code, failure.details, trailing_metadata=failure.trailers)


# What a registry checks of the bounded fields: (proto field, REST field, minimum, maximum).
_Bounded = Literal["timeout_ms", "concurrency", "queue_size", "max_retries"]
REGISTRY_BOUNDS: tuple[tuple[_Bounded, str, int, int], ...] = (
    ("timeout_ms", "timeoutMs", 1, 300_000),
    ("concurrency", "concurrency", 1, 10_000),
    ("queue_size", "queueSize", 1, 1_000_000),
    ("max_retries", "maxRetries", 0, 100),
)
REGISTRY_MAX_RATE = 1_000_000.0


def bounds_problem(spec: types_pb2.FunctionSpec) -> str | None:
    """What a registry answers to an out-of-range value: the same message, whatever the value."""
    for proto_field, rest_field, minimum, maximum in REGISTRY_BOUNDS:
        if spec.HasField(proto_field) and not minimum <= getattr(spec, proto_field) <= maximum:
            return f"{rest_field}: must be between {minimum} and {maximum}"
    if spec.HasField("rate_limit_per_second") and not 0 <= spec.rate_limit_per_second <= REGISTRY_MAX_RATE:
        return "rateLimitPerSecond: must be between 0 and 1e+06 (0 = no limit)"
    return None


def with_defaults(spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
    stored = types_pb2.FunctionSpec()
    stored.CopyFrom(spec)
    if not stored.HasField("timeout_ms"):
        stored.timeout_ms = 30000
    if not stored.HasField("concurrency"):
        stored.concurrency = 4
    if not stored.HasField("queue_size"):
        stored.queue_size = 100
    if not stored.HasField("max_retries"):
        stored.max_retries = 3
    if stored.execution_mode == types_pb2.EXECUTION_MODE_UNSPECIFIED:
        endpoint = stored.endpoint_url
        stored.execution_mode = (
            types_pb2.EXECUTION_MODE_ENDPOINT if endpoint else types_pb2.EXECUTION_MODE_JOB
        )
    if stored.runtime_mode == types_pb2.RUNTIME_MODE_UNSPECIFIED:
        stored.runtime_mode = types_pb2.RUNTIME_MODE_HTTP
    return stored


class FakeRegistry(registry_pb2_grpc.RegistryServicer):
    def __init__(self) -> None:
        self.specs: dict[str, types_pb2.FunctionSpec] = {}
        self.revision = 0
        self.epoch = 0  # when nonzero, mutations send it as nanofaas-registry-epoch (registry.proto)
        self.registered: list[types_pb2.FunctionSpec] = []
        self.updates: list[registry_pb2.UpdateRequest] = []
        self.failures = FailureInjector()
        self.watch_events: list[registry_pb2.WatchEvent] = []
        # Invocation metadata of each Get call (where a traced client puts its traceparent).
        self.get_metadata: list[dict[str, str | bytes]] = []

    def reset(self) -> None:
        """Forget functions and requests; the revision keeps growing like a real registry's."""
        self.specs.clear()
        self.registered.clear()
        self.updates.clear()
        self.failures.pending.clear()
        self.get_metadata.clear()

    def _store(self, spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
        self.revision += 1
        stored = with_defaults(spec)
        stored.revision = self.revision
        stored.created_at_ms = CREATED_AT_MS
        self.specs[stored.name] = stored
        return stored

    async def Register(
        self, request: registry_pb2.RegisterRequest, context: Context
    ) -> types_pb2.FunctionSpec:
        await self.failures.check("Register", context)
        self.registered.append(request.spec)
        if (problem := bounds_problem(request.spec)) is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if request.spec.name in self.specs:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS, f"function '{request.spec.name}' already exists"
            )
        await self._send_epoch(context)
        return self._store(request.spec)

    async def _send_epoch(self, context: Context) -> None:
        if self.epoch:
            await context.send_initial_metadata((("nanofaas-registry-epoch", str(self.epoch)),))

    async def Get(self, request: registry_pb2.GetFunctionRequest, context: Context) -> types_pb2.FunctionSpec:
        self.get_metadata.append(dict(context.invocation_metadata() or ()))
        await self.failures.check("Get", context)
        if request.name not in self.specs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"function '{request.name}' not found")
        return self.specs[request.name]

    async def List(
        self, request: registry_pb2.ListFunctionsRequest, context: Context
    ) -> registry_pb2.ListFunctionsResponse:
        await self.failures.check("List", context)
        return registry_pb2.ListFunctionsResponse(functions=list(self.specs.values()), revision=self.revision)

    async def Update(self, request: registry_pb2.UpdateRequest, context: Context) -> types_pb2.FunctionSpec:
        await self.failures.check("Update", context)
        self.updates.append(request)
        if (problem := bounds_problem(request.spec)) is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if request.name not in self.specs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"function '{request.name}' not found")
        await self._send_epoch(context)
        return self._store(request.spec)

    async def Delete(
        self, request: registry_pb2.DeleteFunctionRequest, context: Context
    ) -> registry_pb2.DeleteFunctionResponse:
        await self.failures.check("Delete", context)
        if self.specs.pop(request.name, None) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"function '{request.name}' not found")
        self.revision += 1
        await self._send_epoch(context)
        return registry_pb2.DeleteFunctionResponse(revision=self.revision)

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[registry_pb2.WatchEvent]:
        """The gateway never watches: no events, then UNIMPLEMENTED."""
        for event in self.watch_events:
            yield event
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the gateway never watches")


def echo_invocation(request: scheduler_pb2.InvokeRequest) -> scheduler_pb2.InvokeResponse:
    """The default scheduler answer: success with the input as the output."""
    return scheduler_pb2.InvokeResponse(
        execution_id=f"exec-{request.function_name}",
        status=types_pb2.EXECUTION_STATE_SUCCESS,
        output=request.input,
    )


# The largest timeout_ms the fake scheduler admits (a real one has it from the registry).
SCHEDULER_MAX_TIMEOUT_MS = 300_000


class FakeScheduler(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self) -> None:
        self.invokes: list[scheduler_pb2.InvokeRequest] = []
        self.enqueues: list[scheduler_pb2.InvokeRequest] = []
        self.completions: list[scheduler_pb2.CompleteExecutionRequest] = []
        # Invocation metadata of each Stream call (where the gateway's credentials go).
        self.stream_metadata: list[dict[str, str | bytes]] = []
        self.invoke_deadlines: list[float | None] = []
        self.executions: dict[str, types_pb2.ExecutionStatus] = {}
        self.invoke_result: Callable[[scheduler_pb2.InvokeRequest], scheduler_pb2.InvokeResponse] = (
            echo_invocation
        )
        self.enqueue_state: types_pb2.ExecutionState.ValueType = types_pb2.EXECUTION_STATE_QUEUED
        self.hang_invoke = False
        self.invoke_cancelled = asyncio.Event()
        self.invoke_received = asyncio.Event()
        # A hanging Invoke returns once this is set.
        self.invoke_release = asyncio.Event()
        self.failures = FailureInjector()
        self.callbacks = FakeCallbacks()
        self._reset_introspection()

    def _reset_introspection(self) -> None:
        self.listing: list[types_pb2.ExecutionStatus] = []
        self.list_requests: list[scheduler_pb2.ListExecutionsRequest] = []
        self.statuses: dict[str, scheduler_pb2.FunctionStatus] = {}
        self.log_lines: dict[str, list[scheduler_pb2.LogLine]] = {}
        self.log_requests: list[scheduler_pb2.GetLogsRequest] = []
        # Followed log streams get these lines after the kept ones; None ends the stream.
        self.live_lines: asyncio.Queue[scheduler_pb2.LogLine | None] = asyncio.Queue()
        self.follow_closed = asyncio.Event()

    def reset(self) -> None:
        self._reset_introspection()
        self.callbacks = FakeCallbacks()
        self.invokes.clear()
        self.enqueues.clear()
        self.completions.clear()
        self.stream_metadata.clear()
        self.invoke_deadlines.clear()
        self.executions.clear()
        self.invoke_result = echo_invocation
        self.enqueue_state = types_pb2.EXECUTION_STATE_QUEUED
        self.hang_invoke = False
        self.invoke_cancelled = asyncio.Event()
        self.invoke_received = asyncio.Event()
        self.invoke_release = asyncio.Event()
        self.failures.pending.clear()

    async def Invoke(
        self, request: scheduler_pb2.InvokeRequest, context: Context
    ) -> scheduler_pb2.InvokeResponse:
        self.invokes.append(request)
        self.invoke_deadlines.append(context.time_remaining())
        self.invoke_received.set()
        await self.failures.check("Invoke", context)
        if request.HasField("timeout_ms") and not 1 <= request.timeout_ms <= SCHEDULER_MAX_TIMEOUT_MS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"timeout_ms: must be between 1 and {SCHEDULER_MAX_TIMEOUT_MS}",
            )
        if self.hang_invoke:
            try:
                await self.invoke_release.wait()
            except asyncio.CancelledError:
                self.invoke_cancelled.set()
                raise
        return self.invoke_result(request)

    async def Enqueue(
        self, request: scheduler_pb2.InvokeRequest, context: Context
    ) -> scheduler_pb2.EnqueueResponse:
        self.enqueues.append(request)
        await self.failures.check("Enqueue", context)
        return scheduler_pb2.EnqueueResponse(
            execution_id=f"queued-{len(self.enqueues)}", status=self.enqueue_state
        )

    async def Stream(
        self, requests: AsyncIterator[scheduler_pb2.StreamRequests], context: Context
    ) -> AsyncIterator[scheduler_pb2.StreamResponses]:
        """The multiplexed hot path, answered by this fake's own Invoke and Enqueue."""
        self.stream_metadata.append(dict(context.invocation_metadata() or ()))
        out: asyncio.Queue[scheduler_pb2.StreamResponse | None] = asyncio.Queue()
        calls: dict[int, asyncio.Task[None]] = {}

        async def run(message: scheduler_pb2.StreamRequest) -> None:
            call = _StreamCallContext(message.deadline_ms)
            try:
                if message.WhichOneof("call") == "invoke":
                    result = await self.Invoke(message.invoke, cast(Context, call))
                    out.put_nowait(scheduler_pb2.StreamResponse(call_id=message.call_id, invoke=result))
                else:
                    admitted = await self.Enqueue(message.enqueue, cast(Context, call))
                    out.put_nowait(scheduler_pb2.StreamResponse(call_id=message.call_id, enqueue=admitted))
            except _Aborted as aborted:
                error = scheduler_pb2.CallError(
                    code=aborted.code.value[0], message=aborted.details, metadata=dict(aborted.trailers)
                )
                out.put_nowait(scheduler_pb2.StreamResponse(call_id=message.call_id, error=error))
            except asyncio.CancelledError:
                pass

        async def read() -> None:
            async for batch in requests:
                for message in batch.calls:
                    if message.WhichOneof("call") == "cancel":
                        if (task := calls.get(message.call_id)) is not None:
                            task.cancel()
                    else:
                        calls[message.call_id] = asyncio.create_task(run(message))
            out.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await out.get()) is not None:
                yield scheduler_pb2.StreamResponses(results=[response])
        finally:
            reader.cancel()
            for task in calls.values():
                task.cancel()

    async def GetExecution(
        self, request: scheduler_pb2.GetExecutionRequest, context: Context
    ) -> types_pb2.ExecutionStatus:
        await self.failures.check("GetExecution", context)
        if request.execution_id not in self.executions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"execution '{request.execution_id}' not found")
        return self.executions[request.execution_id]

    async def CompleteExecution(
        self, request: scheduler_pb2.CompleteExecutionRequest, context: Context
    ) -> scheduler_pb2.CompleteExecutionResponse:
        await self.failures.check("CompleteExecution", context)
        if request.execution_id not in self.executions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"execution '{request.execution_id}' not found")
        self.completions.append(request)
        return scheduler_pb2.CompleteExecutionResponse(accepted=True)

    async def ListExecutions(
        self, request: scheduler_pb2.ListExecutionsRequest, context: Context
    ) -> scheduler_pb2.ListExecutionsResponse:
        self.list_requests.append(request)
        await self.failures.check("ListExecutions", context)
        if request.HasField("limit") and not 1 <= request.limit <= 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit: must be between 1 and 1000")
        return scheduler_pb2.ListExecutionsResponse(executions=self.listing)

    async def GetFunctionStatus(
        self, request: scheduler_pb2.GetFunctionStatusRequest, context: Context
    ) -> scheduler_pb2.FunctionStatus:
        await self.failures.check("GetFunctionStatus", context)
        if request.function_name not in self.statuses:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"function '{request.function_name}' not found")
        return self.statuses[request.function_name]

    async def GetLogs(
        self, request: scheduler_pb2.GetLogsRequest, context: Context
    ) -> AsyncIterator[scheduler_pb2.LogLine]:
        self.log_requests.append(request)
        await self.failures.check("GetLogs", context)
        if request.function_name not in self.log_lines:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"function '{request.function_name}' not found")
        if request.tail > 10_000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tail: must be between 0 and 10000")
        await context.send_initial_metadata((("x-logs", "ready"),))
        for kept in self.log_lines[request.function_name]:
            yield kept
        if not request.follow:
            return
        try:
            while (live := await self.live_lines.get()) is not None:
                yield live
        finally:
            self.follow_closed.set()

    async def Callbacks(
        self, requests: AsyncIterator[scheduler_pb2.CallbackAck], context: Context
    ) -> AsyncIterator[scheduler_pb2.CallbackDue]:
        async for due in self.callbacks.serve(requests, context):
            yield due


class FakeCallbacks:
    """The scheduler's side of the Callbacks stream, scripted: offer() sends, drop() breaks it."""

    def __init__(self) -> None:
        self.acks: list[int] = []
        self.subscriptions = 0
        self.half_closed = 0  # streams whose ack side the subscriber ended
        self._offers: asyncio.Queue[scheduler_pb2.CallbackDue | None] = asyncio.Queue()
        self._changed = asyncio.Condition()

    def offer(self, due: scheduler_pb2.CallbackDue) -> None:
        self._offers.put_nowait(due)

    def drop(self) -> None:
        """End the current stream with UNAVAILABLE, as a scheduler that went away would."""
        self._offers.put_nowait(None)

    async def wait_for(self, predicate: Callable[[FakeCallbacks], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def serve(
        self, requests: AsyncIterator[scheduler_pb2.CallbackAck], context: Context
    ) -> AsyncIterator[scheduler_pb2.CallbackDue]:
        await context.send_initial_metadata(())
        self.subscriptions += 1
        await self._notify()

        async def read_acks() -> None:
            async for ack in requests:
                self.acks.append(ack.delivery_id)
                await self._notify()
            self.half_closed += 1
            await self._notify()
            self._offers.put_nowait(None)

        reader = asyncio.create_task(read_acks())
        try:
            while (due := await self._offers.get()) is not None:
                yield due
            if not reader.done():
                await context.abort(grpc.StatusCode.UNAVAILABLE, "stream dropped")
        finally:
            reader.cancel()


@dataclass
class FakeBackend:
    """A running gRPC server hosting one fake service and the standard health service."""

    server: grpc.aio.Server
    address: str
    health: health_aio.HealthServicer

    async def stop(self) -> None:
        await self.server.stop(grace=None)


async def start_backend(add_servicer: Callable[[grpc.aio.Server], None]) -> FakeBackend:
    server = grpc.aio.server()
    add_servicer(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return FakeBackend(server, f"127.0.0.1:{port}", health)


async def start_registry(fake: FakeRegistry) -> FakeBackend:
    return await start_backend(lambda server: registry_pb2_grpc.add_RegistryServicer_to_server(fake, server))


async def start_scheduler(fake: FakeScheduler) -> FakeBackend:
    return await start_backend(
        lambda server: scheduler_pb2_grpc.add_SchedulerServicer_to_server(fake, server)
    )


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailers: Sequence[tuple[str, str]]) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = tuple(trailers)


class _StreamCallContext:
    """What the fake's unary handlers use of a servicer context, for one call on the stream."""

    def __init__(self, deadline_ms: int) -> None:
        self._deadline_ms = deadline_ms

    def time_remaining(self) -> float | None:
        return self._deadline_ms / 1000 if self._deadline_ms else None

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, str]] = ()
    ) -> NoReturn:
        raise _Aborted(code, details, trailing_metadata)
