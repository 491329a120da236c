"""A dispatcher for tests: outcomes are scripted, attempts are recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nanofaas_runtime.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.base import Dispatcher, Invocation

Behaviour = Callable[[Invocation], Awaitable[Outcome]]


async def _echo(invocation: Invocation) -> Outcome:
    request = invocation.execution.request
    return Outcome(kind=OutcomeKind.SUCCESS, output=request.data, content_type=request.content_type)


class StubDispatcher(Dispatcher):
    def __init__(self, behaviour: Behaviour = _echo) -> None:
        self.behaviour = behaviour
        self.invocations: list[Invocation] = []
        self.changed: list[str] = []
        self.removed: list[str] = []
        self.dispatched = asyncio.Event()

    async def dispatch(self, invocation: Invocation) -> Outcome:
        self.invocations.append(invocation)
        self.dispatched.set()
        return await self.behaviour(invocation)

    async def function_changed(self, spec: object) -> None:
        self.changed.append(getattr(spec, "name", ""))

    async def function_removed(self, name: str) -> None:
        self.removed.append(name)
