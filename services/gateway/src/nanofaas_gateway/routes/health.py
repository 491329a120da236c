"""Liveness (the process answers) and readiness (both backend services are SERVING)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from nanofaas_gateway import codes
from nanofaas_gateway.errors import error_response
from nanofaas_gateway.models import HealthStatus
from nanofaas_gateway.openapi_docs import error_responses
from nanofaas_gateway.responses import gateway_clients, gateway_settings, raw_json_response

router = APIRouter(tags=["health"])

_OK = b'{"status":"ok"}'
_READY = b'{"status":"ready"}'


@router.get("/healthz", operation_id="healthz", response_model=HealthStatus)
async def healthz() -> Response:
    return raw_json_response(_OK)


@router.get("/readyz", operation_id="readyz", response_model=HealthStatus, responses=error_responses(503))
async def readyz(request: Request) -> Response:
    unready = await gateway_clients(request).unready_services(gateway_settings(request).readiness_timeout_s)
    if unready:
        return error_response(503, codes.UNAVAILABLE, f"not ready: {', '.join(unready)} not serving")
    return raw_json_response(_READY)
