"""Translation between REST JSON and the gRPC messages.

The REST JSON of an execution (ExecutionStatus) is rendered here and nowhere else:
GET /v1/executions/{id} and completion callbacks both use execution_status_body.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from nanofaas.v1 import scheduler_pb2, types_pb2
from nanofaas_gateway import codes
from nanofaas_gateway.models import FunctionSpec

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

_EXECUTION_MODES: dict[str, types_pb2.ExecutionMode.ValueType] = {
    "JOB": types_pb2.EXECUTION_MODE_JOB,
    "WARM": types_pb2.EXECUTION_MODE_WARM,
    "ENDPOINT": types_pb2.EXECUTION_MODE_ENDPOINT,
    "REMOTE": types_pb2.EXECUTION_MODE_JOB,
    "POOL": types_pb2.EXECUTION_MODE_WARM,
}
_ALIASES = frozenset({"REMOTE", "POOL"})
_RUNTIME_MODES: dict[str, types_pb2.RuntimeMode.ValueType] = {
    "HTTP": types_pb2.RUNTIME_MODE_HTTP,
    "STDIO": types_pb2.RUNTIME_MODE_STDIO,
    "FILE": types_pb2.RUNTIME_MODE_FILE,
}
_EXECUTION_MODE_NAMES = {
    types_pb2.EXECUTION_MODE_JOB: "JOB",
    types_pb2.EXECUTION_MODE_WARM: "WARM",
    types_pb2.EXECUTION_MODE_ENDPOINT: "ENDPOINT",
}
_RUNTIME_MODE_NAMES = {
    types_pb2.RUNTIME_MODE_HTTP: "HTTP",
    types_pb2.RUNTIME_MODE_STDIO: "STDIO",
    types_pb2.RUNTIME_MODE_FILE: "FILE",
}
_STATE_NAMES = {
    types_pb2.EXECUTION_STATE_QUEUED: "queued",
    types_pb2.EXECUTION_STATE_RUNNING: "running",
    types_pb2.EXECUTION_STATE_SUCCESS: "success",
    types_pb2.EXECUTION_STATE_ERROR: "error",
    types_pb2.EXECUTION_STATE_TIMEOUT: "timeout",
}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX = 2**32 - 1
# More digits than any int64 has: the sign alone decides the clamped value.
_INT64_DIGITS = 19


def clamp_int64(value: int) -> int:
    """Any integer as the nearest int64, so every value a caller sends reaches the registry's check."""
    return min(max(value, INT64_MIN), INT64_MAX)


def int64_from_literal(literal: str) -> int:
    """A decimal integer literal (optional sign) as an int64, clamped.

    Python refuses to convert integers of more than 4300 digits (a CPU safeguard); a
    literal with more than 19 significant digits is outside int64 anyway, so it is never
    converted: its sign alone decides.
    """
    if len(literal.lstrip("+-").lstrip("0")) > _INT64_DIGITS:
        return INT64_MIN if literal.startswith("-") else INT64_MAX
    return clamp_int64(int(literal))


def loads_clamped(data: bytes | str) -> Any:
    """JSON with every integer clamped to int64: a huge number gets the same answer as 2**63-1.

    Raises json.JSONDecodeError on malformed JSON (FastAPI answers that with a 400).
    """
    return json.loads(data, parse_int=int64_from_literal)


def ms_to_iso(ms: int) -> str:
    """Unix epoch milliseconds -> ISO-8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.000Z."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def state_name(state: types_pb2.ExecutionState.ValueType) -> str:
    """An ExecutionState as the lowercase REST status."""
    return _STATE_NAMES.get(state, "unknown")


def spec_to_proto(spec: FunctionSpec) -> types_pb2.FunctionSpec:
    message = types_pb2.FunctionSpec(name=spec.name, image=spec.image)
    if spec.command:
        message.command.extend(spec.command)
    if spec.runtimeCommand is not None:
        message.runtime_command = spec.runtimeCommand
    if spec.env:
        message.env.update(spec.env)
    if spec.resources is not None:
        message.resources.cpu = spec.resources.cpu or ""
        message.resources.memory = spec.resources.memory or ""
        if spec.resources.requests is not None:
            message.resources.request_cpu = spec.resources.requests.cpu or ""
            message.resources.request_memory = spec.resources.requests.memory or ""
    # Unchecked here: the registry judges every value, whatever its size.
    if spec.timeoutMs is not None:
        message.timeout_ms = clamp_int64(spec.timeoutMs)
    if spec.concurrency is not None:
        message.concurrency = clamp_int64(spec.concurrency)
    if spec.queueSize is not None:
        message.queue_size = clamp_int64(spec.queueSize)
    if spec.maxRetries is not None:
        message.max_retries = clamp_int64(spec.maxRetries)
    if spec.executionMode is not None:
        mode = spec.executionMode.value
        message.execution_mode = _EXECUTION_MODES[mode]
        if mode in _ALIASES:
            message.execution_mode_alias = mode
    if spec.runtimeMode is not None:
        message.runtime_mode = _RUNTIME_MODES[spec.runtimeMode.value]
    if spec.endpointUrl is not None:
        message.endpoint_url = spec.endpointUrl
    if spec.rateLimitPerSecond is not None:
        message.rate_limit_per_second = spec.rateLimitPerSecond
    for rest_field, proto_field in _SCALING_FIELDS:
        value = getattr(spec, rest_field)
        if value is not None:
            setattr(message, proto_field, clamp_int64(value))
    _kubernetes_fields_to_proto(spec, message)
    return message


def _kubernetes_fields_to_proto(spec: FunctionSpec, message: types_pb2.FunctionSpec) -> None:
    """The Kubernetes-only fields, passed through unchecked (the registry judges them)."""
    message.image_pull_policy = spec.imagePullPolicy or ""
    message.service_account_name = spec.serviceAccountName or ""
    if spec.nodeSelector:
        message.node_selector.update(spec.nodeSelector)
    for toleration in spec.tolerations or ():
        added = message.tolerations.add(
            key=toleration.key or "",
            operator=toleration.operator or "",
            value=toleration.value or "",
            effect=toleration.effect or "",
        )
        if toleration.tolerationSeconds is not None:
            added.toleration_seconds = clamp_int64(toleration.tolerationSeconds)
    for secret in spec.secrets or ():
        message.secrets.add(name=secret.name, mount_path=secret.mountPath or "")


def _kubernetes_fields_to_json(spec: types_pb2.FunctionSpec) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if spec.image_pull_policy:
        body["imagePullPolicy"] = spec.image_pull_policy
    if spec.node_selector:
        body["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        body["tolerations"] = [_toleration_to_json(toleration) for toleration in spec.tolerations]
    if spec.service_account_name:
        body["serviceAccountName"] = spec.service_account_name
    if spec.secrets:
        body["secrets"] = [
            {"name": secret.name, **({"mountPath": secret.mount_path} if secret.mount_path else {})}
            for secret in spec.secrets
        ]
    return body


def _toleration_to_json(toleration: types_pb2.Toleration) -> dict[str, Any]:
    body: dict[str, Any] = {
        key: getattr(toleration, key)
        for key in ("key", "operator", "value", "effect")
        if getattr(toleration, key)
    }
    if toleration.HasField("toleration_seconds"):
        body["tolerationSeconds"] = toleration.toleration_seconds
    return body


_ScalingField = Literal["min_replicas", "max_replicas", "target_in_flight", "scale_down_delay_ms"]
# Autoscaling fields: REST name, proto name (all optional int64, defaulted by the registry).
_SCALING_FIELDS: tuple[tuple[str, _ScalingField], ...] = (
    ("minReplicas", "min_replicas"),
    ("maxReplicas", "max_replicas"),
    ("targetInFlight", "target_in_flight"),
    ("scaleDownDelayMs", "scale_down_delay_ms"),
)


def _execution_mode_name(spec: types_pb2.FunctionSpec) -> str:
    default = "ENDPOINT" if spec.endpoint_url else "JOB"
    return _EXECUTION_MODE_NAMES.get(spec.execution_mode, default)


def spec_to_json(spec: types_pb2.FunctionSpec) -> dict[str, Any]:
    """A stored spec as the REST FunctionSpec; unset optional fields are omitted.

    The registry returns every defaulted field set, so its values are shown as they are.
    """
    body: dict[str, Any] = {"name": spec.name, "image": spec.image}
    if spec.command:
        body["command"] = list(spec.command)
    if spec.runtime_command:
        body["runtimeCommand"] = spec.runtime_command
    body["env"] = dict(spec.env)
    if spec.HasField("resources"):
        resources: dict[str, Any] = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
        requests = {"cpu": spec.resources.request_cpu, "memory": spec.resources.request_memory}
        resources["requests"] = {key: value for key, value in requests.items() if value}
        body["resources"] = {key: value for key, value in resources.items() if value}
    body["timeoutMs"] = spec.timeout_ms
    body["concurrency"] = spec.concurrency
    body["queueSize"] = spec.queue_size
    body["maxRetries"] = spec.max_retries
    body["executionMode"] = _execution_mode_name(spec)
    body["runtimeMode"] = _RUNTIME_MODE_NAMES.get(spec.runtime_mode, "HTTP")
    if spec.endpoint_url:
        body["endpointUrl"] = spec.endpoint_url
    body["rateLimitPerSecond"] = spec.rate_limit_per_second
    body.update(_kubernetes_fields_to_json(spec))
    for rest_field, proto_field in _SCALING_FIELDS:
        if spec.HasField(proto_field):
            body[rest_field] = getattr(spec, proto_field)
    return body


def summary_to_json(spec: types_pb2.FunctionSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "image": spec.image,
        "concurrency": spec.concurrency,
        "executionMode": _execution_mode_name(spec),
        "createdAt": ms_to_iso(spec.created_at_ms),
    }


def is_json_media_type(content_type: str) -> bool:
    """True for application/json (parameters ignored) and any +json type; empty counts as JSON."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in ("", JSON) or media_type.endswith("+json")


# What `curl -d` sends without -H Content-Type: its data is the raw body, read as JSON here.
FORM_URLENCODED = "application/x-www-form-urlencoded"


def is_json_request_body(content_type: str) -> bool:
    """A request body to read as JSON: a JSON type, none at all, or curl's default form type."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return is_json_media_type(content_type) or media_type == FORM_URLENCODED


def json_or_null(data: bytes) -> bytes:
    """A JSON payload's bytes, ready to splice; an empty payload is JSON null."""
    return data if data.strip() else b"null"


def splice_json(head: dict[str, Any], key: str, value_json: bytes) -> bytes:
    """Serialise head and append one member whose value is already-encoded JSON (no re-parse)."""
    encoded = orjson.dumps(head)
    return b"".join((encoded[:-1], b',"', key.encode(), b'":', value_json, b"}"))


def default_error_code(state: types_pb2.ExecutionState.ValueType) -> str:
    """The code of an ended execution whose error carries none."""
    return codes.TIMEOUT if state == types_pb2.EXECUTION_STATE_TIMEOUT else codes.FUNCTION_ERROR


def error_to_json(error: types_pb2.ErrorInfo, state: types_pb2.ExecutionState.ValueType) -> dict[str, str]:
    return {"code": error.code or default_error_code(state), "message": error.message}


def invocation_error_body(execution_id: str, status: str, error: dict[str, str]) -> bytes:
    return orjson.dumps({"executionId": execution_id, "status": status, "error": error})


def invocation_success_body(execution_id: str, output: types_pb2.Payload) -> bytes:
    """The 200 body for a JSON output, splicing the function's JSON bytes as they are."""
    head = {"executionId": execution_id, "status": "success"}
    return splice_json(head, "output", json_or_null(output.data))


def execution_status_body(status: types_pb2.ExecutionStatus) -> bytes:
    """The REST ExecutionStatus; binary output is base64 with an outputContentType member."""
    head: dict[str, Any] = {
        "executionId": status.execution_id,
        "functionName": status.function_name,
        "status": state_name(status.status),
        "attempts": status.attempts,
        "traceId": status.trace_id,
        "enqueuedAt": ms_to_iso(status.enqueued_at_ms) if status.enqueued_at_ms else None,
    }
    if status.started_at_ms:
        head["startedAt"] = ms_to_iso(status.started_at_ms)
    if status.finished_at_ms:
        head["finishedAt"] = ms_to_iso(status.finished_at_ms)
    if status.HasField("error"):
        head["error"] = error_to_json(status.error, status.status)
    if not status.HasField("output"):
        return orjson.dumps(head)
    output = status.output
    if is_json_media_type(output.content_type):
        return splice_json(head, "output", json_or_null(output.data))
    head["output"] = base64.b64encode(output.data).decode("ascii")
    head["outputContentType"] = output.content_type
    return orjson.dumps(head)


def completion_to_proto(execution_id: str, body: dict[str, Any]) -> scheduler_pb2.CompleteExecutionRequest:
    """A runtime callback body -> CompleteExecutionRequest; raises ValueError naming a bad field."""
    succeeded = _completion_succeeded(body)
    request = scheduler_pb2.CompleteExecutionRequest(execution_id=execution_id, attempt=_attempt(body))
    if not succeeded:
        request.status = types_pb2.EXECUTION_STATE_ERROR
        error = body.get("error")
        if error is not None and not isinstance(error, dict):
            raise ValueError("error: must be an object with code and message")
        error = error or {}
        code, message = error.get("code") or codes.FUNCTION_ERROR, error.get("message", "")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ValueError("error: code and message must be strings")
        if code not in codes.ALL_CODES:
            raise ValueError(f"error.code: {code!r} is not an error code of the contract (docs/errors.md)")
        request.error.code = code
        request.error.message = message
        return request
    request.status = types_pb2.EXECUTION_STATE_SUCCESS
    output_type = body.get("outputContentType")
    if output_type is None or (isinstance(output_type, str) and is_json_media_type(output_type)):
        request.output.data = orjson.dumps(body.get("output"))
        request.output.content_type = JSON
    elif output_type == OCTET_STREAM:
        encoded = body.get("output")
        if not isinstance(encoded, str):
            raise ValueError("output: must be a base64 string when outputContentType is binary")
        try:
            request.output.data = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ValueError("output: is not valid base64") from None
        request.output.content_type = OCTET_STREAM
    else:
        raise ValueError("outputContentType: must be application/json or application/octet-stream")
    return request


def _attempt(body: dict[str, Any]) -> int:
    """The reported attempt; 0 (unfenced) when absent.

    An attempt beyond uint32 cannot exist, so it is sent as the largest one, which the
    scheduler ignores as stale, like any other attempt that is not current.
    """
    attempt = body.get("attempt")
    if attempt is None:
        return 0
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError("attempt: must be a non-negative integer")
    return min(attempt, UINT32_MAX)


def _completion_succeeded(body: dict[str, Any]) -> bool:
    status = body.get("status")
    if status is not None:
        if not isinstance(status, str) or status.lower() not in ("success", "error"):
            raise ValueError("status: must be 'success' or 'error'")
        return status.lower() == "success"
    success = body.get("success")
    if success is not None:
        if not isinstance(success, bool):
            raise ValueError("success: must be a boolean")
        return success
    if isinstance(body.get("error"), dict):
        return False
    # Neither says how it ended ({"error": "x"} included): never read as a success.
    raise ValueError("status: required ('success' or 'error'), or an error object")
