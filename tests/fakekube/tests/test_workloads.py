"""Controllers and the kubelet with real processes: Jobs, Deployments, EndpointSlices, probes, logs."""

# The official client types every model field Optional, wants model objects where it accepts dicts
# at run time, and leaves Watch and config untyped: these tests read its answers dynamically.
# mypy: disable-error-code="arg-type, union-attr, no-untyped-call, no-any-return, index, operator, misc"

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client, watch

from fakekube import FakeCluster

from .conftest import condition, container_state, finished, get_json


def _job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3",
                            "args": ["-c", script],
                            "env": [
                                {
                                    "name": "MY_NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                },
                                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                {"name": "GREETING", "value": "hello $(MY_NAMESPACE)"},
                            ],
                        }
                    ],
                }
            },
        },
    }


def _job_pods(cluster: FakeCluster, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.objects("pods", "default")
        if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == name
    ]


def test_job_runs_a_process_to_completion(
    cluster: FakeCluster, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    script = "import os; print(os.environ['GREETING'], os.environ['MY_IP'] == os.environ['FAKEKUBE_POD_IP'])"
    batch.create_namespaced_job("default", _job("ok", script))
    job = cluster.wait_for("jobs", "default", "ok", finished, group="batch")
    assert condition(job, "Complete") and condition(job, "SuccessCriteriaMet")
    assert job["status"]["succeeded"] == 1 and job["status"].get("failed") is None
    [pod] = _job_pods(cluster, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = container_state(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert pod["status"]["podIP"].startswith(cluster.pod_network + ".")
    log = core.read_namespaced_pod_log(pod["metadata"]["name"], "default")
    assert log == "hello default True\n"


def test_job_fails_with_backoff_limit_exceeded(cluster: FakeCluster, batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job("default", _job("bad", "import sys; sys.exit(3)", backoffLimit=1))
    job = cluster.wait_for("jobs", "default", "bad", finished, group="batch")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert condition(job, "FailureTarget")
    assert job["status"]["failed"] == 2  # the first try and one retry
    pods = _job_pods(cluster, "bad")
    assert len(pods) == 2
    for pod in pods:
        terminated = container_state(pod)["state"]["terminated"]
        assert (pod["status"]["phase"], terminated["exitCode"], terminated["reason"]) == (
            "Failed",
            3,
            "Error",
        )


def test_job_deadline_kills_the_process(cluster: FakeCluster, batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job(
        "default", _job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1)
    )
    cluster.wait_until(lambda: bool(_job_pods(cluster, "slow")) and bool(cluster.processes()))
    job = cluster.wait_for("jobs", "default", "slow", finished, group="batch")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == (
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )
    assert cluster.processes() == []  # the pod was deleted: its process group is gone


def test_job_ttl_after_finished_deletes_job_and_pods(cluster: FakeCluster, batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job("default", _job("short", "print('done')", ttlSecondsAfterFinished=0))
    cluster.wait_for("jobs", "default", "short", lambda job: job is None, group="batch")
    cluster.wait_until(lambda: not _job_pods(cluster, "short"))


def test_deleting_a_job_without_policy_orphans_its_pods(
    cluster: FakeCluster, batch: client.BatchV1Api
) -> None:
    batch.create_namespaced_job("default", _job("orphans", "import time; time.sleep(60)"))
    cluster.wait_until(lambda: bool(_job_pods(cluster, "orphans")))
    batch.delete_namespaced_job("orphans", "default")  # batch/v1 still defaults to orphaning
    cluster.wait_for("jobs", "default", "orphans", lambda job: job is None, group="batch")
    [pod] = _job_pods(cluster, "orphans")
    assert not pod["metadata"].get("ownerReferences")
    batch.create_namespaced_job("default", _job("cascade", "import time; time.sleep(60)"))
    cluster.wait_until(lambda: bool(_job_pods(cluster, "cascade")))
    batch.delete_namespaced_job("cascade", "default", propagation_policy="Background")
    cluster.wait_until(lambda: not _job_pods(cluster, "cascade"))


def _web_deployment(replicas: int = 2, version: str = "1", **strategy: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": strategy or {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "web",
                            "image": "web:1",
                            "env": [{"name": "VERSION", "value": version}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def _service(core: client.CoreV1Api) -> None:
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    )


def _ready_endpoints(discovery: client.DiscoveryV1Api) -> list[tuple[str, int]]:
    slices = discovery.list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=web"
    )
    return sorted(
        (e.addresses[0], s.ports[0].port)
        for s in slices.items
        for e in s.endpoints or ()
        if e.conditions.ready
    )


def _available(replicas: int, version: str | None = None) -> Any:
    def check(obj: dict[str, Any] | None) -> bool:
        status = (obj or {}).get("status") or {}
        return (
            status.get("availableReplicas") == replicas
            and status.get("updatedReplicas") == replicas
            and status.get("replicas") == replicas
            and status.get("observedGeneration") == (obj or {}).get("metadata", {}).get("generation")
        )

    return check


def test_deployment_rollout_and_endpoint_slice(
    cluster: FakeCluster, apps: client.AppsV1Api, core: client.CoreV1Api, discovery: client.DiscoveryV1Api
) -> None:
    _service(core)
    apps.create_namespaced_deployment("default", _web_deployment())
    deployment = cluster.wait_for("deployments", "default", "web", _available(2), group="apps")
    assert condition(deployment, "Available") and condition(deployment, "Progressing")
    endpoints = _ready_endpoints(discovery)
    assert len(endpoints) == 2 and all(port == 8080 for _, port in endpoints)
    pods = {get_json(f"http://{ip}:{port}/")["pod"] for ip, port in endpoints}
    assert len(pods) == 2
    [rs] = cluster.objects("replicasets", "default", group="apps")
    assert rs["metadata"]["labels"]["pod-template-hash"] in rs["metadata"]["name"]

    # Roll to version 2 with maxUnavailable 0: the ready endpoints never drop below 2.
    ready_counts = []
    stop = threading.Event()
    w = watch.Watch()

    def observe() -> None:
        for _ in w.stream(
            discovery.list_namespaced_endpoint_slice,
            "default",
            timeout_seconds=30,
            label_selector="kubernetes.io/service-name=web",
        ):
            ready_counts.append(len(_ready_endpoints(discovery)))
            if stop.is_set():
                return

    observer = threading.Thread(target=observe)
    observer.start()
    apps.patch_namespaced_deployment(
        "web",
        "default",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "web", "env": [{"name": "VERSION", "value": "2"}]}]}
                }
            }
        },
    )
    cluster.wait_for("deployments", "default", "web", _available(2), group="apps")
    cluster.wait_until(lambda: len(cluster.objects("pods", "default")) == 2)
    stop.set()
    cluster.drop_watches()  # ends the observer's stream (with timeout_seconds the client does not re-watch)
    observer.join(10)
    assert not observer.is_alive()
    assert ready_counts and min(ready_counts) >= 2
    versions = {get_json(f"http://{ip}:{port}/")["version"] for ip, port in _ready_endpoints(discovery)}
    assert versions == {"2"}
    sets = cluster.objects("replicasets", "default", group="apps")
    assert sorted(s["spec"]["replicas"] for s in sets) == [0, 2]
    assert {s["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for s in sets} == {"1", "2"}


def test_readiness_probe_drives_the_endpoint(
    cluster: FakeCluster, apps: client.AppsV1Api, core: client.CoreV1Api, discovery: client.DiscoveryV1Api
) -> None:
    _service(core)
    apps.create_namespaced_deployment("default", _web_deployment(replicas=1))
    cluster.wait_for("deployments", "default", "web", _available(1), group="apps")
    [(ip, port)] = _ready_endpoints(discovery)
    get_json(f"http://{ip}:{port}/unready", method="POST")
    cluster.wait_until(lambda: not _ready_endpoints(discovery))
    [pod] = cluster.objects("pods", "default")
    assert condition(pod, "Ready", "False") and container_state(pod)["ready"] is False
    get_json(f"http://{ip}:{port}/ready", method="POST")
    cluster.wait_until(lambda: _ready_endpoints(discovery) == [(ip, port)])


def test_scaling_and_cascading_deletion_of_a_deployment(cluster: FakeCluster, apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment("default", _web_deployment(replicas=1))
    cluster.wait_for("deployments", "default", "web", _available(1), group="apps")
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
    cluster.wait_for("deployments", "default", "web", _available(3), group="apps")
    assert len(cluster.processes()) == 3
    apps.delete_namespaced_deployment("web", "default")
    cluster.wait_until(lambda: not cluster.objects("pods", "default"))
    assert cluster.objects("replicasets", "default", group="apps") == []
    assert cluster.processes() == []


def test_a_job_pod_deleted_before_finishing_counts_as_failed(
    cluster: FakeCluster, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    batch.create_namespaced_job("default", _job("cancelled", "import time; time.sleep(60)"))
    cluster.wait_until(lambda: bool(cluster.processes()))
    [pod] = _job_pods(cluster, "cancelled")
    core.delete_namespaced_pod(pod["metadata"]["name"], "default", grace_period_seconds=0)
    job = cluster.wait_for("jobs", "default", "cancelled", finished, group="batch")
    assert condition(job, "Failed") and job["status"]["failed"] == 1
    assert cluster.processes() == []


def test_indexed_job_gives_each_pod_its_index(
    cluster: FakeCluster, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    batch.create_namespaced_job(
        "default",
        _job(
            "indexed",
            "import os; print(os.environ['JOB_COMPLETION_INDEX'])",
            completions=2,
            parallelism=2,
            completionMode="Indexed",
        ),
    )
    job = cluster.wait_for("jobs", "default", "indexed", finished, group="batch")
    assert condition(job, "Complete") and job["status"]["succeeded"] == 2
    logs = sorted(
        core.read_namespaced_pod_log(p["metadata"]["name"], "default") for p in _job_pods(cluster, "indexed")
    )
    assert logs == ["0\n", "1\n"]
