"""Kubernetes-specific behaviour through the whole platform (REST -> gateway -> scheduler -> cluster).

Per-function pod fields (nodeSelector, tolerations, serviceAccountName, secrets, resources,
imagePullPolicy), an OOM-killed pod, lost watches, a rolling update under load and a delete
with work in flight. The handler (functions/kube_handlers.py) reports env values and marks
each request's arrival with a file, which tests poll: it is written by a pod's process,
outside anything the test can await.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest

from fakekube import FakeCluster
from nanofaas_scheduler.dispatch.kubernetes import naming

from .conftest import SCHEDULER_USER, _platform, helpers, job_objects

KUBE_FUNCTIONS = str(Path(__file__).resolve().parent / "functions")


def kube_spec(name: str, **fields: Any) -> dict[str, Any]:
    env = {"PYTHONPATH": KUBE_FUNCTIONS, "HANDLER_MODULE": "kube_handlers", "HANDLER_FUNCTION": "environment"}
    env.update(fields.pop("env", {}))
    spec: dict[str, Any] = helpers.python_spec(name, "environment", env=env, **fields)
    return spec


async def wait_arrival(directory: Path, count: int = 1, timeout: float = 30.0) -> None:
    """Until `count` requests reached a pod (files its process writes: polled, bounded, off the loop)."""

    def poll() -> None:
        deadline = time.monotonic() + timeout
        while len(list(directory.iterdir())) < count:
            assert time.monotonic() < deadline, f"no request reached a pod within {timeout}s"
            time.sleep(0.05)

    await asyncio.to_thread(poll)


def pods_of(cluster: FakeCluster, function: str) -> list[dict[str, Any]]:
    return [
        pod
        for pod in cluster.objects("pods", "default")
        if (pod["metadata"].get("annotations") or {}).get(naming.FUNCTION_ANNOTATION) == function
        and not pod["metadata"].get("deletionTimestamp")
    ]


async def wait_pods(cluster: FakeCluster, function: str) -> list[dict[str, Any]]:
    await asyncio.to_thread(
        cluster.wait_until, lambda: bool(pods_of(cluster, function)), timeout=30, message="the function's pod"
    )
    return pods_of(cluster, function)


@pytest.fixture
def core(cluster: FakeCluster, tmp_path: Path) -> Any:
    """The cluster as its administrator sees it (to create Secrets and ServiceAccounts)."""
    config: Any = kubernetes.config  # the client ships no type information
    api = config.new_client_from_config(config_file=str(cluster.write_kubeconfig(tmp_path / "admin")))
    yield kubernetes.client.CoreV1Api(api)
    api.close()


@pytest.mark.parametrize("mode", ["JOB", "WARM"])
async def test_a_function_s_kubernetes_fields_reach_its_pods(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster, core: Any, mode: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    env_secret, file_secret, account = f"env-{suffix}", f"files-{suffix}", f"sa-{suffix}"
    core.create_namespaced_secret(
        "default",
        {"metadata": {"name": env_secret}, "data": {"GREETING": base64.b64encode(b"hello").decode()}},
    )
    core.create_namespaced_secret("default", {"metadata": {"name": file_secret}, "data": {}})
    core.create_namespaced_service_account("default", {"metadata": {"name": account}})
    node = sorted(n["metadata"]["name"] for n in cluster.objects("nodes"))[-1]
    toleration = {"key": "dedicated", "operator": "Equal", "value": "fn", "effect": "NoSchedule"}
    spec = kube_spec(
        fn_name,
        executionMode=mode,
        nodeSelector={"kubernetes.io/hostname": node},
        tolerations=[toleration],
        serviceAccountName=account,
        secrets=[{"name": env_secret}, {"name": file_secret, "mountPath": "/etc/fn-secret"}],
        resources={"cpu": "500m", "memory": "256Mi", "requests": {"cpu": "100m"}},
        imagePullPolicy="Always",
    )
    await helpers.register(http, spec)
    async with http.get(f"/v1/functions/{fn_name}") as response:
        shown = await response.json()
    assert shown["secrets"] == spec["secrets"]  # names only: the platform never sees the values
    call = asyncio.ensure_future(helpers.invoke(http, fn_name, {"names": ["GREETING"], "sleep": 1.0}))
    try:
        pod = (await wait_pods(cluster, fn_name))[0]
    finally:
        status, _, body = await call
    assert status == 200, body
    assert body["output"]["env"] == {"GREETING": "hello"}  # envFrom the Secret, read by the kubelet
    pod_spec = pod["spec"]
    assert pod_spec["nodeSelector"] == {"kubernetes.io/hostname": node} and pod_spec["nodeName"] == node
    assert toleration in pod_spec["tolerations"]
    assert pod_spec["serviceAccountName"] == account
    assert {"name": "nanofaas-secret-1", "secret": {"secretName": file_secret}} in pod_spec["volumes"]
    container = pod_spec["containers"][0]
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "100m", "memory": "256Mi"},
    }
    assert {"secretRef": {"name": env_secret}} in container["envFrom"]
    assert {"name": "nanofaas-secret-1", "mountPath": "/etc/fn-secret", "readOnly": True} in container[
        "volumeMounts"
    ]
    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 204


async def test_an_oom_killed_pod_ends_its_attempt_as_a_crash(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster, tmp_path: Path
) -> None:
    await helpers.register(http, kube_spec(fn_name, env={"ARRIVED_DIR": str(tmp_path)}, maxRetries=0))
    call = asyncio.ensure_future(helpers.invoke(http, fn_name, {"sleep": 60}))
    await wait_arrival(tmp_path)
    pod = (await wait_pods(cluster, fn_name))[0]
    await asyncio.to_thread(cluster.oom_kill, "default", pod["metadata"]["name"])
    status, _, body = await asyncio.wait_for(call, 30)  # at once, not after the 30 s timeout
    assert status == 502, body
    assert body["error"]["code"] == "CRASH" and "OOMKilled" in body["error"]["message"], body


@pytest.mark.parametrize("mode", ["JOB", "WARM"])
async def test_invocations_survive_lost_and_compacted_watches(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster, tmp_path: Path, mode: str
) -> None:
    await helpers.register(http, kube_spec(fn_name, executionMode=mode, env={"ARRIVED_DIR": str(tmp_path)}))
    call = asyncio.ensure_future(helpers.invoke(http, fn_name, {"sleep": 1.0}))
    await wait_arrival(tmp_path)
    await asyncio.to_thread(cluster.drop_watches, reset=True)
    await asyncio.to_thread(cluster.compact)  # the watches resume from a version now gone: 410, re-list
    await asyncio.to_thread(cluster.drop_watches)
    status, _, body = await call
    assert status == 200, body
    status, _, body = await helpers.invoke(http, fn_name, {})
    assert status == 200, body
    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 204


async def test_a_rolling_update_fails_no_request(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster
) -> None:
    spec = kube_spec(fn_name, executionMode="WARM", env={"VERSION": "1"})
    await helpers.register(http, spec)
    answers: list[tuple[int, Any]] = []
    first_answer = asyncio.Event()

    async def load() -> None:
        """Requests one after another until five in a row came from the new version."""
        new_in_a_row = 0
        while new_in_a_row < 5:
            status, _, body = await helpers.invoke(http, fn_name, {"names": ["VERSION"]})
            answers.append((status, body))
            first_answer.set()
            if status != 200:
                return
            new_in_a_row = new_in_a_row + 1 if body["output"]["env"]["VERSION"] == "2" else 0

    running = asyncio.ensure_future(load())
    updated = {**spec, "env": {**spec["env"], "VERSION": "2"}}
    await asyncio.wait_for(first_answer.wait(), 60)  # the old version serves before the update
    async with http.put(f"/v1/functions/{fn_name}", json=updated) as response:
        assert response.status == 200, await response.text()
    await asyncio.wait_for(running, 90)
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200]
    versions = [body["output"]["env"]["VERSION"] for _, body in answers]
    assert versions[0] == "1" and versions[-1] == "2"
    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 204


async def test_delete_with_work_in_flight_lets_it_finish_then_removes_everything(
    http: aiohttp.ClientSession, fn_name: str, cluster: FakeCluster, tmp_path: Path
) -> None:
    await helpers.register(http, kube_spec(fn_name, executionMode="WARM", env={"ARRIVED_DIR": str(tmp_path)}))
    call = asyncio.ensure_future(helpers.invoke(http, fn_name, {"sleep": 2.0}))
    await wait_arrival(tmp_path)
    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 204
    status, _, body = await call
    assert status == 200, body  # the request in flight finished, as promised
    name = naming.function_object_name(fn_name)
    await asyncio.to_thread(
        cluster.wait_until,
        lambda: (
            cluster.get("deployments", "default", name, group="apps") is None
            and cluster.get("services", "default", name) is None
            and not pods_of(cluster, fn_name)
        ),
        timeout=30,
        message="the WARM objects and pods deleted",
    )
    assert not [job for job in job_objects(cluster, "jobs", "batch") if pods_of(cluster, fn_name)]


async def test_a_restarted_scheduler_adopts_known_functions_and_removes_what_it_does_not_know(
    cluster: FakeCluster, core: Any, tmp_path: Path
) -> None:
    """A platform of its own in a namespace of its own: its scheduler is stopped and started again."""
    namespace = f"restart-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kc", user=SCHEDULER_USER)
    platform = _platform.start_platform(
        tmp_path / "platform",
        NANOFAAS_BACKEND="kubernetes",
        KUBECONFIG=str(kubeconfig),
        NANOFAAS_K8S_NAMESPACE=namespace,
        NANOFAAS_K8S_ADOPT_GRACE_S="1",
    )
    try:
        async with aiohttp.ClientSession(base_url=platform.base_url) as http:
            for name in ("keep", "ghost"):
                await helpers.register(http, kube_spec(name, executionMode="WARM"))
                status, _, body = await helpers.invoke(http, name, {})
                assert status == 200, body
            kept = cluster.get("deployments", namespace, naming.function_object_name("keep"), group="apps")
            assert kept is not None
            scheduler = platform.processes["scheduler"]
            scheduler.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(scheduler.wait, 30) == 0
            # While it is down: a function is deleted, and a Job of an execution nobody knows is left.
            async with http.delete("/v1/functions/ghost") as response:
                assert response.status == 204
            batch: Any = kubernetes.client.BatchV1Api(core.api_client)
            batch.create_namespaced_job(namespace, leftover_job())
            await asyncio.to_thread(start_scheduler, platform)
            await asyncio.to_thread(_platform._wait_ready, platform)

            def reconciled() -> bool:
                ghost = cluster.get(
                    "deployments", namespace, naming.function_object_name("ghost"), group="apps"
                )
                return ghost is None and not cluster.objects("jobs", namespace, group="batch")

            await asyncio.to_thread(
                cluster.wait_until,
                reconciled,
                timeout=30,
                message="the unknown function's Deployment and the Job gone",
            )
            status, _, body = await helpers.invoke(http, "keep", {})
            assert status == 200, body
            adopted = cluster.get("deployments", namespace, naming.function_object_name("keep"), group="apps")
            assert (
                adopted is not None and adopted["metadata"]["uid"] == kept["metadata"]["uid"]
            )  # not recreated
            async with http.delete("/v1/functions/keep") as response:
                assert response.status == 204
    finally:
        codes = _platform.stop_platform(platform)
    assert codes == {"gateway": 0, "scheduler": 0, "registry": 0}, codes


def start_scheduler(platform: Any) -> None:
    """A new scheduler process in the platform's place (same environment, same port)."""
    with (platform.log_dir / "scheduler-restarted.log").open("wb") as log:
        platform.processes["scheduler"] = subprocess.Popen(
            [sys.executable, "-m", "nanofaas_scheduler"],
            env=platform.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def leftover_job() -> dict[str, Any]:
    """A Job as the backend labels them, of an execution no scheduler knows."""
    labels = {
        **naming.common_labels("gone", naming.COMPONENT_JOB),
        naming.EXECUTION_LABEL: uuid.uuid4().hex,
        naming.ATTEMPT_LABEL: "1",
    }
    return {
        "metadata": {"name": f"leftover-{uuid.uuid4().hex[:8]}", "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "function",
                            "image": "x",
                            "command": [sys.executable, "-c", "import time; time.sleep(60)"],
                        }
                    ],
                },
            },
        },
    }
