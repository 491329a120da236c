"""The worker threads of sync handlers: results, exceptions, context, concurrency, lazy start."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading

import pytest

from nanofaas_runtime.workers import Workers

_WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="")
# A name per test run: threads a previous run shut down may still be exiting (shutdown does not join).
_RUN = itertools.count()


async def test_a_call_runs_off_the_loop_thread_in_the_callers_context() -> None:
    workers = Workers(1)
    _WHO.set("invocation-1")
    try:
        name, who = await workers.run(lambda: (threading.current_thread().name, _WHO.get()))
    finally:
        workers.shutdown()
    assert name == "handler_0"
    assert who == "invocation-1"


async def test_exceptions_reach_the_caller_even_system_exit() -> None:
    workers = Workers(1)

    def fail(exc: BaseException) -> None:
        raise exc

    try:
        with pytest.raises(ValueError, match="boom"):
            await workers.run(fail, ValueError("boom"))
        with pytest.raises(SystemExit):
            await workers.run(fail, SystemExit(3))
        assert await workers.run(lambda: 42) == 42  # the thread survived both
    finally:
        workers.shutdown()


async def test_no_thread_before_the_first_call_and_at_most_count() -> None:
    name = f"lazy{next(_RUN)}"

    def started() -> int:
        return sum(thread.name.startswith(f"{name}_") for thread in threading.enumerate())

    workers = Workers(2, name=name)
    assert started() == 0  # a fork server's parent must stay one thread
    both = threading.Barrier(2, timeout=10)
    try:
        # Two calls that each wait for the other: they can only finish if they run at once.
        assert sorted(await asyncio.gather(workers.run(both.wait), workers.run(both.wait))) == [0, 1]
        for _ in range(5):
            await workers.run(lambda: None)
        assert started() == 2
    finally:
        workers.shutdown()


async def test_a_result_nobody_awaits_any_more_is_dropped() -> None:
    workers = Workers(1)
    release = threading.Event()
    try:
        pending = workers.run(release.wait, 10)
        pending.cancel()
        release.set()
        assert await workers.run(lambda: "next") == "next"  # the cancelled call's answer was dropped
    finally:
        workers.shutdown()
