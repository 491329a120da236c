"""The HTTP function protocol (docs/architecture.md), shared by the runtime server and its clients.

Clients (the scheduler's dispatcher) build requests with `encode_request` and turn
whatever a function process answered into an `Outcome` with `decode_http_response`,
so a user's own server, an endpoint and the Python runtime are judged identically.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from nanofaas_runtime.outcome import (
    CONTENT_TYPE_BYTES,
    CONTENT_TYPE_JSON,
    Outcome,
    crash,
    function_error,
    success,
)

INVOKE_PATH = "/invoke"
HEALTH_PATH = "/health"

HEADER_CONTENT_TYPE = "Content-Type"
HEADER_EXECUTION_ID = "X-Execution-Id"
HEADER_TRACE_ID = "X-Trace-Id"
HEADER_TRACEPARENT = "traceparent"
HEADER_DEADLINE_MS = "X-Deadline-Ms"
HEADER_FUNCTION_NAME = "X-Function-Name"

ERROR_INVALID_REQUEST = "INVALID_REQUEST"
NOT_VALID_JSON = "output is not valid JSON"

_RETRYABLE_STATUSES = frozenset({502, 503, 504})
_WHITESPACE = b" \t\r\n"


def encode_request(input_json: bytes, metadata: Mapping[str, str]) -> bytes:
    """Build the JSON request body, splicing the (already valid) input JSON in without re-parsing it.

    Empty input is sent as `null` so the body stays valid JSON.
    """
    return b'{"input":' + (input_json or b"null") + b',"metadata":' + orjson.dumps(dict(metadata)) + b"}"


def media_type(content_type: str | None) -> str:
    """The bare, lower-cased media type of a Content-Type header value ("" when absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_media_type(value: str) -> bool:
    return value == CONTENT_TYPE_JSON or value.endswith("+json")


def strip_json(body: bytes) -> bytes:
    """Trim surrounding whitespace without copying in the common case of none."""
    if body and (body[0] in _WHITESPACE or body[-1] in _WHITESPACE):
        return body.strip(_WHITESPACE)
    return body


def is_valid_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def decode_http_response(status: int, content_type: str | None, body: bytes) -> Outcome:
    """Classify a function process's HTTP answer.

    200 is the output; 500 carrying `{"error": {...}}` is the handler's error;
    502/503/504 are infrastructure failures (CRASH, retried); anything else is a
    FUNCTION_ERROR because the function itself answered it.
    """
    if status == 200:
        return _decode_success(media_type(content_type), body)
    if status in _RETRYABLE_STATUSES:
        return crash(f"function answered HTTP {status}")
    if status == 500:
        message = _error_message(body)
        if message is not None:
            return function_error(message)
    return function_error(f"function answered HTTP {status}")


def _decode_success(kind: str, body: bytes) -> Outcome:
    if kind and not is_json_media_type(kind):
        # octet-stream or any other declared non-JSON type: the raw bytes are the output.
        return success(body, CONTENT_TYPE_BYTES)
    value = strip_json(body) or b"null"
    if is_valid_json(value):
        return success(value, CONTENT_TYPE_JSON)
    if kind:
        return function_error(NOT_VALID_JSON)
    # No Content-Type and not JSON: hand it over as raw bytes.
    return success(body, CONTENT_TYPE_BYTES)


def _error_message(body: bytes) -> str | None:
    """The message of a protocol error body `{"error": {"message": ...}}`, or None if it is not one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    return message if isinstance(message, str) else None


def encode_error(code: str, message: str, error_type: str | None = None) -> bytes:
    """The JSON error body the runtime answers with (`type` only for handler exceptions)."""
    error: dict[str, str] = {"code": code, "message": message}
    if error_type is not None:
        error["type"] = error_type
    return orjson.dumps({"error": error})


def trace_id_from_traceparent(value: str) -> str:
    """The trace id of a W3C `traceparent` (version-traceid-parentid-flags), or "" if malformed."""
    parts = value.strip().split("-")
    if len(parts) >= 4 and len(parts[1]) == 32:
        return parts[1].lower()
    return ""
