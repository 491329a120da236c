"""`kubectl apply --server-side -k overlays/kind` against the fake cluster (tests/fakekube).

The fake API server validates every object strictly against the Kubernetes 1.32 schemas and
runs the Deployment, ReplicaSet and EndpointSlice controllers and a kubelet, so this checks
that the overlay is accepted as a whole by an API server and that its references hold at run
time: the pod is admitted (its ServiceAccount exists), scheduled, and each of its three
containers starts with the settings the manifests mean it to have (generated ConfigMap names,
the downward API's POD_NAMESPACE).

The containers here are not nanofaas' services: each image is mapped to a small process that
prints its environment and waits, so this runs anywhere (no root). The real three services in
the pod, with invocations and traces, are test_kind_overlay_end_to_end.py (root only).
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from fakekube import FakeCluster

from .conftest import KUSTOMIZE, kubectl_path

NAMESPACE = "nanofaas"
WAIT_S = 30.0
SHOWN = (
    "POD_NAMESPACE",
    "LOG_LEVEL",
    "NANOFAAS_BACKEND",
    "NANOFAAS_REGISTRY_STORE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
# Prints the settings this test checks as one JSON line, then waits for SIGTERM.
PRINT_ENV = (
    "import json, os, signal\n"
    f"print(json.dumps({{k: os.environ.get(k) for k in {SHOWN!r}}}), flush=True)\n"
    "signal.pause()\n"
)


def run_kubectl(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [kubectl_path(), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def first_log_line(kubeconfig: Path, pod: str, container: str) -> str:
    """The container's first line of output, read from a followed log stream (bounded)."""
    with subprocess.Popen(
        [
            kubectl_path(),
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            NAMESPACE,
            "logs",
            "-f",
            pod,
            "-c",
            container,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follow:
        assert follow.stdout is not None
        try:
            ready, _, _ = select.select([follow.stdout], [], [], WAIT_S)
            assert ready, f"no output from {pod}/{container} in {WAIT_S}s"
            return follow.stdout.readline()
        finally:
            follow.kill()


def control_plane_pod(cluster: FakeCluster) -> dict[str, Any] | None:
    pods = [
        p
        for p in cluster.objects("pods", NAMESPACE)
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "control-plane"
    ]
    return pods[0] if len(pods) == 1 else None


def all_running(pod: dict[str, Any] | None) -> bool:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return len(statuses) == 3 and all("running" in (s.get("state") or {}) for s in statuses)


def test_the_kind_overlay_applies_and_its_pod_starts(fake_cluster: FakeCluster, tmp_path: Path) -> None:
    for image in ("gateway", "scheduler", "registry"):
        fake_cluster.add_image(f"nanofaas/{image}:dev", [sys.executable, "-c", PRINT_ENV])
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kubeconfig", user="deployer")

    run_kubectl(kubeconfig, "apply", "--server-side", "-k", str(KUSTOMIZE / "overlays" / "kind"))

    # Every object of the overlay is in the cluster.
    assert fake_cluster.get("namespaces", None, NAMESPACE)
    assert fake_cluster.get(
        "customresourcedefinitions", None, "functions.nanofaas.io", group="apiextensions.k8s.io"
    )
    assert fake_cluster.get("serviceaccounts", NAMESPACE, "nanofaas-control-plane")
    for plural in ("roles", "rolebindings"):
        assert fake_cluster.get(
            plural, NAMESPACE, "nanofaas-control-plane", group="rbac.authorization.k8s.io"
        )
    for name in ("nanofaas", "jaeger"):
        assert fake_cluster.get("deployments", NAMESPACE, name, group="apps")
        assert fake_cluster.get("services", NAMESPACE, name)
    configmaps = {
        c["metadata"]["name"].rsplit("-", 1)[0] for c in fake_cluster.objects("configmaps", NAMESPACE)
    }
    assert {
        "nanofaas-common",
        "nanofaas-scheduler",
        "nanofaas-registry",
        "nanofaas-function-pod-template",
    } <= configmaps

    # The Deployment's one pod is admitted, scheduled and runs its three containers.
    fake_cluster.wait_until(
        lambda: all_running(control_plane_pod(fake_cluster)),
        timeout=WAIT_S,
        message="three running containers",
    )
    pod = control_plane_pod(fake_cluster)
    assert pod is not None
    assert pod["spec"]["serviceAccountName"] == "nanofaas-control-plane"
    seen = {
        container: json.loads(first_log_line(kubeconfig, pod["metadata"]["name"], container))
        for container in ("gateway", "scheduler", "registry")
    }
    assert seen["scheduler"]["POD_NAMESPACE"] == NAMESPACE
    assert seen["registry"]["POD_NAMESPACE"] == NAMESPACE
    assert seen["scheduler"]["NANOFAAS_BACKEND"] == "kubernetes"
    assert seen["registry"]["NANOFAAS_REGISTRY_STORE"] == "kubernetes"
    for container in seen.values():
        assert container["LOG_LEVEL"] == "INFO"
        assert container["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert seen["gateway"]["NANOFAAS_BACKEND"] is None  # each container gets only its own settings

    # The control plane's Service selects the pod (its EndpointSlice names it).
    def sliced() -> bool:
        slices = fake_cluster.objects("endpointslices", NAMESPACE, group="discovery.k8s.io")
        return any(
            s["metadata"].get("labels", {}).get("kubernetes.io/service-name") == "nanofaas"
            and any(
                e.get("targetRef", {}).get("name") == pod["metadata"]["name"]
                for e in s.get("endpoints") or []
            )
            for s in slices
        )

    fake_cluster.wait_until(
        sliced, timeout=WAIT_S, message="an EndpointSlice of Service nanofaas naming the pod"
    )

    # Applying again changes nothing (server-side apply is idempotent for these manifests).
    before = fake_cluster.get("deployments", NAMESPACE, "nanofaas", group="apps")
    run_kubectl(kubeconfig, "apply", "--server-side", "-k", str(KUSTOMIZE / "overlays" / "kind"))
    after = fake_cluster.get("deployments", NAMESPACE, "nanofaas", group="apps")
    assert before and after
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
