"""The local backend: JOB and WARM as processes on this machine.

Every function process is a server speaking the function HTTP protocol: the
project's Python runtime, a user's own server, or the watchdog, which runs a
STDIO/FILE function's command once per invocation. So JOB, WARM, STDIO and
FILE all end in one POST; only how long a server lives differs:

* WARM (HTTP): a pool of servers, reused, sized by the autoscaler (docs/autoscaling.md).
* JOB (HTTP): a fresh server per attempt, stopped after it: for the project's
  runtime a child forked by the function's fork server (fork_server.py), else
  (or when that is off or cannot start) a process started one invocation ahead
  (standby.py).
* STDIO / FILE, in either mode: the command is fresh per invocation anyway,
  so the watchdogs around it are pooled like WARM servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.execution import timeout as timeout_outcome
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind, crash, function_error
from nanofaas_scheduler.dispatch.base import NO_REPLICAS, Attempt, Dispatcher, ReplicaCounts
from nanofaas_scheduler.dispatch.hop_client import Late
from nanofaas_scheduler.dispatch.http_invoke import outcome_of
from nanofaas_scheduler.dispatch.local import fork_server
from nanofaas_scheduler.dispatch.local.command import (
    UnrunnableFunction,
    argv_for,
    hands_over_socket,
    is_one_shot,
    job_environment,
    replica_environment,
    uses_project_runtime,
)
from nanofaas_scheduler.dispatch.local.forked_job import invoke_forked
from nanofaas_scheduler.dispatch.local.function_logs import function_log_sink
from nanofaas_scheduler.dispatch.local.lifeline import Lifeline
from nanofaas_scheduler.dispatch.local.orphans import REAPER
from nanofaas_scheduler.dispatch.local.process import StartError
from nanofaas_scheduler.dispatch.local.replica import (
    Replica,
    SocketDirectory,
    remove_stale_directories,
    start_replica,
)
from nanofaas_scheduler.dispatch.local.standby import Standbys
from nanofaas_scheduler.dispatch.local.warm_pool import WarmPool
from nanofaas_scheduler.dispatch.logs import LogBook, LogLine, LogQuery
from nanofaas_scheduler.policies.autoscale import bounds_of

# How long a WARM replica that missed a deadline may take to answer before it is recycled.
_RECYCLE_GRACE_S = 1.0


def _start_failed(exc: Exception) -> Outcome:
    return crash(str(exc), codes.START_FAILED)


class LocalBackend(Dispatcher):
    """Runs functions as child processes of the scheduler, each in its own process group."""

    def __init__(
        self,
        callback_url: str = "",
        log_book: LogBook | None = None,
        *,
        reap_orphans: bool = False,
        job_fork_server: bool | None = None,
    ) -> None:
        """`reap_orphans`: make this process a child subreaper that kills what dead servers left
        behind (orphans.py). Only for a process whose every child is a function server (the
        scheduler's), since any other child of it would be taken for an orphan.
        `job_fork_server`: JOB attempts of the project's runtime in forked children (default:
        NANOFAAS_JOB_FORK_SERVER, on unless 0)."""
        self._callback_url = callback_url
        self._fork_servers = fork_server.ForkServers(self._start_fork_server, self._track)
        self._fork_enabled = fork_server.enabled() if job_fork_server is None else job_fork_server
        self.log_book = log_book or LogBook()
        self._pools: dict[str, WarmPool] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._sockets = SocketDirectory()
        self._lifeline = Lifeline()
        remove_stale_directories()
        if reap_orphans:
            REAPER.enable()
        self._standbys = Standbys(self._start_standby, self._track)
        self._closed = False

    async def dispatch(self, attempt: Attempt) -> Outcome:
        spec = attempt.spec
        try:
            if is_one_shot(spec) or spec.execution_mode == types_pb2.EXECUTION_MODE_WARM:
                return await self._pooled(attempt)
            return await self._job(attempt, argv_for(spec))
        except UnrunnableFunction as exc:
            return function_error(str(exc), codes.UNRUNNABLE_FUNCTION)

    async def _job(self, attempt: Attempt, argv: list[str]) -> Outcome:
        """JOB over HTTP: a fresh server process for this one attempt (a ready standby if any)."""
        spec = attempt.spec
        replica: Replica | None = None
        if uses_project_runtime(spec) and self._fork_enabled:
            outcome = await invoke_forked(self._fork_servers, attempt, self.observer, self._track)
            if outcome is not None:
                return outcome
        if uses_project_runtime(spec):
            try:
                async with asyncio.timeout(attempt.timeout):
                    replica = await self._standbys.take(spec)
            except TimeoutError:
                return timeout_outcome(attempt.timeout_ms)
        cold = replica is None
        try:
            if replica is None:
                replica = await self._start(spec, argv, job_environment(attempt, self._callback_url))
        except (StartError, OSError) as exc:
            return _start_failed(exc)
        try:
            async with asyncio.timeout(attempt.timeout):
                if cold:
                    spawned = time.perf_counter()
                    await replica.wait_ready(attempt.timeout)
                    self.observer.cold_start(spec.name, time.perf_counter() - spawned)
                return await replica.invoke(attempt, keep_alive=False)
        except TimeoutError:
            # Killed and gone before the slot is given back: the handler may still be running.
            await asyncio.shield(replica.stop(grace=0.0))
            return timeout_outcome(attempt.timeout_ms)
        except StartError as exc:
            return _start_failed(exc)
        finally:
            # The result does not wait for the process to exit; close() still does.
            self._track(replica.stop(grace=0.5))

    def _start_standby(self, spec: types_pb2.FunctionSpec) -> Awaitable[Replica]:
        env = {**replica_environment(spec, self._callback_url), "NANOFAAS_SINGLE_USE": "1"}
        return self._start(spec, argv_for(spec), env)

    def _start_fork_server(self, spec: types_pb2.FunctionSpec) -> Awaitable[fork_server.ForkServer]:
        return fork_server.ForkServer.start(
            argv_for(spec),
            replica_environment(spec, self._callback_url),
            sockets=self._sockets,
            lifeline=self._lifeline,
            log_sink=function_log_sink(spec.name, self.log_book),
        )

    def _start(
        self, spec: types_pb2.FunctionSpec, argv: list[str], env: dict[str, str]
    ) -> Awaitable[Replica]:
        sockets = self._sockets if hands_over_socket(spec) else None
        return start_replica(
            argv,
            env,
            sockets=sockets,
            log_sink=function_log_sink(spec.name, self.log_book),
            lifeline=self._lifeline,
        )

    async def _pooled(self, attempt: Attempt) -> Outcome:
        pool = self._pool_for(attempt.spec)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + attempt.timeout
        replica = pool.take_idle()  # the warm path: no timer needed to wait for one
        if replica is None:
            try:
                async with asyncio.timeout(attempt.timeout):
                    replica = await pool.acquire(attempt.timeout)
            except TimeoutError:
                return timeout_outcome(attempt.timeout_ms)
            except (StartError, OSError) as exc:
                return _start_failed(exc)
        try:
            outcome = await replica.invoke(attempt, deadline=deadline)
        except Late as late:
            self._track(self._abandon(pool, replica, late, attempt.spec))
            return timeout_outcome(attempt.timeout_ms)
        except TimeoutError:  # not even connected by the deadline
            self._track(pool.release(replica, healthy=False))
            return timeout_outcome(attempt.timeout_ms)
        except asyncio.CancelledError:
            await asyncio.shield(pool.release(replica, healthy=False))
            raise
        await pool.release(replica, healthy=_still_serving(replica, outcome, attempt.spec))
        return outcome

    async def _abandon(
        self, pool: WarmPool, replica: Replica, late: Late, spec: types_pb2.FunctionSpec
    ) -> None:
        """A timed-out request may still be answered soon; only a replica that stays busy is recycled."""
        healthy = False
        try:
            response = await late.answer(_RECYCLE_GRACE_S)
            healthy = response is not None and _still_serving(replica, outcome_of(response), spec)
        finally:
            await pool.release(replica, healthy=healthy)

    def _pool_for(self, spec: types_pb2.FunctionSpec) -> WarmPool:
        """The function's pool at this revision; the command is worked out once, when it is made."""
        pool = self._pools.get(spec.name)
        if pool is not None and pool.spec.revision == spec.revision:
            return pool
        argv = argv_for(spec)
        if pool is not None:
            self._retire(pool)
        env = replica_environment(spec, self._callback_url)
        pool = WarmPool(
            spec,
            lambda: self._start(spec, argv, env),
            on_started=self.observer.cold_start,
            on_resized=lambda: self._resized(spec.name),
        )
        self._pools[spec.name] = pool
        return pool

    def _resized(self, name: str) -> None:
        pool = self._pools.get(name)
        self.observer.replicas_changed(name, pool.size if pool is not None else 0)

    def _retire(self, pool: WarmPool) -> None:
        self._track(pool.retire())

    def _track(self, work: Awaitable[None]) -> None:
        """Background clean-up that close() waits for."""
        task = asyncio.ensure_future(work)
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _drop_pool(self, name: str) -> None:
        pool = self._pools.pop(name, None)
        if pool is not None:
            self._retire(pool)
            self.observer.replicas_changed(name, 0)

    async def function_changed(self, spec: types_pb2.FunctionSpec) -> None:
        self._standbys.drop(spec.name)
        self._fork_servers.drop(spec.name)
        pool = self._pools.get(spec.name)
        if pool is not None and pool.spec.revision != spec.revision:
            self._drop_pool(spec.name)

    async def function_removed(self, name: str) -> None:
        self._standbys.drop(name)
        self._fork_servers.drop(name)
        self._drop_pool(name)
        self.log_book.forget(name)

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        """A WARM pool's processes (runtimes, or watchdogs of STDIO/FILE commands); JOB reports none."""
        if spec.execution_mode != types_pb2.EXECUTION_MODE_WARM:
            return NO_REPLICAS
        bounds = bounds_of(spec, self.replica_capacity(spec))
        pool = self._pools.get(spec.name)
        if pool is None:
            return ReplicaCounts(min=bounds.min_replicas, max=bounds.max_replicas)
        current = pool.size
        desired = pool.target if pool.target is not None else current
        return ReplicaCounts(current, pool.ready, desired, bounds.min_replicas, bounds.max_replicas)

    def replica_capacity(self, spec: types_pb2.FunctionSpec) -> int:
        """A local process serves one invocation at a time."""
        return 1

    def scale(self, spec: types_pb2.FunctionSpec, desired: int) -> None:
        """Start or stop the WARM function's processes; a pool is made on the first demand."""
        if self._closed:
            return
        pool = self._pools.get(spec.name)
        if pool is None or pool.spec.revision != spec.revision:
            if desired == 0:
                return
            try:
                pool = self._pool_for(spec)
            except UnrunnableFunction:
                return  # its invocations report why
        pool.scale_to(desired)

    def logs(self, query: LogQuery) -> AsyncIterator[LogLine]:
        return self.log_book.stream(query)

    async def close(self) -> None:
        self._closed = True
        await self._standbys.close()
        await self._fork_servers.close()
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools), *self._retiring, return_exceptions=True)
        self._sockets.remove()
        self._lifeline.close()


def _still_serving(replica: Replica, outcome: Outcome, spec: types_pb2.FunctionSpec) -> bool:
    """Keep a replica after an attempt unless it (not just the function's command) failed.

    A watchdog reports its command's crash as CRASH while staying perfectly
    healthy itself; a runtime's CRASH means the replica is gone or broken.
    """
    if is_one_shot(spec):
        return replica.alive()
    return outcome.kind is not OutcomeKind.CRASH and replica.alive()
