"""How much memory one retained, ended execution costs the scheduler.

Runs N small executions through the real scheduler core (a no-op dispatcher, no
processes) and divides the traced allocation growth by N. Reports, never fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tracemalloc

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Execution, Request
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.dispatch.base import Attempt, Dispatcher


class NoOp(Dispatcher):
    """Succeeds at once and remembers nothing, so only the scheduler's own retention is measured."""

    async def dispatch(self, attempt: Attempt) -> Outcome:
        return Outcome(kind=OutcomeKind.SUCCESS, output=b"null")


async def measure(count: int) -> float:
    spec = types_pb2.FunctionSpec(
        name="fn", image="img", timeout_ms=30_000, concurrency=64, queue_size=count, max_retries=3, revision=1
    )
    scheduler = Scheduler(NoOp(), max_executions=count * 2)
    all_ended = asyncio.get_running_loop().create_future()
    ended = 0

    def count_end(_: Execution) -> None:
        nonlocal ended
        ended += 1
        if ended == count:
            all_ended.set_result(None)

    scheduler.on_end.append(count_end)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for n in range(count):
        request = Request(data=b'{"n":%d}' % n, content_type="application/json", metadata={})
        scheduler.submit(spec, Submission(request=request, sync=False))
        if n % 1000 == 999:
            await asyncio.sleep(0)  # let the lane drain, as a live scheduler would
    await all_ended
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(scheduler.store) == count
    return grown / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    count = parser.parse_args().n
    per_execution = asyncio.run(measure(count))
    print(f"{count} retained small executions: {per_execution:.0f} bytes each (traced Python allocations)")


if __name__ == "__main__":
    main()
