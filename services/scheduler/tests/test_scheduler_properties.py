"""Property-based tests: random interleavings of admissions, outcomes and cancellations."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanofaas_scheduler.core.errors import Rejected
from nanofaas_scheduler.core.execution import Execution, Request
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.scheduler import Scheduler, Submission
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.policies.retry import RetryPolicy

from .conftest import make_spec

FUNCTIONS = {
    "a": make_spec("a", concurrency=1, queue_size=3),
    "b": make_spec("b", concurrency=2, queue_size=4),
}
OUTCOMES = {
    "success": Outcome(kind=OutcomeKind.SUCCESS, output=b"1"),
    "error": Outcome(kind=OutcomeKind.FUNCTION_ERROR, error_code="FUNCTION_ERROR"),
    "crash": Outcome(kind=OutcomeKind.CRASH, error_code="CRASH"),
    "timeout": Outcome(kind=OutcomeKind.TIMEOUT, error_code="TIMEOUT"),
}

submit_op = st.tuples(
    st.just("submit"), st.sampled_from(sorted(FUNCTIONS)), st.sampled_from(["", "k1", "k2"]), st.booleans()
)
resolve_op = st.tuples(st.just("resolve"), st.integers(0, 5), st.sampled_from(sorted(OUTCOMES)))
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 20))
complete_op = st.tuples(st.just("complete"), st.integers(0, 20))
operations = st.lists(st.one_of(submit_op, resolve_op, cancel_op, complete_op), max_size=40)


@dataclass
class Model:
    pending: list[tuple[Attempt, asyncio.Future[Outcome]]] = field(default_factory=list)
    running: Counter[str] = field(default_factory=Counter)
    peak_violations: list[str] = field(default_factory=list)
    first_dispatch: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    dispatched_ids: set[str] = field(default_factory=set)

    async def behaviour(self, attempt: Attempt) -> Outcome:
        name = attempt.spec.name
        self.running[name] += 1
        if self.running[name] > FUNCTIONS[name].concurrency:
            self.peak_violations.append(name)
        if attempt.execution_id not in self.dispatched_ids:
            self.dispatched_ids.add(attempt.execution_id)
            self.first_dispatch[name].append(attempt.execution_id)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.pending.append((attempt, future))
        try:
            return await future
        finally:
            self.running[name] -= 1


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def scenario(ops: list[tuple[object, ...]]) -> None:
    model = Model()
    scheduler = Scheduler(StubDispatcher(model.behaviour), retry=RetryPolicy(base_delay_s=0, max_delay_s=0))
    ends: Counter[str] = Counter()
    scheduler.on_end.append(lambda execution: ends.update([execution.id]))
    admitted: list[Execution] = []
    admission_order: dict[str, list[str]] = defaultdict(list)
    keyed: dict[tuple[str, str], set[str]] = defaultdict(set)
    for op in ops:
        if op[0] == "submit":
            _, name, key, sync = op
            assert isinstance(name, str) and isinstance(key, str) and isinstance(sync, bool)
            try:
                execution, created = scheduler.submit(
                    FUNCTIONS[name],
                    Submission(request=Request(b"1", "application/json", {}), sync=sync, idempotency_key=key),
                )
            except Rejected:
                continue
            if created:
                admitted.append(execution)
                admission_order[name].append(execution.id)
            if key:
                keyed[(name, key)].add(execution.id)
        elif op[0] == "resolve" and model.pending:
            index, outcome = op[1], op[2]
            assert isinstance(index, int) and isinstance(outcome, str)
            _, future = model.pending.pop(index % len(model.pending))
            future.set_result(OUTCOMES[outcome])
        elif op[0] == "cancel" and admitted:
            assert isinstance(op[1], int)
            scheduler.cancel_queued(admitted[op[1] % len(admitted)])
        elif op[0] == "complete" and admitted:
            assert isinstance(op[1], int)
            scheduler.complete(admitted[op[1] % len(admitted)].id, 0, OUTCOMES["success"], operator=True)
        await settle()
    # Drain: everything still running succeeds.
    while not all(execution.done.is_set() for execution in admitted):
        while model.pending:
            model.pending.pop()[1].set_result(OUTCOMES["success"])
        await settle()

    assert not model.peak_violations, "concurrency exceeded"
    for name, order in model.first_dispatch.items():
        expected = [eid for eid in admission_order[name] if eid in set(order)]
        assert order == expected, "dispatch order is not FIFO"
    assert all(ends[execution.id] == 1 for execution in admitted), "an execution did not end exactly once"
    assert set(ends) == {execution.id for execution in admitted}
    for ids in keyed.values():
        assert len(ids) == 1 or len(ids & model.dispatched_ids) <= 1
    await scheduler.shutdown(grace_s=0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_random_interleavings_keep_the_invariants(ops: list[tuple[object, ...]]) -> None:
    asyncio.run(scenario(ops))
