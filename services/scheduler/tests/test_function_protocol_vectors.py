"""The caller side of the function protocol replays the contract's golden vectors.

The same file is replayed by the runtime's tests from the function side
(runtimes/python/tests/test_runtime_protocol_vectors.py); together they keep
both sides of docs/function-protocol.md identical without sharing code.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.core.outcome import CONTENT_TYPE_BYTES, Outcome
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.function_protocol import decode_response, request_body, request_headers

from .conftest import make_spec

VECTORS: dict[str, Any] = orjson.loads(
    (Path(__file__).resolve().parents[3] / "proto" / "function-protocol" / "vectors.json").read_bytes()
)


def _bytes(holder: dict[str, Any], field: str) -> bytes:
    if f"{field}Base64" in holder:
        return base64.b64decode(holder[f"{field}Base64"])
    return str(holder.get(field, "")).encode()


def _attempt(invocation: dict[str, Any]) -> Attempt:
    content_type = invocation["contentType"]
    return Attempt(
        execution_id=invocation["executionId"],
        function_name=invocation["functionName"],
        spec=make_spec(invocation["functionName"]),
        request=Request(_bytes(invocation, "input"), content_type, invocation["metadata"]),
        number=invocation["attempt"],
        deadline_epoch=invocation["deadlineMs"] / 1000,
        timeout=1.0,
        timeout_ms=1000,
        trace_id=invocation["traceId"],
        traceparent=invocation["traceparent"],
        completion_token=invocation.get("completionToken", ""),
    )


@pytest.mark.parametrize("vector", VECTORS["requests"], ids=lambda v: v["name"])
def test_every_invocation_encodes_to_its_request(vector: dict[str, Any]) -> None:
    attempt = _attempt(vector["invocation"])
    expected = vector["http"]
    assert request_headers(attempt) == expected["headers"]
    assert request_body(attempt) == _bytes(expected, "body")


def _response_body(response: dict[str, Any]) -> bytes:
    if "json" in response:
        return orjson.dumps(response["json"])
    return _bytes(response, "body")


def _check(outcome: Outcome, expected: dict[str, Any]) -> None:
    assert outcome.kind.value == expected["kind"]
    assert outcome.error_code == expected.get("code", "")
    if "messageStartsWith" in expected:
        assert outcome.message.startswith(expected["messageStartsWith"])
    elif expected["kind"] != "success":
        assert outcome.message == expected["message"]
    if expected["kind"] == "success":
        assert outcome.content_type == expected["contentType"]
        if expected["contentType"] == CONTENT_TYPE_BYTES:
            assert outcome.output == base64.b64decode(expected["outputBase64"])
        else:
            assert orjson.loads(outcome.output) == expected["outputJson"]


@pytest.mark.parametrize("vector", VECTORS["responses"], ids=lambda v: v["name"])
def test_every_response_decodes_to_its_outcome(vector: dict[str, Any]) -> None:
    response = vector["response"]
    body = response.get("json")
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "messageStartsWith" in error:
        # The function side's message carries a path or a duration: the prefix stands in for it.
        message = {"code": error["code"], "message": error["messageStartsWith"]}
        response = {**response, "json": {"error": message}}
    outcome = decode_response(response["status"], response["contentType"], _response_body(response))
    _check(outcome, vector["outcome"])


def test_vectors_cover_every_outcome_kind_and_status_class() -> None:
    kinds = {vector["outcome"]["kind"] for vector in VECTORS["responses"]}
    statuses = {vector["response"]["status"] for vector in VECTORS["responses"]}
    assert kinds == {"success", "function_error", "crash", "timeout"}
    assert {200, 400, 404, 500, 502, 503, 504} <= statuses
