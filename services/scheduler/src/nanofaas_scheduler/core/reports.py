"""Outcomes reported from outside dispatch(): a runtime's callback, fenced by attempt number.

A backend whose runtime reports its own result (a Kubernetes Job calling back)
and one that answers in-band (an HTTP reply) must end an attempt the same way,
so retries, metrics and tracing apply to both. The board holds one open slot
per running attempt; a report fills it, and the dispatch of that attempt
returns the reported outcome (see dispatch/out_of_band.py). A report for any
other attempt number is stale and ignored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nanofaas_scheduler.core.outcome import Outcome


@dataclass(slots=True)
class _Slot:
    number: int
    outcome: asyncio.Future[Outcome]


class ReportBoard:
    def __init__(self) -> None:
        self._open: dict[str, _Slot] = {}

    def open(self, execution_id: str, number: int) -> asyncio.Future[Outcome]:
        """The future a report of this attempt resolves; replaces an older attempt's slot."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._open[execution_id] = _Slot(number, future)
        return future

    def close(self, execution_id: str, future: asyncio.Future[Outcome]) -> None:
        """The attempt ended (whichever way): later reports of it are stale."""
        slot = self._open.get(execution_id)
        if slot is not None and slot.outcome is future:
            del self._open[execution_id]

    def current(self, execution_id: str) -> int:
        """The number of the attempt open for reports, or 0."""
        slot = self._open.get(execution_id)
        return slot.number if slot is not None else 0

    def report(self, execution_id: str, number: int, outcome: Outcome) -> bool:
        """Fill the open slot if `number` is its attempt (0 = whichever is open); False if ignored."""
        slot = self._open.get(execution_id)
        if slot is None or slot.outcome.done() or number not in (0, slot.number):
            return False
        slot.outcome.set_result(outcome)
        return True
