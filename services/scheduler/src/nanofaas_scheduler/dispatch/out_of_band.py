"""The innermost wrapper: an attempt ends with whichever comes first, its dispatch or a report.

When a report arrives (core/reports.py), the dispatching task is cancelled, so
the backend stops what it started as on a deadline, and the reported outcome is
returned from here: every wrapper outside (metrics, tracing) and the
scheduler's retry logic see it exactly like an in-band result. Only the
cancellation the report caused is absorbed (the technique of
asyncio.timeout()); a cancellation from anyone else propagates.
"""

from __future__ import annotations

import asyncio

from nanofaas_scheduler.core.outcome import Outcome
from nanofaas_scheduler.core.reports import ReportBoard
from nanofaas_scheduler.dispatch.base import Attempt, Dispatcher, DispatcherWrapper


class OutOfBandCompletion(DispatcherWrapper):
    def __init__(self, inner: Dispatcher, board: ReportBoard) -> None:
        super().__init__(inner)
        self._board = board

    async def dispatch(self, attempt: Attempt) -> Outcome:
        slot = self._board.open(attempt.execution_id, attempt.number)
        try:
            outcome = await self.inner.dispatch(attempt)
        except asyncio.CancelledError:
            if slot.reported is not None and slot.task.uncancel() == 0:
                return slot.reported
            raise
        finally:
            self._board.close(attempt.execution_id, slot)
        if slot.reported is not None:  # reported first, but the backend ignored the cancellation
            slot.task.uncancel()
            return slot.reported
        return outcome
