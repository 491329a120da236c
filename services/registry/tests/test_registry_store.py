"""Every FunctionStore (memory and sqlite alike) honours the FunctionStore contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nanofaas.v1 import types_pb2
from nanofaas_registry.store import FunctionStore, InMemoryFunctionStore, SqliteFunctionStore

SpecFactory = Callable[..., types_pb2.FunctionSpec]


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FunctionStore]:
    opened: FunctionStore
    if request.param == "sqlite":
        opened = await SqliteFunctionStore.open(tmp_path / "data")
    else:
        opened = InMemoryFunctionStore()
    try:
        yield opened
    finally:
        await opened.close()


async def test_fresh_store_is_empty(store: FunctionStore) -> None:
    assert await store.get("x") is None
    assert await store.list() == []
    assert await store.count() == 0
    assert await store.revision() == 0


async def test_put_get_and_replace(store: FunctionStore, make_spec: SpecFactory) -> None:
    await store.put(make_spec("a", revision=1, image="img:1"))
    await store.put(make_spec("a", revision=2, image="img:2"))
    stored = await store.get("a")
    assert stored is not None
    assert stored.image == "img:2"
    assert stored.revision == 2
    assert await store.count() == 1
    assert await store.revision() == 2


async def test_list_is_sorted_by_name(store: FunctionStore, make_spec: SpecFactory) -> None:
    for revision, name in enumerate(["charlie", "alpha", "Bravo", "bravo"], start=1):
        await store.put(make_spec(name, revision=revision))
    assert [spec.name for spec in await store.list()] == ["Bravo", "alpha", "bravo", "charlie"]


async def test_delete(store: FunctionStore, make_spec: SpecFactory) -> None:
    await store.put(make_spec("a", revision=1))
    assert await store.delete("a", 2) is True
    assert await store.get("a") is None
    assert await store.revision() == 2
    assert await store.delete("a", 3) is False
    assert await store.revision() == 2


async def test_store_keeps_its_own_copies(store: FunctionStore, make_spec: SpecFactory) -> None:
    spec = make_spec("a", revision=1)
    await store.put(spec)
    spec.image = "changed-after-put"
    fetched = await store.get("a")
    assert fetched is not None
    fetched.image = "changed-after-get"
    (listed,) = await store.list()
    listed.image = "changed-after-list"
    again = await store.get("a")
    assert again is not None
    assert again.image == "nanofaas/python-runtime:latest"
