"""The operator's base pod template, merged under every function pod.

The file (YAML or JSON, NANOFAAS_K8S_POD_TEMPLATE; the kustomize base ships it as a
ConfigMap) holds partial pod `metadata` (labels, annotations) and a partial
`spec`: cluster-wide tolerations, node selectors, imagePullSecrets, sidecars,
volumes, securityContext defaults. An operator changes what every function pod
looks like without a rebuild. The merge (see `merge_pod`) lets the function's
own fields win, keeps everything else of the template, and treats a template
container named `function` as the base of the function's container.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FUNCTION_CONTAINER = "function"
_METADATA_KEYS = frozenset({"labels", "annotations"})
# Lists whose items are identified by their `name` (a function's entry replaces the template's).
_NAMED_LISTS = frozenset({"containers", "initContainers", "env", "volumes", "volumeMounts", "ports"})

JsonObject = dict[str, Any]


class TemplateError(ValueError):
    """The pod template file cannot be used; the message says where and why."""


def load_template(path: str) -> JsonObject:
    """Read and shape-check the template file; an empty path means no template."""
    if not path:
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        import yaml

        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    return check_template(data, path)


def check_template(data: object, where: str = "pod template") -> JsonObject:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TemplateError(f"{where}: must be a mapping with `metadata` and/or `spec`")
    unknown = set(data) - {"metadata", "spec", "apiVersion", "kind"}
    if unknown:
        raise TemplateError(f"{where}: unknown top-level field(s) {', '.join(sorted(unknown))}")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict) or set(metadata) - _METADATA_KEYS:
        raise TemplateError(f"{where}: metadata may hold only labels and annotations")
    for key in _METADATA_KEYS:
        value = metadata.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise TemplateError(f"{where}: metadata.{key} must map names to strings")
    spec = data.get("spec") or {}
    if not isinstance(spec, dict):
        raise TemplateError(f"{where}: spec must be a PodSpec mapping")
    # A JSON round trip: the template is plain data, and no YAML object is shared with a build.
    plain: JsonObject = json.loads(json.dumps({"metadata": metadata, "spec": spec}))
    return plain


def merge_pod(defaults: JsonObject, template: JsonObject, own: JsonObject) -> JsonObject:
    """`own` (the function's pod: metadata + spec) over the template over the platform's defaults."""
    merged: JsonObject = _merge(_merge(copy.deepcopy(defaults), copy.deepcopy(template)), own)
    return merged


def _merge(base: Any, top: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        merged = dict(base)
        for name, value in top.items():
            merged[name] = _merge(base[name], value, name) if name in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(top, list):
        if key in _NAMED_LISTS and all(isinstance(item, dict) and "name" in item for item in base + top):
            return _merge_named(base, top, key)
        return [*base, *(copy.deepcopy(item) for item in top if item not in base)]
    return copy.deepcopy(top)


def _merge_named(base: list[JsonObject], top: list[JsonObject], key: str) -> list[JsonObject]:
    """Same-named entries merge (top wins); the top's come first (the function container leads)."""
    by_name = {item["name"]: item for item in base}
    if key == "env":  # a variable is one value: the function's replaces the template's
        merged = list(top)
    else:
        merged = [
            _merge(by_name[item["name"]], item, key) if item["name"] in by_name else item for item in top
        ]
    names = {item["name"] for item in top}
    return merged + [item for item in base if item["name"] not in names]
