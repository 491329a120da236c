"""Handlers of the Kubernetes-specific e2e tests (run in pods of the fake cluster by the runtime)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def environment(request: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The env vars named in input["names"], after marking the arrival and sleeping input["sleep"] s.

    ARRIVED_DIR: a file named after this process appears there when a request arrives, so a test
    knows the request reached a pod (and which process took it).
    """
    arrived = os.environ.get("ARRIVED_DIR")
    if arrived:
        (Path(arrived) / f"{os.getpid()}").write_text(str(request["input"]))
    time.sleep(float(request["input"].get("sleep", 0)))
    return {
        "env": {name: os.environ.get(name) for name in request["input"].get("names", [])},
        "pid": os.getpid(),
        "pod": os.environ.get("HOSTNAME"),
    }
