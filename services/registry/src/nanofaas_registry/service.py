"""The gRPC face of the registry: maps FunctionRegistry calls and errors to RPCs and status codes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from nanofaas_registry.metrics import RegistryMetrics
from nanofaas_registry.registry import (
    FunctionExistsError,
    FunctionNotFoundError,
    FunctionRegistry,
    NameMismatchError,
    RegistryError,
)
from nanofaas_registry.store import StoreError
from nanofaas_registry.validation import SpecTooLargeError, SpecValidationError, limits
from nanofaas_registry.watch import WatchClosedError, WatchOverflowError

logger = logging.getLogger(__name__)

T = TypeVar("T")
# The initial metadata with which a mutation tells its caller the epoch of the revision it returns.
EPOCH_METADATA = "nanofaas-registry-epoch"
Context = grpc.aio.ServicerContext[Any, Any]

_PAYLOAD_TOO_LARGE = types_pb2.ErrorCode.Name(types_pb2.ERROR_CODE_PAYLOAD_TOO_LARGE).removeprefix(
    "ERROR_CODE_"
)
_STATUS_BY_ERROR: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (SpecValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NameMismatchError, grpc.StatusCode.INVALID_ARGUMENT),
    (FunctionNotFoundError, grpc.StatusCode.NOT_FOUND),
    (FunctionExistsError, grpc.StatusCode.ALREADY_EXISTS),
    # The change was not saved (disk full, file gone): nothing happened, the caller may retry.
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)


def status_for(error: Exception) -> grpc.StatusCode:
    for error_type, code in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    """Implements nanofaas.v1.Registry on top of a FunctionRegistry."""

    def __init__(self, registry: FunctionRegistry, metrics: RegistryMetrics) -> None:
        self._registry = registry
        self._metrics = metrics

    async def Register(
        self, request: registry_pb2.RegisterRequest, context: Context
    ) -> types_pb2.FunctionSpec:
        return await self._unary(
            "Register", context, lambda: self._registry.register(request.spec), with_epoch=True
        )

    async def Get(self, request: registry_pb2.GetFunctionRequest, context: Context) -> types_pb2.FunctionSpec:
        return await self._unary("Get", context, lambda: self._registry.get(request.name))

    async def List(
        self, request: registry_pb2.ListFunctionsRequest, context: Context
    ) -> registry_pb2.ListFunctionsResponse:
        async def list_functions() -> registry_pb2.ListFunctionsResponse:
            specs, revision = await self._registry.list()
            return registry_pb2.ListFunctionsResponse(functions=specs, revision=revision)

        return await self._unary("List", context, list_functions)

    async def Update(self, request: registry_pb2.UpdateRequest, context: Context) -> types_pb2.FunctionSpec:
        return await self._unary(
            "Update", context, lambda: self._registry.update(request.name, request.spec), with_epoch=True
        )

    async def Delete(
        self, request: registry_pb2.DeleteFunctionRequest, context: Context
    ) -> registry_pb2.DeleteFunctionResponse:
        async def delete_function() -> registry_pb2.DeleteFunctionResponse:
            return registry_pb2.DeleteFunctionResponse(revision=await self._registry.delete(request.name))

        return await self._unary("Delete", context, delete_function, with_epoch=True)

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[registry_pb2.WatchEvent]:
        """SNAPSHOT per function, SYNCED (with the registry's Limits), then live changes until the
        client leaves or lags."""
        start = await self._registry.watch()
        code = grpc.StatusCode.OK
        try:
            for spec in start.snapshot:
                yield registry_pb2.WatchEvent(
                    type=registry_pb2.WatchEvent.SNAPSHOT, spec=spec, revision=spec.revision
                )
            yield registry_pb2.WatchEvent(
                type=registry_pb2.WatchEvent.SYNCED,
                revision=start.revision,
                limits=limits(),
                epoch=self._registry.epoch,
            )
            async for event in start.subscription:
                yield event
        except WatchOverflowError as exc:
            code = grpc.StatusCode.UNAVAILABLE
            logger.warning("watcher dropped", extra={"reason": str(exc), "peer": context.peer()})
            await context.abort(code, f"{exc}; watch again")
        except WatchClosedError:
            code = grpc.StatusCode.UNAVAILABLE
            await context.abort(code, "registry is shutting down")
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            start.subscription.close()
            self._metrics.count_rpc("Watch", code.name)

    async def _unary(
        self, method: str, context: Context, call: Callable[[], Awaitable[T]], *, with_epoch: bool = False
    ) -> T:
        """Runs one unary call, turning registry errors into status codes and counting the outcome.

        `with_epoch`: a mutation, whose revision the caller keeps for read-your-writes, so it
        also gets the epoch that revision belongs to.
        """
        started = time.perf_counter()
        try:
            result = await call()
        except (RegistryError, SpecValidationError, StoreError) as exc:
            code = status_for(exc)
            self._record(method, code, started)
            # A size refusal names its REST code, so the gateway answers 413 (not 400).
            trailer = (("x-error-code", _PAYLOAD_TOO_LARGE),) if isinstance(exc, SpecTooLargeError) else ()
            await context.abort(code, str(exc), trailing_metadata=trailer)
        except asyncio.CancelledError:
            self._record(method, grpc.StatusCode.CANCELLED, started)
            raise
        except Exception:
            self._record(method, grpc.StatusCode.INTERNAL, started)
            logger.exception("unexpected error", extra={"method": method})
            raise
        self._record(method, grpc.StatusCode.OK, started)
        if with_epoch:
            await context.send_initial_metadata(((EPOCH_METADATA, str(self._registry.epoch)),))
        return result

    def _record(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self._metrics.count_rpc(method, code.name)
        self._metrics.observe_rpc_duration(method, time.perf_counter() - started)
