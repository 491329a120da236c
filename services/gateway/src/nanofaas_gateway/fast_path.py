"""Invoke and enqueue without FastAPI: the two hot routes as a plain ASGI handler.

FastAPI's routing, dependency solving and request objects cost more than the
rest of an invocation's work in the gateway; these two routes need none of it.
They stay declared in FastAPI (OpenAPI, /docs) and share their implementation
with those routes; this handler just reaches it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

import grpc
from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from nanofaas_gateway.clients import GatewayClients
from nanofaas_gateway.config import Settings
from nanofaas_gateway.errors import ApiError, error_response, grpc_error_response, internal_error_response
from nanofaas_gateway.routes.invocations import enqueue, invoke, watch_client_gone

log = logging.getLogger(__name__)

_PREFIX = "/v1/functions/"


class InvocationFastPath:
    """`routes`: the FastAPI routes it stands in for, by action ("invoke", "enqueue").

    The one serving a request goes into the scope as a router would put it, so
    the metrics name its template without matching the path against every route.
    """

    def __init__(
        self, app: ASGIApp, clients: GatewayClients, settings: Settings, routes: Mapping[str, BaseRoute]
    ) -> None:
        self.app = app
        self._clients = clients
        self._settings = settings
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(_PREFIX):
                name, _, action = path[len(_PREFIX) :].rpartition(":")
                if action in ("invoke", "enqueue") and name and "/" not in name:
                    scope["route"] = self._routes[action]
                    await self._serve(scope, receive, send, name, action)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, name: str, action: str) -> None:
        headers = Headers(scope=scope)
        try:
            body = await _read_body(receive)
            if action == "invoke":
                response = await invoke(
                    self._clients,
                    self._settings,
                    name,
                    headers,
                    body,
                    watch_client=partial(watch_client_gone, scope, receive),
                )
            else:
                response = await enqueue(self._clients, self._settings, name, headers, body)
        except ApiError as exc:
            response = error_response(exc.status_code, exc.code, exc.message, exc.headers)
        except grpc.aio.AioRpcError as exc:
            response = grpc_error_response(exc)
        except Exception:
            log.exception("invocation failed", extra={"functionName": name})
            response = internal_error_response()
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (the body-limit middleware outside has already bounded it)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)
