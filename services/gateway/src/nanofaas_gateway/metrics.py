"""Request metrics, labelled by route template (never the raw path, which would explode cardinality)."""

from __future__ import annotations

import time

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nanofaas_gateway.route_templates import UNMATCHED_ROUTE, RouteTemplates, method_label

# A `_created` series beside every counter and histogram doubles the series count for a
# timestamp nobody graphs: off, process-wide, before any metric is collected.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

__all__ = ["UNMATCHED_ROUTE", "GatewayMetrics", "MetricsMiddleware"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gateway_requests_total",
            "HTTP requests answered by the gateway, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request start to the end of the response, by route template and method",
            ["route", "method"],
            registry=registry,
            buckets=_BUCKETS,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight",
            "HTTP requests the gateway has received and not yet answered",
            registry=registry,
        )


# The labelled children of one (route, method, status) series.
_Children = tuple[Counter, Histogram]


class MetricsMiddleware:
    """Pure ASGI middleware; must be outside every layer that answers requests, to count them all.

    Labelled children are cached per (route, method, status), so a request costs a
    dict lookup instead of prometheus_client's label validation and locking.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, templates: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates
        self._children: dict[tuple[str, str, int], _Children] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        observer = _RequestObserver(self, scope, send)
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observer.send)
        finally:
            if not observer.recorded:
                observer.record()

    def children(self, route: str, method: str, status: int) -> _Children:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(route, method, str(status)),
                self.metrics.duration.labels(route, method),
            )
            self._children[key] = children
        return children


class _RequestObserver:
    """Watches one request's response messages and records it exactly once."""

    __slots__ = ("_downstream", "_middleware", "_scope", "_started", "_status", "recorded")

    def __init__(self, middleware: MetricsMiddleware, scope: Scope, downstream: Send) -> None:
        self._middleware = middleware
        self._scope = scope
        self._downstream = downstream
        self._started = time.perf_counter()
        # What the server answers when the application fails before starting a response.
        self._status = 500
        self.recorded = False

    async def send(self, message: Message) -> None:
        message_type = message["type"]
        if message_type == "http.response.start":
            self._status = message["status"]
        elif message_type == "http.response.body" and not message.get("more_body", False):
            # Recorded before the last bytes leave, so a client that saw the
            # response also sees it counted and no longer in flight.
            self.record()
        await self._downstream(message)

    def record(self) -> None:
        if self.recorded:
            return
        self.recorded = True
        middleware = self._middleware
        scope = self._scope
        route = middleware.templates.template(scope)
        counter, histogram = middleware.children(route, method_label(scope["method"]), self._status)
        counter.inc()
        histogram.observe(time.perf_counter() - self._started)
        middleware.metrics.in_flight.dec()
