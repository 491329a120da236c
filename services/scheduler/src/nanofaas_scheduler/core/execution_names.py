"""Execution ids: made here, or named by the caller (InvokeRequest.execution_id).

A caller that names its executions can ask for one after it lost the answer to
its call (a broken gateway stream). For that answer to be trustworthy, a name
asked for and not found is retired: no execution is admitted under it later, so
a request still on its way (read from a stream that has since broken, or waiting
for the registry) cannot run after the caller was told it did not.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable

# What the scheduler makes (uuid4().hex), and all a caller may name an execution.
_SHAPE = re.compile(r"[0-9a-f]{32}")


def new_random_id() -> str:
    """128 random bits as 32 lowercase hex digits: the shape of uuid4().hex, without
    building a UUID object (a quarter of the cost; every id the scheduler mints)."""
    return os.urandom(16).hex()


def new_execution_id() -> str:
    return new_random_id()


def valid_execution_name(name: str) -> bool:
    return _SHAPE.fullmatch(name) is not None


class RetiredNames:
    """Names asked for and not found, kept `ttl_s` seconds (at most `max_names`, oldest dropped).

    The TTL is the idempotency TTL (15 min by default): a request that has waited
    longer than that before admission is not one its caller still waits for. The
    bound only matters when names are retired in bulk (only API callers with a
    token can): the oldest then lose the guarantee first.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float], max_names: int = 100_000) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._max = max_names
        self._names: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, name: str) -> bool:
        return name in self._names and self._names[name] > self._clock()

    def retire(self, name: str) -> None:
        now = self._clock()
        while self._names:
            oldest, expires = next(iter(self._names.items()))
            if expires > now and len(self._names) < self._max:
                break
            del self._names[oldest]
        self._names[name] = now + self._ttl
        self._names.move_to_end(name)
