"""Token-bucket rate limiting: bounded admissions per second, with a burst allowance."""

from __future__ import annotations

import math
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second refill a bucket of `burst`; each admission takes one."""

    def __init__(self, rate: float, clock: Callable[[], float], burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def retry_after_s(self) -> int:
        """Whole seconds until a token is available (at least 1, as Retry-After wants)."""
        missing = 1.0 - self._tokens
        return max(1, math.ceil(missing / self.rate))
