"""Label and field selectors: the ``?labelSelector=`` string grammar and ``LabelSelector`` objects.

Both follow ``k8s.io/apimachinery/pkg/labels`` and ``fields``: equality (``=``, ``==``, ``!=``),
set-based (``in``, ``notin``, ``key``, ``!key``) and numeric ``>``/``<`` for labels; ``=``/``!=``
on a fixed list of fields per resource, anything else is a 400 as the real server answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if not present or value is None:
            return False
        try:
            number, bound = int(value), int(self.values[0])
        except ValueError:
            return False
        return number > bound if self.op == "gt" else number < bound


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        found = labels or {}
        return all(req.matches(found) for req in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _check_key(key: str, text: str) -> str:
    if not key or len(key.rsplit("/", maxsplit=1)[-1]) > 63 or not _KEY.match(key):
        raise bad_request(f'unable to parse requirement: invalid label key "{key}" in "{text}"')
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise bad_request(f'unable to parse requirement: invalid label value: "{value}" in "{text}"')
    return value


_SET = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(\S*)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``?labelSelector=``; a malformed selector raises a 400 like the real server."""
    if text is None or not text.strip():
        return LabelSelector()
    requirements: list[Requirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise bad_request(f"unable to parse requirement: found '', expected: identifier in \"{text}\"")
        set_match = _SET.match(part)
        if set_match:
            key, op, values = set_match.group(1), set_match.group(2), set_match.group(3)
            items = tuple(_check_value(v.strip(), text) for v in values.split(",")) if values.strip() else ()
            if not items:
                raise bad_request(
                    f"unable to parse requirement: for 'in', 'notin' operators, values set "
                    f'can\'t be empty in "{text}"'
                )
            requirements.append(Requirement(_check_key(key, text), op, items))
            continue
        cmp_match = _CMP.match(part)
        if cmp_match:
            key, op, value = cmp_match.group(1), cmp_match.group(2), cmp_match.group(3)
            if op in (">", "<"):
                if not value.isdigit():
                    raise bad_request(
                        f"unable to parse requirement: for 'Gt', 'Lt' operators, the value "
                        f'must be an integer in "{text}"'
                    )
                requirements.append(Requirement(_check_key(key, text), "gt" if op == ">" else "lt", (value,)))
            else:
                requirements.append(
                    Requirement(
                        _check_key(key, text), "!=" if op == "!=" else "=", (_check_value(value, text),)
                    )
                )
            continue
        if part.startswith("!"):
            requirements.append(Requirement(_check_key(part[1:].strip(), text), "!"))
        else:
            requirements.append(Requirement(_check_key(part, text), "exists"))
    return LabelSelector(tuple(requirements))


def selector_from_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions``) as a matcher."""
    if not selector:
        return LabelSelector()
    requirements = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise ApiError(422, "Invalid", f"invalid label selector operator: {expr.get('operator')}")
        requirements.append(
            Requirement(str(expr["key"]), op, tuple(str(v) for v in expr.get("values") or ()))
        )
    return LabelSelector(tuple(requirements))


def selector_from_map(labels: Mapping[str, str] | None) -> LabelSelector:
    """A Service's / ReplicationController's plain map selector."""
    return LabelSelector(tuple(Requirement(k, "=", (v,)) for k, v in (labels or {}).items()))


def _path(*names: str) -> Callable[[Mapping[str, Any]], str]:
    def get(obj: Mapping[str, Any]) -> str:
        current: Any = obj
        for name in names:
            current = current.get(name) if isinstance(current, Mapping) else None
        if current is None:
            return ""
        if isinstance(current, bool):
            return "true" if current else "false"
        return str(current)

    return get


_COMMON_FIELDS = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}
_EXTRA_FIELDS: dict[tuple[str, str], dict[str, Callable[[Mapping[str, Any]], str]]] = {
    ("", "pods"): {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    ("", "events"): {
        f"involvedObject.{f}": _path("involvedObject", f)
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    }
    | {"reason": _path("reason"), "type": _path("type"), "source": _path("source", "component")},
    ("", "secrets"): {"type": _path("type")},
    ("", "nodes"): {"spec.unschedulable": _path("spec", "unschedulable")},
    ("", "namespaces"): {"status.phase": _path("status", "phase")},
    ("batch", "jobs"): {"status.successful": _path("status", "succeeded")},
    ("apps", "replicasets"): {"status.replicas": _path("status", "replicas")},
}


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[Callable[[Mapping[str, Any]], str], bool, str], ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((get(obj) == value) == equal for get, equal, value in self.terms)


def parse_field_selector(text: str | None, resource_key: tuple[str, str]) -> FieldSelector:
    """Parse ``?fieldSelector=``; fields the resource does not index are a 400 as on a real server."""
    if text is None or not text.strip():
        return FieldSelector()
    allowed = _COMMON_FIELDS | _EXTRA_FIELDS.get(resource_key, {})
    terms = []
    for raw in text.split(","):
        part = raw.strip()
        match = re.match(r"^([^=!]+)(==|=|!=)(.*)$", part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = match.group(1).strip(), match.group(2), match.group(3).strip()
        getter = allowed.get(field)
        if getter is None:
            raise bad_request(f"field label not supported: {field}")
        terms.append((getter, op != "!=", value))
    return FieldSelector(tuple(terms))
