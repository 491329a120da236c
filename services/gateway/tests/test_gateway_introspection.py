"""Recent executions, a function's status and its logs through the real app and a fake scheduler."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import orjson
import pytest

from nanofaas.v1 import scheduler_pb2, types_pb2

from .gateway_harness import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

TS_MS = 1_714_564_800_000  # 2024-05-01T12:00:00.000Z


async def get(gateway: Gateway, path: str) -> tuple[int, Any]:
    async with gateway.session.get(gateway.url(path)) as response:
        return response.status, await response.json()


def status(execution_id: str) -> types_pb2.ExecutionStatus:
    return types_pb2.ExecutionStatus(
        execution_id=execution_id,
        function_name="echo",
        status=types_pb2.EXECUTION_STATE_SUCCESS,
        attempts=1,
        trace_id="t",
        enqueued_at_ms=TS_MS,
        finished_at_ms=TS_MS + 7,
    )


async def test_list_executions_passes_filters_and_renders_statuses(gateway: Gateway) -> None:
    gateway.scheduler.listing = [status("b"), status("a")]
    code, body = await get(gateway, "/v1/executions?function=echo&status=SUCCESS&limit=2&before=c")
    assert code == 200
    assert [item["executionId"] for item in body] == ["b", "a"]
    assert body[0] == {
        "executionId": "b",
        "functionName": "echo",
        "status": "success",
        "attempts": 1,
        "traceId": "t",
        "enqueuedAt": "2024-05-01T12:00:00.000Z",
        "finishedAt": "2024-05-01T12:00:00.007Z",
    }
    (sent,) = gateway.scheduler.list_requests
    assert (sent.function_name, sent.status, sent.limit, sent.before) == (
        "echo",
        types_pb2.EXECUTION_STATE_SUCCESS,
        2,
        "c",
    )
    gateway.scheduler.listing = []
    assert await get(gateway, "/v1/executions") == (200, [])
    assert not gateway.scheduler.list_requests[-1].HasField("limit")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=done", "status: must be one of queued, running, success, error, timeout"),
        ("limit=ten", "limit: must be an integer"),
        ("limit=--5", "limit: must be an integer"),
        ("limit=1e3", "limit: must be an integer"),
        ("limit=" + "9" * 30, "limit: must be an integer"),
        ("limit=0", "limit: must be between 1 and 1000"),
        ("limit=-5", "limit: must be between 1 and 1000"),
        ("limit=99999999999999", "limit: must be between 1 and 1000"),
    ],
)
async def test_list_executions_refuses_bad_values(gateway: Gateway, query: str, message: str) -> None:
    assert await get(gateway, f"/v1/executions?{query}") == (
        400,
        {"error": {"code": "INVALID_ARGUMENT", "message": message}},
    )


async def test_function_status_has_the_autoscaling_shape(gateway: Gateway) -> None:
    gateway.scheduler.statuses["echo"] = scheduler_pb2.FunctionStatus(
        name="echo",
        replicas=scheduler_pb2.Replicas(current=2, ready=1, desired=2, min=2, max=2),
        in_flight=3,
        queued=4,
        oldest_queued_age_ms=250,
    )
    assert await get(gateway, "/v1/functions/echo/status") == (
        200,
        {
            "name": "echo",
            "replicas": {"current": 2, "ready": 1, "desired": 2, "min": 2, "max": 2},
            "inFlight": 3,
            "queued": 4,
            "oldestQueuedAgeMs": 250,
        },
    )
    code, body = await get(gateway, "/v1/functions/nope/status")
    assert (code, body["error"]["code"]) == (404, "NOT_FOUND")
    code, body = await get(gateway, "/v1/functions/-bad-/status")
    assert (code, body["error"]["code"]) == (404, "NOT_FOUND")
    gateway.scheduler.failures.fail("GetFunctionStatus", grpc.StatusCode.UNAVAILABLE, "registry down")
    code, body = await get(gateway, "/v1/functions/echo/status")
    assert (code, body["error"]["code"]) == (503, "UNAVAILABLE")


def log_line(ts: int, message: str, execution: str = "") -> scheduler_pb2.LogLine:
    return scheduler_pb2.LogLine(
        ts_ms=ts, stream="stdout", execution_id=execution, level="INFO", message=message
    )


async def test_logs_are_listed_with_filters(gateway: Gateway) -> None:
    gateway.scheduler.log_lines["echo"] = [log_line(TS_MS, "hello", "e1"), log_line(TS_MS + 1, "bye")]
    code, body = await get(
        gateway, "/v1/functions/echo/logs?execution=e1&since=2024-05-01T11:00:00Z&tail=5&follow=false"
    )
    assert code == 200
    assert body == {
        "name": "echo",
        "lines": [
            {
                "ts": "2024-05-01T12:00:00.000Z",
                "stream": "stdout",
                "executionId": "e1",
                "level": "INFO",
                "message": "hello",
            },
            {"ts": "2024-05-01T12:00:00.001Z", "stream": "stdout", "level": "INFO", "message": "bye"},
        ],
    }
    (sent,) = gateway.scheduler.log_requests
    assert (sent.execution_id, sent.since_ms, sent.tail, sent.follow) == ("e1", TS_MS - 3_600_000, 5, False)
    await get(gateway, f"/v1/functions/echo/logs?since={TS_MS}")
    assert gateway.scheduler.log_requests[-1].since_ms == TS_MS


@pytest.mark.parametrize(
    ("query", "status_code", "message"),
    [
        ("since=yesterday", 400, "since: must be Unix epoch milliseconds or an ISO-8601 time"),
        ("since=%C2%B9", 400, "since: must be Unix epoch milliseconds or an ISO-8601 time"),  # "¹"
        ("since=2024-05-01T12:00:00", 400, "since: an ISO-8601 time needs a zone (e.g. Z)"),
        ("tail=x", 400, "tail: must be an integer"),
        ("tail=-1", 400, "tail: must be between 0 and 10000"),
        ("tail=10001", 400, "tail: must be between 0 and 10000"),
        ("follow=maybe", 400, "follow: must be true or false"),
    ],
)
async def test_logs_refuse_bad_values(gateway: Gateway, query: str, status_code: int, message: str) -> None:
    gateway.scheduler.log_lines["echo"] = []
    code, body = await get(gateway, f"/v1/functions/echo/logs?{query}")
    assert (code, body) == (status_code, {"error": {"code": "INVALID_ARGUMENT", "message": message}})


async def test_logs_of_an_unknown_function_are_404_also_when_followed(gateway: Gateway) -> None:
    for query in ("", "?follow=true"):
        code, body = await get(gateway, f"/v1/functions/nope/logs{query}")
        assert (code, body["error"]["code"]) == (404, "NOT_FOUND")


async def read_event(response: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            raw = (await response.content.readline()).decode()
            if raw.startswith("data: "):
                event: dict[str, Any] = orjson.loads(raw[len("data: ") :])
                return event


async def test_follow_streams_server_sent_events_until_the_client_leaves(gateway: Gateway) -> None:
    gateway.scheduler.log_lines["echo"] = [log_line(TS_MS, "kept")]
    async with gateway.session.get(gateway.url("/v1/functions/echo/logs?follow=true")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert (await read_event(response))["message"] == "kept"
        gateway.scheduler.live_lines.put_nowait(log_line(TS_MS + 5, "live", "e2"))
        event = await read_event(response)
        assert (event["message"], event["executionId"]) == ("live", "e2")
    # The client went away: the gateway stops following (the scheduler's stream is cancelled).
    await asyncio.wait_for(gateway.scheduler.follow_closed.wait(), 5)


async def test_follow_ends_when_the_scheduler_ends_the_stream(gateway: Gateway) -> None:
    gateway.scheduler.log_lines["echo"] = []
    gateway.scheduler.live_lines.put_nowait(log_line(TS_MS, "last"))
    gateway.scheduler.live_lines.put_nowait(None)
    async with gateway.session.get(gateway.url("/v1/functions/echo/logs?follow=1")) as response:
        body = await asyncio.wait_for(response.read(), 5)
    assert body.count(b"data: ") == 1
    assert b'"message":"last"' in body


async def test_shutdown_ends_open_follows_and_refuses_new_ones(gateway: Gateway) -> None:
    gateway.scheduler.log_lines["echo"] = [log_line(TS_MS, "kept")]
    assert gateway.app is not None
    follows = gateway.app.state.log_follows
    async with gateway.session.get(gateway.url("/v1/functions/echo/logs?follow=true")) as response:
        assert (await read_event(response))["message"] == "kept"
        follows.close_all()
        rest = await asyncio.wait_for(response.read(), 5)  # a clean end, not a cut connection
    assert b"event: error" not in rest
    try:
        code, body = await get(gateway, "/v1/functions/echo/logs?follow=true")
        assert (code, body["error"]["code"]) == (503, "UNAVAILABLE")
    finally:
        follows.closing = False
