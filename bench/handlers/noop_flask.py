"""The same no-op as a functions-framework HTTP target (`--target=noop`)."""

from __future__ import annotations

from typing import Any


def noop(request: Any) -> tuple[str, int, dict[str, str]]:
    request.get_data()
    return "null", 200, {"Content-Type": "application/json"}
