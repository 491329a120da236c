"""Small response builders shared by the routes (orjson, no response-model validation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response

from nanofaas_gateway.clients import GatewayClients
from nanofaas_gateway.config import Settings
from nanofaas_gateway.errors import JSON_MEDIA_TYPE, not_found
from nanofaas_gateway.models import NAME_RE


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code, headers, media_type=JSON_MEDIA_TYPE)


def raw_json_response(
    body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(body, status_code, headers, media_type=JSON_MEDIA_TYPE)


def gateway_clients(request: Request) -> GatewayClients:
    return cast(GatewayClients, request.app.state.clients)


def gateway_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def require_function_name(name: str) -> str:
    """A name outside the FunctionSpec pattern cannot exist: answer 404 without asking anyone."""
    if NAME_RE.fullmatch(name) is None:
        raise not_found(f"function '{name}' not found")
    return name
