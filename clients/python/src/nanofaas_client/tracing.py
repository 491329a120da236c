"""traceparent propagation: the caller's W3C trace context travels with every invocation.

An explicit `traceparent=` wins; otherwise the one set with `propagate(...)` for
the current context (thread or asyncio task) is sent, so a function that calls
another can pass on the traceparent it was invoked with, and the platform joins
both into one trace.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

_current: ContextVar[str] = ContextVar("nanofaas_traceparent", default="")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def is_traceparent(value: str) -> bool:
    return bool(_TRACEPARENT.fullmatch(value.strip().lower()))


@contextlib.contextmanager
def propagate(traceparent: str) -> Iterator[None]:
    """Send `traceparent` with every invocation made inside the block (this thread or task)."""
    if not is_traceparent(traceparent):
        raise ValueError(f"not a W3C traceparent: {traceparent!r}")
    token = _current.set(traceparent)
    try:
        yield
    finally:
        _current.reset(token)


def current_traceparent() -> str:
    return _current.get()
