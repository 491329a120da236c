"""kubectl against the fake: discovery, OpenAPI, get, apply (server-side and client-side), delete."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fakekube import FakeCluster

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

MANIFESTS = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: runner}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cret}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: runner}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: runner
      containers:
      - name: web
        image: web:1
        env: [{name: MODE, value: fast}]
"""


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mode", [["--server-side"], []], ids=["server-side", "client-side"])
def test_apply_manifests_then_reapply_a_change(
    fake_cluster: FakeCluster, tmp_path: Path, mode: list[str]
) -> None:
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kc", user="kubectl")
    manifest = tmp_path / "all.yaml"
    manifest.write_text(MANIFESTS)
    first = kubectl(kubeconfig, "apply", *mode, "-f", str(manifest))
    assert first.returncode == 0, first.stderr
    assert "deployment.apps/web" in first.stdout and first.stderr == ""
    secret = fake_cluster.get("secrets", "default", "creds")
    assert secret is not None and secret["data"] == {"token": "czNjcmV0"}
    manifest.write_text(MANIFESTS.replace("value: fast", "value: slow"))
    second = kubectl(kubeconfig, "apply", *mode, "-f", str(manifest))
    assert second.returncode == 0, second.stderr
    deployment = fake_cluster.get("deployments", "default", "web", group="apps")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "MODE", "value": "slow"}
    ]
    assert deployment["metadata"]["generation"] == 2
    verbs = fake_cluster.audit.calls(user="kubectl")
    assert ("patch", "deployments") in verbs


def test_get_prints_tables_and_delete(fake_cluster: FakeCluster, tmp_path: Path) -> None:
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kc")
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shown}\n")
    assert kubectl(kubeconfig, "apply", "--server-side", "-f", str(manifest)).returncode == 0
    listed = kubectl(kubeconfig, "get", "configmaps")
    assert listed.returncode == 0 and "shown" in listed.stdout and "NAME" in listed.stdout
    as_json = kubectl(kubeconfig, "get", "configmap", "shown", "-o", "jsonpath={.metadata.name}")
    assert as_json.stdout == "shown"
    missing = kubectl(kubeconfig, "get", "configmap", "absent")
    assert missing.returncode == 1 and 'configmaps "absent" not found' in missing.stderr
    deleted = kubectl(kubeconfig, "delete", "configmap", "shown")
    assert deleted.returncode == 0, deleted.stderr
    assert fake_cluster.get("configmaps", "default", "shown") is None


def test_invalid_manifest_is_refused_by_the_server(fake_cluster: FakeCluster, tmp_path: Path) -> None:
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kc")
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\nbogus: 1\n")
    result = kubectl(kubeconfig, "apply", "--server-side", "-f", str(manifest))
    assert result.returncode == 1
    assert 'unknown field "bogus"' in result.stderr


def test_apply_kustomization(fake_cluster: FakeCluster, tmp_path: Path) -> None:
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kc")
    base = tmp_path / "base"
    base.mkdir()
    (base / "all.yaml").write_text(MANIFESTS)
    (base / "kustomization.yaml").write_text(
        "namespace: apps\nresources: [ns.yaml, all.yaml]\ncommonLabels: {team: faas}\n"
    )
    (base / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n")
    result = kubectl(kubeconfig, "apply", "--server-side", "-k", str(base))
    assert result.returncode == 0, result.stderr
    deployment = fake_cluster.get("deployments", "apps", "web", group="apps")
    assert deployment is not None and deployment["metadata"]["labels"] == {"team": "faas"}
    assert fake_cluster.get("roles", "apps", "runner", group="rbac.authorization.k8s.io") is not None


def test_cli_serves_until_terminated(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "cli-kc"
    process = subprocess.Popen(
        [sys.executable, "-m", "fakekube", "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("fakekube serving https://127.0.0.1:")
        nodes = kubectl(kubeconfig, "get", "nodes", "-o", "name")
        assert nodes.stdout.strip() == "node/fakekube-node-1", nodes.stderr
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
