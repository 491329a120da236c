"""The server side of the function HTTP protocol (docs/function-protocol.md).

Names and small helpers the runtime's HTTP server and the watchdog share. The
caller side (encoding requests, judging responses) lives in the scheduler: the
two sides share only the written protocol and its golden vectors, no code.
"""

from __future__ import annotations

import orjson

from nanofaas_runtime.outcome import CONTENT_TYPE_JSON

INVOKE_PATH = "/invoke"
HEALTH_PATH = "/health"

HEADER_EXECUTION_ID = "X-Execution-Id"
HEADER_TRACE_ID = "X-Trace-Id"
HEADER_TRACEPARENT = "traceparent"
HEADER_DEADLINE_MS = "X-Deadline-Ms"
HEADER_FUNCTION_NAME = "X-Function-Name"
HEADER_ATTEMPT = "X-Attempt"
# The pod the caller means (its uid); a process that is not that pod refuses the request.
HEADER_POD_UID = "X-Pod-Uid"
# Where a process learns which pod it is (the Kubernetes downward API: metadata.uid).
POD_UID_ENV = "NANOFAAS_POD_UID"

ERROR_INVALID_REQUEST = "INVALID_REQUEST"
NOT_VALID_JSON = "output is not valid JSON"

_WHITESPACE = b" \t\r\n"


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


def parse_attempt(value: str) -> int:
    """An attempt number (X-Attempt, NANOFAAS_ATTEMPT): plain decimal digits; ValueError otherwise."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"not a non-negative integer: {value!r}")
    return int(value)


def parse_deadline(value: bytes | None) -> float | None:
    """X-Deadline-Ms (Unix epoch milliseconds) as epoch seconds, None when absent; ValueError otherwise."""
    if not value:
        return None
    try:
        return int(value) / 1000.0
    except (ValueError, OverflowError):
        raise ValueError(f"{HEADER_DEADLINE_MS}: must be unix epoch milliseconds") from None


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
