"""A handler module that starts a thread at import: not safe to fork from."""

from __future__ import annotations

import threading
from typing import Any

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="import-time-worker", daemon=True).start()


def handle(request: dict[str, Any], context: Any = None) -> str:
    return "ok"
