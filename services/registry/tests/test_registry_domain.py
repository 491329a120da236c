"""FunctionRegistry: revisions and timestamps with a controlled clock, and resuming from a store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from nanofaas.v1 import registry_pb2, types_pb2
from nanofaas_registry.registry import FunctionNotFoundError, FunctionRegistry, NameMismatchError
from nanofaas_registry.store import InMemoryFunctionStore
from nanofaas_registry.store.base import ExternalChange

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


class ChangingStore(InMemoryFunctionStore):
    """A memory store that others also change: its external changes are a given list."""

    def __init__(self, changes: list[ExternalChange]) -> None:
        super().__init__()
        self._changes = changes

    def external_changes(self) -> AsyncIterator[ExternalChange]:
        async def replay() -> AsyncIterator[ExternalChange]:
            for change in self._changes:
                yield change

        return replay()


async def test_adopted_changes_get_revisions_and_reach_watchers(make_spec: SpecFactory) -> None:
    ticks = itertools.count(5_000, 10)
    registry = await FunctionRegistry.open(InMemoryFunctionStore(), clock=lambda: next(ticks))
    start = await registry.watch()
    assert await registry.adopt(ExternalChange("fn", make_spec("fn"))) == 1
    assert await registry.adopt(ExternalChange("fn", make_spec("fn"))) is None, "same content: nothing to do"
    assert await registry.adopt(ExternalChange("fn", make_spec("fn", concurrency=9))) == 2
    assert await registry.adopt(ExternalChange("other", None)) is None, "deleting an unknown function"
    assert await registry.adopt(ExternalChange("fn", None)) == 3
    events = [await start.subscription.next_event() for _ in range(3)]
    assert [(event.type, event.revision) for event in events] == [
        (registry_pb2.WatchEvent.PUT, 1),
        (registry_pb2.WatchEvent.PUT, 2),
        (registry_pb2.WatchEvent.DELETED, 3),
    ]
    assert (events[1].spec.created_at_ms, events[1].spec.updated_at_ms) == (5_000, 5_010)
    start.subscription.close()


async def test_follow_store_skips_a_change_it_cannot_adopt(
    make_spec: SpecFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store = ChangingStore(
        [
            ExternalChange("bad", make_spec("bad", timeout_ms=0)),
            ExternalChange("good", make_spec("good")),
        ]
    )
    registry = await FunctionRegistry.open(store)
    await registry.follow_store()  # returns once the (finite) changes are consumed
    specs, revision = await registry.list()
    assert ([spec.name for spec in specs], revision) == (["good"], 1)
    assert "external change not adopted" in caplog.text


async def test_follow_store_returns_for_stores_only_the_registry_writes() -> None:
    registry = await FunctionRegistry.open(InMemoryFunctionStore())
    await asyncio.wait_for(registry.follow_store(), 5)
