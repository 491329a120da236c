"""What the command line reads besides CRUD: recent executions, a function's status, its logs.

All three are answered by the scheduler (it owns the queues, the executions and
the backend that keeps the logs). Query values are checked here only for their
type; their ranges are the scheduler's, so each bad value gets one answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, cast

import grpc
import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from nanofaas.v1 import scheduler_pb2, types_pb2
from nanofaas_gateway import codes
from nanofaas_gateway.convert import UINT32_MAX, execution_status_body, ms_to_iso
from nanofaas_gateway.errors import (
    INTERNAL_MESSAGE,
    ApiError,
    error_body,
    grpc_error_response,
    invalid_argument,
)
from nanofaas_gateway.log_follows import LogFollows
from nanofaas_gateway.models import ExecutionStatus, FunctionLogs, FunctionStatus
from nanofaas_gateway.openapi_docs import error_responses
from nanofaas_gateway.responses import (
    gateway_clients,
    gateway_settings,
    json_response,
    raw_json_response,
    require_function_name,
)

router = APIRouter()

# The longest a followed log stream stays open; the client reconnects with `since` after it.
FOLLOW_MAX_S = 3600.0
EVENT_STREAM = "text/event-stream"
_STATES = {
    "queued": types_pb2.EXECUTION_STATE_QUEUED,
    "running": types_pb2.EXECUTION_STATE_RUNNING,
    "success": types_pb2.EXECUTION_STATE_SUCCESS,
    "error": types_pb2.EXECUTION_STATE_ERROR,
    "timeout": types_pb2.EXECUTION_STATE_TIMEOUT,
}
# Up to 20 digits: beyond uint32 anyway, and never a huge conversion.
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no", ""})


def _integer(name: str, value: str) -> int:
    """A query integer; out-of-range values go on to the scheduler's range check (clamped to uint32)."""
    text = value.strip()
    if _INTEGER.fullmatch(text) is None:
        raise invalid_argument(f"{name}: must be an integer")
    return min(int(text), UINT32_MAX)


def _since_ms(value: str) -> int:
    text = value.strip()
    # ASCII only: str.isdigit() is true for "¹" and "٣", which int() refuses (found by fuzzing).
    if text.isascii() and text.isdigit() and len(text) <= 16:
        return int(text)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise invalid_argument("since: must be Unix epoch milliseconds or an ISO-8601 time") from None
    if stamp.tzinfo is None:
        raise invalid_argument("since: an ISO-8601 time needs a zone (e.g. Z)")
    return max(int(stamp.timestamp() * 1000), 0)


def _boolean(name: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise invalid_argument(f"{name}: must be true or false")


@router.get(
    "/v1/executions",
    operation_id="listExecutions",
    tags=["executions"],
    response_model=list[ExecutionStatus],
    response_model_exclude_none=True,
    responses=error_responses(400),
    description="Recent executions, newest first, without their outputs (GET /v1/executions/{id} has "
    "them). Bounded: `limit` 1..1000 (default 50) of those the scheduler still keeps; page with "
    "`before` = the last executionId of the previous page.",
)
async def list_executions(
    request: Request,
    *,
    function: Annotated[str | None, Query(description="only this function's executions")] = None,
    status: Annotated[str | None, Query(description="queued | running | success | error | timeout")] = None,
    limit: Annotated[str | None, Query(description="1..1000, default 50")] = None,
    before: Annotated[str | None, Query(description="an executionId: only older ones")] = None,
) -> Response:
    message = scheduler_pb2.ListExecutionsRequest(function_name=function or "", before=before or "")
    if status:
        if status.lower() not in _STATES:
            raise invalid_argument(f"status: must be one of {', '.join(_STATES)}")
        message.status = _STATES[status.lower()]
    if limit is not None:
        message.limit = max(_integer("limit", limit), 0)
    listing = await gateway_clients(request).scheduler.ListExecutions(
        message, timeout=gateway_settings(request).rpc_timeout_s
    )
    body = b"[" + b",".join(execution_status_body(e) for e in listing.executions) + b"]"
    return raw_json_response(body)


@router.get(
    "/v1/functions/{name}/status",
    operation_id="getFunctionStatus",
    tags=["functions"],
    response_model=FunctionStatus,
    responses=error_responses(404, 503),
)
async def function_status(name: str, request: Request) -> Response:
    require_function_name(name)
    status = await gateway_clients(request).scheduler.GetFunctionStatus(
        scheduler_pb2.GetFunctionStatusRequest(function_name=name),
        timeout=gateway_settings(request).rpc_timeout_s,
    )
    replicas = status.replicas
    return json_response(
        {
            "name": status.name,
            "replicas": {
                "current": replicas.current,
                "ready": replicas.ready,
                "desired": replicas.desired,
                "min": replicas.min,
                "max": replicas.max,
            },
            "inFlight": status.in_flight,
            "queued": status.queued,
            "oldestQueuedAgeMs": status.oldest_queued_age_ms,
        }
    )


def log_line_json(line: scheduler_pb2.LogLine) -> dict[str, Any]:
    body: dict[str, Any] = {"ts": ms_to_iso(line.ts_ms), "stream": line.stream}
    if line.execution_id:
        body["executionId"] = line.execution_id
    body["level"] = line.level
    body["message"] = line.message
    return body


@router.get(
    "/v1/functions/{name}/logs",
    operation_id="getFunctionLogs",
    tags=["functions"],
    response_model=FunctionLogs,
    response_model_exclude_none=True,
    responses={
        200: {
            "content": {
                EVENT_STREAM: {
                    "schema": {"type": "string"},
                    "description": "with follow=true: one `data: <LogLine JSON>` event per line",
                }
            }
        },
        **error_responses(400, 404, 429, 503),
    },
    description="The function's recent log lines, oldest first (local backend: a bounded ring of the "
    "lines its processes wrote). With follow=true the answer is a text/event-stream: the kept lines, "
    "then new ones as they come, for at most an hour.",
)
async def function_logs(
    name: str,
    request: Request,
    *,
    execution: Annotated[str | None, Query(description="only this execution's lines")] = None,
    since: Annotated[
        str | None, Query(description="only lines from this time: Unix epoch ms or ISO-8601")
    ] = None,
    tail: Annotated[str | None, Query(description="only the last N lines (0..10000; 0 = all)")] = None,
    follow: Annotated[str | None, Query(description="true: stream new lines as they come")] = None,
) -> Response:
    require_function_name(name)
    message = scheduler_pb2.GetLogsRequest(function_name=name, execution_id=execution or "")
    if since is not None:
        message.since_ms = _since_ms(since)
    if tail is not None:
        value = _integer("tail", tail)
        message.tail = value if value >= 0 else UINT32_MAX  # negative: the scheduler's range message
    message.follow = _boolean("follow", follow)
    scheduler = gateway_clients(request).scheduler
    if not message.follow:
        call = scheduler.GetLogs(message, timeout=gateway_settings(request).rpc_timeout_s)
        lines = [log_line_json(line) async for line in call]
        return json_response({"name": name, "lines": lines})
    follows = log_follows(request)
    if follows.closing:
        raise ApiError(503, codes.UNAVAILABLE, "the gateway is shutting down")
    call = scheduler.GetLogs(message, timeout=FOLLOW_MAX_S)
    metadata = await call.initial_metadata()
    if not any(key == "x-logs" for key, _ in metadata or ()):
        async for _ in call:  # refused: reading raises the status, answered as an error body
            pass
        return json_response({"name": name, "lines": []})
    return StreamingResponse(
        _events(call, follows),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def log_follows(request: Request) -> LogFollows:
    return cast(LogFollows, request.app.state.log_follows)


async def _events(call: Any, follows: LogFollows) -> AsyncIterator[bytes]:
    """Server-sent events until the stream ends: its hour is up, or the gateway shuts down.

    A failure of the scheduler's stream becomes a last `event: error` with the error body.
    """
    follows.add(call)
    try:
        async for line in call:
            yield b"data: " + orjson.dumps(log_line_json(line)) + b"\n\n"
    except asyncio.CancelledError:
        if not follows.closing:
            raise
    except grpc.aio.AioRpcError as exc:
        ended = exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED or (
            follows.closing and exc.code() is grpc.StatusCode.CANCELLED
        )
        if not ended:
            failed = grpc_error_response(exc)
            yield b"event: error\ndata: " + bytes(failed.body) + b"\n\n"
    except Exception:
        yield b"event: error\ndata: " + error_body(codes.INTERNAL, INTERNAL_MESSAGE) + b"\n\n"
    finally:
        follows.discard(call)
        with contextlib.suppress(Exception):
            call.cancel()
