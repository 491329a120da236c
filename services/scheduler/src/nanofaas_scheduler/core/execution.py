"""An execution: one accepted invocation and everything known about it."""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind


class State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({State.SUCCESS, State.ERROR, State.TIMEOUT})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Completion:
    """A one-shot event that allocates its waiter only when someone waits.

    asyncio.Event costs ~700 bytes (its waiter deque) for every retained
    execution, though almost nobody waits on an execution after it ended.
    """

    __slots__ = ("_future", "_set")

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> bool:
        if not self._set:
            if self._future is None:
                self._future = asyncio.get_running_loop().create_future()
            # Shielded: one cancelled waiter must not cancel the others' future.
            await asyncio.shield(self._future)
        return True


def _ended_completion() -> Completion:
    completion = Completion()
    completion.set()
    return completion


# What every ended execution holds as `done`: its own Completion is dropped at the end
# (waiters keep the one they hold), so a retained execution is one object the cyclic GC
# tracks, not two; each full collection walks every retained execution (up to 100,000).
_ENDED = _ended_completion()


@dataclass(frozen=True, slots=True)
class Request:
    """What the handler receives: the input payload and its metadata."""

    data: bytes
    content_type: str
    metadata: dict[str, str]


_ENDED_REQUEST = Request(data=b"", content_type="application/json", metadata={})


@dataclass(slots=True, eq=False)
class Execution:
    id: str
    function_name: str
    request: Request
    trace_id: str
    traceparent: str = ""
    # The caller's X-Trace-Id, passed through to the function as given.
    caller_trace_id: str = ""
    sync: bool = False
    timeout_ms: int = 30_000
    idempotency_key: str = ""
    callback_url: str = ""
    # Sync callers currently waiting for the end (several when coalesced by key).
    waiters: int = 0
    state: State = State.QUEUED
    attempts: int = 0
    enqueued_at_ms: int = field(default_factory=now_ms)
    started_at_ms: int = 0
    finished_at_ms: int = 0
    # Absolute deadline on the loop clock; set at admission for sync calls
    # (the caller is waiting) and at first dispatch for async ones.
    deadline: float | None = None
    output: bytes = b""
    output_content_type: str = ""
    # Loop time at which the execution ended (for eviction).
    ended_at: float = 0.0
    # True once a large output was dropped (the status stays; the bytes are gone).
    output_evicted: bool = False
    error_code: str = ""
    error_message: str = ""
    done: Completion = field(default_factory=Completion)

    def finish(self, outcome: Outcome) -> bool:
        """Move to the terminal state the outcome says; the first ending wins."""
        if self.state.terminal:
            return False
        if outcome.kind is OutcomeKind.SUCCESS:
            self.state = State.SUCCESS
            self.output = outcome.output
            self.output_content_type = outcome.content_type
        else:
            self.state = State.TIMEOUT if outcome.kind is OutcomeKind.TIMEOUT else State.ERROR
            self.error_code = outcome.error_code or outcome.kind.name
            self.error_message = outcome.message
        self.finished_at_ms = now_ms()
        # The input is not needed once ended; retained executions keep only their result.
        self.request = _ENDED_REQUEST
        self.done.set()
        self.done = _ENDED
        return True

    def remaining(self, loop_time: float) -> float | None:
        return None if self.deadline is None else self.deadline - loop_time


def failure(code: str, message: str) -> Outcome:
    """An error outcome that is not the function's output (deleted, shutting down...)."""
    return Outcome(kind=OutcomeKind.FUNCTION_ERROR, error_code=code, message=message)


def timeout(timeout_ms: int) -> Outcome:
    return Outcome(
        kind=OutcomeKind.TIMEOUT,
        error_code=codes.TIMEOUT,
        message=f"execution exceeded its timeout of {timeout_ms} ms",
    )
