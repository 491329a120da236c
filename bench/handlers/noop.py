"""The no-op handler for the nanofaas runtime (WARM, JOB, ENDPOINT and the floor)."""

from __future__ import annotations

from typing import Any


def handle(request: Any, context: Any = None) -> None:
    return None
