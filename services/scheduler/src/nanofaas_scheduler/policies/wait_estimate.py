"""Estimated queue wait, from how long the function's recent executions took."""

from __future__ import annotations

import math
from collections import deque


class WaitEstimator:
    """A sliding window of recent execution durations of one function.

    With `concurrency` slots each taking `mean` seconds, a newcomer behind
    `queued` items waits about ceil((queued + 1 - free) / concurrency) * mean.
    No samples yet means no estimate: admission never rejects on a guess.
    """

    def __init__(self, window: int = 32) -> None:
        self._durations: deque[float] = deque(maxlen=window)
        self._total = 0.0

    def record(self, duration_s: float) -> None:
        if len(self._durations) == self._durations.maxlen:
            self._total -= self._durations[0]
        self._durations.append(duration_s)
        self._total += duration_s

    @property
    def mean_s(self) -> float | None:
        return self._total / len(self._durations) if self._durations else None

    def estimate_s(self, queued: int, inflight: int, concurrency: int) -> float:
        mean = self.mean_s
        free = max(concurrency - inflight, 0)
        if mean is None or queued < free:
            return 0.0
        rounds = math.ceil((queued + 1 - free) / max(concurrency, 1))
        return rounds * mean

    def retry_after_s(self, concurrency: int) -> int:
        """When one slot is likely to free up, in whole seconds (at least 1)."""
        mean = self.mean_s
        return max(1, math.ceil(mean / max(concurrency, 1))) if mean else 1
