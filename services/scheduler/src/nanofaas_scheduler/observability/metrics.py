"""Prometheus metrics of the scheduler.

Counters and histograms are fed by listeners on the core, by a dispatcher
wrapper and by the backend's events (BackendObserver); queue depth and
in-flight are read from the live lanes at scrape time, so they cost nothing on
the hot path and vanish with the function.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from nanofaas_scheduler.core.execution import Execution, State, now_ms
from nanofaas_scheduler.core.outcome import Outcome
from nanofaas_scheduler.dispatch.base import (
    Attempt,
    BackendObserver,
    Dispatcher,
    DispatcherWrapper,
    ReplicaCounts,
)

# A `_created` series beside every counter and histogram doubles the series count for a
# timestamp nobody graphs: off, process-wide, before any metric is collected.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_COLD_BUCKETS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True, slots=True)
class _FunctionSeries:
    enqueue: Counter
    dispatch: Counter
    retry: Counter
    latency: Histogram
    queue_wait: Histogram
    execution: Histogram
    ended: dict[State, Counter]


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: Iterable[str] = ("function",)) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> Histogram:
            return Histogram(name, doc, ["function"], buckets=buckets, registry=registry)

        self.registry = registry
        self.enqueue = counter("function_enqueue_total", "Invocations admitted")
        self.dispatch = counter("function_dispatch_total", "Attempts dispatched to a runtime")
        self.success = counter("function_success_total", "Executions ended in success")
        self.error = counter("function_error_total", "Executions ended in error")
        self.timeout = counter("function_timeout_total", "Executions ended in timeout")
        self.retry = counter("function_retry_total", "Attempts after the first (infrastructure failures)")
        self.rejected = counter(
            "function_rejected_total", "Invocations refused at admission", labels=("function", "reason")
        )
        self.latency = histogram("function_latency_seconds", "Admission to terminal state")
        self.queue_wait = histogram("function_queue_wait_seconds", "Admission to first dispatch")
        self.cold_start = histogram(
            "function_cold_start_seconds", "Function process start to ready", buckets=_COLD_BUCKETS
        )
        self.execution = histogram("function_execution_seconds", "Time in the runtime, per attempt")
        self._children: dict[str, _FunctionSeries] = {}
        # Warm replicas per function, as the backend last reported them.
        self.replicas: dict[str, int] = {}

    def series(self, function: str) -> _FunctionSeries:
        """The function's labelled children, looked up once (labels() takes a lock and builds keys)."""
        children = self._children.get(function)
        if children is None:
            children = self._children[function] = _FunctionSeries(
                enqueue=self.enqueue.labels(function),
                dispatch=self.dispatch.labels(function),
                retry=self.retry.labels(function),
                latency=self.latency.labels(function),
                queue_wait=self.queue_wait.labels(function),
                execution=self.execution.labels(function),
                ended={
                    State.SUCCESS: self.success.labels(function),
                    State.ERROR: self.error.labels(function),
                    State.TIMEOUT: self.timeout.labels(function),
                },
            )
        return children

    def admitted(self, execution: Execution) -> None:
        self.series(execution.function_name).enqueue.inc()

    def refused(self, function: str, reason: str) -> None:
        self.rejected.labels(function, reason).inc()

    def ended(self, execution: Execution) -> None:
        series = self.series(execution.function_name)
        series.ended[execution.state].inc()
        series.latency.observe(max(execution.finished_at_ms - execution.enqueued_at_ms, 0) / 1000)

    def forget(self, function: str) -> None:
        """A deleted function's series go with it (function names are the one unbounded label)."""
        self._children.pop(function, None)
        self.replicas.pop(function, None)
        for metric in (
            self.enqueue, self.dispatch, self.success, self.error, self.timeout, self.retry,
            self.latency, self.queue_wait, self.cold_start, self.execution,
        ):  # fmt: skip
            with contextlib.suppress(KeyError):
                metric.remove(function)
        for labels in list(self.rejected._metrics):  # no public API lists a family's label sets
            if labels[0] == function:
                self.rejected.remove(*labels)


class BackendMetrics(BackendObserver):
    """The backend's events as metrics: cold-start times, and the replica counts the pool gauge shows."""

    def __init__(self, metrics: SchedulerMetrics) -> None:
        self._metrics = metrics

    def cold_start(self, function: str, seconds: float) -> None:
        self._metrics.cold_start.labels(function).observe(seconds)

    def replicas_changed(self, function: str, replicas: int) -> None:
        if replicas:
            self._metrics.replicas[function] = replicas
        else:
            self._metrics.replicas.pop(function, None)


class MeteredDispatcher(DispatcherWrapper):
    """Counts and times every attempt around the real dispatcher."""

    def __init__(self, inner: Dispatcher, metrics: SchedulerMetrics) -> None:
        super().__init__(inner)
        self._metrics = metrics

    async def dispatch(self, attempt: Attempt) -> Outcome:
        series = self._metrics.series(attempt.function_name)
        series.dispatch.inc()
        if attempt.number == 1:
            series.queue_wait.observe(max(now_ms() - attempt.enqueued_at_ms, 0) / 1000)
        else:
            series.retry.inc()
        started = time.perf_counter()
        try:
            return await self.inner.dispatch(attempt)
        finally:
            series.execution.observe(time.perf_counter() - started)


class LaneGauges(Collector):
    """Queue depth, in-flight and warm pool size, read from the live state when scraped."""

    def __init__(
        self,
        functions: Callable[[], Iterable[tuple[str, int, int]]],
        pool_size: Callable[[str], int],
    ) -> None:
        self._functions = functions
        self._pool_size = pool_size

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily("function_queue_depth", "Invocations waiting", labels=["function"])
        inflight = GaugeMetricFamily("function_inflight", "Invocations running", labels=["function"])
        pool = GaugeMetricFamily("function_warm_pool_size", "Warm runtime replicas", labels=["function"])
        for name, queued, running in self._functions():
            depth.add_metric([name], queued)
            inflight.add_metric([name], running)
            pool.add_metric([name], self._pool_size(name))
        return [depth, inflight, pool]


class ReplicaGauges(Collector):
    """Desired and current replicas of every WARM function (the autoscaler's view), when scraped."""

    def __init__(self, functions: Callable[[], Iterable[tuple[str, ReplicaCounts]]]) -> None:
        self._functions = functions

    def collect(self) -> Iterable[GaugeMetricFamily]:
        desired = GaugeMetricFamily(
            "function_replicas_desired", "Replicas the autoscaler wants", labels=["function"]
        )
        current = GaugeMetricFamily(
            "function_replicas_current", "Replicas that exist, starting ones included", labels=["function"]
        )
        for name, counts in self._functions():
            desired.add_metric([name], counts.desired)
            current.add_metric([name], counts.current)
        return [desired, current]
