"""Metrics of the Kubernetes backend: API calls by verb, resource and status; cold-start phases.

Cold-start phases are seconds since the pod's start on the scheduler's monotonic clock (API
timestamps have whole seconds only): for a JOB attempt since its Job's create call, for a
WARM pod (a scale-up, the first Deployment, a rolling update's new pod) since the pod watch
saw it added.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram


class KubeMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.seconds = Histogram(
            "nanofaas_kubernetes_api_seconds",
            "Latency of Kubernetes API calls (watches: until the stream opened)",
            ("verb", "resource"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.errors = Counter(
            "nanofaas_kubernetes_api_errors_total",
            "Kubernetes API calls that failed, by status code (0: no answer)",
            ("verb", "resource", "code"),
            registry=registry,
        )
        self.phases = Histogram(
            "nanofaas_kubernetes_job_phase_seconds",
            "Seconds from a JOB attempt's Job creation until its pod was scheduled, running, ready, "
            "and until the first result",
            ("phase",),
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
            registry=registry,
        )

        self.warm_phases = Histogram(
            "nanofaas_kubernetes_warm_phase_seconds",
            "Seconds from a new WARM pod's creation until it was scheduled, running, ready, "
            "and until its first result",
            ("phase",),
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
            registry=registry,
        )

    def job_phases(self, phases: dict[str, float]) -> None:
        for phase, seconds in phases.items():
            self.phases.labels(phase).observe(seconds)

    def warm_phase(self, phase: str, seconds: float) -> None:
        self.warm_phases.labels(phase).observe(seconds)

    def __call__(self, verb: str, resource: str, status: int, seconds: float) -> None:
        self.seconds.labels(verb, resource).observe(seconds)
        if status == 0 or status >= 400:
            self.errors.labels(verb, resource, str(status)).inc()
