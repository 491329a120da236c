"""Fault injection for the API server: errors, throttling and hangs on chosen requests.

A rule matches a verb and a resource (``pods`` is the object itself, ``pods/log`` a subresource,
``pods/*`` both; ``None`` is anything), optionally an API group, namespace and name, and fires for
the next ``times`` matching requests (``None``: until cleared). Rules are set from the test's
thread and consulted on the server's loop thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class FaultRule:
    action: str  # "error" or "hang"
    verb: str | None = None
    resource: str | None = None
    group: str | None = None
    namespace: str | None = None
    name: str | None = None
    times: int | None = 1
    status: int = 500
    reason: str = "InternalError"
    message: str = "fakekube injected fault"
    retry_after: int | None = None
    seconds: float = 30.0
    hits: int = field(default=0)

    def matches(self, request: tuple[str, str, str, str, str, str]) -> bool:
        """``request`` is ``(verb, group, resource, subresource, namespace, name)``."""
        verb, group, resource, subresource, namespace, name = request
        path = f"{resource}/{subresource}" if subresource else resource
        if self.resource is not None and self.resource not in (path, f"{resource}/*"):
            return False
        return (
            (self.verb is None or self.verb == verb)
            and (self.group is None or self.group == group)
            and (self.namespace is None or self.namespace == namespace)
            and (self.name is None or self.name == name)
        )


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, request: tuple[str, str, str, str, str, str]) -> FaultRule | None:
        """The first live rule matching this request, counted as fired."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(request):
                    rule.hits += 1
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    return rule
        return None
