"""The client's two waiting rules, shared by the sync and asyncio clients: back-off and Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between polls of an execution: quick at first, then at most `max_s` apart."""

    initial_s: float = 0.05
    factor: float = 2.0
    max_s: float = 1.0

    def delays(self) -> Iterator[float]:
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_s)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Opt-in: on 429, wait the answer's Retry-After and try again, up to `max_attempts` in all.

    A Retry-After longer than `max_delay_s` is not waited for (the 429 is raised).
    Retrying a refused admission is safe: the refused request was never admitted.
    """

    max_attempts: int = 3
    max_delay_s: float = 30.0

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to answer with `response`."""
        if response.status_code != 429 or attempt >= self.max_attempts:
            return None
        retry_after = retry_after_s(response)
        if retry_after is None or retry_after > self.max_delay_s:
            return None
        return retry_after


NO_RETRY = RetryPolicy(max_attempts=1)


def retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
