"""FunctionRegistry: revisions and timestamps with a controlled clock, and resuming from a store."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from nanofaas.v1 import types_pb2
from nanofaas_registry.registry import FunctionNotFoundError, FunctionRegistry, NameMismatchError
from nanofaas_registry.store import InMemoryFunctionStore

SpecFactory = Callable[..., types_pb2.FunctionSpec]


async def test_timestamps_follow_the_clock(make_spec: SpecFactory) -> None:
    ticks = itertools.count(1_000, 10)
    registry = await FunctionRegistry.open(InMemoryFunctionStore(), clock=lambda: next(ticks))
    created = await registry.register(make_spec("fn"))
    assert (created.created_at_ms, created.updated_at_ms, created.revision) == (1_000, 1_000, 1)
    updated = await registry.update("fn", make_spec("", image="img:2"))
    assert (updated.created_at_ms, updated.updated_at_ms, updated.revision) == (1_000, 1_010, 2)


async def test_revision_resumes_from_store(make_spec: SpecFactory) -> None:
    store = InMemoryFunctionStore()
    first = await FunctionRegistry.open(store)
    await first.register(make_spec("a"))
    await first.register(make_spec("b"))
    await first.delete("a")
    second = await FunctionRegistry.open(store)
    assert second.revision == 3
    assert (await second.register(make_spec("c"))).revision == 4


async def test_update_checks_name_before_existence(make_spec: SpecFactory) -> None:
    registry = await FunctionRegistry.open(InMemoryFunctionStore())
    with pytest.raises(NameMismatchError):
        await registry.update("a", make_spec("b"))
    with pytest.raises(FunctionNotFoundError):
        await registry.update("a", make_spec("a"))
