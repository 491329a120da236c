"""Autoscaling on the kubernetes backend: the Deployment's replicas follow demand, down to zero.

The platform runs with short autoscaler windows (conftest.py) and each function here with a
tiny scaleDownDelayMs. Waits are bounded: on the cluster, re-checked at every write to it
(FakeCluster.wait_until); on the platform, a bounded poll of the status route.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from fakekube import FakeCluster
from nanofaas_scheduler.dispatch.kubernetes import naming

from .conftest import helpers
from .suite import e2e_module

# The local test's helpers: the status route and the function under test are the same here.
autoscaling = e2e_module("test_autoscaling")
scaling_spec = autoscaling.scaling_spec
wait_replicas = autoscaling.wait_replicas


def function_pods(cluster: FakeCluster, function: str) -> list[dict[str, Any]]:
    """The function's WARM pods that are not terminating."""
    return [
        pod
        for pod in cluster.objects("pods", "default")
        if (pod["metadata"].get("annotations") or {}).get(naming.FUNCTION_ANNOTATION) == function
        and not pod["metadata"].get("deletionTimestamp")
    ]


def spec_replicas(cluster: FakeCluster, function: str) -> object:
    deployment = cluster.get("deployments", "default", naming.function_object_name(function), group="apps")
    return ((deployment or {}).get("spec") or {}).get("replicas")


async def cluster_shows(cluster: FakeCluster, function: str, replicas: int) -> None:
    """The Deployment asks for `replicas` and exactly that many pods exist (bounded)."""
    await asyncio.to_thread(
        cluster.wait_until,
        lambda: (
            spec_replicas(cluster, function) == replicas and len(function_pods(cluster, function)) == replicas
        ),
        timeout=60,
        message=f"{replicas} replicas of {function}",
    )


async def test_a_burst_scales_the_deployment_to_max_and_idle_back_to_min(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster, tmp_path: Path
) -> None:
    await helpers.register(http, scaling_spec(fn_name, minReplicas=1))
    await cluster_shows(cluster, fn_name, 1)
    gate = tmp_path / "open"
    executions = [await helpers.enqueue(http, fn_name, str(gate)) for _ in range(5)]
    await cluster_shows(cluster, fn_name, 3)
    busy = await wait_replicas(http, fn_name, current=3, ready=3, desired=3)
    assert busy["replicas"]["max"] == 3
    gate.touch()
    results = [await helpers.wait_terminal(http, execution_id, timeout=60) for execution_id in executions]
    assert {result["status"] for result in results} == {"success"}
    await cluster_shows(cluster, fn_name, 1)
    idle = await wait_replicas(http, fn_name, current=1, desired=1)
    assert idle["replicas"]["min"] == 1


async def test_min_replicas_zero_idles_at_zero_pods_and_a_request_then_succeeds(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster, tmp_path: Path
) -> None:
    await helpers.register(http, scaling_spec(fn_name, minReplicas=0))
    gate = tmp_path / "open"
    gate.touch()
    await cluster_shows(cluster, fn_name, 0)  # created at zero: no pod until there is demand
    for _ in range(2):  # from zero, back to zero, and from zero again
        code, _, body = await helpers.invoke(http, fn_name, str(gate))
        assert code == 200 and body["status"] == "success", body
        await cluster_shows(cluster, fn_name, 0)
        await wait_replicas(http, fn_name, current=0, ready=0, desired=0)
