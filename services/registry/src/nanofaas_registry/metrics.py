"""Prometheus metrics of the registry, kept in their own CollectorRegistry.

A registry of its own (rather than the process-global default) lets several registry
servers live in one process, as the tests do, without their numbers mixing.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

# A `_created` series beside every counter and histogram doubles the series count for a
# timestamp nobody graphs: off, process-wide, before any metric is collected.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Registry RPCs are in-memory map operations: sub-millisecond buckets matter most.
RPC_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class RegistryMetrics:
    """The counters and gauges the registry updates."""

    def __init__(self, *, with_process_metrics: bool = True) -> None:
        self.collector_registry = CollectorRegistry(auto_describe=True)
        if with_process_metrics:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.collector_registry.register(collector)
        self.functions = Gauge(
            "registry_functions",
            "Number of registered functions.",
            registry=self.collector_registry,
        )
        self.rpcs = Counter(
            "registry_rpc",
            "Registry RPCs handled, by method and final status code.",
            ["method", "code"],
            registry=self.collector_registry,
        )
        self.rpc_duration = Histogram(
            "registry_rpc_duration_seconds",
            "Time to handle a unary registry RPC (Watch streams are not timed), by method.",
            ["method"],
            buckets=RPC_DURATION_BUCKETS,
            registry=self.collector_registry,
        )

    def count_rpc(self, method: str, code: str) -> None:
        self.rpcs.labels(method=method, code=code).inc()

    def observe_rpc_duration(self, method: str, seconds: float) -> None:
        self.rpc_duration.labels(method=method).observe(seconds)

    def set_function_count(self, count: int) -> None:
        self.functions.set(count)

    def rpc_count(self, method: str, code: str) -> float:
        """The current value of registry_rpc_total for one label set (0 when never counted)."""
        value = self.collector_registry.get_sample_value(
            "registry_rpc_total", {"method": method, "code": code}
        )
        return 0.0 if value is None else value
