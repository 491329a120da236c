"""The Function CRD and the examples: a valid, structural CRD whose spec mirrors FunctionSpec.

The CRD is checked against Kubernetes' own CustomResourceDefinition schema (kubernetes-validate),
its spec against the proto and the registry's validation bounds, and every examples/*/function.yaml
against the CRD's schema (jsonschema) and the registry's validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from nanofaas.v1 import types_pb2
from nanofaas_registry.manifest import MANIFEST_FIELDS, manifest_from_spec, spec_from_manifest
from nanofaas_registry.validation import (
    MAX_RATE_LIMIT_PER_SECOND,
    QUANTITY_PATTERN,
    SpecValidationError,
    normalize_spec,
)

ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = ROOT / "deploy" / "kustomize" / "base" / "function-crd.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*/function.yaml"))
# FunctionSpec fields the registry owns or that live elsewhere in a Function object.
NOT_IN_SPEC = {"name", "createdAtMs", "updatedAtMs", "revision", "executionModeAlias"}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return load(CRD_PATH)


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    assert isinstance(only, dict)
    return only


@pytest.fixture(scope="module")
def spec_schema(version: dict[str, Any]) -> dict[str, Any]:
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert isinstance(schema, dict)
    return schema


def test_crd_is_a_valid_custom_resource_definition(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, kubernetes_validate.latest_version(), strict=True)


def test_crd_names_scope_and_subresources(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "functions.nanofaas.io"
    assert crd["spec"]["group"] == "nanofaas.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == "Function"
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    # Everything the kubernetes store writes into status (a real API server prunes unknown fields).
    assert set(status) == {"observedRevision", "observedGeneration", "conditions"}
    assert status["observedRevision"]["type"] == "integer"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns["Revision"] == ".status.observedRevision"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'


def _assert_structural(node: dict[str, Any], where: str) -> None:
    """Every node typed, as a structural schema needs (no preserve-unknown-fields anywhere)."""
    assert "type" in node, f"{where}: no type"
    assert "x-kubernetes-preserve-unknown-fields" not in node, where
    for name, child in node.get("properties", {}).items():
        _assert_structural(child, f"{where}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        assert "properties" not in node, f"{where}: properties and additionalProperties"
        _assert_structural(node["additionalProperties"], f"{where}.*")
    if "items" in node:
        _assert_structural(node["items"], f"{where}[]")


def test_schema_is_structural(version: dict[str, Any]) -> None:
    _assert_structural(version["schema"]["openAPIV3Schema"], "")


def test_spec_has_exactly_the_function_spec_fields(spec_schema: dict[str, Any]) -> None:
    proto_fields = {field.json_name for field in types_pb2.FunctionSpec.DESCRIPTOR.fields} - NOT_IN_SPEC
    assert set(spec_schema["properties"]) == proto_fields == MANIFEST_FIELDS
    assert spec_schema["required"] == ["image"]


@pytest.mark.parametrize(
    ("field", "minimum", "maximum"),
    [
        ("timeoutMs", 1, 300_000),
        ("concurrency", 1, 10_000),
        ("queueSize", 1, 1_000_000),
        ("maxRetries", 0, 100),
    ],
)
def test_bounds_match_the_registry(
    spec_schema: dict[str, Any], field: str, minimum: int, maximum: int
) -> None:
    schema = spec_schema["properties"][field]
    assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", minimum, maximum)
    for value, accepted in ((minimum, True), (maximum, True), (minimum - 1, False), (maximum + 1, False)):
        probe = spec_from_manifest("probe", {"image": "i", field: value})
        try:
            normalize_spec(probe)
            registry_accepts = True
        except SpecValidationError:
            registry_accepts = False
        assert registry_accepts is accepted
        assert jsonschema.Draft7Validator(schema).is_valid(value) is accepted


@pytest.mark.parametrize(
    ("field", "minimum", "maximum"),
    [
        ("minReplicas", 0, 1000),
        ("maxReplicas", 1, 1000),
        ("targetInFlight", 1, 10_000),
        ("scaleDownDelayMs", 0, 3_600_000),
    ],
)
def test_scaling_bounds_are_the_registry_outer_bounds(
    spec_schema: dict[str, Any], field: str, minimum: int, maximum: int
) -> None:
    """The schema holds the absolute bounds; the ones relative to concurrency are the registry's."""
    schema = spec_schema["properties"][field]
    assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", minimum, maximum)
    for value in (minimum, maximum):  # with concurrency at its maximum, both ends are accepted
        assert jsonschema.Draft7Validator(schema).is_valid(value)
        normalize_spec(spec_from_manifest("probe", {"image": "i", "concurrency": 10_000, field: value}))
    assert not jsonschema.Draft7Validator(schema).is_valid(minimum - 1)
    assert not jsonschema.Draft7Validator(schema).is_valid(maximum + 1)


def test_rate_limit_and_quantities_match_the_registry(spec_schema: dict[str, Any]) -> None:
    properties = spec_schema["properties"]
    assert properties["rateLimitPerSecond"]["maximum"] == MAX_RATE_LIMIT_PER_SECOND
    for part in ("cpu", "memory"):
        assert properties["resources"]["properties"][part]["pattern"] == QUANTITY_PATTERN.pattern


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.parent.name for path in EXAMPLES])
def test_example_is_a_valid_function(path: Path, crd: dict[str, Any], version: dict[str, Any]) -> None:
    example = load(path)
    assert example["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
    assert example["kind"] == crd["spec"]["names"]["kind"]
    jsonschema.validate(example, version["schema"]["openAPIV3Schema"], cls=jsonschema.Draft7Validator)
    normalized = normalize_spec(spec_from_manifest(example["metadata"]["name"], example["spec"]))
    assert normalized.name == path.parent.name


def test_there_is_an_example() -> None:
    assert [path.parent.name for path in EXAMPLES] == ["hello"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"image": "i", "timeoutMs": 0}, "0 is less than the minimum of 1"),
        ({"image": "i", "executionMode": "LOCAL"}, "'LOCAL' is not one of"),
        ({"image": "i", "env": {"A": 1}}, "1 is not of type 'string'"),
        ({"image": "i", "resources": {"cpu": "lots"}}, "'lots' does not match"),
        ({"timeoutMs": 5}, "'image' is a required property"),
    ],
)
def test_the_schema_refuses_bad_specs(
    spec_schema: dict[str, Any], spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(spec, spec_schema, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"image": "i", "timeoutMS": 5}, "timeoutMS: unknown field"),
        ({"image": 3}, "image: must be a string"),
        ({"image": "i", "concurrency": True}, "concurrency: must be an integer"),
        (
            {"image": "i", "executionMode": "LOCAL"},
            "executionMode: must be one of JOB, WARM, ENDPOINT, REMOTE, POOL",
        ),
        ({"image": "i", "resources": {"gpu": "1"}}, "resources.gpu: unknown field"),
        ({"image": "i", "env": {"A": 1}}, "env: must be a string"),
    ],
)
def test_manifest_errors_name_the_field(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(SpecValidationError, match=f"^{error}"):
        spec_from_manifest("fn", fields)


def test_manifest_maps_every_field() -> None:
    spec = spec_from_manifest(
        "fn",
        {
            "image": "img:1",
            "command": ["/bin/fn", "--fast"],
            "env": {"A": "1"},
            "resources": {"cpu": "500m", "memory": "128Mi"},
            "timeoutMs": 1000,
            "concurrency": 2,
            "queueSize": 3,
            "maxRetries": 0,
            "executionMode": "POOL",
            "runtimeMode": "STDIO",
            "endpointUrl": "http://127.0.0.1:1/invoke",
            "rateLimitPerSecond": 2,
        },
    )
    normalized = normalize_spec(spec)
    assert normalized.execution_mode == types_pb2.EXECUTION_MODE_ENDPOINT  # POOL with an endpoint
    assert normalized.runtime_mode == types_pb2.RUNTIME_MODE_STDIO
    assert (normalized.timeout_ms, normalized.concurrency, normalized.queue_size) == (1000, 2, 3)
    assert normalized.HasField("max_retries") and normalized.max_retries == 0
    assert list(normalized.command) == ["/bin/fn", "--fast"]
    assert (normalized.resources.cpu, normalized.resources.memory) == ("500m", "128Mi")
    assert normalized.rate_limit_per_second == 2.0


def test_manifest_round_trips_a_normalized_spec() -> None:
    fields = {
        "image": "img:1",
        "runtimeCommand": "python -m fn",
        "env": {"B": "2", "A": "1"},
        "resources": {"memory": "64Mi"},
        "maxRetries": 0,
        "executionMode": "WARM",
        "rateLimitPerSecond": 1.5,
    }
    normalized = normalize_spec(spec_from_manifest("fn", fields))
    written = manifest_from_spec(normalized)
    assert written["timeoutMs"] == 30_000 and written["runtimeMode"] == "HTTP"  # defaults are written
    assert normalize_spec(spec_from_manifest("fn", written)) == normalized
