"""The audit record: every request the API server answered, as RBAC would see it.

RBAC grants verbs on ``group`` + ``resource[/subresource]``; :meth:`Audit.permissions` turns the
record into exactly that shape, so a test can compare a Role's rules with what a client really used.
Requests from the in-process controllers and kubelet never pass through HTTP and are not recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AuditRecord:
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection; or the HTTP method
    group: str
    resource: str  # "" for non-resource URLs (/api, /version...)
    subresource: str
    namespace: str
    name: str
    code: int
    user: str
    user_agent: str
    path: str
    at: float

    @property
    def resource_path(self) -> str:
        """``pods``, ``pods/log``, ``deployments/scale``: the resource name a Role rule lists."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


class Audit:
    """Thread-safe: the server appends on its loop thread, tests read from theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[AuditRecord] = []

    def add(
        self,
        *,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str,
        code: int,
        user: str,
        user_agent: str,
        path: str,
    ) -> None:
        record = AuditRecord(
            verb, group, resource, subresource, namespace, name, code, user, user_agent, path, time.time()
        )
        with self._lock:
            self._records.append(record)

    def records(self, *, user: str | None = None) -> list[AuditRecord]:
        with self._lock:
            return [r for r in self._records if user is None or r.user == user]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def calls(self, *, user: str | None = None) -> set[tuple[str, str]]:
        """``(verb, resource[/subresource])`` pairs for resource requests."""
        return {(r.verb, r.resource_path) for r in self.records(user=user) if r.resource}

    def permissions(self, *, user: str | None = None) -> dict[tuple[str, str], set[str]]:
        """``(apiGroup, resource[/subresource]) -> verbs``: what a Role must grant this client."""
        needed: dict[tuple[str, str], set[str]] = {}
        for record in self.records(user=user):
            if record.resource:
                needed.setdefault((record.group, record.resource_path), set()).add(record.verb)
        return needed

    def rules(self, *, user: str | None = None) -> list[dict[str, list[str]]]:
        """The least Role rules covering what ``user`` did, one rule per (group, resource)."""
        return [
            {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
            for (group, resource), verbs in sorted(self.permissions(user=user).items())
        ]

    def uncovered(
        self, rules: Iterable[Mapping[str, Any]], *, user: str | None = None
    ) -> set[tuple[str, str, str]]:
        """``(apiGroup, resource, verb)`` used by ``user`` that no rule grants (``*`` wildcards honoured)."""

        def granted(group: str, resource: str, verb: str) -> bool:
            return any(
                _has(rule.get("apiGroups"), group)
                and _has(rule.get("resources"), resource)
                and _has(rule.get("verbs"), verb)
                for rule in rules
            )

        return {
            (group, resource, verb)
            for (group, resource), verbs in self.permissions(user=user).items()
            for verb in verbs
            if not granted(group, resource, verb)
        }


def _has(values: Any, wanted: str) -> bool:
    return bool(values) and ("*" in values or wanted in values)
