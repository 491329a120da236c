"""Example function: counts words (JSON in, JSON out)."""

from __future__ import annotations

from typing import Any


def handle(request: dict[str, Any], context: Any = None) -> dict[str, Any]:
    text = request["input"].get("text", "") if isinstance(request["input"], dict) else ""
    words = text.split()
    return {"words": len(words), "distinct": len({word.lower() for word in words})}
