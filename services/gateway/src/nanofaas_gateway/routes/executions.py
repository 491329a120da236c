"""Execution status and the runtimes' completion callback, forwarded to the scheduler."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from starlette.requests import Request
from starlette.responses import Response

from nanofaas.v1 import scheduler_pb2
from nanofaas_gateway.api_auth import COMPLETION_TOKEN_HEADER, is_api_authenticated
from nanofaas_gateway.convert import completion_to_proto, execution_status_body, is_json_media_type
from nanofaas_gateway.errors import unauthenticated, unsupported_media_type, validation_error
from nanofaas_gateway.models import ExecutionStatus
from nanofaas_gateway.openapi_docs import COMPLETE_EXTRA, error_responses
from nanofaas_gateway.responses import gateway_clients, gateway_settings, raw_json_response

router = APIRouter(tags=["executions"])

ExecutionId = Annotated[str, Path(alias="executionId")]


@router.get(
    "/v1/executions/{executionId}",
    operation_id="getExecution",
    response_model=ExecutionStatus,
    response_model_exclude_none=True,
    responses=error_responses(404),
)
async def get_execution(execution_id: ExecutionId, request: Request) -> Response:
    status = await gateway_clients(request).scheduler.GetExecution(
        scheduler_pb2.GetExecutionRequest(execution_id=execution_id),
        timeout=gateway_settings(request).rpc_timeout_s,
    )
    return raw_json_response(execution_status_body(status))


@router.post(
    "/v1/internal/executions/{executionId}:complete",
    operation_id="completeExecution",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404, 413, 415, 422),
    openapi_extra=COMPLETE_EXTRA,
)
async def complete_execution(execution_id: ExecutionId, request: Request) -> Response:
    """A runtime's report, authorized by its attempt's completion token (docs/security.md).

    Without a token, only a caller the API authentication let in (an operator) may
    complete; with API authentication off nobody can.
    """
    token = request.headers.get(COMPLETION_TOKEN_HEADER, "").strip()
    if not token and not is_api_authenticated(request.scope):
        raise unauthenticated(f"{COMPLETION_TOKEN_HEADER}: required (the attempt's completion token)")
    if not is_json_media_type(request.headers.get("content-type", "")):
        raise unsupported_media_type("Content-Type must be application/json")
    completion = _completion_request(execution_id, await request.body())
    completion.completion_token = token
    await gateway_clients(request).scheduler.CompleteExecution(
        completion, timeout=gateway_settings(request).rpc_timeout_s
    )
    return Response(status_code=204)


def _completion_request(execution_id: str, body: bytes) -> scheduler_pb2.CompleteExecutionRequest:
    """The body as a CompleteExecutionRequest; anything malformed is a 422 and never ends the execution."""
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise validation_error(f"body: invalid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise validation_error("body: must be a JSON object")
    try:
        return completion_to_proto(execution_id, document)
    except ValueError as exc:
        raise validation_error(str(exc)) from None
