"""A lane: one function's FIFO queue and its in-flight count."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Execution
from nanofaas_scheduler.policies.wait_estimate import WaitEstimator


@dataclass(slots=True, eq=False)
class Lane:
    spec: types_pb2.FunctionSpec
    queue: deque[Execution] = field(default_factory=deque)
    inflight: int = 0
    estimator: WaitEstimator = field(default_factory=WaitEstimator)

    @property
    def name(self) -> str:
        return self.spec.name

    def has_room(self) -> bool:
        return len(self.queue) < self.spec.queue_size

    def can_start(self) -> bool:
        return bool(self.queue) and self.inflight < self.spec.concurrency
