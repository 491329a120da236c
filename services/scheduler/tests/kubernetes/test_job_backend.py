"""JOB mode on the fake cluster: one Job per attempt, results in-band, the pod watch as failure detector."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from fakekube import FakeCluster
from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch.kubernetes import naming
from nanofaas_scheduler.dispatch.kubernetes.backend import KubernetesBackend

from ..conftest import make_attempt, make_spec
from .conftest import RUNTIME_IMAGE


def runtime_spec(handler_dir: Path, **fields: Any) -> types_pb2.FunctionSpec:
    return make_spec(**{"image": RUNTIME_IMAGE, "env": {"PYTHONPATH": str(handler_dir)}, **fields})


def our_jobs(cluster: FakeCluster) -> list[dict[str, Any]]:
    return [
        job
        for job in cluster.objects("jobs", "default", group="batch")
        if (job["metadata"].get("labels") or {}).get(naming.MANAGED_BY) == naming.MANAGER
    ]


async def no_jobs_left(cluster: FakeCluster) -> None:
    """Every Job and pod is gone (waited for off the loop: the backend deletes them on it)."""

    def wait() -> None:
        cluster.wait_until(lambda: not our_jobs(cluster), timeout=20, message="every Job deleted")
        cluster.wait_until(
            lambda: not cluster.objects("pods", "default"), timeout=20, message="every pod deleted"
        )

    await asyncio.to_thread(wait)


async def test_a_job_attempt_returns_in_band(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    attempt = make_attempt(runtime_spec(handler_dir), orjson.dumps("hello"))
    outcome = await backend.dispatch(attempt)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    output = orjson.loads(outcome.output)
    assert output["input"] == "hello"
    assert output["execution"] == attempt.execution_id
    assert output["attempt"] == "1"
    await no_jobs_left(cluster)


async def test_a_function_error_is_not_a_crash(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    outcome = await backend.dispatch(make_attempt(runtime_spec(handler_dir), orjson.dumps("fail")))
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR, outcome
    assert "asked to fail" in outcome.message
    await no_jobs_left(cluster)


async def test_an_image_that_cannot_be_pulled_ends_the_attempt_at_once(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    spec = runtime_spec(handler_dir, image="registry.example/missing:1")
    outcome = await backend.dispatch(make_attempt(spec, timeout=60))
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR, outcome  # not retried
    assert outcome.error_code == codes.START_FAILED
    assert "ErrImagePull" in outcome.message
    assert "registry.example/missing:1" in outcome.message
    await no_jobs_left(cluster)


async def test_a_killed_pod_is_a_crash(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    outcome = await backend.dispatch(make_attempt(runtime_spec(handler_dir), orjson.dumps("hog"), timeout=60))
    assert outcome.kind is OutcomeKind.CRASH, outcome
    assert outcome.error_code == codes.CRASH
    await no_jobs_left(cluster)


async def test_a_timeout_deletes_the_job(
    backend: KubernetesBackend, cluster: FakeCluster, handler_dir: Path
) -> None:
    outcome = await backend.dispatch(
        make_attempt(runtime_spec(handler_dir), orjson.dumps("sleep"), timeout=4)
    )
    assert outcome.kind is OutcomeKind.TIMEOUT, outcome
    await no_jobs_left(cluster)
