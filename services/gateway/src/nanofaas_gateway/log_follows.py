"""The followed log streams open right now, so that shutdown ends them at once.

A follow is an answer that never ends by itself; uvicorn's graceful shutdown
would wait its whole grace for it. The server ends them first (__main__.py),
so the clients see a cleanly finished stream and reconnect elsewhere.
"""

from __future__ import annotations

from typing import Any


class LogFollows:
    def __init__(self) -> None:
        self._calls: set[Any] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, call: Any) -> None:
        self._calls.add(call)

    def discard(self, call: Any) -> None:
        self._calls.discard(call)

    def close_all(self) -> None:
        """No new follows; every open one ends (its gRPC stream is cancelled)."""
        self.closing = True
        for call in list(self._calls):
            call.cancel()
