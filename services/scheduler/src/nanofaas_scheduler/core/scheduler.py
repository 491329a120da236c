"""Admission, per-function queues, concurrency, retries and deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.completion_tokens import CompletionTokens
from nanofaas_scheduler.core.errors import CompletionRefused, NameTaken, Rejected, ShuttingDown
from nanofaas_scheduler.core.execution import Execution, Request, State, failure, now_ms, timeout
from nanofaas_scheduler.core.execution_names import RetiredNames, new_execution_id, new_random_id
from nanofaas_scheduler.core.lane import Lane
from nanofaas_scheduler.core.outcome import Outcome
from nanofaas_scheduler.core.reports import ReportBoard
from nanofaas_scheduler.core.store import ExecutionStore
from nanofaas_scheduler.dispatch.base import Attempt, Dispatcher, ReplicaCounts
from nanofaas_scheduler.dispatch.logs import LogLine, LogQuery
from nanofaas_scheduler.policies.idempotency import IdempotencyIndex
from nanofaas_scheduler.policies.rate_limit import TokenBucket
from nanofaas_scheduler.policies.retry import RetryPolicy

log = logging.getLogger(__name__)

# Extra time a dispatcher gets past the deadline to report the timeout itself
# (killing what it started) before the scheduler stops waiting for it.
_DISPATCH_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class Submission:
    """An invocation as the scheduler's RPC edge hands it over."""

    request: Request
    sync: bool
    trace_id: str = ""
    traceparent: str = ""
    timeout_ms: int | None = None
    idempotency_key: str = ""
    callback_url: str = ""
    # The caller's name for the execution (checked for shape at the edge); "" = make one.
    execution_id: str = ""


def new_trace_id() -> str:
    return new_random_id()


def trace_id_from_traceparent(value: str) -> str:
    """The trace id of a W3C `traceparent` (version-traceid-parentid-flags), or "" if malformed."""
    parts = value.strip().split("-")
    if len(parts) >= 4 and len(parts[1]) == 32:
        return parts[1].lower()
    return ""


class Scheduler:
    """Owns every execution from admission to its end.

    `reports` is the board through which outcomes reported from outside
    dispatch() reach the running attempt; the dispatcher chain must contain
    an OutOfBandCompletion on the same board (server.py builds both).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        reports: ReportBoard | None = None,
        retry: RetryPolicy | None = None,
        idempotency_ttl_s: float = 900.0,
        execution_ttl_s: float = 900.0,
        max_executions: int = 100_000,
        max_per_second: float = 0.0,
    ) -> None:
        self._dispatcher = dispatcher
        self.reports = reports or ReportBoard()
        self.tokens = CompletionTokens()
        self._retry = retry or RetryPolicy()
        self._loop = asyncio.get_running_loop()
        self.store = ExecutionStore(execution_ttl_s, max_executions, self._loop.time)
        self._idempotency = IdempotencyIndex(idempotency_ttl_s, self._loop.time)
        self._retired = RetiredNames(idempotency_ttl_s, self._loop.time)
        self._lanes: dict[str, Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._rate = TokenBucket(max_per_second, self._loop.time) if max_per_second > 0 else None
        # Called once per execution when it ends (callbacks, metrics).
        self.on_end: list[Callable[[Execution], None]] = []
        self.accepting = True
        # Set when tracing is on: trace ids are then always OpenTelemetry trace ids.
        self.otel_trace_ids = False
        # Called for every admission refused, with the function name and the reason.
        self.on_reject: list[Callable[[str, str], None]] = []
        # Called for every new execution admitted.
        self.on_admit: list[Callable[[Execution], None]] = []

    # -- admission -------------------------------------------------------

    def find_or_retire(self, execution_id: str) -> Execution | None:
        """The execution, or None, after which no execution is admitted under that name.

        Synchronous, like submit(): a submission either came before (found) or is refused.
        """
        execution = self.store.get(execution_id)
        if execution is None:
            self._retired.retire(execution_id)
        return execution

    def submit(self, spec: types_pb2.FunctionSpec, submission: Submission) -> tuple[Execution, bool]:
        """Admit an invocation; returns the execution and whether it is new.

        Synchronous on purpose: the idempotency check and the enqueue happen
        in one step of the event loop, so concurrent requests with the same
        key coalesce onto one execution.
        """
        if not self.accepting:
            raise ShuttingDown("the scheduler is shutting down")
        key = submission.idempotency_key
        if key:
            existing_id = self._idempotency.get(spec.name, key)
            existing = self.store.get(existing_id) if existing_id else None
            if existing is not None:
                return existing, False  # its own id, not the caller's name for a new one
        name = submission.execution_id
        if name and (name in self._retired or self.store.get(name) is not None):
            raise NameTaken(f"execution id '{name}' is already in use")
        lane = self._lane_for(spec)
        timeout_ms = spec.timeout_ms
        if submission.timeout_ms:
            timeout_ms = min(timeout_ms, submission.timeout_ms)
        try:
            self._admit(lane, submission.sync, timeout_ms)
        except Rejected as rejected:
            for reject_listener in self.on_reject:
                reject_listener(spec.name, rejected.reason)
            raise
        trace_id, traceparent = self._trace_identity(submission)
        execution = Execution(
            id=name or new_execution_id(),
            function_name=spec.name,
            request=submission.request,
            trace_id=trace_id,
            traceparent=traceparent,
            caller_trace_id=submission.trace_id,
            sync=submission.sync,
            timeout_ms=timeout_ms,
            idempotency_key=key,
            callback_url=submission.callback_url,
        )
        if submission.sync:
            execution.deadline = self._loop.time() + timeout_ms / 1000
            self._timers[execution.id] = self._loop.call_at(
                execution.deadline, self._expire_queued, lane, execution
            )
        self.store.add(execution)
        if key:
            self._idempotency.put(spec.name, key, execution.id)
        lane.queue.append(execution)
        for admit_listener in self.on_admit:
            admit_listener(execution)
        self._pump(lane)
        return execution, True

    def _trace_identity(self, submission: Submission) -> tuple[str, str]:
        """The execution's trace id and the traceparent its spans continue.

        With tracing on, the trace id is always an OpenTelemetry one (so it can be
        pasted into a trace viewer); without, the caller's X-Trace-Id wins.
        """
        from_parent = trace_id_from_traceparent(submission.traceparent)
        if not self.otel_trace_ids:
            return submission.trace_id or from_parent or new_trace_id(), submission.traceparent
        if from_parent:
            return from_parent, submission.traceparent
        trace_id = new_trace_id()
        return trace_id, f"00-{trace_id}-{os.urandom(8).hex()}-01"

    def _admit(self, lane: Lane, sync: bool, timeout_ms: int) -> None:
        """Reject early and honestly: rate, queue depth, then (sync only) the expected wait."""
        spec = lane.spec
        if self._rate is not None and not self._rate.try_take():
            raise Rejected(
                "rate", self._rate.retry_after_s(), "the platform's invocation rate limit is reached"
            )
        if lane.limiter is not None and not lane.limiter.try_take():
            raise Rejected(
                "rate",
                lane.limiter.retry_after_s(),
                f"function '{spec.name}' is limited to {spec.rate_limit_per_second:g} invocations per second",
            )
        if not lane.has_room():
            raise Rejected(
                "depth",
                lane.estimator.retry_after_s(spec.concurrency),
                f"queue of function '{spec.name}' is full ({spec.queue_size})",
            )
        if sync:
            wait = lane.estimator.estimate_s(len(lane.queue), lane.inflight, spec.concurrency)
            if wait * 1000 > timeout_ms:
                raise Rejected(
                    "estimated_wait",
                    max(1, math.ceil(wait)),
                    f"estimated wait {wait:.1f}s for function '{spec.name}' "
                    f"exceeds the timeout of {timeout_ms} ms",
                )

    def _lane_for(self, spec: types_pb2.FunctionSpec) -> Lane:
        lane = self._lanes.get(spec.name)
        if lane is None:
            lane = self._lanes[spec.name] = Lane(spec)
            lane.set_spec(spec, self._loop.time)
        elif spec.revision > lane.spec.revision:
            lane.set_spec(spec, self._loop.time)
        return lane

    def _expire_queued(self, lane: Lane, execution: Execution) -> None:
        """A sync caller's deadline passed while it was still queued: never dispatch it."""
        self._timers.pop(execution.id, None)
        if execution.state is State.QUEUED:
            self._remove_queued(lane, execution)
            self._end(execution, timeout(execution.timeout_ms))

    def cancel_queued(self, execution: Execution) -> bool:
        """The only caller went away: drop the execution if it has not started."""
        lane = self._lanes.get(execution.function_name)
        if execution.state is not State.QUEUED or lane is None:
            return False
        self._remove_queued(lane, execution)
        self._end(execution, failure(codes.CANCELLED, "the caller cancelled the invocation"))
        return True

    @staticmethod
    def _remove_queued(lane: Lane, execution: Execution) -> None:
        with contextlib.suppress(ValueError):
            lane.queue.remove(execution)

    # -- dispatch --------------------------------------------------------

    def _pump(self, lane: Lane) -> None:
        while self.accepting and lane.can_start():
            execution = lane.queue.popleft()
            if execution.state is not State.QUEUED:
                continue
            lane.inflight += 1
            execution.state = State.RUNNING
            execution.started_at_ms = now_ms()
            task = self._loop.create_task(self._run(lane, execution))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, lane: Lane, execution: Execution) -> None:
        outcome: Outcome = failure(codes.SHUTTING_DOWN, "the scheduler stopped before the execution ended")
        started = self._loop.time()
        try:
            outcome = await self._attempts(lane.spec, execution)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            log.exception("dispatch failed", extra={"executionId": execution.id})
            outcome = failure(codes.INTERNAL, f"scheduler error: {exc}")
        finally:
            lane.inflight -= 1
            lane.estimator.record(self._loop.time() - started)
            self._end(execution, outcome)
            self._pump(lane)

    async def _attempts(self, spec: types_pb2.FunctionSpec, execution: Execution) -> Outcome:
        if execution.deadline is None:
            execution.deadline = self._loop.time() + execution.timeout_ms / 1000
        while True:
            if execution.state.terminal:  # completed by a runtime's callback meanwhile
                return timeout(execution.timeout_ms)  # ignored: the first ending stands
            execution.attempts += 1
            remaining = execution.deadline - self._loop.time()
            if remaining <= 0:
                return timeout(execution.timeout_ms)
            attempt = Attempt(
                execution_id=execution.id,
                function_name=execution.function_name,
                spec=spec,
                request=execution.request,
                number=execution.attempts,
                deadline_epoch=time.time() + remaining,
                timeout=remaining,
                timeout_ms=execution.timeout_ms,
                trace_id=execution.caller_trace_id or execution.trace_id,
                traceparent=execution.traceparent,
                idempotency_key=execution.idempotency_key,
                enqueued_at_ms=execution.enqueued_at_ms,
                completion_token=self.tokens.token(execution.id, execution.attempts),
            )
            try:
                async with asyncio.timeout(remaining + _DISPATCH_GRACE_S):
                    outcome = await self._dispatcher.dispatch(attempt)
            except TimeoutError:
                outcome = timeout(execution.timeout_ms)
            if execution.state.terminal or not self._retry.should_retry(
                outcome, execution.attempts, spec.max_retries
            ):
                return outcome
            delay = self._retry.delay(execution.attempts)
            if self._loop.time() + delay >= execution.deadline:
                return outcome
            log.info(
                "retrying after infrastructure failure",
                extra={
                    "executionId": execution.id,
                    "functionName": execution.function_name,
                    "traceId": execution.trace_id,
                    "attempt": execution.attempts,
                    "error": outcome.message,
                },
            )
            await asyncio.sleep(delay)

    def _end(self, execution: Execution, outcome: Outcome) -> None:
        timer = self._timers.pop(execution.id, None)
        if timer is not None:
            timer.cancel()
        if execution.finish(outcome):
            self.store.ended(execution)
            for listener in self.on_end:
                try:
                    listener(execution)
                except Exception:
                    log.exception("execution end listener failed", extra={"executionId": execution.id})

    # -- external events -------------------------------------------------

    def complete(
        self, execution_id: str, attempt: int, outcome: Outcome, token: str = "", *, operator: bool = False
    ) -> bool | None:
        """A runtime reported how an attempt ended (its callback); None if the execution is unknown.

        The report must carry the completion token of one of the execution's
        attempts (core/completion_tokens.py), else CompletionRefused is raised:
        knowing an execution id gives no power over it. The token names the
        attempt (`attempt`, if not 0, must be that one). The report of the
        running attempt ends that attempt like an in-band result (retries,
        metrics and tracing apply): True. A genuine report of an attempt that
        is no longer current, or for an ended execution, is ignored: False
        (so an owner repeating its report is answered alike).

        Without a token only an `operator` (a caller the API authentication
        let in) may complete: `attempt` 0 then ends the running attempt, or the
        execution itself while no attempt runs (queued, between retries).
        """
        execution = self.store.get(execution_id)
        if execution is None:
            return None
        if token:
            owner = self.tokens.attempt_of(execution_id, token, execution.attempts, attempt)
            if owner == 0:
                raise CompletionRefused(
                    "completion token: not the token of this execution's attempt", authenticated=True
                )
            attempt = owner
        elif not operator:
            raise CompletionRefused(
                "completion token: required (sent to the attempt's runtime as X-Completion-Token)",
                authenticated=False,
            )
        if execution.state.terminal:
            return False
        if self.reports.report(execution_id, attempt, outcome):
            return True
        if attempt != 0:
            return False
        if execution.state is State.QUEUED:
            lane = self._lanes.get(execution.function_name)
            if lane is not None:
                self._remove_queued(lane, execution)
        self._end(execution, outcome)
        return True

    async def function_changed(self, name: str, spec: types_pb2.FunctionSpec | None) -> None:
        """Registry news: an update takes effect for the next dispatch; a delete ends queued work."""
        if spec is None:
            lane = self._lanes.pop(name, None)
            if lane is not None:
                queued, lane.queue = list(lane.queue), type(lane.queue)()
                for execution in queued:
                    self._end(execution, failure(codes.FUNCTION_DELETED, f"function '{name}' was deleted"))
            await self._dispatcher.function_removed(name)
            return
        lane = self._lanes.get(name)
        if lane is not None and spec.revision >= lane.spec.revision:
            lane.set_spec(spec, self._loop.time)
            self._pump(lane)
        await self._dispatcher.function_changed(spec)

    # -- introspection and lifecycle ---------------------------------------

    def lane_stats(self) -> list[tuple[str, int, int]]:
        """(function, queued, in flight) for every function with a lane."""
        return [(name, len(lane.queue), lane.inflight) for name, lane in self._lanes.items()]

    def demand(self) -> list[tuple[types_pb2.FunctionSpec, int, int]]:
        """(spec, queued, in flight) for every function with a lane: what the autoscaler samples."""
        return [(lane.spec, len(lane.queue), lane.inflight) for lane in self._lanes.values()]

    def demand_of(self, name: str) -> tuple[types_pb2.FunctionSpec, int, int] | None:
        """(spec, queued, in flight) of one function, in O(1) (sampled at every admission)."""
        lane = self._lanes.get(name)
        return (lane.spec, len(lane.queue), lane.inflight) if lane is not None else None

    def lane_status(self, name: str) -> tuple[int, int, int]:
        """(queued, in flight, age of the oldest queued execution in ms) of one function."""
        lane = self._lanes.get(name)
        if lane is None:
            return 0, 0, 0
        oldest = next((e for e in lane.queue if e.state is State.QUEUED), None)
        age_ms = max(now_ms() - oldest.enqueued_at_ms, 0) if oldest is not None else 0
        return len(lane.queue), lane.inflight, age_ms

    def replicas(self, spec: types_pb2.FunctionSpec) -> ReplicaCounts:
        return self._dispatcher.replicas(spec)

    def logs(self, query: LogQuery) -> AsyncIterator[LogLine]:
        return self._dispatcher.logs(query)

    def queue_depth(self, name: str) -> int:
        lane = self._lanes.get(name)
        return len(lane.queue) if lane else 0

    def inflight(self, name: str) -> int:
        lane = self._lanes.get(name)
        return lane.inflight if lane else 0

    def evict_expired(self) -> int:
        self._idempotency.expire()
        return self.store.evict_expired()

    async def shutdown(self, grace_s: float) -> None:
        """Stop admitting, end queued work, give in-flight work `grace_s`, then stop it."""
        self.accepting = False
        for lane in self._lanes.values():
            queued, lane.queue = list(lane.queue), type(lane.queue)()
            for execution in queued:
                self._end(execution, failure(codes.SHUTTING_DOWN, "the scheduler is shutting down"))
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._dispatcher.close()
