"""Idempotency keys: the same key for the same function maps to one execution."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class IdempotencyIndex:
    """(function, key) -> execution id for `ttl_s` seconds after first use.

    Entries are kept in insertion order, so expiry is a walk from the oldest
    end that stops at the first live entry.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, function: str, key: str) -> str | None:
        self.expire()
        entry = self._entries.get((function, key))
        return entry[0] if entry else None

    def put(self, function: str, key: str, execution_id: str) -> None:
        self._entries[(function, key)] = (execution_id, self._clock() + self._ttl)
        self._entries.move_to_end((function, key))

    def forget(self, function: str, key: str) -> None:
        self._entries.pop((function, key), None)

    def expire(self) -> None:
        now = self._clock()
        while self._entries:
            _, (_, expires) = next(iter(self._entries.items()))
            if expires > now:
                return
            self._entries.popitem(last=False)
