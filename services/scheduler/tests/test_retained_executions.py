"""What a retained (ended) execution costs the cyclic GC, and what its ids look like."""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import hmac

from nanofaas_scheduler.core.completion_tokens import CompletionTokens
from nanofaas_scheduler.core.execution import Execution, Request
from nanofaas_scheduler.core.execution_names import new_execution_id, valid_execution_name
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.core.scheduler import new_trace_id

OK = Outcome(kind=OutcomeKind.SUCCESS, output=b"1")


def _execution(name: str) -> Execution:
    return Execution(id=name, function_name="f", request=Request(b"{}", "application/json", {}), trace_id="t")


def _tracked_referents(execution: Execution) -> list[object]:
    return [ref for ref in gc.get_referents(execution) if gc.is_tracked(ref)]


def test_an_ended_execution_holds_only_shared_objects_the_gc_tracks() -> None:
    """Each full collection walks every retained execution: each must be one tracked object."""
    first, second = _execution("a"), _execution("b")
    assert {id(ref) for ref in _tracked_referents(first)} != {id(ref) for ref in _tracked_referents(second)}
    first.finish(OK)
    second.finish(OK)
    shared = {id(ref) for ref in _tracked_referents(first)}
    assert shared == {id(ref) for ref in _tracked_referents(second)}
    assert first.done.is_set()


async def test_a_waiter_from_before_the_end_is_woken_and_a_later_one_returns_at_once() -> None:
    execution = _execution("a")
    waiter = asyncio.ensure_future(execution.done.wait())
    await asyncio.sleep(0)  # let it start waiting on the execution's own completion
    assert not waiter.done()
    execution.finish(OK)
    assert await asyncio.wait_for(waiter, 5.0)
    assert await asyncio.wait_for(execution.done.wait(), 5.0)


def test_made_ids_have_the_shape_of_uuid4_hex_and_differ() -> None:
    ids = {new_execution_id() for _ in range(1000)} | {new_trace_id() for _ in range(1000)}
    assert len(ids) == 2000
    assert all(valid_execution_name(made) for made in ids)


def test_tokens_are_hmac_sha256_of_id_and_attempt_and_repeatable() -> None:
    """The keyed HMAC is copied per token: copying must not carry one token's data into the next."""
    key = b"k" * 32
    tokens = CompletionTokens(key)
    first = tokens.token("e1", 1)
    assert tokens.token("e2", 1) != first
    assert tokens.token("e1", 1) == first
    expected = hmac.new(key, b"e1\x001", hashlib.sha256).digest()
    assert first == base64.urlsafe_b64encode(expected).rstrip(b"=").decode("ascii")
    assert tokens.attempt_of("e1", first, attempts=2) == 1
