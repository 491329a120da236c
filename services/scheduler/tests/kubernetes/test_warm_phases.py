"""Cold-start phases of new WARM pods: created -> scheduled -> running -> ready -> first result."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.kubernetes.warm_phases import WarmPhases

from ..conftest import make_attempt
from .conftest import BackendMaker, ReadyReplicas, runtime_spec

PHASES = ("scheduled", "running", "ready", "first_result")


def pod(
    name: str, *, node: str = "", phase: str = "Pending", ready: bool = False, ip: str = ""
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": {"name": name}, "spec": {"nodeName": node} if node else {}, "status": status}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_phase_is_recorded_once_from_when_the_pod_was_added() -> None:
    seen: list[tuple[str, float]] = []
    clock = Clock()
    phases = WarmPhases(lambda phase, seconds: seen.append((phase, seconds)), clock)
    phases.on_pod("ADDED", pod("a"))
    clock.now = 100.5
    phases.on_pod("MODIFIED", pod("a", node="n1"))
    phases.on_pod("MODIFIED", pod("a", node="n1"))  # seen again: not recorded again
    clock.now = 101.0
    phases.on_pod("MODIFIED", pod("a", node="n1", phase="Running"))
    clock.now = 102.0
    phases.on_pod("MODIFIED", pod("a", node="n1", phase="Running", ready=True, ip="10.0.0.1"))
    clock.now = 102.25
    phases.answered("10.0.0.1")
    phases.answered("10.0.0.1")  # only the first answer of the pod counts
    assert seen == [("scheduled", 0.5), ("running", 1.0), ("ready", 2.0), ("first_result", 2.25)]


def test_pods_not_seen_being_created_or_deleted_early_are_not_measured() -> None:
    seen: list[tuple[str, float]] = []
    phases = WarmPhases(lambda phase, seconds: seen.append((phase, seconds)), Clock())
    phases.on_pod("MODIFIED", pod("listed", node="n1", phase="Running", ready=True, ip="10.0.0.2"))
    phases.answered("10.0.0.2")
    phases.on_pod("ADDED", pod("gone"))
    phases.on_pod("DELETED", pod("gone"))
    phases.on_pod("MODIFIED", pod("gone", node="n1"))
    phases.on_pod("ADDED", pod("relisted"))
    phases.forget()  # a re-list: what was pending is no longer known to be new
    phases.on_pod("MODIFIED", pod("relisted", node="n1"))
    assert seen == []


async def test_a_scale_up_on_the_cluster_records_every_phase(
    make_backend: BackendMaker, handler_dir: Path
) -> None:
    registry = CollectorRegistry()
    backend = await make_backend(registry)
    both = ReadyReplicas(2)
    backend.attach(both)
    spec = runtime_spec(
        handler_dir, execution_mode=types_pb2.EXECUTION_MODE_WARM, concurrency=2, min_replicas=2
    )
    for number in range(4):  # sequential requests: least in-flight first spreads them over both pods
        outcome = await backend.dispatch(make_attempt(spec, orjson.dumps("x"), timeout=60))
        assert outcome.kind is OutcomeKind.SUCCESS, outcome
        if number == 0:  # the first needs one ready pod; the phases count both
            await asyncio.wait_for(both.reached.wait(), 30)

    def count(phase: str) -> float:
        return (
            registry.get_sample_value("nanofaas_kubernetes_warm_phase_seconds_count", {"phase": phase}) or 0
        )

    assert [count(phase) for phase in PHASES[:3]] == [2, 2, 2]  # both pods were seen created
    assert 1 <= count("first_result") <= 2
    ready = registry.get_sample_value("nanofaas_kubernetes_warm_phase_seconds_sum", {"phase": "ready"})
    scheduled = registry.get_sample_value(
        "nanofaas_kubernetes_warm_phase_seconds_sum", {"phase": "scheduled"}
    )
    assert ready is not None and scheduled is not None and ready >= scheduled
