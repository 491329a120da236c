"""Route templates and method labels for metrics and span names: bounded values, never raw paths."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "OTHER"
# Methods a label may carry as they are; any other verb a client invents becomes OTHER,
# so a scanner cannot grow the series count.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


class RouteTemplates:
    """Finds the template of the route serving a request.

    A routed request carries its route in the scope (FastAPI puts it there); the
    scan over the routes is only for requests answered before routing (413) or by
    no route (404, 405), and for span names, which are chosen before routing.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = tuple(
            (route, path) for route in routes if isinstance(path := getattr(route, "path", None), str)
        )

    def routed(self, scope: Scope) -> str | None:
        """The template the router chose, or None when the request was not routed (yet)."""
        path = getattr(scope.get("route"), "path", None)
        return path if isinstance(path, str) else None

    def match(self, scope: Scope) -> str | None:
        """The template of the route matching the scope's path (a method mismatch still counts)."""
        partial: str | None = None
        for route, path in self._routes:
            found, _ = route.matches(scope)
            if found is Match.FULL:
                return path
            if found is Match.PARTIAL and partial is None:
                partial = path
        return partial

    def template(self, scope: Scope) -> str:
        """The template for a metric label: routed, else matched, else UNMATCHED_ROUTE."""
        return self.routed(scope) or self.match(scope) or UNMATCHED_ROUTE
