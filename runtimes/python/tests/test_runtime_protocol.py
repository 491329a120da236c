"""Units of the server side of the HTTP function protocol."""

from __future__ import annotations

import orjson
import pytest

from nanofaas_runtime import protocol
from nanofaas_runtime.outcome import Outcome, OutcomeKind


def test_encode_error_carries_type_only_when_given() -> None:
    assert orjson.loads(protocol.encode_error("FUNCTION_ERROR", "bad input", "ValueError")) == {
        "error": {"code": "FUNCTION_ERROR", "message": "bad input", "type": "ValueError"}
    }
    assert orjson.loads(protocol.encode_error("TIMEOUT", "timed out")) == {
        "error": {"code": "TIMEOUT", "message": "timed out"}
    }


@pytest.mark.parametrize(
    ("header", "kind", "json"),
    [
        ("application/json; charset=utf-8", "application/json", True),
        ("Application/Problem+JSON", "application/problem+json", True),
        ("application/octet-stream", "application/octet-stream", False),
        (None, "", False),
    ],
)
def test_media_type(header: str | None, kind: str, json: bool) -> None:
    assert protocol.media_type(header) == kind
    assert protocol.is_json_media_type(kind) is json


def test_strip_json_and_is_valid_json() -> None:
    assert protocol.strip_json(b' {"x": 1}\n') == b'{"x": 1}'
    assert protocol.strip_json(b"[1]") == b"[1]"
    assert protocol.is_valid_json(b"null")
    assert not protocol.is_valid_json(b"{nope")


def test_header_names_and_paths() -> None:
    assert (protocol.INVOKE_PATH, protocol.HEALTH_PATH) == ("/invoke", "/health")
    assert protocol.HEADER_EXECUTION_ID == "X-Execution-Id"
    assert protocol.HEADER_TRACE_ID == "X-Trace-Id"
    assert protocol.HEADER_TRACEPARENT == "traceparent"
    assert protocol.HEADER_DEADLINE_MS == "X-Deadline-Ms"
    assert protocol.HEADER_FUNCTION_NAME == "X-Function-Name"
    assert protocol.HEADER_ATTEMPT == "X-Attempt"


def test_trace_id_from_traceparent() -> None:
    value = "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"
    assert protocol.trace_id_from_traceparent(value) == "0af7651916cd43dd8448eb211c80319c"
    assert protocol.trace_id_from_traceparent("garbage") == ""


def test_outcome_is_frozen() -> None:
    outcome = Outcome(OutcomeKind.TIMEOUT, error_code="TIMEOUT")
    with pytest.raises(AttributeError):
        outcome.message = "x"  # type: ignore[misc]
    assert OutcomeKind("crash") is OutcomeKind.CRASH


def test_parse_attempt_takes_plain_digits_only() -> None:
    assert protocol.parse_attempt("3") == 3
    assert protocol.parse_attempt(" 0 ") == 0
    for bad in ("", "-1", "+2", "1.0", "two", "\u00b2", "1_0"):
        with pytest.raises(ValueError):
            protocol.parse_attempt(bad)
