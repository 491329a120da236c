"""Validation and defaults of a FunctionSpec, as pure functions.

The registry is the one place that checks limits and applies defaults: the gateway
passes every value through (integers clamped to int64), so a bad value gets the same
answer here whatever its size. Every error message starts with the REST (camelCase)
name of the offending field, because the gateway shows it to the user verbatim.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

from nanofaas.v1 import registry_pb2, types_pb2

NAME_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9._-]{0,62}$")
# A Kubernetes resource quantity: a non-negative decimal with an optional binary-SI,
# decimal-SI or decimal-exponent suffix (500m, 1, 0.5, 128Mi, 1Gi, 1G, 1e3).
QUANTITY_PATTERN = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")

DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_CONCURRENCY = 4
DEFAULT_QUEUE_SIZE = 100
DEFAULT_MAX_RETRIES = 3

_BoundedField = Literal["timeout_ms", "concurrency", "queue_size", "max_retries"]
# (proto field, REST field, minimum, maximum, default)
_BOUNDED_FIELDS: tuple[tuple[_BoundedField, str, int, int, int], ...] = (
    ("timeout_ms", "timeoutMs", 1, 300_000, DEFAULT_TIMEOUT_MS),
    ("concurrency", "concurrency", 1, 10_000, DEFAULT_CONCURRENCY),
    ("queue_size", "queueSize", 1, 1_000_000, DEFAULT_QUEUE_SIZE),
    ("max_retries", "maxRetries", 0, 100, DEFAULT_MAX_RETRIES),
)

MAX_TIMEOUT_MS = next(maximum for field, _, _, maximum, _ in _BOUNDED_FIELDS if field == "timeout_ms")

_ALIAS_POOL = "POOL"
_ALIAS_REMOTE = "REMOTE"


class SpecValidationError(ValueError):
    """A FunctionSpec breaks a rule; str() is "<field>: <problem>"."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def limits() -> registry_pb2.Limits:
    """The limits others must apply the same way (sent on Watch SYNCED), from the bounds above.

    A caller's X-Timeout-Ms only lowers a function's timeout, so it is bound by the largest timeoutMs.
    """
    return registry_pb2.Limits(max_timeout_ms=MAX_TIMEOUT_MS)


def normalize_spec(spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
    """Returns a validated copy with every default applied; the input is left untouched.

    Registry-owned fields (timestamps, revision) and the informational execution mode
    alias are cleared, so the caller can never set them.
    """
    _validate_size(spec)
    result = types_pb2.FunctionSpec()
    result.CopyFrom(spec)
    validate_name(result.name)
    _validate_image(result.image)
    _validate_command(list(result.command))
    _validate_runtime_command(result.runtime_command, has_command=len(result.command) > 0)
    _validate_env(dict(result.env))
    _validate_resources(result)
    validate_kubernetes_fields(result)
    _apply_bounded_defaults(result)
    _validate_rate_limit(result)
    _apply_scaling_defaults(result)
    _validate_endpoint_url(result.endpoint_url)
    result.execution_mode = resolve_execution_mode(result)
    result.runtime_mode = _resolve_runtime_mode(result.runtime_mode)
    result.ClearField("execution_mode_alias")
    result.created_at_ms = 0
    result.updated_at_ms = 0
    result.revision = 0
    return result


def validate_name(name: str) -> None:
    """Function names end up in URLs, Kubernetes object names and process environments."""
    if not name:
        raise SpecValidationError("name", "required")
    if not NAME_PATTERN.fullmatch(name):
        raise SpecValidationError("name", f"must match {NAME_PATTERN.pattern}")


def resolve_execution_mode(spec: types_pb2.FunctionSpec) -> types_pb2.ExecutionMode.ValueType:
    """Maps unspecified modes and the seed aliases (REMOTE = JOB, POOL = WARM) to a concrete mode.

    A POOL function with an endpointUrl is served by that endpoint, as in the seed API.
    """
    mode = spec.execution_mode
    if mode not in types_pb2.ExecutionMode.values():
        raise SpecValidationError("executionMode", f"unknown value {mode}")
    alias = spec.execution_mode_alias.strip().upper()
    has_endpoint = bool(spec.endpoint_url)
    if mode == types_pb2.EXECUTION_MODE_UNSPECIFIED:
        if alias == _ALIAS_POOL:
            mode = types_pb2.EXECUTION_MODE_WARM
        elif alias == _ALIAS_REMOTE:
            mode = types_pb2.EXECUTION_MODE_JOB
        elif has_endpoint:
            mode = types_pb2.EXECUTION_MODE_ENDPOINT
        else:
            mode = types_pb2.EXECUTION_MODE_JOB
    if mode == types_pb2.EXECUTION_MODE_WARM and alias == _ALIAS_POOL and has_endpoint:
        mode = types_pb2.EXECUTION_MODE_ENDPOINT
    if mode == types_pb2.EXECUTION_MODE_ENDPOINT and not has_endpoint:
        raise SpecValidationError("endpointUrl", "required for executionMode ENDPOINT")
    return mode


def _resolve_runtime_mode(mode: types_pb2.RuntimeMode.ValueType) -> types_pb2.RuntimeMode.ValueType:
    if mode not in types_pb2.RuntimeMode.values():
        raise SpecValidationError("runtimeMode", f"unknown value {mode}")
    if mode == types_pb2.RUNTIME_MODE_UNSPECIFIED:
        return types_pb2.RUNTIME_MODE_HTTP
    return mode


def _validate_image(image: str) -> None:
    if not image.strip():
        raise SpecValidationError("image", "required")
    if any(ch.isspace() or ch == "\0" for ch in image):
        raise SpecValidationError("image", "must not contain whitespace or NUL")


def _validate_command(command: list[str]) -> None:
    """argv entries go straight to exec(), which cannot carry empty or NUL-containing words."""
    for index, word in enumerate(command):
        if not word:
            raise SpecValidationError("command", f"entry {index} must not be empty")
        if "\0" in word:
            raise SpecValidationError("command", f"entry {index} must not contain NUL")


def _validate_runtime_command(runtime_command: str, *, has_command: bool) -> None:
    """Splits like a shell would (the scheduler does the same) without ever running one."""
    if not runtime_command:
        return
    if has_command:
        raise SpecValidationError("runtimeCommand", "cannot be combined with command")
    if "\0" in runtime_command:
        raise SpecValidationError("runtimeCommand", "must not contain NUL")
    try:
        words = shlex.split(runtime_command)
    except ValueError as exc:
        raise SpecValidationError("runtimeCommand", f"cannot be split: {exc}") from None
    if not words:
        raise SpecValidationError("runtimeCommand", "must name a program")


def _validate_env(env: dict[str, str]) -> None:
    """Keys and values must survive being put into a process environment, and fit in one."""
    size = sum(len(key.encode()) + len(value.encode()) + 2 for key, value in env.items())
    if size > _sizes.max_env_bytes:
        raise SpecValidationError("env", f"keys and values exceed {_sizes.max_env_bytes} bytes")
    for key, value in env.items():
        if not key:
            raise SpecValidationError("env", "keys must not be empty")
        if "=" in key:
            raise SpecValidationError("env", f"key {key!r} must not contain '='")
        if "\0" in key:
            raise SpecValidationError("env", f"key {key!r} must not contain NUL")
        if "\0" in value:
            raise SpecValidationError("env", f"value of {key!r} must not contain NUL")


def _validate_resources(spec: types_pb2.FunctionSpec) -> None:
    """Limits (cpu, memory) and requests (requests.cpu, ...): quantities, a request never above its limit."""
    if not spec.HasField("resources"):
        return
    for field, request_field in (("cpu", "request_cpu"), ("memory", "request_memory")):
        limit: str = getattr(spec.resources, field)
        request: str = getattr(spec.resources, request_field)
        for name, quantity in ((f"resources.{field}", limit), (f"resources.requests.{field}", request)):
            if quantity and not QUANTITY_PATTERN.fullmatch(quantity):
                raise SpecValidationError(
                    name, f"{quantity!r} is not a Kubernetes quantity (e.g. 500m, 128Mi)"
                )
        if limit and request and quantity_value(request) > quantity_value(limit):
            raise SpecValidationError(
                f"resources.requests.{field}",
                f"{request!r} must not exceed the limit resources.{field} {limit!r}",
            )


_QUANTITY_SUFFIXES = {
    **{
        suffix: Decimal(1024) ** power
        for power, suffix in enumerate(("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))
    },
    **{suffix: Decimal(10) ** (3 * power) for power, suffix in enumerate(("", "k", "M", "G", "T", "P", "E"))},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
}


def quantity_value(quantity: str) -> Decimal:
    """A quantity matching QUANTITY_PATTERN as a number, to compare a request with its limit."""
    number = quantity.rstrip("KMGTPEinumk")
    suffix = quantity[len(number) :]
    if "e" in number.lower():
        return Decimal(number)
    return Decimal(number) * _QUANTITY_SUFFIXES[suffix]


# -- Kubernetes-only fields (the local backend ignores them) -----------------------------------------
# A DNS-1123 subdomain (Secret and ServiceAccount names, label key prefixes) and a label
# name / value, as kube-apiserver checks them.
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
IMAGE_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TOLERATION_OPERATORS = ("Equal", "Exists")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
MAX_NODE_SELECTOR = 64
MAX_TOLERATIONS = 64
MAX_SECRETS = 32
MAX_TOLERATION_SECONDS = 31_536_000  # a year
_MAX_MOUNT_PATH = 1024


def validate_kubernetes_fields(spec: types_pb2.FunctionSpec) -> None:
    """imagePullPolicy, nodeSelector, tolerations, serviceAccountName, secrets: what a pod would refuse."""
    if spec.image_pull_policy and spec.image_pull_policy not in IMAGE_PULL_POLICIES:
        raise SpecValidationError(
            "imagePullPolicy",
            f"must be one of {', '.join(IMAGE_PULL_POLICIES)} (got {spec.image_pull_policy!r})",
        )
    _validate_node_selector(dict(spec.node_selector))
    _validate_tolerations(list(spec.tolerations))
    if spec.service_account_name:
        _check_subdomain("serviceAccountName", spec.service_account_name)
    _validate_secrets(list(spec.secrets))


def _label_key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return f"key {key!r}: the prefix must be a DNS-1123 subdomain (lower case, at most 253 characters)"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            f"key {key!r}: the name must be at most 63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def _label_value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
        return (
            f"value {value!r} must be empty or at most 63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def _validate_node_selector(selector: dict[str, str]) -> None:
    if len(selector) > MAX_NODE_SELECTOR:
        raise SpecValidationError("nodeSelector", f"at most {MAX_NODE_SELECTOR} entries")
    for key, value in selector.items():
        problem = _label_key_problem(key) or _label_value_problem(value)
        if problem:
            raise SpecValidationError("nodeSelector", problem)


def _validate_tolerations(tolerations: list[types_pb2.Toleration]) -> None:
    if len(tolerations) > MAX_TOLERATIONS:
        raise SpecValidationError("tolerations", f"at most {MAX_TOLERATIONS} entries")
    for index, toleration in enumerate(tolerations):
        field = f"tolerations[{index}]"
        operator = toleration.operator or "Equal"
        if operator not in _TOLERATION_OPERATORS:
            raise SpecValidationError(
                f"{field}.operator", f"must be Equal or Exists (got {toleration.operator!r})"
            )
        if toleration.key:
            problem = _label_key_problem(toleration.key)
            if problem:
                raise SpecValidationError(f"{field}.key", problem)
        elif operator != "Exists":
            raise SpecValidationError(
                f"{field}.operator", "must be Exists when key is empty (it tolerates all taints)"
            )
        if operator == "Exists" and toleration.value:
            raise SpecValidationError(f"{field}.value", "must be empty when operator is Exists")
        problem = _label_value_problem(toleration.value)
        if problem:
            raise SpecValidationError(f"{field}.value", problem)
        if toleration.effect and toleration.effect not in _TAINT_EFFECTS:
            raise SpecValidationError(
                f"{field}.effect",
                f"must be one of {', '.join(_TAINT_EFFECTS)} or empty (got {toleration.effect!r})",
            )
        if toleration.HasField("toleration_seconds"):
            if toleration.effect != "NoExecute":
                raise SpecValidationError(f"{field}.tolerationSeconds", "only allowed with effect NoExecute")
            if not 0 <= toleration.toleration_seconds <= MAX_TOLERATION_SECONDS:
                raise SpecValidationError(
                    f"{field}.tolerationSeconds", f"must be between 0 and {MAX_TOLERATION_SECONDS}"
                )


def _check_subdomain(field: str, name: str) -> None:
    if len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        raise SpecValidationError(
            field,
            f"{name!r} is not a valid Kubernetes name (a DNS-1123 subdomain: lower case letters, digits, "
            "'-' and '.', at most 253 characters, starting and ending with a letter or digit)",
        )


def _validate_secrets(secrets: list[types_pb2.SecretMount]) -> None:
    """Names and mount paths only: the platform never reads a Secret's values."""
    if len(secrets) > MAX_SECRETS:
        raise SpecValidationError("secrets", f"at most {MAX_SECRETS} entries")
    names: set[str] = set()
    paths: set[str] = set()
    for index, secret in enumerate(secrets):
        field = f"secrets[{index}]"
        if not secret.name:
            raise SpecValidationError(f"{field}.name", "required")
        _check_subdomain(f"{field}.name", secret.name)
        if secret.name in names:
            raise SpecValidationError(f"{field}.name", f"{secret.name!r} is listed twice")
        names.add(secret.name)
        path = secret.mount_path
        if not path:
            continue
        if len(path) > _MAX_MOUNT_PATH or not path.startswith("/") or path == "/":
            raise SpecValidationError(
                f"{field}.mountPath",
                f"must be an absolute path below / of at most {_MAX_MOUNT_PATH} characters",
            )
        if any(ch in path for ch in ":\0") or any(ch.isspace() for ch in path) or ".." in path.split("/"):
            raise SpecValidationError(f"{field}.mountPath", "must not contain ':', '..', whitespace or NUL")
        normalized = path.rstrip("/")
        if normalized in paths:
            raise SpecValidationError(f"{field}.mountPath", f"{path!r} is used twice")
        paths.add(normalized)


def _apply_bounded_defaults(spec: types_pb2.FunctionSpec) -> None:
    for proto_field, rest_field, minimum, maximum, default in _BOUNDED_FIELDS:
        if not spec.HasField(proto_field):
            setattr(spec, proto_field, default)
            continue
        value: int = getattr(spec, proto_field)
        if not minimum <= value <= maximum:
            raise SpecValidationError(rest_field, f"must be between {minimum} and {maximum}")


def _validate_endpoint_url(url: str) -> None:
    if not url:
        return
    if any(ch.isspace() or ch == "\0" for ch in url):
        raise SpecValidationError("endpointUrl", "must not contain whitespace or NUL")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise SpecValidationError("endpointUrl", f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise SpecValidationError("endpointUrl", "must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise SpecValidationError("endpointUrl", "must include a host")
    if ":" not in parts.hostname:  # a host name, not an IPv6 literal: it must survive IDNA encoding
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise SpecValidationError(
                "endpointUrl", f"host {parts.hostname!r} is not a valid host name (empty or overlong label)"
            ) from None


MAX_RATE_LIMIT_PER_SECOND = 1_000_000.0


def _validate_rate_limit(spec: types_pb2.FunctionSpec) -> None:
    """Unset means no limit; a limit is a finite number of admissions per second."""
    if not spec.HasField("rate_limit_per_second"):
        return
    rate = spec.rate_limit_per_second
    if not (0.0 <= rate <= MAX_RATE_LIMIT_PER_SECOND):  # also rejects NaN
        raise SpecValidationError(
            "rateLimitPerSecond", f"must be between 0 and {MAX_RATE_LIMIT_PER_SECOND:g} (0 = no limit)"
        )


# -- autoscaling of WARM replicas (docs/autoscaling.md) --
DEFAULT_MIN_REPLICAS = 1
DEFAULT_TARGET_IN_FLIGHT = 1
DEFAULT_SCALE_DOWN_DELAY_MS = 60_000
MAX_REPLICAS = 1_000
MAX_SCALE_DOWN_DELAY_MS = 3_600_000


def _apply_scaling_defaults(spec: types_pb2.FunctionSpec) -> None:
    """minReplicas 0 means scale to zero; maxReplicas defaults to, and never exceeds, concurrency.

    More replicas than `concurrency` could never all be busy: the scheduler runs at
    most `concurrency` invocations of a function at once, across all its replicas.
    Runs after the bounded defaults, so `concurrency` is set.
    """
    ceiling = min(spec.concurrency, MAX_REPLICAS)
    if not spec.HasField("min_replicas"):
        spec.min_replicas = DEFAULT_MIN_REPLICAS
    if not 0 <= spec.min_replicas <= ceiling:
        raise SpecValidationError(
            "minReplicas", f"must be between 0 and concurrency ({ceiling}); 0 = scale to zero"
        )
    if not spec.HasField("max_replicas"):
        spec.max_replicas = ceiling
    if not 1 <= spec.max_replicas <= ceiling:
        raise SpecValidationError("maxReplicas", f"must be between 1 and concurrency ({ceiling})")
    if spec.min_replicas > spec.max_replicas:
        raise SpecValidationError("minReplicas", f"must not exceed maxReplicas ({spec.max_replicas})")
    if not spec.HasField("target_in_flight"):
        spec.target_in_flight = DEFAULT_TARGET_IN_FLIGHT
    if not 1 <= spec.target_in_flight <= spec.concurrency:
        raise SpecValidationError("targetInFlight", f"must be between 1 and concurrency ({spec.concurrency})")
    if not spec.HasField("scale_down_delay_ms"):
        spec.scale_down_delay_ms = DEFAULT_SCALE_DOWN_DELAY_MS
    if not 0 <= spec.scale_down_delay_ms <= MAX_SCALE_DOWN_DELAY_MS:
        raise SpecValidationError("scaleDownDelayMs", f"must be between 0 and {MAX_SCALE_DOWN_DELAY_MS}")


# -- size limits (docs/limits.md) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SizeLimits:
    max_spec_bytes: int = 1024 * 1024
    max_env_bytes: int = 256 * 1024


_sizes = SizeLimits()


def configure_sizes(sizes: SizeLimits) -> None:
    """Set once by the server from its settings (NANOFAAS_MAX_SPEC_BYTES, NANOFAAS_MAX_ENV_BYTES)."""
    global _sizes
    _sizes = sizes


class SpecTooLargeError(SpecValidationError):
    """A spec over the size limit: permanent, answered 413 over REST (x-error-code PAYLOAD_TOO_LARGE)."""


def _validate_size(spec: types_pb2.FunctionSpec) -> None:
    size = spec.ByteSize()
    if size > _sizes.max_spec_bytes:
        raise SpecTooLargeError("spec", f"{size} bytes exceeds the limit of {_sizes.max_spec_bytes} bytes")
