"""Pod addresses are never shared (across clusters, with dying pods, with other processes), and a
Secret volume whose Secret is missing blocks the pod with a FailedMount event, as on a kubelet."""

# The official client types every model field Optional: these tests read its answers dynamically.
# mypy: disable-error-code="arg-type, union-attr, no-untyped-call, no-any-return, index"

from __future__ import annotations

import socket
from typing import Any

from kubernetes import client

from fakekube import FakeCluster

from .conftest import container_state


def _web(name: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "web:1", "ports": [{"containerPort": 8080}]}
    return {"metadata": {"name": name}, "spec": {"containers": [container], **spec}}


def _ip(cluster: FakeCluster, name: str) -> str:
    pod = cluster.wait_for("pods", "default", name, lambda p: bool(p and p["status"].get("podIP")))
    assert pod is not None
    return str(pod["status"]["podIP"])


def test_two_clusters_in_one_process_never_share_a_pod_network(cluster: FakeCluster) -> None:
    with FakeCluster(run_kubelet=False) as other:
        assert other.pod_network != cluster.pod_network


def test_an_address_where_another_process_listens_is_skipped(
    cluster: FakeCluster, core: client.CoreV1Api
) -> None:
    first = f"{cluster.pod_network}.1.2"  # the address the node's first pod would get
    with socket.create_server((first, 8080)):
        core.create_namespaced_pod("default", _web("skips"))
        assert _ip(cluster, "skips") != first


def test_a_missing_secret_volume_blocks_the_pod_until_the_secret_exists(
    cluster: FakeCluster, core: client.CoreV1Api
) -> None:
    pod = _web("mounts", volumes=[{"name": "creds", "secret": {"secretName": "db-creds"}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "creds", "mountPath": "/etc/creds"}]
    core.create_namespaced_pod("default", pod)

    def failed_mount() -> list[Any]:
        selector = "involvedObject.name=mounts,reason=FailedMount"
        return core.list_namespaced_event("default", field_selector=selector).items

    cluster.wait_until(lambda: bool(failed_mount()), message="a FailedMount event")
    event = failed_mount()[0]
    assert event.type == "Warning" and event.involved_object.kind == "Pod"
    assert event.message == 'MountVolume.SetUp failed for volume "creds" : secret "db-creds" not found'
    blocked = cluster.get("pods", "default", "mounts")
    assert blocked is not None and blocked["status"]["phase"] == "Pending"
    assert container_state(blocked)["state"]["waiting"]["reason"] == "ContainerCreating"

    core.create_namespaced_secret("default", {"metadata": {"name": "db-creds"}, "stringData": {"k": "v"}})
    cluster.wait_for(
        "pods",
        "default",
        "mounts",
        lambda p: p is not None and "running" in (container_state(p).get("state") or {}),
    )
    optional = _web("optional", volumes=[{"name": "o", "secret": {"secretName": "nope", "optional": True}}])
    core.create_namespaced_pod("default", optional)
    cluster.wait_for(
        "pods",
        "default",
        "optional",
        lambda p: p is not None and "running" in (container_state(p).get("state") or {}),
    )
