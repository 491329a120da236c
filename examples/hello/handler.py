"""The example function `make up` deploys: greets whoever is named in the input."""

from __future__ import annotations

from typing import Any


def handle(request: dict[str, Any], context: Any = None) -> dict[str, Any]:
    data = request.get("input")
    name = data.get("name", "world") if isinstance(data, dict) else "world"
    return {"message": f"Hello, {name}!"}
