"""A thin asyncio gRPC client straight over the contracts (`nanofaas.v1`), for programs inside the cluster.

It speaks to the registry and the scheduler directly (no gateway), takes and
returns the contract's messages as they are, and raises the same exception
families as the REST clients (gRPC status -> code as in docs/errors.md).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Self, cast

import grpc

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_client.errors import ALL_CODES, NanofaasError, error_for

# gRPC status -> the REST code of docs/errors.md ("gRPC status to REST").
_STATUS_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: ("INVALID_ARGUMENT", 400),
    grpc.StatusCode.NOT_FOUND: ("NOT_FOUND", 404),
    grpc.StatusCode.ALREADY_EXISTS: ("ALREADY_EXISTS", 409),
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("RESOURCE_EXHAUSTED", 429),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("TIMEOUT", 408),
    grpc.StatusCode.UNAVAILABLE: ("UNAVAILABLE", 503),
}


def error_from_rpc(exc: grpc.aio.AioRpcError) -> NanofaasError:
    code, status = _STATUS_CODES.get(exc.code(), ("INTERNAL", 500))
    trailers: dict[str, str] = {}
    for key, value in cast("Iterable[tuple[str, str | bytes]]", exc.trailing_metadata() or ()):
        trailers[str(key).lower()] = value.decode() if isinstance(value, bytes) else str(value)
    named = trailers.get("x-error-code", "")
    retry_after = trailers.get("retry-after", "")
    return error_for(
        named if named in ALL_CODES else code,
        exc.details() or code,
        status=status,
        retry_after_s=float(retry_after) if retry_after.isdigit() else None,
        reason=trailers.get("x-queue-reject-reason", ""),
    )


class GrpcClient:
    """Registry and scheduler calls over two channels; `async with GrpcClient(...) as client`."""

    def __init__(
        self,
        registry_address: str,
        scheduler_address: str,
        *,
        timeout_s: float = 30.0,
        token: str | None = None,
    ) -> None:
        # API authentication (docs/security.md): `token`, else $NANOFAAS_TOKEN, as bearer metadata.
        token = (os.environ.get("NANOFAAS_TOKEN", "") if token is None else token).strip()
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channels = (
            grpc.aio.insecure_channel(registry_address),
            grpc.aio.insecure_channel(scheduler_address),
        )
        self.registry = registry_pb2_grpc.RegistryStub(self._channels[0])
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(self._channels[1])
        self.timeout_s = timeout_s

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)

    async def _unary(self, method: Any, request: Any, timeout_s: float | None = None) -> Any:
        try:
            return await method(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    async def register(self, spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
        result: types_pb2.FunctionSpec = await self._unary(
            self.registry.Register, registry_pb2.RegisterRequest(spec=spec)
        )
        return result

    async def get_function(self, name: str) -> types_pb2.FunctionSpec:
        result: types_pb2.FunctionSpec = await self._unary(
            self.registry.Get, registry_pb2.GetFunctionRequest(name=name)
        )
        return result

    async def list_functions(self) -> list[types_pb2.FunctionSpec]:
        listing = await self._unary(self.registry.List, registry_pb2.ListFunctionsRequest())
        return list(listing.functions)

    async def update(self, spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
        result: types_pb2.FunctionSpec = await self._unary(
            self.registry.Update, registry_pb2.UpdateRequest(name=spec.name, spec=spec)
        )
        return result

    async def delete(self, name: str) -> None:
        await self._unary(self.registry.Delete, registry_pb2.DeleteFunctionRequest(name=name))

    async def invoke(
        self, request: scheduler_pb2.InvokeRequest, timeout_s: float | None = None
    ) -> scheduler_pb2.InvokeResponse:
        """The scheduler's answer as it is: an execution that failed is an OK call with status/error set."""
        result: scheduler_pb2.InvokeResponse = await self._unary(self.scheduler.Invoke, request, timeout_s)
        return result

    async def enqueue(self, request: scheduler_pb2.InvokeRequest) -> scheduler_pb2.EnqueueResponse:
        result: scheduler_pb2.EnqueueResponse = await self._unary(self.scheduler.Enqueue, request)
        return result

    async def get_execution(self, execution_id: str) -> types_pb2.ExecutionStatus:
        result: types_pb2.ExecutionStatus = await self._unary(
            self.scheduler.GetExecution, scheduler_pb2.GetExecutionRequest(execution_id=execution_id)
        )
        return result

    async def list_executions(
        self, request: scheduler_pb2.ListExecutionsRequest
    ) -> list[types_pb2.ExecutionStatus]:
        listing = await self._unary(self.scheduler.ListExecutions, request)
        return list(listing.executions)

    async def function_status(self, name: str) -> scheduler_pb2.FunctionStatus:
        result: scheduler_pb2.FunctionStatus = await self._unary(
            self.scheduler.GetFunctionStatus, scheduler_pb2.GetFunctionStatusRequest(function_name=name)
        )
        return result

    async def logs(
        self, request: scheduler_pb2.GetLogsRequest, timeout_s: float | None = None
    ) -> AsyncIterator[scheduler_pb2.LogLine]:
        call = self.scheduler.GetLogs(request, timeout=timeout_s, metadata=self._metadata)
        try:
            async for line in call:
                yield line
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()
