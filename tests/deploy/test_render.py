"""Every overlay renders with kubectl and every object passes Kubernetes' strict schemas.

Strict validation (kubernetes-validate, for the version the fake cluster serves) refuses
unknown fields, so a misspelt or misplaced field fails here instead of being dropped by an API
server that prunes it.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from .conftest import KUBERNETES_VERSION, KUSTOMIZE, OVERLAYS, Manifest, only


@pytest.mark.parametrize("overlay", [*OVERLAYS, "base"])
def test_every_object_is_valid(rendered: dict[str, list[Manifest]], overlay: str) -> None:
    objects = rendered[overlay]
    assert objects, f"{overlay} rendered nothing"
    for manifest in objects:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_refused() -> None:
    """The validation above is strict: an unknown field is an error, not ignored."""
    manifest = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "x"},
        "automountServServiceAccountToken": False,
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_function_pod_template_is_a_valid_pod_template(rendered: dict[str, list[Manifest]]) -> None:
    """The template the scheduler starts function pods from, as a core/v1 PodTemplate's template."""
    configmap = next(
        o
        for o in rendered["base"]
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("nanofaas-function-pod-template-")
    )
    template = yaml.safe_load(configmap["data"]["function-pod-template.yaml"])
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
    kubernetes_validate.validate(wrapper, KUBERNETES_VERSION, strict=True)
    (function,) = [c for c in template["spec"]["containers"] if c["name"] == "function"]
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert function["securityContext"]["readOnlyRootFilesystem"] is True
    assert function["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_the_crd_is_shipped_unchanged_but_for_the_part_of_label(rendered: dict[str, list[Manifest]]) -> None:
    source = yaml.safe_load((KUSTOMIZE / "base" / "function-crd.yaml").read_text())
    for overlay in OVERLAYS:
        crd = only(rendered[overlay], "CustomResourceDefinition", "functions.nanofaas.io")
        assert crd["spec"] == source["spec"]
        assert "namespace" not in crd["metadata"]  # cluster-scoped
