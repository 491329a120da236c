"""The innermost wrapper: an attempt ends with whichever comes first, its dispatch or a report.

When a report arrives (core/reports.py), the backend's dispatch is cancelled —
it stops what it started, as on a deadline — and the reported outcome is
returned from here, so every wrapper outside (metrics, tracing) and the
scheduler's retry logic see it exactly like an in-band result.
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
        report = self._board.open(attempt.execution_id, attempt.number)
        # Its own task, so a report can stop it without cancelling the caller.
        running = asyncio.get_running_loop().create_task(self.inner.dispatch(attempt))

        def stop(_: asyncio.Future[Outcome]) -> None:
            running.cancel()

        report.add_done_callback(stop)
        try:
            return await running
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if report.done() and current is not None and not current.cancelling():
                return report.result()
            raise
        finally:
            report.remove_done_callback(stop)
            self._board.close(attempt.execution_id, report)
