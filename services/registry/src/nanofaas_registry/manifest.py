"""A Function manifest's spec (the REST FunctionSpec fields, as in a `Function` custom resource) as a proto.

The declarative format is one set of fields everywhere: REST bodies, `kind: Function` objects
and files under examples/. This turns such a mapping (already parsed from YAML or JSON) into a
FunctionSpec for normalize_spec, with errors that name the field the way validation does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nanofaas.v1 import types_pb2
from nanofaas_registry.validation import SpecValidationError

_EXECUTION_MODES = {
    "JOB": types_pb2.EXECUTION_MODE_JOB,
    "WARM": types_pb2.EXECUTION_MODE_WARM,
    "ENDPOINT": types_pb2.EXECUTION_MODE_ENDPOINT,
}
_EXECUTION_MODE_ALIASES = ("REMOTE", "POOL")
_RUNTIME_MODES = {
    "HTTP": types_pb2.RUNTIME_MODE_HTTP,
    "STDIO": types_pb2.RUNTIME_MODE_STDIO,
    "FILE": types_pb2.RUNTIME_MODE_FILE,
}
_STRING_FIELDS = {
    "image": "image",
    "runtimeCommand": "runtime_command",
    "endpointUrl": "endpoint_url",
    "imagePullPolicy": "image_pull_policy",
    "serviceAccountName": "service_account_name",
}
_INTEGER_FIELDS = {
    "timeoutMs": "timeout_ms",
    "concurrency": "concurrency",
    "queueSize": "queue_size",
    "maxRetries": "max_retries",
    # autoscaling of WARM replicas
    "minReplicas": "min_replicas",
    "maxReplicas": "max_replicas",
    "targetInFlight": "target_in_flight",
    "scaleDownDelayMs": "scale_down_delay_ms",
}


def spec_from_manifest(name: str, fields: Mapping[str, Any]) -> types_pb2.FunctionSpec:
    """The FunctionSpec called name with the manifest's fields; SpecValidationError on a bad field.

    Only types and names are checked here; limits and defaults are normalize_spec's job.
    """
    spec = types_pb2.FunctionSpec(name=name)
    for key, value in fields.items():
        setter = _SETTERS.get(key)
        if setter is None:
            raise SpecValidationError(str(key), "unknown field")
        setter(spec, key, value)
    return spec


def _set_string(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    setattr(spec, _STRING_FIELDS[key], _string(key, value))


def _set_integer(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecValidationError(key, "must be an integer")
    if not -(2**63) <= value < 2**63:
        raise SpecValidationError(key, "is out of range")
    setattr(spec, _INTEGER_FIELDS[key], value)


def _set_rate_limit(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecValidationError(key, "must be a number")
    spec.rate_limit_per_second = float(value)


def _set_command(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    if not isinstance(value, list):
        raise SpecValidationError(key, "must be a list of strings")
    spec.command.extend(_string(key, word) for word in value)


def _set_env(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise SpecValidationError(key, "must map names to strings")
    for env_name, env_value in value.items():
        spec.env[_string(key, env_name)] = _string(key, env_value)


def _set_resources(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise SpecValidationError(key, "must be an object with cpu, memory and requests")
    spec.resources.SetInParent()
    for part, quantity in value.items():
        if part == "requests":
            if not isinstance(quantity, Mapping):
                raise SpecValidationError(f"{key}.requests", "must be an object with cpu and memory")
            for request, amount in quantity.items():
                if request not in ("cpu", "memory"):
                    raise SpecValidationError(f"{key}.requests.{request}", "unknown field")
                setattr(spec.resources, f"request_{request}", _string(f"{key}.requests.{request}", amount))
            continue
        if part not in ("cpu", "memory"):
            raise SpecValidationError(f"{key}.{part}", "unknown field")
        setattr(spec.resources, part, _string(f"{key}.{part}", quantity))


def _set_node_selector(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise SpecValidationError(key, "must map label keys to strings")
    for label, label_value in value.items():
        spec.node_selector[_string(key, label)] = _string(key, label_value)


_TOLERATION_FIELDS = ("key", "operator", "value", "effect")


def _set_tolerations(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    if not isinstance(value, list):
        raise SpecValidationError(key, "must be a list of tolerations")
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(item, Mapping):
            raise SpecValidationError(where, "must be an object with key, operator, value, effect")
        toleration = spec.tolerations.add()
        for part, part_value in item.items():
            if part == "tolerationSeconds":
                if isinstance(part_value, bool) or not isinstance(part_value, int):
                    raise SpecValidationError(f"{where}.{part}", "must be an integer")
                if not -(2**63) <= part_value < 2**63:
                    raise SpecValidationError(f"{where}.{part}", "is out of range")
                toleration.toleration_seconds = part_value
            elif part in _TOLERATION_FIELDS:
                setattr(toleration, part, _string(f"{where}.{part}", part_value))
            else:
                raise SpecValidationError(f"{where}.{part}", "unknown field")


def _set_secrets(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    if not isinstance(value, list):
        raise SpecValidationError(key, "must be a list of {name, mountPath}")
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(item, Mapping):
            raise SpecValidationError(where, "must be an object with name and an optional mountPath")
        secret = spec.secrets.add()
        for part, part_value in item.items():
            if part not in ("name", "mountPath"):
                raise SpecValidationError(f"{where}.{part}", "unknown field")
            setattr(
                secret, "name" if part == "name" else "mount_path", _string(f"{where}.{part}", part_value)
            )


def _set_execution_mode(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    mode = _string(key, value)
    if mode in _EXECUTION_MODE_ALIASES:
        spec.execution_mode_alias = mode
    elif mode in _EXECUTION_MODES:
        spec.execution_mode = _EXECUTION_MODES[mode]
    else:
        choices = ", ".join([*_EXECUTION_MODES, *_EXECUTION_MODE_ALIASES])
        raise SpecValidationError(key, f"must be one of {choices} (got {mode!r})")


def _set_runtime_mode(spec: types_pb2.FunctionSpec, key: str, value: Any) -> None:
    mode = _string(key, value)
    if mode not in _RUNTIME_MODES:
        raise SpecValidationError(key, f"must be one of {', '.join(_RUNTIME_MODES)} (got {mode!r})")
    spec.runtime_mode = _RUNTIME_MODES[mode]


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SpecValidationError(key, "must be a string")
    return value


_SETTERS: dict[str, Callable[[types_pb2.FunctionSpec, str, Any], None]] = {
    **dict.fromkeys(_STRING_FIELDS, _set_string),
    **dict.fromkeys(_INTEGER_FIELDS, _set_integer),
    "rateLimitPerSecond": _set_rate_limit,
    "command": _set_command,
    "env": _set_env,
    "resources": _set_resources,
    "nodeSelector": _set_node_selector,
    "tolerations": _set_tolerations,
    "secrets": _set_secrets,
    "executionMode": _set_execution_mode,
    "runtimeMode": _set_runtime_mode,
}

MANIFEST_FIELDS = frozenset(_SETTERS)


def manifest_from_spec(spec: types_pb2.FunctionSpec) -> dict[str, Any]:
    """The manifest fields of spec (a `Function` object's spec): what is set, registry-owned fields left out.

    The inverse of spec_from_manifest for a normalized spec, so writing it back and reading it
    again gives the same FunctionSpec.
    """
    fields: dict[str, Any] = {"image": spec.image}
    if spec.command:
        fields["command"] = list(spec.command)
    for key, attribute in _STRING_FIELDS.items():
        if key != "image" and getattr(spec, attribute):
            fields[key] = getattr(spec, attribute)
    if spec.env:
        fields["env"] = dict(sorted(spec.env.items()))
    if spec.HasField("resources"):
        fields["resources"] = _resources_fields(spec.resources)
    for key, attribute in _INTEGER_FIELDS.items():
        if spec.HasField(attribute):  # type: ignore[arg-type]  # the names are the proto's optional fields
            fields[key] = getattr(spec, attribute)
    modes = {value: key for key, value in _EXECUTION_MODES.items()}
    if spec.execution_mode in modes:
        fields["executionMode"] = modes[spec.execution_mode]
    runtime_modes = {value: key for key, value in _RUNTIME_MODES.items()}
    if spec.runtime_mode in runtime_modes:
        fields["runtimeMode"] = runtime_modes[spec.runtime_mode]
    if spec.HasField("rate_limit_per_second"):
        fields["rateLimitPerSecond"] = spec.rate_limit_per_second
    fields.update(_kubernetes_fields(spec))
    return fields


def _resources_fields(resources: types_pb2.Resources) -> dict[str, Any]:
    fields: dict[str, Any] = {
        part: getattr(resources, part) for part in ("cpu", "memory") if getattr(resources, part)
    }
    requests = {
        part: getattr(resources, f"request_{part}")
        for part in ("cpu", "memory")
        if getattr(resources, f"request_{part}")
    }
    if requests:
        fields["requests"] = requests
    return fields


def _kubernetes_fields(spec: types_pb2.FunctionSpec) -> dict[str, Any]:
    """nodeSelector, tolerations and secrets as manifest fields (the string ones are in _STRING_FIELDS)."""
    fields: dict[str, Any] = {}
    if spec.node_selector:
        fields["nodeSelector"] = dict(sorted(spec.node_selector.items()))
    if spec.tolerations:
        fields["tolerations"] = [toleration_fields(toleration) for toleration in spec.tolerations]
    if spec.secrets:
        fields["secrets"] = [
            {"name": secret.name, **({"mountPath": secret.mount_path} if secret.mount_path else {})}
            for secret in spec.secrets
        ]
    return fields


def toleration_fields(toleration: types_pb2.Toleration) -> dict[str, Any]:
    fields: dict[str, Any] = {
        part: getattr(toleration, part) for part in _TOLERATION_FIELDS if getattr(toleration, part)
    }
    if toleration.HasField("toleration_seconds"):
        fields["tolerationSeconds"] = toleration.toleration_seconds
    return fields
