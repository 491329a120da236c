"""Pod-network mode (``FakeCluster(pod_network=True)``): a network namespace per pod, the pod's
volumes and ServiceAccount token mounted, in-cluster configuration working as in a real pod.

Needs root and iproute2 (network and mount namespaces); skips without them.
"""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakekube import FakeCluster
from fakekube.kubelet.engine import POD_LABEL, image_present

from .conftest import WEB, condition

INSIDE = Path(__file__).parent / "programs" / "inside.py"

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or shutil.which("ip") is None,
    reason="pod-network mode needs root on Linux and iproute2",
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    running = FakeCluster(pod_network=True, work_dir=tmp_path / "fakekube").start()
    network = running.network
    assert network is not None
    try:
        running.add_image("web:1", [sys.executable, str(WEB)], env={"PORT": "8080"})
        running.add_image("inside:1", [sys.executable, str(INSIDE)])
        yield running
    finally:
        running.stop()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert network.name not in left, left


def pod(name: str, remote: str | None = None) -> dict[str, Any]:
    """A pod whose `web` container serves on the pod IP and whose `inside` container reports."""
    env = [{"name": "LOCAL_PORT", "value": "8080"}] + (
        [{"name": "REMOTE", "value": remote}] if remote else []
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "web:1",
                    "env": [{"name": "BIND", "value": "0.0.0.0"}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                },
                {
                    "name": "inside",
                    "image": "inside:1",
                    "env": env,
                    "securityContext": {"readOnlyRootFilesystem": True},
                    "readinessProbe": {"tcpSocket": {"port": 8081}, "periodSeconds": 1},
                    "volumeMounts": [
                        {"name": "settings", "mountPath": "/etc/settings"},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                },
            ],
            "volumes": [
                {"name": "settings", "configMap": {"name": "settings"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def phase(pod: dict[str, Any] | None) -> str | None:
    found: str | None = ((pod or {}).get("status") or {}).get("phase")
    return found


def apply(cluster: FakeCluster, kubeconfig: Path, manifest: dict[str, Any]) -> None:
    subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=json.dumps(manifest),
        text=True,
        check=True,
        capture_output=True,
        timeout=30,
    )


def get(cluster: FakeCluster, name: str, port: int) -> Any:
    """GET / of the pod's ``port`` through a port-forward (the host cannot reach pod IPs)."""
    local = cluster.port_forward("default", name, port)
    with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=30) as response:
        return json.loads(response.read())


def test_pods_have_their_own_network_and_in_cluster_config(cluster: FakeCluster, tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kc")
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default"},
    }
    apply(cluster, kubeconfig, {**configmap, "data": {"greeting": "hello"}})
    apply(cluster, kubeconfig, pod("a"))
    first = cluster.wait_for("pods", "default", "a", lambda p: condition(p, "Ready"))
    assert first is not None
    ip_a = first["status"]["podIP"]
    assert ip_a.startswith("10.244.1.")
    apply(cluster, kubeconfig, pod("b", remote=f"{ip_a}:8080"))
    cluster.wait_for("pods", "default", "b", lambda p: condition(p, "Ready"))

    seen = get(cluster, "b", 8081)
    assert seen["namespace"] == "default" and seen["tokenMounted"] and seen["caMounted"]
    assert seen["service"] == "10.96.0.1:443"  # the `kubernetes` Service address, over HTTPS
    assert seen["greeting"] == "hello"  # the ConfigMap volume
    assert seen["rootWritable"] is False and seen["tmpWritable"] is True
    assert seen["local"] is True  # its own web container, over the pod's localhost
    assert seen["remote"] is True  # another pod, by its IP
    assert seen["pods"] == 2  # the in-cluster client listed a and b
    # The in-cluster token authenticated as the pod's ServiceAccount.
    assert ("list", "pods") in cluster.audit.calls(user="system:serviceaccount:default:default")
    assert get(cluster, "a", 8080)["pod"] == "a"


WRITE_REPORT = (
    "import json, pathlib, sys\n"
    "root = pathlib.Path(__file__).parent.parent\n"
    "seen = {'prefix': sys.prefix, 'hostFileSeen': (root / 'host-only.txt').exists()}\n"
    "(root / 'cache' / 'cached.txt').write_text('in the cache volume')\n"
    "(root / 'report.json').write_text(json.dumps(seen))\n"
)


def test_a_volume_over_a_programs_directory_hides_only_the_rest(cluster: FakeCluster, tmp_path: Path) -> None:
    """An emptyDir over the directory holding a process image's venv and program (a clone under /tmp)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    image = tmp_path / "image"
    venv = image / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    program = image / "app" / "write.py"
    program.parent.mkdir()
    program.write_text(WRITE_REPORT)
    (image / "host-only.txt").write_text("the host's, hidden by the volume")
    cluster.add_image("write:1", [str(venv / "bin" / "python"), str(program)])
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "covered", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "write",
                    "image": "write:1",
                    "securityContext": {"readOnlyRootFilesystem": True},
                    "volumeMounts": [
                        {"name": "scratch", "mountPath": str(image)},
                        {"name": "cache", "mountPath": str(image / "cache")},  # made in `scratch`
                    ],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}],
        },
    }
    apply(cluster, cluster.write_kubeconfig(tmp_path / "kc"), manifest)
    done = cluster.wait_for("pods", "default", "covered", lambda p: phase(p) in ("Succeeded", "Failed"))
    assert phase(done) == "Succeeded", (done or {}).get("status")
    assert not (image / "report.json").exists()  # written in the emptyDir, not on the host
    [report] = (tmp_path / "fakekube").rglob("report.json")  # the pod's files are the cluster's
    assert report.parent.name == "scratch" and report.parent.parent.name == "volumes"
    assert json.loads(report.read_text()) == {"prefix": str(venv), "hostFileSeen": False}
    [cached] = (tmp_path / "fakekube").rglob("cached.txt")  # in its own volume, not in `scratch`
    assert cached.parent.name == "cache" and cached.parent.parent.name == "volumes"
    assert not (image / "cache").exists()


# Any local image with a Python 3 on its PATH; nothing is pulled.
ENGINE_IMAGE = os.environ.get("FAKEKUBE_TEST_ENGINE_IMAGE", "nanofaas/python-runtime:dev")
SERVE_NAMESPACE = (
    "import http.server, pathlib\n"
    "ns = pathlib.Path('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read_bytes()\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(ns)\n"
    "class S(http.server.HTTPServer):\n"
    "    def server_bind(self): self.socket.bind(self.server_address)\n"
    "S(('0.0.0.0', 8080), H).serve_forever()\n"
)


def test_engine_images_run_as_containers_in_the_pod_network(cluster: FakeCluster, tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    if not image_present(ENGINE_IMAGE):
        pytest.skip(f"no container engine with {ENGINE_IMAGE} (set FAKEKUBE_TEST_ENGINE_IMAGE)")
    cluster.add_engine_image(ENGINE_IMAGE)
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kc")
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "boxed", "namespace": "default"},
        "spec": {
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
            "containers": [
                {
                    "name": "server",
                    "image": ENGINE_IMAGE,
                    "command": ["python3", "-c", SERVE_NAMESPACE],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    "securityContext": {"readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    apply(cluster, kubeconfig, manifest)
    uid = cluster.wait_for("pods", "default", "boxed", lambda p: condition(p, "Ready"))["metadata"]["uid"]  # type: ignore[index]
    local = cluster.port_forward("default", "boxed", 8080)
    with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=30) as response:
        assert response.read() == b"default"  # the mounted ServiceAccount namespace
    names = docker_names(f"{POD_LABEL}={uid}")
    assert len(names) == 2 and any(n.endswith("-pause") for n in names), names
    [server] = [n for n in names if not n.endswith("-pause")]
    found = json.loads(subprocess.run(["docker", "inspect", server], capture_output=True, check=True).stdout)[
        0
    ]
    assert found["Config"]["User"] == "10001:10001"
    assert found["HostConfig"]["ReadonlyRootfs"] is True and found["HostConfig"]["CapDrop"] == ["ALL"]
    # Deleted, the pod's containers (and its pause container) go.
    subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(kubeconfig),
            "delete",
            "pod",
            "boxed",
            "--grace-period=2",
            "--timeout=30s",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert docker_names(f"{POD_LABEL}={uid}") == []


def docker_names(label: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "--all", "--filter", f"label={label}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return listed.stdout.split()
