"""What only the kubernetes backend has, end to end through REST: its objects, labels and failures."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from fakekube import FakeCluster
from nanofaas_scheduler.dispatch.kubernetes import naming

from .conftest import helpers, job_objects


async def test_a_job_invocation_leaves_a_labelled_job_that_is_then_deleted(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster
) -> None:
    await helpers.register(http, helpers.python_spec(fn_name, "sleep"))
    call = asyncio.ensure_future(
        helpers.invoke(http, fn_name, 1.0, headers={"Idempotency-Key": f"k-{fn_name}"})
    )
    job = await asyncio.to_thread(wait_for_job, cluster, fn_name)
    status, _, body = await call
    assert status == 200, body
    labels, annotations = job["metadata"]["labels"], job["metadata"]["annotations"]
    assert labels[naming.MANAGED_BY] == naming.MANAGER
    assert labels[naming.EXECUTION_LABEL] == body["executionId"]
    assert labels[naming.ATTEMPT_LABEL] == "1"
    assert annotations[naming.IDEMPOTENCY_ANNOTATION] == f"k-{fn_name}"
    assert job["spec"]["backoffLimit"] == 0
    await asyncio.to_thread(
        cluster.wait_until,
        lambda: not any(_of(job, fn_name) for job in job_objects(cluster, "jobs", "batch")),
        timeout=30,
        message="the Job deleted",
    )


def wait_for_job(cluster: FakeCluster, function: str) -> dict[str, Any]:
    def find() -> list[dict[str, Any]]:
        return [job for job in job_objects(cluster, "jobs", "batch") if _of(job, function)]

    cluster.wait_until(lambda: bool(find()), timeout=30, message="the attempt's Job")
    return find()[0]


def _of(job: dict[str, Any], function: str) -> bool:
    return (job["metadata"].get("annotations") or {}).get(naming.FUNCTION_ANNOTATION) == function


async def test_an_image_that_cannot_be_pulled_is_start_failed_at_once_and_not_retried(
    http: aiohttp.ClientSession, fn_name: str
) -> None:
    await helpers.register(
        http,
        {"name": fn_name, "image": "registry.example/nothing-here:1", "maxRetries": 3, "timeoutMs": 60000},
    )
    status, headers, body = await helpers.invoke(http, fn_name, 1)
    assert status == 502, body
    assert body["error"]["code"] == "START_FAILED"
    assert "registry.example/nothing-here:1" in body["error"]["message"]
    execution = await helpers.wait_terminal(http, headers["X-Execution-Id"])
    assert execution["attempts"] == 1


async def test_warm_functions_get_a_deployment_and_service_removed_on_delete(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster
) -> None:
    await helpers.register(http, helpers.python_spec(fn_name, "echo", executionMode="WARM"))
    status, _, body = await helpers.invoke(http, fn_name, 1)
    assert status == 200, body
    name = naming.function_object_name(fn_name)
    assert cluster.get("deployments", "default", name, group="apps") is not None
    assert cluster.get("services", "default", name) is not None
    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 204
    await asyncio.to_thread(
        cluster.wait_until,
        lambda: (
            cluster.get("deployments", "default", name, group="apps") is None
            and cluster.get("services", "default", name) is None
        ),
        timeout=30,
        message="the WARM objects deleted",
    )
