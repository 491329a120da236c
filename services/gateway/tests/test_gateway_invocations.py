"""Sync invoke and async enqueue through the real app and a fake gRPC scheduler."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import orjson
import pytest

from nanofaas.v1 import scheduler_pb2, types_pb2

from .gateway_harness import TEST_DEADLINE_MARGIN_S, Gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

INVOKE = "/v1/functions/echo:invoke"
ENQUEUE = "/v1/functions/echo:enqueue"
# gRPC sends deadlines as a coarse timeout value that may be rounded up by up to a second.
GRPC_TIMEOUT_ROUNDING_S = 1.0


def canned(
    status: types_pb2.ExecutionState.ValueType,
    *,
    output: bytes = b"",
    content_type: str = "application/json",
    code: str = "",
    message: str = "",
) -> scheduler_pb2.InvokeResponse:
    response = scheduler_pb2.InvokeResponse(execution_id="e-1", status=status)
    if output or content_type != "application/json":
        response.output.data = output
        response.output.content_type = content_type
    if code or message:
        response.error.code = code
        response.error.message = message
    return response


async def test_invoke_success_returns_output_and_execution_id(gateway: Gateway) -> None:
    async with gateway.session.post(gateway.url(INVOKE), json={"input": {"x": [1, 2]}}) as response:
        assert response.status == 200
        assert response.headers["X-Execution-Id"] == "exec-echo"
        assert response.content_type == "application/json"
        body = await response.json()
    assert body == {"executionId": "exec-echo", "status": "success", "output": {"x": [1, 2]}}
    sent = gateway.scheduler.invokes[-1]
    assert sent.function_name == "echo"
    assert sent.input.content_type == "application/json"
    assert sent.input.data == b'{"x":[1,2]}'


async def test_invoke_splices_output_bytes_unchanged(gateway: Gateway) -> None:
    raw_output = b'{"b": 1.50, "a": [ true ]}'
    gateway.scheduler.invoke_result = lambda _: canned(types_pb2.EXECUTION_STATE_SUCCESS, output=raw_output)
    async with gateway.session.post(gateway.url(INVOKE), json={"input": None}) as response:
        assert response.status == 200
        text = await response.read()
    assert text == b'{"executionId":"e-1","status":"success","output":' + raw_output + b"}"


async def test_invoke_with_empty_output_is_null(gateway: Gateway) -> None:
    gateway.scheduler.invoke_result = lambda _: canned(types_pb2.EXECUTION_STATE_SUCCESS)
    async with gateway.session.post(gateway.url(INVOKE), json={}) as response:
        assert response.status == 200
        assert (await response.json())["output"] is None


@pytest.mark.parametrize(
    ("body", "expected_input"),
    [
        (b"", b"null"),
        (b"{}", b"null"),
        (b'{"input": "text"}', b'"text"'),
        (b'{"input": [1, {"k": null}], "extra": 1}', b'[1,{"k":null}]'),
        (b'{"input": 3.5, "metadata": null}', b"3.5"),
    ],
)
async def test_json_input_is_sent_compact(gateway: Gateway, body: bytes, expected_input: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    async with gateway.session.post(gateway.url(INVOKE), data=body, headers=headers) as response:
        assert response.status == 200
    assert gateway.scheduler.invokes[-1].input.data == expected_input


async def test_body_without_content_type_is_json(gateway: Gateway) -> None:
    async with gateway.session.post(
        gateway.url(INVOKE), data=b'{"input": 7}', skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 200
        assert (await response.json())["output"] == 7


async def test_metadata_is_passed(gateway: Gateway) -> None:
    body = {"input": 1, "metadata": {"tenant": "a", "k": "v"}}
    async with gateway.session.post(gateway.url(INVOKE), json=body) as response:
        assert response.status == 200
    assert dict(gateway.scheduler.invokes[-1].metadata) == {"tenant": "a", "k": "v"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"input"', "JSON object"),
        (b'{"input": 1, "metadata": {"a": 1}}', "metadata"),
        (b'{"input": 1, "metadata": ["a"]}', "metadata"),
    ],
)
@pytest.mark.parametrize("path", [INVOKE, ENQUEUE])
async def test_bad_json_body_is_400(gateway: Gateway, path: str, body: bytes, fragment: str) -> None:
    headers = {"Content-Type": "application/json"}
    async with gateway.session.post(gateway.url(path), data=body, headers=headers) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert fragment in error["message"]
    assert gateway.scheduler.invokes == gateway.scheduler.enqueues == []


@pytest.mark.parametrize("path", [INVOKE, ENQUEUE])
async def test_unsupported_content_type_is_415(gateway: Gateway, path: str) -> None:
    headers = {"Content-Type": "text/plain"}
    async with gateway.session.post(gateway.url(path), data=b"hello", headers=headers) as response:
        assert response.status == 415
        assert (await response.json())["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert gateway.scheduler.invokes == gateway.scheduler.enqueues == []


async def test_octet_stream_in_and_out(gateway: Gateway) -> None:
    payload = bytes(range(256)) * 3
    headers = {"Content-Type": "application/octet-stream"}
    async with gateway.session.post(gateway.url(INVOKE), data=payload, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/octet-stream"
        assert response.headers["X-Execution-Id"] == "exec-echo"
        assert await response.read() == payload
    sent = gateway.scheduler.invokes[-1]
    assert sent.input.content_type == "application/octet-stream"
    assert sent.input.data == payload
    assert dict(sent.metadata) == {}


async def test_json_in_binary_out(gateway: Gateway) -> None:
    gateway.scheduler.invoke_result = lambda _: canned(
        types_pb2.EXECUTION_STATE_SUCCESS, output=b"\x00\xffraw", content_type="application/octet-stream"
    )
    async with gateway.session.post(gateway.url(INVOKE), json={"input": "x"}) as response:
        assert response.status == 200
        assert response.content_type == "application/octet-stream"
        assert await response.read() == b"\x00\xffraw"


async def test_headers_are_passed_through_on_invoke(gateway: Gateway) -> None:
    headers = {
        "Idempotency-Key": "idem-1",
        "X-Trace-Id": "trace-1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "X-Timeout-Ms": "1234",
        "X-Callback-Url": "http://ignored-for-invoke",
    }
    async with gateway.session.post(gateway.url(INVOKE), json={"input": 1}, headers=headers) as response:
        assert response.status == 200
    sent = gateway.scheduler.invokes[-1]
    assert sent.idempotency_key == "idem-1"
    assert sent.trace_id == "trace-1"
    assert sent.traceparent == headers["traceparent"]
    assert sent.HasField("timeout_ms")
    assert sent.timeout_ms == 1234
    assert sent.callback_url == ""


async def test_invoke_deadline_is_timeout_plus_margin(gateway: Gateway) -> None:
    async with gateway.session.post(
        gateway.url(INVOKE), json={}, headers={"X-Timeout-Ms": "2000"}
    ) as response:
        assert response.status == 200
    remaining = gateway.scheduler.invoke_deadlines[-1]
    assert remaining is not None
    assert 2.0 < remaining <= 2.0 + TEST_DEADLINE_MARGIN_S + GRPC_TIMEOUT_ROUNDING_S


async def test_invoke_without_timeout_header_waits_for_the_backstop(gateway: Gateway) -> None:
    async with gateway.session.post(gateway.url(INVOKE), json={}) as response:
        assert response.status == 200
    assert not gateway.scheduler.invokes[-1].HasField("timeout_ms")
    remaining = gateway.scheduler.invoke_deadlines[-1]
    backstop = gateway.settings.max_invoke_wait_s
    assert remaining is not None
    assert backstop < remaining <= backstop + TEST_DEADLINE_MARGIN_S + GRPC_TIMEOUT_ROUNDING_S


@pytest.mark.parametrize("value", ["abc", "1.5", "", "1e3", "1_000", "\u0663", "12 34", "--1"])
async def test_timeout_header_that_is_no_integer_is_400(gateway: Gateway, value: str) -> None:
    async with gateway.session.post(
        gateway.url(INVOKE), json={}, headers={"X-Timeout-Ms": value}
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error == {"code": "INVALID_ARGUMENT", "message": "X-Timeout-Ms: must be an integer"}
    assert gateway.scheduler.invokes == []


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("0", 0),
        ("-5", -5),
        ("300001", 300_001),
        (str(2**40), 2**40),
        (str(2**70), 2**63 - 1),
        ("-" + str(2**70), -(2**63)),
        ("9" * 5000, 2**63 - 1),
    ],
)
async def test_out_of_range_timeout_header_is_the_schedulers_answer_naming_the_header(
    gateway: Gateway, value: str, sent: int
) -> None:
    """The scheduler checks the range against the registry's limit; the caller reads its header name."""
    async with gateway.session.post(
        gateway.url(INVOKE), json={}, headers={"X-Timeout-Ms": value}
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error == {"code": "INVALID_ARGUMENT", "message": "X-Timeout-Ms: must be between 1 and 300000"}
    assert gateway.scheduler.invokes[-1].timeout_ms == sent
    remaining = gateway.scheduler.invoke_deadlines[-1]
    assert remaining is not None
    assert remaining <= gateway.settings.max_invoke_wait_s + TEST_DEADLINE_MARGIN_S + GRPC_TIMEOUT_ROUNDING_S


async def test_a_code_named_in_trailers_must_be_a_code_of_the_contract(gateway: Gateway) -> None:
    for named, code in (("SHUTTING_DOWN", "SHUTTING_DOWN"), ("NOT_A_CODE", "UNAVAILABLE")):
        gateway.scheduler.failures.fail(
            "Invoke", grpc.StatusCode.UNAVAILABLE, "stopping", {"x-error-code": named}
        )
        async with gateway.session.post(gateway.url(INVOKE), json={}) as response:
            assert response.status == 503
            assert (await response.json())["error"] == {"code": code, "message": "stopping"}


async def test_other_invalid_arguments_of_the_scheduler_pass_unchanged(gateway: Gateway) -> None:
    gateway.scheduler.failures.fail("Invoke", grpc.StatusCode.INVALID_ARGUMENT, "input.content_type: bad")
    async with gateway.session.post(gateway.url(INVOKE), json={}) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error == {"code": "INVALID_ARGUMENT", "message": "input.content_type: bad"}


async def test_timeout_header_is_ignored_by_enqueue(gateway: Gateway) -> None:
    async with gateway.session.post(gateway.url(ENQUEUE), json={}, headers={"X-Timeout-Ms": "0"}) as response:
        assert response.status == 202
    assert not gateway.scheduler.enqueues[-1].HasField("timeout_ms")


@pytest.mark.parametrize(
    ("state", "code", "http_status", "rest_status"),
    [
        (types_pb2.EXECUTION_STATE_ERROR, "FUNCTION_ERROR", 502, "error"),
        (types_pb2.EXECUTION_STATE_ERROR, "CRASH", 502, "error"),
        (types_pb2.EXECUTION_STATE_ERROR, "START_FAILED", 502, "error"),
        (types_pb2.EXECUTION_STATE_ERROR, "INTERNAL", 500, "error"),
        (types_pb2.EXECUTION_STATE_TIMEOUT, "TIMEOUT", 408, "timeout"),
        (types_pb2.EXECUTION_STATE_ERROR, "SHUTTING_DOWN", 503, "error"),
        (types_pb2.EXECUTION_STATE_ERROR, "FUNCTION_DELETED", 404, "error"),
    ],
)
async def test_failed_execution_is_invocation_response(
    gateway: Gateway, state: types_pb2.ExecutionState.ValueType, code: str, http_status: int, rest_status: str
) -> None:
    gateway.scheduler.invoke_result = lambda _: canned(state, code=code, message="it broke")
    async with gateway.session.post(gateway.url(INVOKE), json={"input": 1}) as response:
        assert response.status == http_status
        assert response.headers["X-Execution-Id"] == "e-1"
        body = await response.json()
    assert body == {
        "executionId": "e-1",
        "status": rest_status,
        "error": {"code": code, "message": "it broke"},
    }


async def test_error_without_error_info_gets_a_code(gateway: Gateway) -> None:
    gateway.scheduler.invoke_result = lambda _: canned(types_pb2.EXECUTION_STATE_TIMEOUT)
    async with gateway.session.post(gateway.url(INVOKE), json={}) as response:
        assert response.status == 408
        assert (await response.json())["error"]["code"] == "TIMEOUT"


async def test_unexpected_execution_state_is_generic_500(gateway: Gateway) -> None:
    gateway.scheduler.invoke_result = lambda _: canned(types_pb2.EXECUTION_STATE_RUNNING)
    async with gateway.session.post(gateway.url(INVOKE), json={}) as response:
        assert response.status == 500
        assert await response.json() == {"error": {"code": "INTERNAL", "message": "internal error"}}


async def test_grpc_deadline_is_408(gateway: Gateway) -> None:
    gateway.scheduler.hang_invoke = True
    async with gateway.session.post(gateway.url(INVOKE), json={}, headers={"X-Timeout-Ms": "1"}) as response:
        assert response.status == 408
        error = (await response.json())["error"]
    assert error["code"] == "TIMEOUT"
    await gateway.scheduler.invoke_cancelled.wait()


@pytest.mark.parametrize(
    ("code", "http_status", "rest_code"),
    [
        (grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"),
        (grpc.StatusCode.UNAVAILABLE, 503, "UNAVAILABLE"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 408, "TIMEOUT"),
    ],
)
@pytest.mark.parametrize("method", ["Invoke", "Enqueue"])
async def test_scheduler_status_codes_map_to_http(
    gateway: Gateway, method: str, code: grpc.StatusCode, http_status: int, rest_code: str
) -> None:
    gateway.scheduler.failures.fail(method, code, "details from scheduler")
    path = INVOKE if method == "Invoke" else ENQUEUE
    async with gateway.session.post(gateway.url(path), json={}) as response:
        assert response.status == http_status
        body = await response.json()
    assert body == {"error": {"code": rest_code, "message": "details from scheduler"}}


@pytest.mark.parametrize("method", ["Invoke", "Enqueue"])
async def test_queue_full_is_429_with_retry_headers(gateway: Gateway, method: str) -> None:
    trailers = {"retry-after": "7", "x-queue-reject-reason": "depth"}
    gateway.scheduler.failures.fail(method, grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", trailers)
    path = INVOKE if method == "Invoke" else ENQUEUE
    async with gateway.session.post(gateway.url(path), json={}) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
        assert response.headers["X-Queue-Reject-Reason"] == "depth"
        body = await response.json()
    assert body == {"error": {"code": "RESOURCE_EXHAUSTED", "message": "queue full"}}


async def test_queue_full_without_trailers_defaults_retry_after(gateway: Gateway) -> None:
    gateway.scheduler.failures.fail("Invoke", grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
    async with gateway.session.post(gateway.url(INVOKE), json={}) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert "X-Queue-Reject-Reason" not in response.headers


async def test_unexpected_grpc_error_is_generic_500(gateway: Gateway) -> None:
    gateway.scheduler.failures.fail(
        "Invoke", grpc.StatusCode.INTERNAL, "Traceback (most recent call last): secret"
    )
    async with gateway.session.post(gateway.url(INVOKE), json={}) as response:
        assert response.status == 500
        body = await response.json()
    assert body == {"error": {"code": "INTERNAL", "message": "internal error"}}


@pytest.mark.parametrize("path", ["/v1/functions/9bad:invoke", "/v1/functions/bad!name:enqueue"])
async def test_invalid_function_name_is_404_without_scheduler_call(gateway: Gateway, path: str) -> None:
    async with gateway.session.post(gateway.url(path), json={}) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"
    assert gateway.scheduler.invokes == gateway.scheduler.enqueues == []


async def test_get_on_invoke_path_does_not_invoke(gateway: Gateway) -> None:
    async with gateway.session.get(gateway.url(INVOKE)) as response:
        assert response.status == 404
    assert gateway.scheduler.invokes == []


async def test_enqueue_returns_202_with_location(gateway: Gateway) -> None:
    async with gateway.session.post(gateway.url(ENQUEUE), json={"input": {"n": 1}}) as response:
        assert response.status == 202
        assert response.headers["X-Execution-Id"] == "queued-1"
        assert response.headers["Location"] == "/v1/executions/queued-1"
        body = await response.json()
    assert body == {"executionId": "queued-1", "status": "queued"}
    assert gateway.scheduler.enqueues[-1].input.data == b'{"n":1}'
    assert gateway.scheduler.invokes == []


async def test_enqueue_reports_the_returned_status_lowercased(gateway: Gateway) -> None:
    gateway.scheduler.enqueue_state = types_pb2.EXECUTION_STATE_SUCCESS
    async with gateway.session.post(gateway.url(ENQUEUE), json={}) as response:
        assert response.status == 202
        assert (await response.json())["status"] == "success"


async def test_enqueue_passes_headers_and_callback(gateway: Gateway) -> None:
    headers = {
        "Idempotency-Key": "k",
        "X-Trace-Id": "t",
        "traceparent": "00-11111111111111111111111111111111-2222222222222222-01",
        "X-Callback-Url": "http://127.0.0.1:9/callback",
    }
    async with gateway.session.post(
        gateway.url(ENQUEUE), json={"metadata": {"m": "1"}}, headers=headers
    ) as r:
        assert r.status == 202
    sent = gateway.scheduler.enqueues[-1]
    assert (sent.idempotency_key, sent.trace_id, sent.traceparent) == ("k", "t", headers["traceparent"])
    assert sent.callback_url == "http://127.0.0.1:9/callback"
    assert dict(sent.metadata) == {"m": "1"}


async def test_enqueue_octet_stream(gateway: Gateway) -> None:
    headers = {"Content-Type": "application/octet-stream"}
    async with gateway.session.post(gateway.url(ENQUEUE), data=b"\x01\x02", headers=headers) as response:
        assert response.status == 202
    sent = gateway.scheduler.enqueues[-1]
    assert (sent.input.data, sent.input.content_type) == (b"\x01\x02", "application/octet-stream")


async def test_large_json_input_round_trips(gateway: Gateway) -> None:
    value: Any = {"blob": "x" * 90_000}
    headers = {"Content-Type": "application/json"}
    body = orjson.dumps({"input": value})
    async with gateway.session.post(gateway.url(INVOKE), data=body, headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["output"] == value


async def test_a_client_hanging_up_cancels_its_call_and_the_gateway_serves_on(gateway: Gateway) -> None:
    # The connection reports the hang-up (no watcher task): the call is cancelled at the
    # scheduler, and the request's task, cancelled and answered, serves the next request.
    gateway.scheduler.hang_invoke = True
    hung_up = {"route": "/v1/functions/{name}:invoke", "method": "POST", "status": "499"}
    before = gateway.metrics.get_sample_value("gateway_requests_total", hung_up) or 0.0
    host, port = gateway.base_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST " + INVOKE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 12\r\n\r\n{"input": 1}'
    )
    await writer.drain()
    await asyncio.wait_for(gateway.scheduler.invoke_received.wait(), 10)
    writer.close()
    await asyncio.wait_for(gateway.scheduler.invoke_cancelled.wait(), 10)
    # Answered (499, to nobody) in the same step that queued the cancel: already counted.
    assert gateway.metrics.get_sample_value("gateway_requests_total", hung_up) == before + 1
    gateway.scheduler.hang_invoke = False
    async with gateway.session.post(gateway.url(INVOKE), json={"input": {"again": 1}}) as response:
        assert response.status == 200
        assert (await response.json())["output"] == {"again": 1}
