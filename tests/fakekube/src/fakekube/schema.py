"""Validation against the real Kubernetes OpenAPI schemas, and the patch metadata they carry.

Every object written is checked against ``kubernetes-validate``'s schemas (strict ones) at
:data:`KUBERNETES_VERSION`, so a malformed object is refused as kube-apiserver refuses it: an unknown
field or a wrong type is a 400 ``strict decoding error``, a missing required field or an invalid
value is a 422 ``Invalid``. The same schemas carry ``x-kubernetes-patch-merge-key`` and
``x-kubernetes-list-type``, which drive strategic merge patch and server-side apply in ``patches``.

``kubernetes_validate`` and ``jsonschema`` are imported by name: they ship no type information.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import ApiError, bad_request, invalid

KUBERNETES_VERSION = "1.32"
# The server reports this version at /version (kubectl 1.32 is the one at hand).
GIT_VERSION = "v1.32.0-fakekube"

_jsonschema: Any = importlib.import_module("jsonschema")


def _json_path(path: list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_REQUIRED = re.compile(r"^'([^']+)' is a required property$")


_DECODE = ("type", "additionalProperties", "oneOf")


def _name_of(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return (
        str(metadata.get("name") or metadata.get("generateName") or "")
        if isinstance(metadata, Mapping)
        else ""
    )


def _decode_error(error: Any, obj: Mapping[str, Any], kind: str) -> ApiError:
    path = _json_path(list(error.absolute_path))
    if error.validator == "additionalProperties":
        unknown = _unexpected(error)
        fields = ", ".join(f'unknown field "{path + "." if path else ""}{u}"' for u in unknown)
        return bad_request(f"strict decoding error: {fields}")
    return bad_request(
        f'{kind} in version "{obj.get("apiVersion")}" cannot be handled as a {kind}: json: cannot unmarshal '
        f"{type(error.instance).__name__} into Go struct field {kind}.{path}"
    )


def _unexpected(error: Any) -> list[str]:
    allowed = set((error.schema.get("properties") or {}).keys())
    return [key for key in error.instance if key not in allowed] if isinstance(error.instance, dict) else []


def _invalid_error(error: Any, obj: Mapping[str, Any], kind: str, group: str) -> ApiError:
    name = _name_of(obj)
    path = _json_path(list(error.absolute_path))
    if error.validator == "required":
        match = _REQUIRED.match(error.message)
        missing = match.group(1) if match else ""
        field = f"{path}.{missing}" if path and missing else (missing or path)
        return invalid(kind, group, name, [(field, "FieldValueRequired", "Required value")])
    if error.validator == "enum":
        allowed = ", ".join(f'"{v}"' for v in error.validator_value if v is not None)
        return invalid(
            kind,
            group,
            name,
            [
                (
                    path,
                    "FieldValueNotSupported",
                    f'Unsupported value: "{error.instance}": supported values: {allowed}',
                )
            ],
        )
    return invalid(kind, group, name, [(path, "FieldValueInvalid", f"Invalid value: {error.message}")])


@functools.cache
def _validator(api_version: str, kind: str) -> Any:
    """A cached validator for a built-in kind at the pinned version, None when no schema exists."""
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    base = (
        importlib.import_module("importlib.resources")
        .files("kubernetes_validate")
        .joinpath(f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict")
    )
    document = base.joinpath(f"{kind.lower()}-{short}.json")
    if not document.is_file():
        return None
    schema = json.loads(document.read_text())
    defs = json.loads(base.joinpath("_definitions.json").read_text())
    referencing = importlib.import_module("referencing")
    registry = referencing.Registry().with_resources(
        [
            (schema.get("$id", ""), referencing.Resource.from_contents(schema)),
            (defs.get("$id", ""), referencing.Resource.from_contents(defs)),
        ]
    )
    return _jsonschema.Draft202012Validator(schema, registry=registry)


def decode(obj: dict[str, Any], group: str, *, strict: bool = True) -> list[str]:
    """The decoding step: wrong types are a 400; unknown fields are a 400 when strict, else dropped.

    Returns the dropped fields' paths (the warnings ``fieldValidation=Warn`` reports).
    """
    validator = _validator(str(obj.get("apiVersion")), str(obj.get("kind")))
    if validator is None:
        return []
    dropped: list[str] = []
    kind = str(obj.get("kind"))
    for error in sorted(validator.iter_errors(obj), key=lambda e: len(list(e.absolute_path))):
        if error.validator not in _DECODE:
            continue
        if error.validator != "additionalProperties" or strict:
            raise _decode_error(error, obj, kind)
        path = _json_path(list(error.absolute_path))
        for key in _unexpected(error):
            error.instance.pop(key, None)
            dropped.append(f"{path}.{key}" if path else key)
    return dropped


def validate_builtin(obj: Mapping[str, Any], group: str) -> None:
    """Validate a built-in kind (defaults applied) against the pinned schema; no schema, no check."""
    validator = _validator(str(obj.get("apiVersion")), str(obj.get("kind")))
    if validator is None:
        return
    errors = sorted(validator.iter_errors(obj), key=lambda e: (e.validator in _DECODE, list(e.absolute_path)))
    if not errors:
        return
    error = errors[0]
    if error.validator in _DECODE:
        raise _decode_error(error, obj, str(obj.get("kind")))
    raise _invalid_error(error, obj, str(obj.get("kind")), group)


def validate_custom(obj: Mapping[str, Any], schema: Mapping[str, Any], kind: str, group: str) -> None:
    """Validate a custom resource against its CRD's ``openAPIV3Schema`` (types, required, enums)."""
    cleaned = dict(obj)
    body = {k: v for k, v in cleaned.items() if k not in ("apiVersion", "kind", "metadata")}
    validator = _jsonschema.Draft202012Validator(_openapi_to_jsonschema(schema))
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        raise (
            _decode_error(error, obj, kind)
            if error.validator in _DECODE
            else _invalid_error(error, obj, kind, group)
        )


def _openapi_to_jsonschema(schema: Any) -> Any:
    """``nullable: true`` becomes a null-accepting type; the ``x-kubernetes-*`` keys are dropped."""
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {k: _openapi_to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in out:
        out.pop("additionalProperties", None)
    return out


@functools.cache
def definitions() -> dict[str, Any]:
    files = importlib.import_module("importlib.resources").files("kubernetes_validate")
    path = files.joinpath(f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local/_definitions.json")
    loaded: dict[str, Any] = json.loads(path.read_text())["$defs"]
    return loaded


@functools.cache
def root_names() -> dict[tuple[str, str, str], str]:
    roots: dict[tuple[str, str, str], str] = {}
    for name, definition in definitions().items():
        for gvk in definition.get("x-kubernetes-group-version-kind") or ():
            roots[(gvk["group"], gvk["version"], gvk["kind"])] = name
    return roots


class SchemaNode:
    """A position in a kind's schema, walked alongside an object to find patch semantics."""

    def __init__(self, schema: Mapping[str, Any] | None) -> None:
        self.schema: Mapping[str, Any] = self._resolve(schema or {})

    @staticmethod
    def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 20:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            extra = {k: v for k, v in schema.items() if k not in ("$ref", "description")}
            schema = {**definitions().get(name, {}), **extra}
            seen += 1
        return schema

    @classmethod
    def for_kind(cls, group: str, version: str, kind: str) -> SchemaNode:
        name = root_names().get((group, version, kind))
        return cls(definitions().get(name, {}) if name else {})

    def prop(self, name: str) -> SchemaNode:
        props = self.schema.get("properties") or {}
        if name in props:
            return SchemaNode(props[name])
        extra = self.schema.get("additionalProperties")
        return SchemaNode(extra if isinstance(extra, Mapping) else {})

    def items(self) -> SchemaNode:
        items = self.schema.get("items")
        return SchemaNode(items if isinstance(items, Mapping) else {})

    @property
    def patch_strategies(self) -> tuple[str, ...]:
        return (
            tuple(str(self.schema.get("x-kubernetes-patch-strategy") or "").split(","))
            if self.schema.get("x-kubernetes-patch-strategy")
            else ()
        )

    @property
    def merge_key(self) -> str | None:
        key = self.schema.get("x-kubernetes-patch-merge-key")
        return str(key) if key else None

    @property
    def list_type(self) -> str | None:
        kind = self.schema.get("x-kubernetes-list-type")
        return str(kind) if kind else None

    @property
    def list_map_keys(self) -> tuple[str, ...]:
        return tuple(self.schema.get("x-kubernetes-list-map-keys") or ())

    @property
    def map_type(self) -> str | None:
        kind = self.schema.get("x-kubernetes-map-type")
        return str(kind) if kind else None
