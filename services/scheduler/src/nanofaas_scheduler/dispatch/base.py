"""The narrow interface between the scheduler and the backends that run functions.

The scheduler decides *when* an execution runs (queues, concurrency, retries,
deadlines); a dispatcher decides *where* and reports how one attempt ended.
Backends see a frozen view of one attempt, never the execution itself: what
they may change about an execution is exactly the Outcome they return.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.core.outcome import Outcome
from nanofaas_scheduler.dispatch.logs import LogLine, LogQuery


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of an execution against a spec, with its absolute deadline."""

    execution_id: str
    function_name: str
    spec: types_pb2.FunctionSpec
    request: Request
    # 1 for the first attempt; a runtime reporting out of band names it (fencing).
    number: int
    # Unix epoch seconds by which the attempt must end (sent to runtimes).
    deadline_epoch: float
    # Seconds left until that deadline when the attempt was made.
    timeout: float
    # The execution's timeout (the spec's, or lower if the caller asked), for messages.
    timeout_ms: int
    # What the function sees as X-Trace-Id / TRACE_ID: the caller's, else the execution's.
    trace_id: str
    # W3C traceparent the function process continues (the dispatch span's when tracing is on).
    traceparent: str = ""
    idempotency_key: str = ""
    # When the execution was admitted, Unix epoch milliseconds (queue-wait metrics and spans).
    enqueued_at_ms: int = 0
    # The secret a runtime reporting this attempt out of band must present
    # (core/completion_tokens.py); sent only with this attempt's invocation, never logged.
    completion_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class ReplicaCounts:
    """A function's replicas as its backend sees them (GetFunctionStatus)."""

    current: int = 0
    ready: int = 0
    desired: int = 0
    min: int = 0
    max: int = 0


NO_REPLICAS = ReplicaCounts()


async def _no_lines() -> AsyncIterator[LogLine]:
    return
    yield  # pragma: no cover - makes this an async generator


class BackendObserver:
    """What a backend tells the platform besides outcomes; every method is optional to override.

    Events are plain calls on the event loop, made while the attempt they
    concern is the current task (so tracing can annotate its span).
    """

    def cold_start(self, function: str, seconds: float) -> None:
        """A function process (or pod) had to be started and took `seconds` to become ready."""

    def replicas_changed(self, function: str, replicas: int) -> None:
        """The function's warm replicas are now `replicas` (0 when it has none)."""


class Observers(BackendObserver):
    """Fans every event out to several observers."""

    def __init__(self, *observers: BackendObserver) -> None:
        self._observers = list(observers)

    def add(self, observer: BackendObserver) -> None:
        self._observers.append(observer)

    def cold_start(self, function: str, seconds: float) -> None:
        for observer in self._observers:
            observer.cold_start(function, seconds)

    def replicas_changed(self, function: str, replicas: int) -> None:
        for observer in self._observers:
            observer.replicas_changed(function, replicas)


class Dispatcher(abc.ABC):
    """Runs one attempt and reports how it ended.

    dispatch() must be cancellation-safe: when the scheduler cancels it (the
    deadline passed, or the attempt was reported complete out of band),
    everything the attempt started (processes, requests, Jobs) is stopped.
    """

    observer: BackendObserver = BackendObserver()

    @abc.abstractmethod
    async def dispatch(self, attempt: Attempt) -> Outcome: ...

    def attach(self, observer: BackendObserver) -> None:
        """Where this dispatcher reports its events from now on."""
        self.observer = observer

    async def check(self) -> None:
        """Before serving: refuse a configuration the backend cannot run (config.ConfigError)."""

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        """A function was registered or updated; drop state built for its old spec."""

    async def function_removed(self, name: str) -> None:
        """A function was deleted; release what it held once in-flight work ends."""

    async def close(self) -> None:
        """Stop everything the dispatcher started."""

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        """The function's replicas now; a backend without replicas (ENDPOINT) reports none."""
        return NO_REPLICAS

    def scale(self, spec: types_pb2.FunctionSpec, desired: int) -> None:
        """The autoscaler wants `desired` replicas of a WARM function; act without blocking.

        A backend without replicas ignores it.
        """

    def replica_capacity(self, spec: types_pb2.FunctionSpec) -> int:
        """Invocations one replica of the function can take at once; 0 = as the spec sizes it."""
        return 0

    def logs(self, query: LogQuery) -> AsyncIterator[LogLine]:
        """The function's log lines, oldest first; with `query.follow`, then new ones until closed.

        May raise dispatch.logs.TooManyFollowers. A backend that keeps no logs yields nothing.
        """
        return _no_lines()


class DispatcherWrapper(Dispatcher):
    """A concern wrapped around another dispatcher; everything but dispatch passes through."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner

    async def dispatch(self, attempt: Attempt) -> Outcome:
        return await self.inner.dispatch(attempt)

    def attach(self, observer: BackendObserver) -> None:
        self.inner.attach(observer)

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        await self.inner.function_changed(spec)

    async def function_removed(self, name: str) -> None:
        await self.inner.function_removed(name)

    async def close(self) -> None:
        await self.inner.close()

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        return self.inner.replicas(spec)

    def scale(self, spec: types_pb2.FunctionSpec, desired: int) -> None:
        self.inner.scale(spec, desired)

    def replica_capacity(self, spec: types_pb2.FunctionSpec) -> int:
        return self.inner.replica_capacity(spec)

    def logs(self, query: LogQuery) -> AsyncIterator[LogLine]:
        return self.inner.logs(query)
