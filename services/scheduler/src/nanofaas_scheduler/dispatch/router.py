"""Routes each attempt to the dispatcher of its execution mode."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.outcome import Outcome
from nanofaas_scheduler.dispatch.base import NO_REPLICAS, Attempt, BackendObserver, Dispatcher, ReplicaCounts
from nanofaas_scheduler.dispatch.logs import LogLine, LogQuery


class ModeRouter(Dispatcher):
    """ENDPOINT goes to the endpoint dispatcher; JOB and WARM to the backend."""

    def __init__(self, backend: Dispatcher, endpoint: Dispatcher) -> None:
        self._backend = backend
        self._endpoint = endpoint

    async def dispatch(self, attempt: Attempt) -> Outcome:
        if attempt.spec.execution_mode == types_pb2.EXECUTION_MODE_ENDPOINT:
            return await self._endpoint.dispatch(attempt)
        return await self._backend.dispatch(attempt)

    def attach(self, observer: BackendObserver) -> None:
        self._backend.attach(observer)
        self._endpoint.attach(observer)

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        await self._backend.function_changed(spec)

    async def function_removed(self, name: str) -> None:
        await self._backend.function_removed(name)

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        if spec.execution_mode == types_pb2.EXECUTION_MODE_ENDPOINT:
            return NO_REPLICAS
        return self._backend.replicas(spec)

    def scale(self, spec: types_pb2.FunctionSpec, desired: int) -> None:
        if spec.execution_mode == types_pb2.EXECUTION_MODE_WARM:
            self._backend.scale(spec, desired)

    def replica_capacity(self, spec: types_pb2.FunctionSpec) -> int:
        return self._backend.replica_capacity(spec)

    def logs(self, query: LogQuery) -> AsyncIterator[LogLine]:
        """Only the backend runs processes that write logs; an ENDPOINT's are its own."""
        return self._backend.logs(query)

    async def close(self) -> None:
        await self._backend.close()
        await self._endpoint.close()
