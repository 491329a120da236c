"""Execution status and the completion callback through the real app and a fake scheduler."""

from __future__ import annotations

import base64
from typing import Any

import grpc
import orjson
import pytest

from nanofaas.v1 import types_pb2

from .gateway_harness import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

ENQUEUED_MS = 1_714_564_800_000  # 2024-05-01T12:00:00.000Z


def execution(**changes: Any) -> types_pb2.ExecutionStatus:
    status = types_pb2.ExecutionStatus(
        execution_id="ex-1",
        function_name="echo",
        status=types_pb2.EXECUTION_STATE_QUEUED,
        attempts=0,
        trace_id="trace-9",
        enqueued_at_ms=ENQUEUED_MS,
    )
    for key, value in changes.items():
        if isinstance(value, types_pb2.Payload | types_pb2.ErrorInfo):
            getattr(status, key).CopyFrom(value)
        else:
            setattr(status, key, value)
    return status


async def get_status(gateway: Gateway, execution_id: str = "ex-1") -> tuple[int, Any]:
    async with gateway.session.get(gateway.url(f"/v1/executions/{execution_id}")) as response:
        return response.status, await response.json()


async def test_queued_execution_omits_unset_fields(gateway: Gateway) -> None:
    gateway.scheduler.executions["ex-1"] = execution()
    assert await get_status(gateway) == (
        200,
        {
            "executionId": "ex-1",
            "functionName": "echo",
            "status": "queued",
            "attempts": 0,
            "traceId": "trace-9",
            "enqueuedAt": "2024-05-01T12:00:00.000Z",
        },
    )


async def test_finished_execution_has_times_and_spliced_output(gateway: Gateway) -> None:
    gateway.scheduler.executions["ex-1"] = execution(
        status=types_pb2.EXECUTION_STATE_SUCCESS,
        attempts=2,
        started_at_ms=ENQUEUED_MS + 5,
        finished_at_ms=ENQUEUED_MS + 1_250,
        output=types_pb2.Payload(data=b'{"ok": true}', content_type="application/json"),
    )
    async with gateway.session.get(gateway.url("/v1/executions/ex-1")) as response:
        assert response.status == 200
        raw = await response.read()
    assert raw.endswith(b',"output":{"ok": true}}')
    status, body = await get_status(gateway)
    assert status == 200
    assert body["status"] == "success"
    assert body["attempts"] == 2
    assert body["startedAt"] == "2024-05-01T12:00:00.005Z"
    assert body["finishedAt"] == "2024-05-01T12:00:01.250Z"
    assert body["output"] == {"ok": True}
    assert "error" not in body
    assert "outputContentType" not in body


async def test_binary_output_is_base64_with_content_type(gateway: Gateway) -> None:
    gateway.scheduler.executions["ex-1"] = execution(
        status=types_pb2.EXECUTION_STATE_SUCCESS,
        output=types_pb2.Payload(data=b"\x00\x01\xfe", content_type="application/octet-stream"),
    )
    status, body = await get_status(gateway)
    assert status == 200
    assert base64.b64decode(body["output"]) == b"\x00\x01\xfe"
    assert body["outputContentType"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("state", "name"),
    [
        (types_pb2.EXECUTION_STATE_RUNNING, "running"),
        (types_pb2.EXECUTION_STATE_ERROR, "error"),
        (types_pb2.EXECUTION_STATE_TIMEOUT, "timeout"),
    ],
)
async def test_states_are_lowercase_and_errors_shown(
    gateway: Gateway, state: types_pb2.ExecutionState.ValueType, name: str
) -> None:
    error = types_pb2.ErrorInfo(code="FUNCTION_ERROR", message="boom")
    gateway.scheduler.executions["ex-1"] = execution(status=state, error=error)
    status, body = await get_status(gateway)
    assert status == 200
    assert body["status"] == name
    assert body["error"] == {"code": "FUNCTION_ERROR", "message": "boom"}


@pytest.mark.parametrize(
    ("state", "code"),
    [(types_pb2.EXECUTION_STATE_ERROR, "FUNCTION_ERROR"), (types_pb2.EXECUTION_STATE_TIMEOUT, "TIMEOUT")],
)
async def test_error_without_a_code_gets_the_default_of_its_state(
    gateway: Gateway, state: types_pb2.ExecutionState.ValueType, code: str
) -> None:
    gateway.scheduler.executions["ex-1"] = execution(status=state, error=types_pb2.ErrorInfo(message="m"))
    _, body = await get_status(gateway)
    assert body["error"] == {"code": code, "message": "m"}


async def test_unknown_execution_is_404(gateway: Gateway) -> None:
    status, body = await get_status(gateway, "nope")
    assert status == 404
    assert body == {"error": {"code": "NOT_FOUND", "message": "execution 'nope' not found"}}


TOKEN = "attempt-token"


async def post_complete(
    gateway: Gateway, body: Any, execution_id: str = "ex-1", token: str | None = TOKEN
) -> tuple[int, bytes]:
    url = gateway.url(f"/v1/internal/executions/{execution_id}:complete")
    headers = {} if token is None else {"X-Completion-Token": token}
    async with gateway.session.post(url, json=body, headers=headers) as response:
        return response.status, await response.read()


async def test_complete_success_is_204(gateway: Gateway) -> None:
    gateway.scheduler.executions["ex-1"] = execution(status=types_pb2.EXECUTION_STATE_RUNNING)
    assert await post_complete(gateway, {"status": "success", "output": {"r": [1]}}) == (204, b"")
    sent = gateway.scheduler.completions[-1]
    assert sent.completion_token == TOKEN  # the scheduler judges it
    assert sent.execution_id == "ex-1"
    assert sent.status == types_pb2.EXECUTION_STATE_SUCCESS
    assert (sent.output.data, sent.output.content_type) == (b'{"r":[1]}', "application/json")


@pytest.mark.parametrize(
    "body",
    [
        {"status": "error", "error": {"code": "FUNCTION_ERROR", "message": "bad"}},
        {"status": "ERROR", "error": {"code": "FUNCTION_ERROR", "message": "bad"}},
        {"success": False, "error": {"code": "FUNCTION_ERROR", "message": "bad"}},
        {"error": {"code": "FUNCTION_ERROR", "message": "bad"}},
    ],
)
async def test_complete_error_forms(gateway: Gateway, body: dict[str, Any]) -> None:
    gateway.scheduler.executions["ex-1"] = execution()
    status, _ = await post_complete(gateway, body)
    assert status == 204
    sent = gateway.scheduler.completions[-1]
    assert sent.status == types_pb2.EXECUTION_STATE_ERROR
    assert (sent.error.code, sent.error.message) == ("FUNCTION_ERROR", "bad")


@pytest.mark.parametrize(("attempt", "sent"), [(None, 0), (0, 0), (3, 3), (2**40, 2**32 - 1)])
async def test_complete_carries_the_attempt(gateway: Gateway, attempt: int | None, sent: int) -> None:
    gateway.scheduler.executions["ex-1"] = execution(status=types_pb2.EXECUTION_STATE_RUNNING)
    body: dict[str, Any] = {"status": "success", "output": 1}
    if attempt is not None:
        body["attempt"] = attempt
    assert (await post_complete(gateway, body))[0] == 204
    assert gateway.scheduler.completions[-1].attempt == sent


@pytest.mark.parametrize("code", ["INVALID_REQUEST", "START_FAILED", "CRASH"])
async def test_complete_accepts_every_code_of_the_contract(gateway: Gateway, code: str) -> None:
    gateway.scheduler.executions["ex-1"] = execution()
    body = {"status": "error", "error": {"code": code, "message": "m"}}
    assert (await post_complete(gateway, body))[0] == 204
    assert gateway.scheduler.completions[-1].error.code == code


@pytest.mark.parametrize(
    "body", [{"success": True, "output": 5}, {"status": "success", "output": 5, "error": None}]
)
async def test_complete_success_forms(gateway: Gateway, body: dict[str, Any]) -> None:
    gateway.scheduler.executions["ex-1"] = execution()
    status, _ = await post_complete(gateway, body)
    assert status == 204
    sent = gateway.scheduler.completions[-1]
    assert sent.status == types_pb2.EXECUTION_STATE_SUCCESS
    assert sent.output.data == b"5"


async def test_complete_binary_output(gateway: Gateway) -> None:
    gateway.scheduler.executions["ex-1"] = execution()
    body = {
        "status": "success",
        "output": base64.b64encode(b"\x00bin").decode(),
        "outputContentType": "application/octet-stream",
    }
    assert (await post_complete(gateway, body))[0] == 204
    sent = gateway.scheduler.completions[-1]
    assert (sent.output.data, sent.output.content_type) == (b"\x00bin", "application/octet-stream")


async def test_complete_unknown_execution_is_404(gateway: Gateway) -> None:
    status, raw = await post_complete(gateway, {"status": "success", "output": 1}, "ghost")
    assert status == 404
    assert b'"NOT_FOUND"' in raw


@pytest.mark.parametrize(
    "body",
    [
        {"status": "maybe"},
        {"success": "yes"},
        {"status": "error", "error": "boom"},
        {"status": "error", "error": {"code": 1}},
        {"status": "error", "error": {"code": "MY_OWN_CODE", "message": "m"}},
        {"status": "error", "error": {"code": "UNSPECIFIED"}},
        {"status": "success", "attempt": -1},
        {"status": "success", "attempt": "1"},
        {"status": "success", "attempt": True},
        {"status": "success", "attempt": 1.0},
        {"status": "success", "output": "!!", "outputContentType": "application/octet-stream"},
        {"status": "success", "outputContentType": "text/plain"},
        [1, 2],
        # Finding 2 of issue 17: these once ended the execution as a success with null output.
        {"error": "x"},
        {},
        {"output": 5},
        {"output": 5, "error": None},
    ],
)
async def test_complete_malformed_body_is_422_and_ends_nothing(gateway: Gateway, body: Any) -> None:
    gateway.scheduler.executions["ex-1"] = execution()
    status, raw = await post_complete(gateway, body)
    assert status == 422
    assert b'"VALIDATION_ERROR"' in raw
    assert gateway.scheduler.completions == []


async def test_complete_without_a_completion_token_is_401(gateway: Gateway) -> None:
    """API authentication is off here: nobody may complete without the attempt's token."""
    gateway.scheduler.executions["ex-1"] = execution(status=types_pb2.EXECUTION_STATE_RUNNING)
    for token in (None, "", "  "):
        status, raw = await post_complete(
            gateway, {"status": "success", "output": {"forged": True}}, token=token
        )
        assert status == 401
        assert orjson.loads(raw)["error"]["code"] == "UNAUTHENTICATED"
    assert gateway.scheduler.completions == []


@pytest.mark.parametrize(
    ("grpc_code", "http_status", "code"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, 403, "PERMISSION_DENIED"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "UNAUTHENTICATED"),
    ],
)
async def test_a_refused_completion_token_is_a_clear_json_error(
    gateway: Gateway, grpc_code: grpc.StatusCode, http_status: int, code: str
) -> None:
    gateway.scheduler.executions["ex-1"] = execution()
    gateway.scheduler.failures.fail("CompleteExecution", grpc_code, "completion token: not the token")
    status, raw = await post_complete(gateway, {"status": "success", "output": 1}, token="wrong-token")
    assert status == http_status
    assert orjson.loads(raw) == {"error": {"code": code, "message": "completion token: not the token"}}
    assert b"wrong-token" not in raw


async def test_complete_needs_a_json_body(gateway: Gateway) -> None:
    url = gateway.url("/v1/internal/executions/ex-1:complete")
    token = {"X-Completion-Token": TOKEN}
    async with gateway.session.post(
        url, data=b"x", headers={"Content-Type": "text/plain", **token}
    ) as response:
        assert response.status == 415
    json_type = {"Content-Type": "application/json", **token}
    async with gateway.session.post(url, data=b"", headers=json_type) as response:
        assert response.status == 422


async def test_scheduler_unavailable_on_get_execution_is_503(gateway: Gateway) -> None:
    gateway.scheduler.failures.fail("GetExecution", grpc.StatusCode.UNAVAILABLE, "shutting down")
    status, body = await get_status(gateway)
    assert status == 503
    assert body == {"error": {"code": "UNAVAILABLE", "message": "shutting down"}}
