"""The caller side of the function HTTP protocol (docs/function-protocol.md).

The server side lives in the runtime; the two share no code, only the written
contract and its golden vectors (proto/function-protocol/vectors.json), which
tests on both sides replay. Every function process — the Python runtime, the
watchdog around a command, a user's own server, an ENDPOINT — is judged here.
"""

from __future__ import annotations

import orjson

from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import (
    CONTENT_TYPE_BYTES,
    CONTENT_TYPE_JSON,
    Outcome,
    OutcomeKind,
    crash,
    function_error,
    success,
)
from nanofaas_scheduler.dispatch.base import Attempt

INVOKE_PATH = "/invoke"
HEALTH_PATH = "/health"

HEADER_CONTENT_TYPE = "Content-Type"
HEADER_EXECUTION_ID = "X-Execution-Id"
HEADER_ATTEMPT = "X-Attempt"
HEADER_TRACE_ID = "X-Trace-Id"
HEADER_TRACEPARENT = "traceparent"
HEADER_DEADLINE_MS = "X-Deadline-Ms"
HEADER_FUNCTION_NAME = "X-Function-Name"
HEADER_COMPLETION_TOKEN = "X-Completion-Token"
# The pod a Kubernetes request is meant for (its uid): any other process refuses it (503 CRASH,
# a message starting with MISDIRECTED), so a reused pod IP never runs another function's request.
HEADER_POD_UID = "X-Pod-Uid"
MISDIRECTED = "misdirected:"

NOT_VALID_JSON = "output is not valid JSON"
_WHITESPACE = b" \t\r\n"
# What a 502/503 error body may say instead of the generic CRASH.
_CRASH_CODES = frozenset({codes.CRASH, codes.START_FAILED})


def request_headers(attempt: Attempt) -> dict[str, str]:
    headers = {
        HEADER_CONTENT_TYPE: attempt.request.content_type,
        HEADER_EXECUTION_ID: attempt.execution_id,
        HEADER_TRACE_ID: attempt.trace_id,
        HEADER_DEADLINE_MS: str(int(attempt.deadline_epoch * 1000)),
        HEADER_FUNCTION_NAME: attempt.function_name,
        HEADER_ATTEMPT: str(attempt.number),
    }
    if attempt.traceparent:
        headers[HEADER_TRACEPARENT] = attempt.traceparent
    if attempt.completion_token:  # only this attempt's runtime gets it (docs/security.md)
        headers[HEADER_COMPLETION_TOKEN] = attempt.completion_token
    return headers


def request_body(attempt: Attempt) -> bytes:
    """JSON input is spliced in as received (never re-encoded); bytes input is the body itself."""
    request = attempt.request
    if request.content_type != CONTENT_TYPE_JSON:
        return request.data
    return b'{"input":' + (request.data or b"null") + b',"metadata":' + orjson.dumps(request.metadata) + b"}"


def decode_response(status: int, content_type: str | None, body: bytes) -> Outcome:
    """Judge a function's HTTP answer by the protocol's response table."""
    if status == 200:
        return _decode_output(_media_type(content_type), body)
    code, message = _error_body(body)
    if status == 500:
        return function_error(message or f"function answered HTTP {status}")
    if status in (502, 503):
        return crash(
            message or f"function answered HTTP {status}", code if code in _CRASH_CODES else codes.CRASH
        )
    if status == 504:
        if code == codes.TIMEOUT:
            return Outcome(OutcomeKind.TIMEOUT, error_code=codes.TIMEOUT, message=message)
        return crash(message or f"function answered HTTP {status}")
    return function_error(f"function answered HTTP {status}")


def _media_type(content_type: str | None) -> str:
    return content_type.split(";", 1)[0].strip().lower() if content_type else ""


def _decode_output(media_type: str, body: bytes) -> Outcome:
    is_json = media_type == CONTENT_TYPE_JSON or media_type.endswith("+json")
    if media_type and not is_json:
        return success(body, CONTENT_TYPE_BYTES)
    value = body.strip(_WHITESPACE) if body and (body[0] in _WHITESPACE or body[-1] in _WHITESPACE) else body
    value = value or b"null"
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        if media_type:
            return function_error(NOT_VALID_JSON)
        return success(body, CONTENT_TYPE_BYTES)  # no declared type and not JSON: raw bytes
    return success(value, CONTENT_TYPE_JSON)


def _error_body(body: bytes) -> tuple[str, str]:
    """(code, message) of a protocol error body `{"error": {...}}`, or ("", "") if it is not one."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return "", ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else ""), (message if isinstance(message, str) else "")
