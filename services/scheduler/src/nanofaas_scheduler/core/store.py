"""Where executions live until they have ended and their time is up."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from nanofaas_scheduler.core.execution import Execution


class ExecutionStore:
    """All executions by id; ended ones are evicted after `ttl_s` or beyond `max_terminal`.

    Executions that have not ended are never evicted: someone is waiting for them.
    """

    def __init__(self, ttl_s: float, max_terminal: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_s
        self._max_terminal = max_terminal
        self._clock = clock
        self._all: dict[str, Execution] = {}
        self._ended: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._all)

    def add(self, execution: Execution) -> None:
        self._all[execution.id] = execution

    def get(self, execution_id: str) -> Execution | None:
        return self._all.get(execution_id)

    def ended(self, execution: Execution) -> None:
        self._ended[execution.id] = self._clock() + self._ttl
        while len(self._ended) > self._max_terminal:
            oldest, _ = self._ended.popitem(last=False)
            self._all.pop(oldest, None)

    def evict_expired(self) -> int:
        now, evicted = self._clock(), 0
        while self._ended:
            oldest, expires = next(iter(self._ended.items()))
            if expires > now:
                break
            self._ended.popitem(last=False)
            self._all.pop(oldest, None)
            evicted += 1
        return evicted
