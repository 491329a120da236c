"""Function CRUD, forwarded to the registry."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from nanofaas.v1 import registry_pb2
from nanofaas_gateway.convert import (
    FORM_URLENCODED,
    JSON,
    is_json_request_body,
    loads_clamped,
    spec_to_json,
    spec_to_proto,
    summary_to_json,
)
from nanofaas_gateway.errors import invalid_argument, unsupported_media_type
from nanofaas_gateway.invocation_body import MAX_JSON_DEPTH
from nanofaas_gateway.models import FunctionSpec, FunctionSpecOut, FunctionSummary
from nanofaas_gateway.openapi_docs import error_responses
from nanofaas_gateway.responses import (
    gateway_clients,
    gateway_settings,
    json_response,
    require_function_name,
)


def require_json_body(request: Request) -> None:
    """A spec sent as bytes is refused with 415 rather than a confusing 422.

    `curl -d` without -H Content-Type labels JSON as form data: that is read as JSON.
    """
    if not is_json_request_body(request.headers.get("content-type", "")):
        raise unsupported_media_type("Content-Type must be application/json")


class _SpecRequest(Request):
    """A request whose JSON body is parsed with every integer clamped to int64.

    So a number of any length reaches the registry's range check (a 5000-digit
    concurrency gets the answer 10001 gets), instead of failing in the JSON parser.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_clamped_json"):
            self._clamped_json = _checked_json(await self.body())
        return self._clamped_json


def _checked_json(body: bytes) -> Any:
    """The clamped JSON, refused with 400 when no message could carry it.

    JSON may spell lone surrogates ("\\ud800") that no UTF-8 string (so no gRPC message)
    can hold, and nest deeper than any encoder goes: both are bad input, not a 500.
    Re-encoding with orjson finds both (it refuses surrogates and more than 254 levels).
    """
    try:
        document = loads_clamped(body)
    except RecursionError:
        raise StarletteHTTPException(400, "body: JSON nested too deeply") from None
    try:
        orjson.dumps(document)
    except orjson.JSONEncodeError as exc:
        if "surrogates" in str(exc):
            raise StarletteHTTPException(400, "body: a string holds a lone surrogate (not Unicode)") from None
        raise StarletteHTTPException(400, f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    return document


class _SpecRoute(APIRoute):
    """Hands FastAPI a _SpecRequest, the documented way to change how a route reads its body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(_SpecRequest(_form_as_json(request.scope), request.receive))

        return handle


def _form_as_json(scope: Scope) -> Scope:
    """curl's default form type relabelled as JSON, which is what `curl -d '{...}'` sends."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    if not any(k == b"content-type" and v.lower().startswith(FORM_URLENCODED.encode()) for k, v in headers):
        return scope
    relabelled = [(k, JSON.encode() if k == b"content-type" else v) for k, v in headers]
    return {**scope, "headers": relabelled}


router = APIRouter(tags=["functions"], route_class=_SpecRoute)


@router.post(
    "/v1/functions",
    operation_id="registerFunction",
    status_code=201,
    dependencies=[Depends(require_json_body)],
    response_model=FunctionSummary,
    responses={
        201: {"headers": {"Location": {"description": "The function's URL", "schema": {"type": "string"}}}},
        **error_responses(400, 409, 413, 415, 422),
    },
)
async def register_function(spec: FunctionSpec, request: Request) -> Response:
    clients = gateway_clients(request)
    call = clients.registry.Register(
        registry_pb2.RegisterRequest(spec=spec_to_proto(spec)),
        timeout=gateway_settings(request).rpc_timeout_s,
    )
    stored = await call
    await clients.observe_mutation(call, stored.revision)
    return json_response(summary_to_json(stored), 201, {"Location": f"/v1/functions/{stored.name}"})


@router.get("/v1/functions", operation_id="listFunctions", response_model=list[FunctionSummary])
async def list_functions(request: Request) -> Response:
    listing = await gateway_clients(request).registry.List(
        registry_pb2.ListFunctionsRequest(), timeout=gateway_settings(request).rpc_timeout_s
    )
    return json_response([summary_to_json(spec) for spec in listing.functions])


@router.get(
    "/v1/functions/{name}",
    operation_id="getFunction",
    response_model=FunctionSpecOut,
    response_model_exclude_none=True,
    responses=error_responses(404),
)
async def get_function(name: str, request: Request) -> Response:
    require_function_name(name)
    spec = await gateway_clients(request).registry.Get(
        registry_pb2.GetFunctionRequest(name=name), timeout=gateway_settings(request).rpc_timeout_s
    )
    return json_response(spec_to_json(spec))


@router.put(
    "/v1/functions/{name}",
    operation_id="updateFunction",
    dependencies=[Depends(require_json_body)],
    response_model=FunctionSpecOut,
    response_model_exclude_none=True,
    responses=error_responses(400, 404, 413, 415, 422),
)
async def update_function(name: str, spec: FunctionSpec, request: Request) -> Response:
    require_function_name(name)
    if spec.name != name:
        raise invalid_argument(f"name: '{spec.name}' does not match the name in the path '{name}'")
    clients = gateway_clients(request)
    call = clients.registry.Update(
        registry_pb2.UpdateRequest(name=name, spec=spec_to_proto(spec)),
        timeout=gateway_settings(request).rpc_timeout_s,
    )
    stored = await call
    await clients.observe_mutation(call, stored.revision)
    return json_response(spec_to_json(stored))


@router.delete(
    "/v1/functions/{name}",
    operation_id="deleteFunction",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def delete_function(name: str, request: Request) -> Response:
    require_function_name(name)
    clients = gateway_clients(request)
    call = clients.registry.Delete(
        registry_pb2.DeleteFunctionRequest(name=name), timeout=gateway_settings(request).rpc_timeout_s
    )
    deleted = await call
    await clients.observe_mutation(call, deleted.revision)
    return Response(status_code=204)
