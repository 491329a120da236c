"""Custom resources: a CRD makes its kind served, validated, discoverable and usable by kubectl."""

# The official client types every model field Optional, wants model objects where it accepts dicts
# at run time, and leaves Watch and config untyped: these tests read its answers dynamically.
# mypy: disable-error-code="arg-type, union-attr, no-untyped-call, no-any-return, index, operator, misc"

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fakekube import FakeCluster

from .conftest import condition, raw

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "functions.nanofaas.dev"},
    "spec": {
        "group": "nanofaas.dev",
        "scope": "Namespaced",
        "names": {"plural": "functions", "singular": "function", "kind": "Function", "shortNames": ["fn"]},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["image"],
                                "properties": {
                                    "image": {"type": "string"},
                                    "concurrency": {"type": "integer", "minimum": 1},
                                },
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


def _fn(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nanofaas.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name},
        "spec": {"image": "img:1", **spec},
    }


def test_crd_serves_its_kind(fake_cluster: FakeCluster, api: client.ApiClient) -> None:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(CRD)
    crd = fake_cluster.wait_for(
        "customresourcedefinitions",
        None,
        "functions.nanofaas.dev",
        lambda c: condition(c, "Established"),
        group="apiextensions.k8s.io",
    )
    assert crd["status"]["acceptedNames"]["kind"] == "Function"
    custom = client.CustomObjectsApi(api)
    args = ("nanofaas.dev", "v1alpha1", "default", "functions")
    created = custom.create_namespaced_custom_object(*args, _fn("hello", concurrency=2))
    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    custom.patch_namespaced_custom_object(*args, "hello", {"spec": {"concurrency": 4}})
    custom.patch_namespaced_custom_object_status(*args, "hello", {"status": {"phase": "Ready"}})
    found = custom.get_namespaced_custom_object(*args, "hello")
    assert found["spec"] == {"image": "img:1", "concurrency": 4} and found["status"] == {"phase": "Ready"}
    listed = custom.list_namespaced_custom_object(*args)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["hello"]
    assert listed["items"][0]["kind"] == "Function"  # custom resources keep kind in lists

    code, body = raw(
        api,
        "POST",
        "/apis/nanofaas.dev/v1alpha1/namespaces/default/functions",
        {**_fn("bad"), "spec": {"concurrency": 0}},
    )
    assert (code, body["reason"]) == (422, "Invalid") and body["details"]["causes"][0][
        "field"
    ] == "spec.image"
    code, body = raw(
        api,
        "PATCH",
        "/apis/nanofaas.dev/v1alpha1/namespaces/default/functions/hello",
        {"spec": {}},
        content_type="application/strategic-merge-patch+json",
    )
    assert code == 415

    code, discovered = raw(api, "GET", "/apis/nanofaas.dev/v1alpha1")
    resources = {r["name"] for r in discovered["resources"]}
    assert {"functions", "functions/status"} <= resources

    client.ApiextensionsV1Api(api).delete_custom_resource_definition("functions.nanofaas.dev")
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(*args, "hello")
    assert gone.value.status == 404


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_applies_a_crd_and_its_objects(fake_cluster: FakeCluster, tmp_path: Path) -> None:
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kc")
    (tmp_path / "crd.json").write_text(json.dumps(CRD))
    (tmp_path / "fn.json").write_text(json.dumps(_fn("from-kubectl")))

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert kubectl("apply", "--server-side", "-f", str(tmp_path / "crd.json")).returncode == 0
    fake_cluster.wait_for(
        "customresourcedefinitions",
        None,
        "functions.nanofaas.dev",
        lambda c: condition(c, "Established"),
        group="apiextensions.k8s.io",
    )
    applied = kubectl("apply", "--server-side", "-f", str(tmp_path / "fn.json"))
    assert applied.returncode == 0, applied.stderr
    listed = kubectl("get", "fn")
    assert listed.returncode == 0 and "from-kubectl" in listed.stdout
