"""The request/response mapping, through both clients against a scripted transport.

The same cases run through Client and AsyncClient, which proves they share the
mapping; the clients against the real platform are in tests/e2e/test_client.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from nanofaas_client import AsyncClient, Backoff, Client, RetryPolicy, errors, propagate
from nanofaas_client.api import event_line

Handler = Callable[[httpx.Request], httpx.Response]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Recorder:
    """Answers from a script of responses and keeps every request."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]


def error(status: int, code: str, message: str = "m", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def run(client_kind: str, recorder: Handler, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call `method` on a sync or an async client over the recorder."""
    backoff = Backoff(initial_s=0.001, max_s=0.001)
    retry = RetryPolicy(max_attempts=2, max_delay_s=5)
    if client_kind == "sync":
        with Client(
            "http://nf", transport=httpx.MockTransport(recorder), backoff=backoff, retry_rate_limited=retry
        ) as client:
            return getattr(client, method)(*args, **kwargs)

    async def go() -> Any:
        async with AsyncClient(
            "http://nf", transport=httpx.MockTransport(recorder), backoff=backoff, retry_rate_limited=retry
        ) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(go())


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@KINDS
def test_invoke_sends_headers_and_reads_output(kind: str) -> None:
    recorder = Recorder(
        httpx.Response(200, json={"executionId": "e1", "status": "success", "output": {"ok": 1}})
    )
    with propagate(TRACEPARENT):
        result = run(
            kind,
            recorder,
            "invoke",
            "fn",
            {"a": 1},
            idempotency_key="k1",
            timeout_ms=500,
            headers={"X-Extra": "y"},
        )
    assert (result.execution_id, result.output) == ("e1", {"ok": 1})
    (request,) = recorder.requests
    assert (request.method, request.url.path) == ("POST", "/v1/functions/fn:invoke")
    assert json.loads(request.content) == {"input": {"a": 1}}
    assert request.headers["Idempotency-Key"] == "k1"
    assert request.headers["X-Timeout-Ms"] == "500"
    assert request.headers["traceparent"] == TRACEPARENT
    assert request.headers["X-Extra"] == "y"


@KINDS
def test_binary_input_and_output(kind: str) -> None:
    recorder = Recorder(
        httpx.Response(
            200,
            content=b"\x00\x01",
            headers={"content-type": "application/octet-stream", "x-execution-id": "e"},
        )
    )
    result = run(kind, recorder, "invoke", "fn", data=b"raw")
    assert (result.execution_id, result.output) == ("e", b"\x00\x01")
    assert recorder.requests[0].headers["content-type"] == "application/octet-stream"
    assert recorder.requests[0].content == b"raw"


@KINDS
def test_a_failed_invocation_raises_its_family_with_the_execution(kind: str) -> None:
    recorder = Recorder(
        httpx.Response(
            502,
            json={
                "executionId": "e9",
                "status": "error",
                "error": {"code": "FUNCTION_ERROR", "message": "boom"},
            },
        )
    )
    with pytest.raises(errors.ExecutionFailed) as caught:
        run(kind, recorder, "invoke", "fn")
    assert (caught.value.code, caught.value.message, caught.value.execution_id) == (
        "FUNCTION_ERROR",
        "boom",
        "e9",
    )


@KINDS
def test_retry_after_is_honoured_only_when_asked(kind: str) -> None:
    def busy() -> httpx.Response:
        return error(
            429, "RESOURCE_EXHAUSTED", "full", **{"Retry-After": "0", "X-Queue-Reject-Reason": "depth"}
        )

    admitted = httpx.Response(202, json={"executionId": "e", "status": "queued"})
    recorder = Recorder(busy(), admitted)
    assert run(kind, recorder, "enqueue", "fn", 1).execution_id == "e"
    assert len(recorder.requests) == 2
    # Without the opt-in: raised at once, with Retry-After and the reason.
    with (
        Client("http://nf", transport=httpx.MockTransport(Recorder(busy()))) as client,
        pytest.raises(errors.RateLimited) as caught,
    ):
        client.enqueue("fn", 1)
    assert (caught.value.retry_after_s, caught.value.reason) == (0, "depth")


@KINDS
def test_a_retry_after_beyond_the_policy_is_not_waited_for(kind: str) -> None:
    recorder = Recorder(error(429, "RESOURCE_EXHAUSTED", **{"Retry-After": "60"}))
    with pytest.raises(errors.RateLimited):
        run(kind, recorder, "invoke", "fn")
    assert len(recorder.requests) == 1


def status(state: str, **fields: Any) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "executionId": "e",
            "functionName": "fn",
            "status": state,
            "attempts": 1,
            "traceId": "t",
            **fields,
        },
    )


@KINDS
def test_wait_polls_until_the_end(kind: str) -> None:
    recorder = Recorder(status("queued"), status("running"), status("success", output=[1]))
    execution = run(kind, recorder, "wait", "e", 5)
    assert (execution.status, execution.output, len(recorder.requests)) == ("success", [1], 3)


@KINDS
def test_wait_gives_up_after_its_timeout(kind: str) -> None:
    with pytest.raises(errors.WaitTimedOut):
        run(kind, Recorder(status("running")), "wait", "e", 0.01)


@KINDS
def test_listing_and_status_paths_and_params(kind: str) -> None:
    recorder = Recorder(httpx.Response(200, json=[]))
    assert run(kind, recorder, "list_executions", "fn", "error", 5, "b") == []
    assert dict(recorder.requests[0].url.params) == {
        "function": "fn",
        "status": "error",
        "limit": "5",
        "before": "b",
    }
    body = {
        "name": "fn",
        "replicas": {"current": 1, "ready": 1, "desired": 1, "min": 1, "max": 1},
        "inFlight": 0,
        "queued": 2,
        "oldestQueuedAgeMs": 30,
    }
    result = run(kind, Recorder(httpx.Response(200, json=body)), "function_status", "fn")
    assert (result.queued, result.replicas.ready, result.oldest_queued_age_ms) == (2, 1, 30)


@KINDS
def test_errors_of_crud_calls(kind: str) -> None:
    with pytest.raises(errors.AlreadyExists):
        run(kind, Recorder(error(409, "ALREADY_EXISTS")), "register", {"name": "fn", "image": "i"})
    with pytest.raises(errors.NotFound):
        run(kind, Recorder(error(404, "NOT_FOUND")), "delete", "fn")
    with pytest.raises(errors.InternalError):
        run(kind, Recorder(httpx.Response(500, text="oops")), "list_functions")


@KINDS
def test_no_answer_is_platform_unreachable(kind: str) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(errors.PlatformUnreachable):
        run(kind, refuse, "list_functions")


def test_event_lines() -> None:
    assert event_line("") is None
    assert event_line(": keep-alive") is None
    line = event_line(
        'data: {"ts": "t", "stream": "stdout", "level": "INFO", "message": "hi", "executionId": "e"}'
    )
    assert line is not None and (line.message, line.execution_id) == ("hi", "e")
    with pytest.raises(errors.Unavailable):
        event_line('data: {"error": {"code": "UNAVAILABLE", "message": "gone"}}')


def test_propagate_refuses_what_is_not_a_traceparent() -> None:
    with pytest.raises(ValueError, match="traceparent"), propagate("nope"):
        pass


def test_a_bearer_token_is_sent_when_given_or_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """For a platform with API authentication on (docs/security.md)."""
    requests: list[httpx.Request] = []

    def recorder(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"status": "ok"})

    monkeypatch.delenv("NANOFAAS_TOKEN", raising=False)
    with Client("http://nf", transport=httpx.MockTransport(recorder)) as client:
        client.ready()
    with Client("http://nf", transport=httpx.MockTransport(recorder), token="t-1") as client:
        client.ready()
    monkeypatch.setenv("NANOFAAS_TOKEN", " t-env ")
    with Client("http://nf", transport=httpx.MockTransport(recorder)) as client:
        client.ready()

    async def go() -> None:
        async with AsyncClient("http://nf", transport=httpx.MockTransport(recorder), token="t-2") as client:
            await client.ready()

    asyncio.run(go())
    sent = [request.headers.get("Authorization") for request in requests]
    assert sent == [None, "Bearer t-1", "Bearer t-env", "Bearer t-2"]
