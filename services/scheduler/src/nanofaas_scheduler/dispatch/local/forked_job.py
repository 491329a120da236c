"""One JOB attempt in a child of the function's fork server (fork_server.py).

The same steps as an attempt in a spawned process (backend._job): the attempt's
timeout covers getting the process and the call; at the deadline the child's
whole tree is killed before the attempt ends; the result does not wait for the
child to exit, which it does by itself right after answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

from nanofaas_scheduler.core.execution import timeout as timeout_outcome
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.base import Attempt, BackendObserver
from nanofaas_scheduler.dispatch.local.command import invocation_environment
from nanofaas_scheduler.dispatch.local.fork_server import ForkedChild, ForkServers
from nanofaas_scheduler.dispatch.local.process import describe_exit

# How long a child that answered may take to exit by itself before it is killed.
_EXIT_GRACE_S = 0.5
# How long a crashed attempt waits for its child's exit report, to say how it died.
_CRASH_REPORT_S = 0.5


async def invoke_forked(
    servers: ForkServers,
    attempt: Attempt,
    observer: BackendObserver,
    track: Callable[[Awaitable[None]], None],
) -> Outcome | None:
    """The attempt's outcome, or None when no fork server can serve it (spawn a process instead)."""
    child: ForkedChild | None = None
    try:
        async with asyncio.timeout(attempt.timeout):
            forked = await servers.fork(attempt.spec, invocation_environment(attempt))
            if forked is None:
                return None
            child, cold_s = forked
            if cold_s:
                observer.cold_start(attempt.spec.name, cold_s)
            outcome = await child.invoke(attempt)
    except TimeoutError:
        if child is not None:
            # Killed and gone before the slot is given back: the handler may still be running.
            await asyncio.shield(child.stop(grace=0.0))
        return timeout_outcome(attempt.timeout_ms)
    finally:
        if child is not None:
            track(child.stop(grace=_EXIT_GRACE_S))
    if outcome.kind is OutcomeKind.CRASH:  # past the deadline's reach: a crash stays a crash
        outcome = await _with_exit(outcome, child)
    return outcome


async def _with_exit(outcome: Outcome, child: ForkedChild) -> Outcome:
    """A CRASH says how the child died ("killed by SIGSEGV"), when that is known promptly."""
    with contextlib.suppress(TimeoutError):
        code = await asyncio.wait_for(asyncio.shield(child.exited), _CRASH_REPORT_S)
        if code != -1:  # -1: the fork server itself is gone, the child's own end unknown
            return dataclasses.replace(outcome, message=f"{outcome.message} (process {describe_exit(code)})")
    return outcome
