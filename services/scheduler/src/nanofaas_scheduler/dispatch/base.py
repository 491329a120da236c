"""The narrow interface between the scheduler and the backends that run functions.

The scheduler decides *when* an execution runs (queues, concurrency, retries,
deadlines); a dispatcher decides *where* and reports one attempt's Outcome.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from nanofaas.v1 import types_pb2
from nanofaas_runtime.outcome import Outcome
from nanofaas_scheduler.core.execution import Execution


@dataclass(frozen=True, slots=True)
class Invocation:
    """One attempt of an execution against a spec, with its absolute deadline."""

    execution: Execution
    spec: types_pb2.FunctionSpec
    attempt: int
    # Unix epoch seconds by which the attempt must end (sent to runtimes).
    deadline_epoch: float
    # Seconds left until that deadline.
    timeout: float
    # W3C traceparent the function process continues (the dispatch span's, when tracing is on).
    traceparent: str = ""


class Dispatcher(abc.ABC):
    """Runs one attempt of an invocation and reports how it ended.

    dispatch() must be cancellation-safe: when the scheduler cancels it at the
    deadline, everything the attempt started (processes, requests) is stopped.
    """

    @abc.abstractmethod
    async def dispatch(self, invocation: Invocation) -> Outcome: ...

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        """A function was registered or updated; drop state built for its old spec."""

    async def function_removed(self, name: str) -> None:
        """A function was deleted; release what it held once in-flight work ends."""

    async def close(self) -> None:
        """Stop everything the dispatcher started."""

    def replicas(self, name: str) -> int:
        """Warm replicas the function has now (0 for backends without pools)."""
        return 0


class DispatcherWrapper(Dispatcher):
    """A concern wrapped around another dispatcher; everything but dispatch passes through."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    async def dispatch(self, invocation: Invocation) -> Outcome:
        return await self.inner.dispatch(invocation)

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        await self.inner.function_changed(spec)

    async def function_removed(self, name: str) -> None:
        await self.inner.function_removed(name)

    async def close(self) -> None:
        await self.inner.close()

    def replicas(self, name: str) -> int:
        return self.inner.replicas(name)
