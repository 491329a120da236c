"""A dispatcher for tests, and the smallest example of the backend interface.

Outcomes are scripted per attempt; attempts are recorded; events can be sent
to the attached observer as a real backend would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.outcome import Outcome, success
from nanofaas_scheduler.dispatch.base import Attempt, Dispatcher

Behaviour = Callable[[Attempt], Awaitable[Outcome]]


async def _echo(attempt: Attempt) -> Outcome:
    return success(attempt.request.data, attempt.request.content_type)


class StubDispatcher(Dispatcher):
    def __init__(self, behaviour: Behaviour = _echo) -> None:
        self.behaviour = behaviour
        self.attempts: list[Attempt] = []
        self.changed: list[str] = []
        self.removed: list[str] = []
        self.dispatched = asyncio.Event()

    async def dispatch(self, attempt: Attempt) -> Outcome:
        self.attempts.append(attempt)
        self.dispatched.set()
        return await self.behaviour(attempt)

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        self.changed.append(spec.name)

    async def function_removed(self, name: str) -> None:
        self.removed.append(name)
