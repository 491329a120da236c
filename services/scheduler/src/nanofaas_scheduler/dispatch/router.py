"""Routes each invocation to the dispatcher of its execution mode."""

from __future__ import annotations

from nanofaas.v1 import types_pb2
from nanofaas_runtime.outcome import Outcome
from nanofaas_scheduler.dispatch.base import Dispatcher, Invocation


class ModeRouter(Dispatcher):
    """ENDPOINT goes to the endpoint dispatcher; JOB and WARM to the backend."""

    def __init__(self, backend: Dispatcher, endpoint: Dispatcher) -> None:
        self._backend = backend
        self._endpoint = endpoint

    async def dispatch(self, invocation: Invocation) -> Outcome:
        if invocation.spec.execution_mode == types_pb2.EXECUTION_MODE_ENDPOINT:
            return await self._endpoint.dispatch(invocation)
        return await self._backend.dispatch(invocation)

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        await self._backend.function_changed(spec)

    async def function_removed(self, name: str) -> None:
        await self._backend.function_removed(name)

    async def close(self) -> None:
        await self._backend.close()
        await self._endpoint.close()

    def replicas(self, name: str) -> int:
        return self._backend.replicas(name)
