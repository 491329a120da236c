"""function.yaml: a FunctionSpec, exactly its fields, as YAML.

The same document is the body of `POST /v1/functions` (as JSON) and, once the
Function custom resource exists, its `spec`; so one file works with the CLI,
REST and kubectl. Unknown keys are refused rather than ignored, so a typo
(`timeoutMS`) is an error instead of a silent default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nanofaas_client.models import FunctionSpec

MANIFEST_NAME = "function.yaml"
# The REST FunctionSpec's fields (the gateway's OpenAPI schema FunctionSpec).
FUNCTION_SPEC_FIELDS = (
    "name",
    "image",
    "command",
    "runtimeCommand",
    "env",
    "resources",
    "timeoutMs",
    "concurrency",
    "queueSize",
    "maxRetries",
    "executionMode",
    "runtimeMode",
    "endpointUrl",
    "rateLimitPerSecond",
    # Kubernetes backend only
    "imagePullPolicy",
    "nodeSelector",
    "tolerations",
    "serviceAccountName",
    "secrets",
    "minReplicas",
    "maxReplicas",
    "targetInFlight",
    "scaleDownDelayMs",
)
REQUIRED_FIELDS = ("name", "image")


class ManifestError(ValueError):
    """The manifest cannot be read or is not a FunctionSpec."""


def parse_manifest(text: str, source: str = MANIFEST_NAME) -> FunctionSpec:
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        raise ManifestError(f"{source}: must be a mapping of FunctionSpec fields")
    unknown = sorted(str(key) for key in document if key not in FUNCTION_SPEC_FIELDS)
    if unknown:
        allowed = ", ".join(FUNCTION_SPEC_FIELDS)
        raise ManifestError(f"{source}: unknown field(s) {', '.join(unknown)} (FunctionSpec has: {allowed})")
    missing = [key for key in REQUIRED_FIELDS if not document.get(key)]
    if missing:
        raise ManifestError(f"{source}: missing required field(s) {', '.join(missing)}")
    env = document.get("env")
    if env is not None and not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise ManifestError(f'{source}: env must map names to strings (quote numbers: "1")')
    return dict(document)


def load_manifest(path: Path) -> FunctionSpec:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_manifest(text, str(path))


def dump_manifest(spec: FunctionSpec) -> str:
    """A spec as YAML, fields in the contract's order."""
    ordered = {key: spec[key] for key in FUNCTION_SPEC_FIELDS if key in spec}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)
