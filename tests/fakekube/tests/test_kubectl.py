"""kubectl against the fake: discovery, OpenAPI, get, apply (server-side and client-side), delete."""

from __future__ import annotations

import shutil
import subprocess
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


def kubectl(cluster: FakeCluster, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
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
    first = kubectl(fake_cluster, kubeconfig, "apply", *mode, "-f", str(manifest))
    assert first.returncode == 0, first.stderr
    assert "deployment.apps/web" in first.stdout and first.stderr == ""
    secret = fake_cluster.get("secrets", "default", "creds")
    assert secret is not None and secret["data"] == {"token": "czNjcmV0"}
    manifest.write_text(MANIFESTS.replace("value: fast", "value: slow"))
    second = kubectl(fake_cluster, kubeconfig, "apply", *mode, "-f", str(manifest))
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
    assert kubectl(fake_cluster, kubeconfig, "apply", "--server-side", "-f", str(manifest)).returncode == 0
    listed = kubectl(fake_cluster, kubeconfig, "get", "configmaps")
    assert listed.returncode == 0 and "shown" in listed.stdout and "NAME" in listed.stdout
    as_json = kubectl(
        fake_cluster, kubeconfig, "get", "configmap", "shown", "-o", "jsonpath={.metadata.name}"
    )
    assert as_json.stdout == "shown"
    missing = kubectl(fake_cluster, kubeconfig, "get", "configmap", "absent")
    assert missing.returncode == 1 and 'configmaps "absent" not found' in missing.stderr
    deleted = kubectl(fake_cluster, kubeconfig, "delete", "configmap", "shown")
    assert deleted.returncode == 0, deleted.stderr
    assert fake_cluster.get("configmaps", "default", "shown") is None


def test_invalid_manifest_is_refused_by_the_server(fake_cluster: FakeCluster, tmp_path: Path) -> None:
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kc")
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\nbogus: 1\n")
    result = kubectl(fake_cluster, kubeconfig, "apply", "--server-side", "-f", str(manifest))
    assert result.returncode == 1
    assert 'unknown field "bogus"' in result.stderr
