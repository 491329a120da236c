"""Where executions live until they have ended and their time is up."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

from nanofaas_scheduler.core.execution import Execution, State


class UnknownCursor(Exception):
    """`before` names an execution the store does not (or no longer) keep."""


class ExecutionStore:
    """All executions by id; ended ones are evicted after `ttl_s` or beyond `max_terminal`.

    Executions that have not ended are never evicted: someone is waiting for them.
    """

    def __init__(
        self,
        ttl_s: float,
        max_terminal: int,
        clock: Callable[[], float],
        *,
        large_output_bytes: int = 1024 * 1024,
        large_output_ttl_s: float = 60.0,
    ) -> None:
        self._ttl = ttl_s
        self._max_terminal = max_terminal
        self._clock = clock
        self._all: dict[str, Execution] = {}
        # Ended executions in the order they ended, so the oldest is always first
        # (a deque of references: ~8 bytes per execution).
        self._ended: deque[Execution] = deque()
        # Big outputs are dropped sooner than the executions that produced them.
        self._large_output_bytes = large_output_bytes
        self._large_output_ttl = large_output_ttl_s
        self._large: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._all)

    def add(self, execution: Execution) -> None:
        self._all[execution.id] = execution

    def get(self, execution_id: str) -> Execution | None:
        return self._all.get(execution_id)

    def recent(
        self, *, function: str = "", state: State | None = None, before: str = "", limit: int = 50
    ) -> list[Execution]:
        """Up to `limit` kept executions, newest admitted first, optionally after the cursor `before`.

        The dict keeps admission order, so this walks back from the newest and
        stops as soon as `limit` are found.
        """
        newest_first = reversed(self._all.values())
        if before:
            if before not in self._all:
                raise UnknownCursor(f"before: execution '{before}' is not known (or no longer kept)")
            for execution in newest_first:
                if execution.id == before:
                    break
        found: list[Execution] = []
        for execution in newest_first:
            if len(found) >= limit:
                break
            if function and execution.function_name != function:
                continue
            if state is not None and execution.state is not state:
                continue
            found.append(execution)
        return found

    def ended(self, execution: Execution) -> None:
        now = self._clock()
        execution.ended_at = now
        self._ended.append(execution)
        if len(execution.output) > self._large_output_bytes:
            self._large[execution.id] = now + self._large_output_ttl
        while len(self._ended) > self._max_terminal:
            self._all.pop(self._ended.popleft().id, None)

    def evict_expired(self) -> int:
        now, evicted = self._clock(), 0
        while self._large:
            execution_id, expires = next(iter(self._large.items()))
            if expires > now:
                break
            self._large.popitem(last=False)
            if (execution := self._all.get(execution_id)) is not None:
                execution.output = b""
                execution.output_evicted = True
        horizon = now - self._ttl
        while self._ended and self._ended[0].ended_at <= horizon:
            self._all.pop(self._ended.popleft().id, None)
            evicted += 1
        return evicted
