"""Sync invoke and async enqueue: the hot paths (raw body, orjson, bytes spliced as they are)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope

from nanofaas.v1 import scheduler_pb2, types_pb2
from nanofaas_gateway import codes
from nanofaas_gateway.clients import GatewayClients
from nanofaas_gateway.config import Settings
from nanofaas_gateway.convert import (
    error_to_json,
    invocation_error_body,
    invocation_success_body,
    is_json_media_type,
    state_name,
)
from nanofaas_gateway.errors import internal_error_response, invalid_argument
from nanofaas_gateway.http_cycle import watch_disconnect
from nanofaas_gateway.invocation_body import (
    TIMEOUT_HEADER,
    build_invoke_request,
    callback_url,
    parse_timeout_ms,
    payload_media_type,
)
from nanofaas_gateway.models import EnqueueResponse, InvocationResponse
from nanofaas_gateway.openapi_docs import (
    BINARY_OUTPUT,
    ENQUEUE_EXTRA,
    EXECUTION_ID_HEADER,
    INVOKE_EXTRA,
    error_responses,
)
from nanofaas_gateway.outbound_policy import policy_for
from nanofaas_gateway.responses import (
    gateway_clients,
    gateway_settings,
    json_response,
    raw_json_response,
    require_function_name,
)

router = APIRouter(tags=["invocations"])

# error.code values that are not the function's fault and have their own HTTP status
# (any other error is a 502, a timeout a 408).
_ERROR_CODE_STATUS = {codes.SHUTTING_DOWN: 503, codes.FUNCTION_DELETED: 404, codes.INTERNAL: 500}
# The scheduler names the field of InvokeRequest; the caller knows it as the header.
_TIMEOUT_FIELD = "timeout_ms:"
_EXECUTION_ERROR_DOC = {"model": InvocationResponse, "headers": EXECUTION_ID_HEADER}


@router.post(
    "/v1/functions/{name}:invoke",
    operation_id="invokeFunction",
    response_model=InvocationResponse,
    responses={
        200: {"headers": EXECUTION_ID_HEADER, "content": BINARY_OUTPUT},
        **error_responses(400, 404, 413, 415, 429, 503),
        408: {**_EXECUTION_ERROR_DOC, "description": "The invocation timed out"},
        502: {**_EXECUTION_ERROR_DOC, "description": "The function failed"},
    },
    openapi_extra=INVOKE_EXTRA,
)
async def invoke_function(name: str, request: Request) -> Response:
    return await invoke(
        gateway_clients(request), gateway_settings(request), name, request.headers, await request.body(),
        watch_client=partial(watch_client_gone, request.scope, request.receive),
    )  # fmt: skip


# Given the function to call when the client hangs up, starts watching; returns the stop.
ClientWatch = Callable[[Callable[[], None]], Callable[[], None]]


async def invoke(
    clients: GatewayClients,
    settings: Settings,
    name: str,
    headers: Headers,
    body: bytes,
    *,
    watch_client: ClientWatch,
) -> Response:
    """A sync invocation, independent of how the request arrived (FastAPI route or fast path).

    The call runs in the request's own task; a client hanging up cancels that
    task, so the stream sends the scheduler a CancelCall (it drops the queued
    item) and the request ends with a 499 nobody reads.
    """
    require_function_name(name)
    media_type = payload_media_type(headers)
    timeout_ms = parse_timeout_ms(headers)
    request = build_invoke_request(
        name,
        headers,
        media_type,
        body,
        timeout_ms=timeout_ms,
        min_registry_revision=clients.min_registry_revision,
        min_registry_epoch=clients.min_registry_epoch,
        settings=settings,
    )
    deadline_s = _wait_s(timeout_ms, settings) + settings.invoke_deadline_margin_s
    hang_up = _HangUp()
    stop_watching = watch_client(hang_up)
    try:
        result = await clients.invocations.invoke(request, deadline_s)
    except asyncio.CancelledError:
        if hang_up.task is not None:
            hang_up.task.uncancel()  # our own cancel, answered here: the task goes on
            return Response(status_code=499)
        raise
    except grpc.aio.AioRpcError as exc:
        raise _named_for_the_caller(exc) from None
    finally:
        stop_watching()
        hang_up.disarm()  # a report still on its way (a watcher's done callback) cancels nothing
    return invocation_result_response(result)


class _HangUp:
    """Cancels the task that was current when it was made; remembers that it did (task is set)."""

    __slots__ = ("_current", "task")

    def __init__(self) -> None:
        self._current = asyncio.current_task()
        self.task: asyncio.Task[Any] | None = None

    def __call__(self) -> None:
        if self.task is None and self._current is not None:
            self.task = self._current
            self.task.cancel()

    def disarm(self) -> None:
        self._current = None


def _wait_s(timeout_ms: int | None, settings: Settings) -> float:
    """How long the gateway waits for the scheduler: the caller's timeout, else the backstop.

    Out-of-range timeouts are the scheduler's to refuse (at once); they never stretch the wait.
    """
    backstop_s = settings.max_invoke_wait_s
    if timeout_ms is None or timeout_ms < 1:
        return backstop_s
    return min(timeout_ms / 1000, backstop_s)


def _named_for_the_caller(exc: grpc.aio.AioRpcError) -> Exception:
    """The scheduler's refusal of timeout_ms, as the header the caller sent it in."""
    details = exc.details() or ""
    if exc.code() is grpc.StatusCode.INVALID_ARGUMENT and details.startswith(_TIMEOUT_FIELD):
        return invalid_argument(TIMEOUT_HEADER + ":" + details[len(_TIMEOUT_FIELD) :])
    return exc


def watch_client_gone(scope: Scope, receive: Receive, hang_up: Callable[[], None]) -> Callable[[], None]:
    """Calls `hang_up` when the client disconnects (the body has been read, so only that can arrive).

    Served by the gateway's own protocol, the connection reports it (no task per
    request); under another server a task waits on `receive` for the disconnect.
    """
    stop = watch_disconnect(scope, hang_up)
    if stop is not None:
        return stop
    watcher = asyncio.create_task(_wait_client_gone(receive))
    watcher.add_done_callback(lambda done: None if done.cancelled() else hang_up())
    return watcher.cancel  # type: ignore[return-value]


async def _wait_client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def invocation_result_response(result: scheduler_pb2.InvokeResponse) -> Response:
    headers = {"X-Execution-Id": result.execution_id}
    if result.status == types_pb2.EXECUTION_STATE_SUCCESS:
        output = result.output
        if is_json_media_type(output.content_type):
            return raw_json_response(invocation_success_body(result.execution_id, output), 200, headers)
        return Response(output.data, 200, headers, media_type=output.content_type)
    if result.status == types_pb2.EXECUTION_STATE_TIMEOUT:
        status_code = 408
    elif result.status == types_pb2.EXECUTION_STATE_ERROR:
        status_code = 502
    else:
        return internal_error_response(headers)
    error = error_to_json(result.error, result.status)
    status_code = _ERROR_CODE_STATUS.get(error["code"], status_code)
    body = invocation_error_body(result.execution_id, state_name(result.status), error)
    return raw_json_response(body, status_code, headers)


@router.post(
    "/v1/functions/{name}:enqueue",
    operation_id="enqueueFunction",
    status_code=202,
    response_model=EnqueueResponse,
    responses={
        202: {
            "headers": {
                **EXECUTION_ID_HEADER,
                "Location": {"description": "The execution's URL", "schema": {"type": "string"}},
            }
        },
        **error_responses(400, 404, 413, 415, 429, 503),
    },
    openapi_extra=ENQUEUE_EXTRA,
)
async def enqueue_function(name: str, request: Request) -> Response:
    return await enqueue(
        gateway_clients(request), gateway_settings(request), name, request.headers, await request.body()
    )


async def enqueue(
    clients: GatewayClients, settings: Settings, name: str, headers: Headers, body: bytes
) -> Response:
    """An async invocation, independent of how the request arrived."""
    require_function_name(name)
    media_type = payload_media_type(headers)
    request = build_invoke_request(
        name,
        headers,
        media_type,
        body,
        timeout_ms=None,
        min_registry_revision=clients.min_registry_revision,
        min_registry_epoch=clients.min_registry_epoch,
        settings=settings,
        callback_url=callback_url(headers, policy_for(settings.outbound_deny, settings.outbound_allow)),
    )
    admitted = await clients.invocations.enqueue(request, settings.rpc_timeout_s)
    execution_id = admitted.execution_id
    status = state_name(admitted.status) if admitted.status else "queued"
    return json_response(
        {"executionId": execution_id, "status": status},
        202,
        {"X-Execution-Id": execution_id, "Location": f"/v1/executions/{execution_id}"},
    )


def fast_routes() -> dict[str, BaseRoute]:
    """This router's invoke and enqueue routes by action, for the fast path that serves them."""
    endpoints = {invoke_function: "invoke", enqueue_function: "enqueue"}
    return {
        endpoints[route.endpoint]: route
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint in endpoints
    }
