"""Shared helpers of the deployment tests: the overlays, rendered once per session by kubectl.

kubectl (with its built-in kustomize) is the one tool users run, so the tests render with it
too, not with a Python re-implementation. Without kubectl the suite skips, unless CI is set:
then it fails, so CI never skips it silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
# What every overlay is rendered and validated for: the Kubernetes version fakekube serves
# (fakekube.schema.KUBERNETES_VERSION) and kubectl at hand speaks.
KUBERNETES_VERSION = "1.32.0"
OVERLAYS = ("kind", "cluster", "cluster-split")

Manifest = dict[str, Any]


def kubectl_path() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed (CI is set, so this is an error)")
        pytest.skip("kubectl is not installed; install kubectl >= 1.27 (kustomize v5) to run these tests")
    return found


def render(directory: Path) -> list[Manifest]:
    """`kubectl kustomize DIRECTORY` as a list of objects."""
    done = subprocess.run(
        [kubectl_path(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return [document for document in yaml.safe_load_all(done.stdout) if document]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Every overlay (and the base), rendered."""
    return {name: render(KUSTOMIZE / "overlays" / name) for name in OVERLAYS} | {
        "base": render(KUSTOMIZE / "base")
    }


def only(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The one object of ``kind`` (and ``name``); fails if there is not exactly one."""
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def control_plane(objects: list[Manifest]) -> Manifest:
    return only(objects, "Deployment", "nanofaas")


def config_data(objects: list[Manifest], prefix: str) -> dict[str, str]:
    """The data of the generated ConfigMap whose name is ``prefix`` plus kustomize's hash."""
    found = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].rsplit("-", 1)[0] == prefix
    ]
    assert len(found) == 1, f"expected one ConfigMap {prefix}-<hash>, found {len(found)}"
    data: dict[str, str] = found[0].get("data", {})
    return data
