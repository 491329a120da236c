"""Units of the HTTP function protocol shared with the scheduler."""

from __future__ import annotations

import orjson
import pytest

from nanofaas_runtime import protocol
from nanofaas_runtime.outcome import Outcome, OutcomeKind


def test_encode_request_splices_input_verbatim() -> None:
    body = protocol.encode_request(b'{"b": 1,  "a": [1.50]}', {"k": "v"})
    assert body == b'{"input":{"b": 1,  "a": [1.50]},"metadata":{"k":"v"}}'
    assert orjson.loads(body) == {"input": {"b": 1, "a": [1.5]}, "metadata": {"k": "v"}}


def test_encode_request_empty_input_is_null() -> None:
    assert orjson.loads(protocol.encode_request(b"", {})) == {"input": None, "metadata": {}}


def test_decode_200_json() -> None:
    outcome = protocol.decode_http_response(200, "application/json; charset=utf-8", b' {"x": 1}\n')
    assert outcome == Outcome(OutcomeKind.SUCCESS, output=b'{"x": 1}', content_type="application/json")


def test_decode_200_bytes() -> None:
    outcome = protocol.decode_http_response(200, "application/octet-stream", b"\x00raw ")
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.output == b"\x00raw "
    assert outcome.content_type == "application/octet-stream"


def test_decode_200_invalid_json_is_function_error() -> None:
    outcome = protocol.decode_http_response(200, "application/json", b"{nope")
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR
    assert outcome.error_code == "FUNCTION_ERROR"
    assert outcome.message == "output is not valid JSON"


def test_decode_200_without_content_type_sniffs() -> None:
    assert protocol.decode_http_response(200, None, b"[1]").content_type == "application/json"
    raw = protocol.decode_http_response(200, None, b"plain text")
    assert (raw.kind, raw.content_type, raw.output) == (
        OutcomeKind.SUCCESS,
        "application/octet-stream",
        b"plain text",
    )
    assert protocol.decode_http_response(200, None, b"").output == b"null"


def test_decode_500_with_error_body() -> None:
    body = protocol.encode_error("FUNCTION_ERROR", "bad input", "ValueError")
    assert orjson.loads(body) == {
        "error": {"code": "FUNCTION_ERROR", "message": "bad input", "type": "ValueError"}
    }
    outcome = protocol.decode_http_response(500, "application/json", body)
    assert outcome == Outcome(OutcomeKind.FUNCTION_ERROR, error_code="FUNCTION_ERROR", message="bad input")


def test_decode_500_without_error_body() -> None:
    outcome = protocol.decode_http_response(500, "text/html", b"<h1>oops</h1>")
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR
    assert outcome.message == "function answered HTTP 500"


@pytest.mark.parametrize("status", [502, 503, 504])
def test_decode_gateway_statuses_are_crashes(status: int) -> None:
    outcome = protocol.decode_http_response(status, "text/plain", b"")
    assert outcome.kind is OutcomeKind.CRASH
    assert outcome.error_code == "CRASH"
    assert str(status) in outcome.message


@pytest.mark.parametrize("status", [201, 204, 400, 404, 429])
def test_decode_other_statuses_are_function_errors(status: int) -> None:
    outcome = protocol.decode_http_response(status, "application/json", b"{}")
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR
    assert outcome.message == f"function answered HTTP {status}"


def test_header_names_and_paths() -> None:
    assert (protocol.INVOKE_PATH, protocol.HEALTH_PATH) == ("/invoke", "/health")
    assert protocol.HEADER_EXECUTION_ID == "X-Execution-Id"
    assert protocol.HEADER_TRACE_ID == "X-Trace-Id"
    assert protocol.HEADER_TRACEPARENT == "traceparent"
    assert protocol.HEADER_DEADLINE_MS == "X-Deadline-Ms"
    assert protocol.HEADER_FUNCTION_NAME == "X-Function-Name"


def test_trace_id_from_traceparent() -> None:
    value = "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"
    assert protocol.trace_id_from_traceparent(value) == "0af7651916cd43dd8448eb211c80319c"
    assert protocol.trace_id_from_traceparent("garbage") == ""


def test_outcome_is_frozen() -> None:
    outcome = Outcome(OutcomeKind.TIMEOUT, error_code="TIMEOUT")
    with pytest.raises(AttributeError):
        outcome.message = "x"  # type: ignore[misc]
    assert OutcomeKind("crash") is OutcomeKind.CRASH
