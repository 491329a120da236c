"""A lane: one function's FIFO queue and its in-flight count."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Execution
from nanofaas_scheduler.policies.rate_limit import TokenBucket
from nanofaas_scheduler.policies.wait_estimate import WaitEstimator


@dataclass(slots=True, eq=False)
class Lane:
    spec: types_pb2.FunctionSpec
    queue: deque[Execution] = field(default_factory=deque)
    inflight: int = 0
    estimator: WaitEstimator = field(default_factory=WaitEstimator)
    # The function's own rateLimitPerSecond, when it has one.
    limiter: TokenBucket | None = None

    def set_spec(self, spec: types_pb2.FunctionSpec, clock: Callable[[], float]) -> None:
        """Adopt a newer spec; a changed rate limit starts a fresh bucket."""
        self.spec = spec
        rate = spec.rate_limit_per_second
        if rate <= 0:
            self.limiter = None
        elif self.limiter is None or self.limiter.rate != rate:
            self.limiter = TokenBucket(rate, clock)

    @property
    def name(self) -> str:
        return self.spec.name

    def has_room(self) -> bool:
        return len(self.queue) < self.spec.queue_size

    def can_start(self) -> bool:
        return bool(self.queue) and self.inflight < self.spec.concurrency
