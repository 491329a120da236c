"""The Kubernetes-only fields of FunctionSpec: validation, requests vs limits, manifests and the CRD."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from nanofaas.v1 import types_pb2
from nanofaas_registry.manifest import manifest_from_spec, spec_from_manifest
from nanofaas_registry.validation import SpecValidationError, normalize_spec

CRD = Path(__file__).parents[3] / "deploy" / "kustomize" / "base" / "function-crd.yaml"

FIELDS: dict[str, Any] = {
    "image": "img:1",
    "resources": {"cpu": "1", "memory": "256Mi", "requests": {"cpu": "250m", "memory": "128Mi"}},
    "imagePullPolicy": "Always",
    "nodeSelector": {"kubernetes.io/arch": "amd64", "pool": "fn"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "fn", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
        {"operator": "Exists"},
    ],
    "serviceAccountName": "fn-reader",
    "secrets": [{"name": "db-credentials"}, {"name": "tls.example", "mountPath": "/etc/tls"}],
}


def normalized(fields: dict[str, Any]) -> types_pb2.FunctionSpec:
    return normalize_spec(spec_from_manifest("fn", fields))


def rejected(fields: dict[str, Any]) -> str:
    with pytest.raises(SpecValidationError) as info:
        normalized({"image": "img:1", **fields})
    return str(info.value)


def test_every_field_is_kept_and_round_trips() -> None:
    spec = normalized(FIELDS)
    assert spec.image_pull_policy == "Always" and spec.service_account_name == "fn-reader"
    assert dict(spec.node_selector) == FIELDS["nodeSelector"]
    assert (spec.resources.request_cpu, spec.resources.request_memory) == ("250m", "128Mi")
    assert spec.tolerations[1].toleration_seconds == 30 and not spec.tolerations[0].HasField(
        "toleration_seconds"
    )
    assert [(s.name, s.mount_path) for s in spec.secrets] == [
        ("db-credentials", ""),
        ("tls.example", "/etc/tls"),
    ]
    written = manifest_from_spec(spec)
    for key, value in FIELDS.items():
        assert written[key] == value, key
    assert normalize_spec(spec_from_manifest("fn", written)) == spec


def test_unset_fields_stay_unset() -> None:
    spec = normalized({"image": "img:1"})
    assert spec.image_pull_policy == "" and not spec.node_selector and not spec.tolerations
    assert not spec.secrets and spec.service_account_name == ""
    assert not {"imagePullPolicy", "nodeSelector", "tolerations", "secrets"} & set(manifest_from_spec(spec))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"imagePullPolicy": "always"}, "imagePullPolicy: must be one of Always, IfNotPresent, Never"),
        ({"nodeSelector": {"Bad Key": "x"}}, "nodeSelector: key 'Bad Key': the name must be at most 63"),
        ({"nodeSelector": {"UPPER.example/x": "x"}}, "nodeSelector: key 'UPPER.example/x': the prefix"),
        ({"nodeSelector": {"pool": "-x"}}, "nodeSelector: value '-x' must be empty or"),
        ({"nodeSelector": {"pool": "x" * 64}}, "nodeSelector: value"),
        ({"nodeSelector": {f"k{i}": "v" for i in range(65)}}, "nodeSelector: at most 64 entries"),
        (
            {"tolerations": [{"key": "k", "operator": "In"}]},
            r"tolerations\[0\].operator: must be Equal or Exists",
        ),
        ({"tolerations": [{"value": "v"}]}, r"tolerations\[0\].operator: must be Exists when key is empty"),
        (
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
            r"tolerations\[0\].value: must be empty",
        ),
        ({"tolerations": [{"key": "k", "effect": "Evict"}]}, r"tolerations\[0\].effect: must be one of"),
        (
            {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]},
            r"tolerations\[0\].tolerationSeconds: only allowed with effect NoExecute",
        ),
        (
            {"tolerations": [{"key": "k", "effect": "NoExecute", "tolerationSeconds": -1}]},
            r"tolerations\[0\].tolerationSeconds: must be between 0 and 31536000",
        ),
        ({"tolerations": [{"key": "k", "colour": "red"}]}, r"tolerations\[0\].colour: unknown field"),
        (
            {"tolerations": [{"key": "k", "tolerationSeconds": "5"}]},
            r"tolerations\[0\].tolerationSeconds: must be an integer",
        ),
        (
            {"serviceAccountName": "Fn_Reader"},
            "serviceAccountName: 'Fn_Reader' is not a valid Kubernetes name",
        ),
        ({"secrets": [{"mountPath": "/x"}]}, r"secrets\[0\].name: required"),
        ({"secrets": [{"name": "DB"}]}, r"secrets\[0\].name: 'DB' is not a valid Kubernetes name"),
        ({"secrets": [{"name": "db"}, {"name": "db"}]}, r"secrets\[1\].name: 'db' is listed twice"),
        (
            {"secrets": [{"name": "db", "mountPath": "etc/db"}]},
            r"secrets\[0\].mountPath: must be an absolute path",
        ),
        (
            {"secrets": [{"name": "db", "mountPath": "/etc/../root"}]},
            r"secrets\[0\].mountPath: must not contain",
        ),
        (
            {"secrets": [{"name": "a", "mountPath": "/s"}, {"name": "b", "mountPath": "/s/"}]},
            r"secrets\[1\].mountPath: '/s/' is used twice",
        ),
        ({"secrets": [{"name": "db", "value": "hunter2"}]}, r"secrets\[0\].value: unknown field"),
        ({"secrets": ["db"]}, r"secrets\[0\]: must be an object"),
        ({"resources": {"requests": {"gpu": "1"}}}, "resources.requests.gpu: unknown field"),
        (
            {"resources": {"requests": {"cpu": "lots"}}},
            "resources.requests.cpu: 'lots' is not a Kubernetes quantity",
        ),
        (
            {"resources": {"cpu": "500m", "requests": {"cpu": "0.6"}}},
            "resources.requests.cpu: '0.6' must not exceed the limit resources.cpu '500m'",
        ),
        (
            {"resources": {"memory": "1Gi", "requests": {"memory": "1025Mi"}}},
            "resources.requests.memory: '1025Mi' must not exceed",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(fields: dict[str, Any], error: str) -> None:
    message = rejected(fields)
    assert re.match(error, message), message


@pytest.mark.parametrize(
    ("limit", "wanted"), [("1", "1000m"), ("1Gi", "1024Mi"), ("1G", "1e9"), ("2", "1.5"), ("", "64Mi")]
)
def test_requests_up_to_their_limit_are_accepted(limit: str, wanted: str) -> None:
    resources = {"requests": {"memory": wanted}, **({"memory": limit} if limit else {})}
    assert normalized({"image": "i", "resources": resources}).resources.request_memory == wanted


def test_the_crd_accepts_what_the_registry_accepts_and_refuses_bad_enums() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    jsonschema.validate(FIELDS, schema, cls=jsonschema.Draft7Validator)
    for bad in (
        {"imagePullPolicy": "Sometimes"},
        {"tolerations": [{"operator": "In"}]},
        {"secrets": [{"mountPath": "/x"}]},
        {"serviceAccountName": "Bad_Name"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"image": "i", **bad}, schema, cls=jsonschema.Draft7Validator)
