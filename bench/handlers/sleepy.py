"""A handler that holds its replica for `input` seconds: demand the autoscaler can see."""

from __future__ import annotations

import time
from typing import Any


def handle(request: Any, context: Any = None) -> str:
    time.sleep(float(request["input"] or 0))
    return "ok"
