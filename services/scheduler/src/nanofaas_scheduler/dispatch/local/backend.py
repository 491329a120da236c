"""The local backend: JOB, WARM and the STDIO/FILE process modes as local processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp

from nanofaas.v1 import types_pb2
from nanofaas_runtime.outcome import Outcome, OutcomeKind
from nanofaas_runtime.protocol import encode_request
from nanofaas_runtime.watchdog import StartError, invoke_file, invoke_stdio
from nanofaas_scheduler.core.execution import timeout as timeout_outcome
from nanofaas_scheduler.dispatch.base import Dispatcher, Invocation
from nanofaas_scheduler.dispatch.http_invoke import JSON, new_session, post_invocation
from nanofaas_scheduler.dispatch.local.command import (
    UnrunnableFunction,
    argv_for,
    environment_for,
    replica_environment,
    uses_project_runtime,
)
from nanofaas_scheduler.dispatch.local.function_logs import function_log_sink
from nanofaas_scheduler.dispatch.local.replica import Replica, SocketDirectory, start_replica
from nanofaas_scheduler.dispatch.local.standby import Standbys
from nanofaas_scheduler.dispatch.local.warm_pool import WarmPool

# How long a WARM replica that missed a deadline may take to answer before it is recycled.
_RECYCLE_GRACE_S = 1.0


def _start_failed(exc: Exception) -> Outcome:
    return Outcome(kind=OutcomeKind.CRASH, error_code="START_FAILED", message=str(exc))


class LocalBackend(Dispatcher):
    """Runs functions as child processes of the scheduler, each in its own process group."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._pools: dict[str, WarmPool] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._sockets = SocketDirectory()
        self._standbys = Standbys(self._start_standby, self._track)
        # Told (function, seconds from spawn to ready) whenever a process had to be started.
        self.on_cold_start: list[Callable[[str, float], None]] = []

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session()
        return self._session

    def replicas(self, name: str) -> int:
        pool = self._pools.get(name)
        return pool.size if pool else 0

    async def dispatch(self, invocation: Invocation) -> Outcome:
        spec = invocation.spec
        try:
            argv = argv_for(spec)
        except UnrunnableFunction as exc:
            return Outcome(
                kind=OutcomeKind.FUNCTION_ERROR, error_code="UNRUNNABLE_FUNCTION", message=str(exc)
            )
        if spec.runtime_mode in (types_pb2.RUNTIME_MODE_STDIO, types_pb2.RUNTIME_MODE_FILE):
            return await self._one_shot(invocation, argv)
        if spec.execution_mode == types_pb2.EXECUTION_MODE_WARM:
            return await self._warm(invocation, argv)
        return await self._job(invocation, argv)

    async def _one_shot(self, invocation: Invocation, argv: list[str]) -> Outcome:
        """STDIO and FILE: one process per invocation, whatever the execution mode."""
        request = invocation.execution.request
        body = (
            encode_request(request.data, request.metadata) if request.content_type == JSON else request.data
        )
        run = invoke_stdio if invocation.spec.runtime_mode == types_pb2.RUNTIME_MODE_STDIO else invoke_file
        env = environment_for(invocation, one_shot=True)
        return await run(argv, body, env=env, timeout=max(invocation.timeout, 0.001))

    async def _job(self, invocation: Invocation, argv: list[str]) -> Outcome:
        """JOB over HTTP: a fresh server process for this one invocation (a ready standby if any)."""
        spec = invocation.spec
        replica: Replica | None = None
        if uses_project_runtime(spec):
            try:
                async with asyncio.timeout(invocation.timeout):
                    replica = await self._standbys.take(spec)
            except TimeoutError:
                return timeout_outcome(invocation.execution.timeout_ms)
        cold = replica is None
        try:
            if replica is None:
                replica = await self._start(spec, argv, environment_for(invocation, one_shot=True))
        except (StartError, OSError) as exc:
            return _start_failed(exc)
        try:
            async with asyncio.timeout(invocation.timeout):
                if cold:
                    spawned = time.perf_counter()
                    await replica.wait_ready(invocation.timeout)
                    self._cold_started(spec.name, time.perf_counter() - spawned)
                return await post_invocation(
                    replica.session(self.session), replica.invoke_url, invocation, keep_alive=False
                )
        except TimeoutError:
            return timeout_outcome(invocation.execution.timeout_ms)
        except StartError as exc:
            return _start_failed(exc)
        finally:
            # The result does not wait for the process to exit; close() still does.
            self._track(replica.stop(grace=0.5))

    def _start_standby(self, spec: types_pb2.FunctionSpec) -> Awaitable[Replica]:
        env = {**replica_environment(spec), "NANOFAAS_SINGLE_USE": "1"}
        return self._start(spec, argv_for(spec), env)

    def _start(
        self, spec: types_pb2.FunctionSpec, argv: list[str], env: dict[str, str]
    ) -> Awaitable[Replica]:
        """The project's runtime listens on a Unix socket we hand over; other servers on a port."""
        sockets = self._sockets if uses_project_runtime(spec) else None
        return start_replica(argv, env, sockets=sockets, log_sink=function_log_sink(spec.name))

    async def _warm(self, invocation: Invocation, argv: list[str]) -> Outcome:
        pool = self._pool_for(invocation.spec, argv)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + invocation.timeout
        try:
            async with asyncio.timeout(invocation.timeout):
                replica = await pool.acquire(invocation.timeout)
        except TimeoutError:
            return timeout_outcome(invocation.execution.timeout_ms)
        except (StartError, OSError) as exc:
            return _start_failed(exc)
        request = loop.create_task(
            post_invocation(replica.session(self.session), replica.invoke_url, invocation)
        )
        try:
            await asyncio.wait({request}, timeout=max(deadline - loop.time(), 0.0))
        except asyncio.CancelledError:
            request.cancel()
            await asyncio.shield(pool.release(replica, healthy=False))
            raise
        if request.done():
            outcome = request.result()
            await pool.release(replica, healthy=outcome.kind is not OutcomeKind.CRASH)
            return outcome
        self._track(self._abandon(pool, replica, request))
        return timeout_outcome(invocation.execution.timeout_ms)

    async def _abandon(self, pool: WarmPool, replica: Replica, request: asyncio.Task[Outcome]) -> None:
        """A timed-out request may still be answered soon; only a replica that stays busy is recycled."""
        await asyncio.wait({request}, timeout=_RECYCLE_GRACE_S)
        answered = (
            request.done() and not request.cancelled() and request.result().kind is not OutcomeKind.CRASH
        )
        if not request.done():
            request.cancel()
        await pool.release(replica, healthy=answered)

    def _pool_for(self, spec: types_pb2.FunctionSpec, argv: list[str]) -> WarmPool:
        pool = self._pools.get(spec.name)
        if pool is not None and pool.spec.revision == spec.revision:
            return pool
        if pool is not None:
            self._retire(pool)
        env = replica_environment(spec)
        pool = WarmPool(spec, lambda: self._start(spec, argv, env), on_started=self._cold_started)
        self._pools[spec.name] = pool
        return pool

    def _cold_started(self, name: str, seconds: float) -> None:
        for listener in self.on_cold_start:
            listener(name, seconds)

    def _retire(self, pool: WarmPool) -> None:
        self._track(pool.retire())

    def _track(self, work: Awaitable[None]) -> None:
        """Background clean-up that close() waits for."""
        task = asyncio.ensure_future(work)
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        self._standbys.drop(spec.name)
        pool = self._pools.get(spec.name)
        if pool is not None and pool.spec.revision != spec.revision:
            del self._pools[spec.name]
            self._retire(pool)

    async def function_removed(self, name: str) -> None:
        self._standbys.drop(name)
        pool = self._pools.pop(name, None)
        if pool is not None:
            self._retire(pool)

    async def close(self) -> None:
        await self._standbys.close()
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools), *self._retiring, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._sockets.remove()
