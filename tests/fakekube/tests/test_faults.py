"""Fault injection: API errors, throttling, hangs, dropped watches, killed pods and lost nodes."""

# The official client types every model field Optional, wants model objects where it accepts dicts
# at run time, and leaves Watch and config untyped: these tests read its answers dynamically.
# mypy: disable-error-code="arg-type, union-attr, no-untyped-call, no-any-return, index, operator, misc"

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from fakekube import FakeCluster

from .conftest import WEB, condition, container_state, finished, http

# What the official client raises below the API level (timeouts, broken streams); urllib3 is
# imported by name as the monorepo's lint environment does not install it.
errors: Any = importlib.import_module("urllib3.exceptions")


def test_next_calls_fail_with_500_then_recover(fake_cluster: FakeCluster, core: client.CoreV1Api) -> None:
    fake_cluster.fail("create", "configmaps", times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as failed:
            core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
        assert failed.value.status == 500 and json.loads(failed.value.body)["reason"] == "InternalError"
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    codes = [r.code for r in fake_cluster.audit.records(user="test") if r.verb == "create"]
    assert codes == [500, 500, 201]


def test_throttling_answers_429_with_retry_after(fake_cluster: FakeCluster, core: client.CoreV1Api) -> None:
    fake_cluster.throttle("list", "configmaps", retry_after=1)
    code, body = http(fake_cluster, "GET", "/api/v1/namespaces/default/configmaps")
    assert (code, body["reason"], body["details"]["retryAfterSeconds"]) == (429, "TooManyRequests", 1)
    # The official client itself waits Retry-After and retries (urllib3), so one 429 is invisible.
    fake_cluster.throttle("list", "configmaps", retry_after=1)
    core.list_namespaced_config_map("default")
    codes = [r.code for r in fake_cluster.audit.records(user="test") if r.verb == "list"]
    assert codes == [429, 429, 200]


def test_faults_match_only_their_target(fake_cluster: FakeCluster, core: client.CoreV1Api) -> None:
    fake_cluster.fail("get", "configmaps", namespace="kube-system", name="x", times=None, status=503)
    with pytest.raises(ApiException) as other:
        core.read_namespaced_config_map("x", "default")
    assert other.value.status == 404  # a real answer, not the fault
    for _ in range(3):  # times=None: until cleared
        with pytest.raises(ApiException) as unavailable:
            core.read_namespaced_config_map("x", "kube-system")
        assert unavailable.value.status == 503
    fake_cluster.clear_faults()
    with pytest.raises(ApiException) as cleared:
        core.read_namespaced_config_map("x", "kube-system")
    assert cleared.value.status == 404


def test_hung_request_times_out_on_the_client(fake_cluster: FakeCluster, core: client.CoreV1Api) -> None:
    fake_cluster.hang("list", "pods", times=None, seconds=30)
    with pytest.raises(errors.HTTPError) as timed_out:  # after the client's own retries
        core.list_namespaced_pod("default", _request_timeout=0.3)
    assert "timed out" in str(timed_out.value).lower()
    fake_cluster.clear_faults()
    fake_cluster.release_hangs()
    assert core.list_namespaced_pod("default").items == []


def test_reset_watch_breaks_the_connection(fake_cluster: FakeCluster, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    response: Any = core.list_namespaced_config_map("default", watch=True, _preload_content=False)
    core.create_namespaced_config_map("default", {"metadata": {"name": "seen"}})
    lines = response.stream(decode_content=False)
    assert b"seen" in next(lines)
    assert fake_cluster.drop_watches(reset=True) == 1
    with pytest.raises(errors.ProtocolError):
        for _ in lines:
            pass


def test_killed_pod_process_is_restarted(cluster: FakeCluster, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "victim"},
            "spec": {
                "containers": [
                    {"name": "main", "image": "python:3", "args": ["-c", "import time; time.sleep(60)"]}
                ]
            },
        },
    )
    cluster.wait_for(
        "pods", "default", "victim", lambda p: "running" in (container_state(p).get("state") or {})
    )
    cluster.kill_pod("default", "victim")
    pod = cluster.wait_for("pods", "default", "victim", lambda p: container_state(p).get("restartCount") == 1)
    terminated = container_state(pod)["lastState"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "Error")


def _two_node_cluster(tmp_path: Path) -> FakeCluster:
    cluster = FakeCluster(nodes=2, work_dir=tmp_path / "c")
    cluster.start()
    cluster.add_image("web:1", [sys.executable, str(WEB)], env={"PORT": "8080"})
    cluster.add_image("python:3", [sys.executable])
    return cluster


def _clients(cluster: FakeCluster) -> Any:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return client.AppsV1Api(api), client.BatchV1Api(api)


def test_lost_node_pods_fail_and_are_replaced(tmp_path: Path) -> None:
    cluster = _two_node_cluster(tmp_path)
    try:
        apps, _ = _clients(cluster)
        apps.create_namespaced_deployment(
            "default",
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "web",
                                    "image": "web:1",
                                    "readinessProbe": {
                                        "httpGet": {"path": "/healthz", "port": 8080},
                                        "periodSeconds": 1,
                                    },
                                }
                            ]
                        },
                    },
                },
            },
        )

        def available(obj: dict[str, Any] | None) -> bool:
            return ((obj or {}).get("status") or {}).get("availableReplicas") == 2

        cluster.wait_for("deployments", "default", "web", available, group="apps")
        pods = cluster.objects("pods", "default")
        assert {p["spec"]["nodeName"] for p in pods} == {"fakekube-node-1", "fakekube-node-2"}
        lost = next(p for p in pods if p["spec"]["nodeName"] == "fakekube-node-1")
        cluster.lose_node("fakekube-node-1")
        node = next(n for n in cluster.nodes() if n["metadata"]["name"] == "fakekube-node-1")
        assert condition(node, "Ready", "Unknown")
        assert cluster.get("pods", "default", lost["metadata"]["name"]) is None
        cluster.wait_until(
            lambda: (
                len(cluster.objects("pods", "default")) == 2
                and available(cluster.get("deployments", "default", "web", group="apps"))
            )
        )
        assert {p["spec"]["nodeName"] for p in cluster.objects("pods", "default")} == {"fakekube-node-2"}
        assert len(cluster.processes()) == 2
    finally:
        cluster.stop()


def test_lost_node_fails_a_job_without_retries(tmp_path: Path) -> None:
    cluster = _two_node_cluster(tmp_path)
    try:
        _, batch = _clients(cluster)
        batch.create_namespaced_job(
            "default",
            {
                "metadata": {"name": "j"},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "nodeSelector": {"kubernetes.io/hostname": "fakekube-node-2"},
                            "containers": [
                                {
                                    "name": "c",
                                    "image": "python:3",
                                    "args": ["-c", "import time; time.sleep(60)"],
                                }
                            ],
                        }
                    },
                },
            },
        )
        cluster.wait_until(lambda: len(cluster.processes()) == 1)
        [pod] = cluster.objects("pods", "default")
        cluster.lose_node("fakekube-node-2", delete_pods=False)
        failed = cluster.get("pods", "default", pod["metadata"]["name"])
        assert failed is not None and failed["status"]["phase"] == "Failed"
        assert failed["status"]["reason"] == "NodeLost" and condition(failed, "DisruptionTarget")
        job = cluster.wait_for("jobs", "default", "j", finished, group="batch")
        assert condition(job, "Failed") and job["status"]["failed"] == 1
        assert cluster.processes() == []
    finally:
        cluster.stop()
