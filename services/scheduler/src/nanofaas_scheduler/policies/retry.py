"""Retries of infrastructure failures, with jittered exponential backoff."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind


@dataclass(slots=True)
class RetryPolicy:
    """Only a CRASH (failed to start, died, unreachable) is worth another attempt.

    A FUNCTION_ERROR would fail the same way again, and a timeout has used the
    caller's whole budget.
    """

    base_delay_s: float = 0.02
    max_delay_s: float = 1.0
    rng: random.Random = field(default_factory=random.Random)

    def should_retry(self, outcome: Outcome, attempt: int, max_retries: int) -> bool:
        return outcome.kind is OutcomeKind.CRASH and attempt <= max_retries

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** max(attempt - 1, 0)))
        return self.rng.uniform(ceiling / 2, ceiling)
