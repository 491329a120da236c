"""Outcomes reported from outside dispatch(): a runtime's callback, fenced by attempt number.

A backend whose runtime reports its own result (a Kubernetes Job calling back)
and one that answers in-band (an HTTP reply) must end an attempt the same way,
so retries, metrics and tracing apply to both. The board holds one open slot
per running attempt: the attempt's number and the task dispatching it. A
report fills the slot and cancels that task; the dispatch of that attempt
then returns the reported outcome (see dispatch/out_of_band.py). A report for
any other attempt number is stale and ignored.

An open slot costs a dict entry, no future and no task: reports are rare,
attempts are the hot path.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from nanofaas_scheduler.core.outcome import Outcome


@dataclass(slots=True, eq=False)
class Slot:
    number: int
    task: asyncio.Task[Any]
    reported: Outcome | None = None


class ReportBoard:
    def __init__(self) -> None:
        self._open: dict[str, Slot] = {}

    def open(self, execution_id: str, number: int) -> Slot:
        """The slot of an attempt the current task is about to dispatch."""
        task = asyncio.current_task()
        assert task is not None, "attempts are dispatched from a task"
        slot = self._open[execution_id] = Slot(number, task)
        return slot

    def close(self, execution_id: str, slot: Slot) -> None:
        """The attempt ended (whichever way): later reports of it are stale."""
        if self._open.get(execution_id) is slot:
            del self._open[execution_id]

    def current(self, execution_id: str) -> int:
        """The number of the attempt open for reports, or 0."""
        slot = self._open.get(execution_id)
        return slot.number if slot is not None else 0

    def report(self, execution_id: str, number: int, outcome: Outcome) -> bool:
        """End the open attempt if `number` is its (0 = whichever is open); False if ignored."""
        slot = self._open.get(execution_id)
        if slot is None or slot.reported is not None or number not in (0, slot.number):
            return False
        slot.reported = outcome
        slot.task.cancel()  # the backend stops what it started, as on a deadline
        return True
