"""Status conditions (``type``/``status``/``reason``/``message``), set the way controllers do."""

from __future__ import annotations

from typing import Any

from . import meta as m


def get_condition(status: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for condition in (status or {}).get("conditions") or ():
        if condition.get("type") == kind:
            found: dict[str, Any] = condition
            return found
    return None


def is_true(status: dict[str, Any] | None, kind: str) -> bool:
    condition = get_condition(status, kind)
    return condition is not None and condition.get("status") == "True"


def set_condition(
    status: dict[str, Any],
    kind: str,
    value: str,
    reason: str | None = None,
    message: str | None = None,
    *,
    times: tuple[str, ...] = (),
) -> bool:
    """Set a condition; ``lastTransitionTime`` moves only when the status flips, the fields named
    in ``times`` (``lastProbeTime``, ``lastUpdateTime``) whenever anything changes. True if changed."""
    conditions = status.setdefault("conditions", [])
    now = m.timestamp()
    wanted = {"status": value, "reason": reason, "message": message}
    for condition in conditions:
        if condition.get("type") != kind:
            continue
        if all(condition.get(k) == v for k, v in wanted.items()):
            return False
        if condition.get("status") != value:
            condition["lastTransitionTime"] = now
        for key, text in wanted.items():
            if text is None:
                condition.pop(key, None)
            else:
                condition[key] = text
        for field in times:
            condition[field] = now
        return True
    condition = {"type": kind, "status": value, "lastTransitionTime": now}
    condition.update({k: v for k, v in wanted.items() if v is not None and k != "status"})
    for field in times:
        condition[field] = now
    conditions.append(condition)
    return True
