"""A function that reports how it runs: its user, whether / and /tmp are writable, its input.

Mounted read-only at /function in the runtime container, so the answers come from inside.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any


def _writable(directory: str) -> bool:
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def handle(request: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return {
        "input": request["input"],
        "uid": os.getuid(),
        "gid": os.getgid(),
        "rootWritable": _writable("/"),
        "functionWritable": _writable("/function"),
        "tmpWritable": _writable("/tmp"),
    }
