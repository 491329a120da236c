"""Prometheus metrics of the registry, kept in their own CollectorRegistry.

A registry of its own (rather than the process-global default) lets several registry
servers live in one process, as the tests do, without their numbers mixing.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
)


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

    def count_rpc(self, method: str, code: str) -> None:
        self.rpcs.labels(method=method, code=code).inc()

    def set_function_count(self, count: int) -> None:
        self.functions.set(count)

    def rpc_count(self, method: str, code: str) -> float:
        """The current value of registry_rpc_total for one label set (0 when never counted)."""
        value = self.collector_registry.get_sample_value(
            "registry_rpc_total", {"method": method, "code": code}
        )
        return 0.0 if value is None else value
