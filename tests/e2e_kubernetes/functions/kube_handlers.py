"""Handlers of the Kubernetes-specific e2e tests (run in pods of the fake cluster by the runtime)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def environment(request: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The env vars named in input["names"], after marking the arrival and sleeping input["sleep"] s
    (or input["sleep_once"] s if it is the first request to arrive).

    ARRIVED_DIR: a file named after this process appears there when a request arrives, so a test
    knows the request reached a pod (and which process took it).
    """
    arrived = os.environ.get("ARRIVED_DIR")
    first = True
    if arrived:
        first = not any(Path(arrived).iterdir())
        (Path(arrived) / f"{os.getpid()}").write_text(str(request["input"]))
    # "sleep_once": only the first request to arrive sleeps (a retry elsewhere answers at once).
    time.sleep(
        float(request["input"].get("sleep", 0)) or (float(request["input"].get("sleep_once", 0)) * first)
    )
    return {
        "env": {name: os.environ.get(name) for name in request["input"].get("names", [])},
        "pid": os.getpid(),
        "pod": os.environ.get("HOSTNAME"),
    }
