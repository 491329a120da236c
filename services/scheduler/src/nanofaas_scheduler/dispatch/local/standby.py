"""JOB mode without the cold start: one fresh, never-used runtime process kept ready per function.

Every JOB invocation still gets a process that has served nothing before and
is stopped after it. The process is just started one invocation ahead: the
invocation takes the ready standby and the next one starts in the background.
The runtime exports the invocation's EXECUTION_ID / TRACE_ID / TRACEPARENT
into its environment when the request arrives (NANOFAAS_SINGLE_USE), so the
handler sees what a process started for it would see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.dispatch.local.replica import Replica

log = logging.getLogger(__name__)

_READY_TIMEOUT_S = 30.0
# A standby nobody took for this long is stopped: idle JOB functions hold no process.
IDLE_STANDBY_S = 60.0


@dataclass(slots=True)
class _Standby:
    revision: int
    task: asyncio.Task[Replica | None]


class Standbys:
    def __init__(
        self,
        start: Callable[[types_pb2.FunctionSpec], Awaitable[Replica]],
        track: Callable[[Awaitable[None]], None],
        idle_s: float = IDLE_STANDBY_S,
    ) -> None:
        self._start = start
        self._track = track
        self._idle_s = idle_s
        self._by_function: dict[str, _Standby] = {}

    async def take(self, spec: types_pb2.FunctionSpec) -> Replica | None:
        """The function's standby (awaited if still starting), or None; the next one starts now."""
        standby = self._by_function.pop(spec.name, None)
        self._add(spec)
        if standby is None:
            return None
        if standby.revision != spec.revision:
            self._track(_stop_when_ready(standby.task))
            return None
        # Already on its way up: waiting for it is never slower than starting another.
        try:
            replica = await asyncio.shield(standby.task)
        except asyncio.CancelledError:
            self._track(_stop_when_ready(standby.task))  # nobody will use it now
            raise
        if replica is not None and replica.alive():
            return replica
        if replica is not None:
            self._track(replica.stop(grace=0.0))
        return None

    def _add(self, spec: types_pb2.FunctionSpec) -> None:
        standby = _Standby(spec.revision, asyncio.ensure_future(self._prepare(spec)))
        self._by_function[spec.name] = standby
        asyncio.get_running_loop().call_later(self._idle_s, self._expire, spec.name, standby)

    def _expire(self, name: str, standby: _Standby) -> None:
        if self._by_function.get(name) is standby and standby.task.done():
            del self._by_function[name]
            self._track(_stop_when_ready(standby.task))

    async def _prepare(self, spec: types_pb2.FunctionSpec) -> Replica | None:
        try:
            replica = await self._start(spec)
        except Exception as exc:
            log.debug("standby did not start", extra={"functionName": spec.name, "error": str(exc)})
            return None
        try:
            await replica.wait_ready(_READY_TIMEOUT_S)
        except asyncio.CancelledError:
            await asyncio.shield(replica.stop(grace=0.0))
            raise
        except Exception as exc:  # wait_ready stops the process on failure
            log.debug("standby not ready", extra={"functionName": spec.name, "error": str(exc)})
            return None
        return replica

    def drop(self, name: str) -> None:
        """The function changed or went away: its standby (started for the old spec) goes."""
        standby = self._by_function.pop(name, None)
        if standby is not None:
            self._track(_stop_when_ready(standby.task))

    async def close(self) -> None:
        """Standbys still starting are cancelled (their process stopped); ready ones stopped."""
        standbys, self._by_function = list(self._by_function.values()), {}
        for standby in standbys:
            standby.task.cancel()
        await asyncio.gather(*(_stop_when_ready(s.task) for s in standbys), return_exceptions=True)


async def _stop_when_ready(task: asyncio.Task[Replica | None]) -> None:
    replica = await task
    if replica is not None:
        await replica.stop(grace=0.0)
