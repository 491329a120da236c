"""Assembly of the FastAPI application: routes, error mapping, body limit, metrics, OpenAPI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from nanofaas_gateway.api_auth import ApiAuthMiddleware, TokenFile
from nanofaas_gateway.body_limit import BodyLimitMiddleware
from nanofaas_gateway.clients import GatewayClients
from nanofaas_gateway.config import Settings
from nanofaas_gateway.errors import install_error_handlers
from nanofaas_gateway.fast_path import InvocationFastPath
from nanofaas_gateway.log_follows import LogFollows
from nanofaas_gateway.metrics import GatewayMetrics, MetricsMiddleware
from nanofaas_gateway.openapi_docs import refine_openapi
from nanofaas_gateway.route_templates import RouteTemplates
from nanofaas_gateway.routes import executions, functions, health, introspection, invocations
from nanofaas_gateway.tracing import instrument_app

VERSION = "0.1.0"
# Operations whose bodies FastAPI validates against a model: the only ones with a 422.
_OPERATIONS_WITH_422 = {"registerFunction", "updateFunction", "completeExecution"}


class GatewayApp(FastAPI):
    """FastAPI plus an edge: ASGI middleware wrapped outside FastAPI's own stack.

    The invoke/enqueue fast path and the cross-cutting middleware live at the
    edge, so the hot routes never pass through FastAPI's exception and
    body-limit layers; everything else reaches FastAPI as usual.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._edge: ASGIApp | None = None

    def wrap(self, middleware: Callable[..., ASGIApp], **options: Any) -> None:
        """Wrap the edge in one more middleware (the last wrapped is outermost)."""
        inner = self._edge if self._edge is not None else super().__call__
        self._edge = middleware(inner, **options)

    def edge_layers(self) -> list[str]:
        """Names of the edge middleware, outermost first (each keeps its inner app as `.app`)."""
        names, layer = [], self._edge
        while layer is not None and not isinstance(getattr(layer, "__self__", None), FastAPI):
            names.append(type(layer).__name__)
            layer = getattr(layer, "app", None)
        return names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._edge is None:
            await super().__call__(scope, receive, send)
        else:
            await self._edge(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            refine_openapi(super().openapi(), _OPERATIONS_WITH_422)
        return super().openapi()


def create_app(
    settings: Settings, clients: GatewayClients, *, metrics_registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build the gateway app. Metrics go to `metrics_registry` (a fresh registry when None).

    Traced (server spans named by route template) when tracing.setup_tracing() turned tracing on.
    """
    app = GatewayApp(
        title="nanofaas gateway",
        version=VERSION,
        description="REST API of nanofaas: function registry, invocations and executions.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # A spec body without Content-Type is read as JSON (curl-friendly).
        strict_content_type=False,
    )
    app.state.settings = settings
    app.state.clients = clients
    # Followed log streams, which shutdown ends first (__main__.py).
    app.state.log_follows = LogFollows()
    install_error_handlers(app)
    routers = (
        functions.router,
        introspection.router,
        invocations.router,
        executions.router,
        health.router,
    )
    for router in routers:
        app.include_router(router)
    # Invoke and enqueue skip FastAPI altogether (inside the body limit and metrics).
    app.wrap(InvocationFastPath, clients=clients, settings=settings, routes=invocations.fast_routes())
    app.wrap(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.api_tokens_file:  # before anything reads a body; inside metrics, which count the 401s
        app.wrap(
            ApiAuthMiddleware, tokens=TokenFile(settings.api_tokens_file), open_paths=settings.open_paths
        )
    metrics = GatewayMetrics(metrics_registry if metrics_registry is not None else CollectorRegistry())
    # FastAPI keeps included routers as opaque entries in app.router.routes: list their routes
    # (the routers have no prefix, so their paths are the full templates).
    all_routes = [*app.router.routes, *(route for r in routers for route in r.routes)]
    app.state.all_routes = all_routes  # for the Allow header of a 405 (errors.allowed_methods)
    templates = RouteTemplates(all_routes)
    # Outside the body limit, so it also counts 413s and errors answered by the inner layers.
    app.wrap(MetricsMiddleware, metrics=metrics, templates=templates)
    # Outermost (a no-op when tracing is off): the server span covers everything, metrics included.
    instrument_app(app, templates)
    return app
