"""gRPC requests checked like REST ones, and the output cap (issue 17, findings 1 and 6)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from nanofaas.v1 import scheduler_pb2, types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch import endpoint_client, http_invoke
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.request_limits import RequestLimits, RequestRefused, check_invoke_request

LIMITS = RequestLimits(max_payload_bytes=100, max_idempotency_key_bytes=8, max_metadata_entries=2)


def _request(**fields: Any) -> scheduler_pb2.InvokeRequest:
    return scheduler_pb2.InvokeRequest(function_name="fn", **fields)


@pytest.mark.parametrize(
    ("request_", "status", "error_code", "message"),
    [
        (
            _request(input=types_pb2.Payload(data=b"1" * 101)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "PAYLOAD_TOO_LARGE",
            "input.data:",
        ),
        (
            _request(input=types_pb2.Payload(data=b"{nope")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "",
            "input.data: invalid JSON",
        ),
        (_request(idempotency_key="k" * 9), grpc.StatusCode.INVALID_ARGUMENT, "", "idempotency_key:"),
        (
            _request(metadata={"a": "1", "b": "2", "c": "3"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "",
            "metadata:",
        ),
        (_request(callback_url="file:///etc/passwd"), grpc.StatusCode.INVALID_ARGUMENT, "", "callback_url:"),
        (
            scheduler_pb2.InvokeRequest(function_name="x" * 100_000),
            grpc.StatusCode.NOT_FOUND,
            "",
            "function 'xxx",
        ),
        (scheduler_pb2.InvokeRequest(), grpc.StatusCode.INVALID_ARGUMENT, "", "function_name: required"),
    ],
)
def test_refused_like_rest(
    request_: scheduler_pb2.InvokeRequest, status: grpc.StatusCode, error_code: str, message: str
) -> None:
    with pytest.raises(RequestRefused) as caught:
        check_invoke_request(request_, LIMITS)
    assert caught.value.status is status
    assert caught.value.error_code == error_code
    assert caught.value.message.startswith(message)
    assert len(caught.value.message) < 200


def test_bytes_input_is_not_parsed_and_valid_requests_pass() -> None:
    check_invoke_request(
        _request(input=types_pb2.Payload(data=b"{raw", content_type="application/octet-stream")), LIMITS
    )
    check_invoke_request(_request(input=types_pb2.Payload(data=b'{"a": 1}'), idempotency_key="k" * 8), LIMITS)


@pytest.fixture
async def big_output() -> AsyncIterator[str]:
    body = b'"' + b"x" * 4096 + b'"'

    async def handle(request: web.Request) -> web.StreamResponse:
        if "chunked" in request.query:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(body)
            await response.write_eof()
            return response
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/invoke", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/invoke"
    await runner.cleanup()


@pytest.mark.parametrize("query", ["", "?chunked"])
async def test_an_output_over_the_cap_is_output_too_large(big_output: str, query: str) -> None:
    http_invoke.set_max_output_bytes(1024)
    try:
        async with aiohttp.ClientSession() as session:
            outcome = await endpoint_client.post_invocation(session, big_output + query, _attempt())
    finally:
        http_invoke.set_max_output_bytes(http_invoke.DEFAULT_MAX_OUTPUT_BYTES)
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR
    assert outcome.error_code == codes.OUTPUT_TOO_LARGE
    assert "1024 bytes" in outcome.message


def _attempt() -> Attempt:
    return Attempt(
        execution_id="e1",
        function_name="fn",
        spec=types_pb2.FunctionSpec(name="fn"),
        request=Request(data=b"1", content_type="application/json", metadata={}),
        number=1,
        deadline_epoch=time.time() + 30,
        timeout=30.0,
        timeout_ms=30_000,
        trace_id="t",
    )
