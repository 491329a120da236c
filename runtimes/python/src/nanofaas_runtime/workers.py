"""The worker threads that run sync handlers, so the event loop keeps answering `/health`.

Not a ThreadPoolExecutor: every invocation of a sync handler crosses to a
worker and back, and the executor's path (a concurrent Future, a work item,
the thread-count check, `wrap_future`'s chained asyncio future and its
callbacks) is paid per invocation on top of the two wake-ups any hand-off
costs. Here a call is one queue put and one `call_soon_threadsafe` back.
Threads start on first use (a fork server's parent must stay one thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[contextvars.Context, Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]] | None


class Workers:
    """`count` daemon threads taking calls from one queue."""

    def __init__(self, count: int, name: str = "handler") -> None:
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def run(self, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `func(*args)` in a worker, in a copy of the caller's context (captured prints)."""
        if len(self._threads) < self._count:
            self._start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.put((contextvars.copy_context(), func, args, future))
        return future

    def _start(self) -> None:
        thread = threading.Thread(target=self._serve, name=f"{self._name}_{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            context, func, args, future = job
            loop = future.get_loop()
            try:
                result = context.run(func, *args)
            except BaseException as exc:  # handed to the awaiting side, as an executor does
                settle: Callable[..., None] = _settle_exception
                result = exc
            else:
                settle = _settle
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, future, result)
            del job, context, func, args, future, result

    def shutdown(self) -> None:
        """Stop the threads once their current call returns (for tests; the process exits anyway)."""
        for _ in self._threads:
            self._jobs.put(None)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the request was cancelled meanwhile
        future.set_result(result)


def _settle_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
