"""The sqlite store across reopen, with bad files and rows, schema versions and concurrent writers."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from nanofaas_registry.config import RegistrySettings
from nanofaas_registry.registry import FunctionRegistry
from nanofaas_registry.server import start_server
from nanofaas_registry.store import SqliteFunctionStore, StoreError
from nanofaas_registry.store.sqlite import SCHEMA_VERSION, data_file

SpecFactory = Callable[..., types_pb2.FunctionSpec]


async def open_registry(data_dir: Path) -> tuple[FunctionRegistry, SqliteFunctionStore]:
    store = await SqliteFunctionStore.open(data_dir)
    return await FunctionRegistry.open(store), store


async def test_reopen_serves_the_same_functions_at_the_same_revision(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    registry, store = await open_registry(tmp_path)
    await registry.register(make_spec("alpha", timeout_ms=1234))
    await registry.register(make_spec("bravo"))
    updated = await registry.update("alpha", make_spec("alpha", timeout_ms=999))
    before, revision = await registry.list()
    await store.close()

    registry, store = await open_registry(tmp_path)
    try:
        after, reopened_revision = await registry.list()
        assert reopened_revision == revision == 3
        assert after == before
        assert (await registry.get("alpha")) == updated
        assert (await registry.register(make_spec("charlie"))).revision == 4
    finally:
        await store.close()


async def test_revision_of_a_deletion_survives_even_with_nothing_left(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    registry, store = await open_registry(tmp_path)
    await registry.register(make_spec("only"))
    assert await registry.delete("only") == 2
    await store.close()

    registry, store = await open_registry(tmp_path)
    try:
        assert await registry.list() == ([], 2)
        assert (await registry.register(make_spec("only"))).revision == 3
    finally:
        await store.close()


async def test_fresh_file_is_created_in_wal_mode_at_the_current_schema(tmp_path: Path) -> None:
    store = await SqliteFunctionStore.open(tmp_path / "new" / "dir")
    await store.close()
    with sqlite3.connect(data_file(tmp_path / "new" / "dir")) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_empty_v0_file_is_migrated(tmp_path: Path, make_spec: SpecFactory) -> None:
    """Version 0 is a file SQLite created but nobody initialised (e.g. touched by the sqlite3 shell)."""
    with sqlite3.connect(data_file(tmp_path)) as v0:
        v0.execute("CREATE TABLE notes (text TEXT)")  # an unrelated table leaves the file at version 0
    registry, store = await open_registry(tmp_path)
    try:
        assert (await registry.register(make_spec("a"))).revision == 1
    finally:
        await store.close()
    with sqlite3.connect(data_file(tmp_path)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert check.execute("SELECT count(*) FROM notes").fetchone()[0] == 0


async def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    with sqlite3.connect(data_file(tmp_path)) as newer:
        newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    content = data_file(tmp_path).read_bytes()
    with pytest.raises(StoreError, match=r"registry\.db: the function store has schema version 2, newer"):
        await SqliteFunctionStore.open(tmp_path)
    assert data_file(tmp_path).read_bytes() == content


async def test_a_corrupt_file_is_refused_with_its_path_and_never_written(tmp_path: Path) -> None:
    garbage = b"this is not a database, it is a text file " * 100
    data_file(tmp_path).write_bytes(garbage)
    with pytest.raises(StoreError) as raised:
        await SqliteFunctionStore.open(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{data_file(tmp_path)}: cannot read the function store")
    assert "move it aside" in message
    assert data_file(tmp_path).read_bytes() == garbage
    # The lock is released, so after moving the file aside the registry starts empty.
    data_file(tmp_path).rename(tmp_path / "broken.db")
    store = await SqliteFunctionStore.open(tmp_path)
    try:
        assert await store.revision() == 0
    finally:
        await store.close()


async def test_bad_rows_are_skipped_by_name_and_field_the_rest_served(
    tmp_path: Path, make_spec: SpecFactory, caplog: pytest.LogCaptureFixture
) -> None:
    registry, store = await open_registry(tmp_path)
    for name in ("good", "too-slow", "garbled", "renamed"):
        await registry.register(make_spec(name))
    await store.close()
    with sqlite3.connect(data_file(tmp_path)) as edit:
        (too_slow,) = edit.execute("SELECT spec FROM functions WHERE name = 'too-slow'").fetchone()
        # As an older registry might have stored it, before timeoutMs was bounded.
        spec = json.loads(too_slow)
        spec["timeoutMs"] = 3_600_000
        edit.execute("UPDATE functions SET spec = ? WHERE name = 'too-slow'", (json.dumps(spec),))
        garbled = '{"name": "garbled", "concurrency": "many"'  # a wrong type, and cut short
        edit.execute("UPDATE functions SET spec = ? WHERE name = 'garbled'", (garbled,))
        edit.execute("UPDATE functions SET spec = json_set(spec, '$.name', 'other') WHERE name = 'renamed'")
        edit.execute("UPDATE functions SET revision = 40 WHERE name = 'renamed'")

    caplog.set_level(logging.ERROR, logger="nanofaas_registry.store.sqlite")
    registry, store = await open_registry(tmp_path)
    try:
        specs, revision = await registry.list()
        assert [spec.name for spec in specs] == ["good"]
        assert revision == 40, "a skipped row's revision is never handed out again"
        reasons = {row.name: row.reason for row in store.skipped}
        assert reasons["too-slow"] == "timeoutMs: must be between 1 and 300000"
        assert reasons["garbled"].startswith("spec: stored JSON cannot be decoded")
        assert reasons["renamed"] == "name: the stored spec is named 'other', its row 'renamed'"
        logged = {record.functionName: record.reason for record in caplog.records}  # type: ignore[attr-defined]
        assert logged == reasons
        # A skipped name is free: registering it again replaces the bad row.
        assert (await registry.register(make_spec("too-slow"))).revision == 41
    finally:
        await store.close()


async def test_unknown_fields_from_a_newer_registry_are_dropped(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    registry, store = await open_registry(tmp_path)
    await registry.register(make_spec("a"))
    await store.close()
    with sqlite3.connect(data_file(tmp_path)) as edit:
        edit.execute("UPDATE functions SET spec = json_set(spec, '$.futureField', 7)")
    registry, store = await open_registry(tmp_path)
    try:
        assert (await registry.get("a")).image == "nanofaas/python-runtime:latest"
    finally:
        await store.close()


async def test_a_second_registry_on_the_same_file_is_refused(tmp_path: Path) -> None:
    first = await SqliteFunctionStore.open(tmp_path)
    try:
        with pytest.raises(StoreError, match=r"another registry is using this function store"):
            await SqliteFunctionStore.open(tmp_path)
    finally:
        await first.close()
    second = await SqliteFunctionStore.open(tmp_path)
    await second.close()


async def test_an_unusable_data_directory_is_named(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(StoreError, match=rf"^{not_a_dir}: cannot use the data directory"):
        await SqliteFunctionStore.open(not_a_dir)


async def test_a_failed_write_changes_nothing(tmp_path: Path, make_spec: SpecFactory) -> None:
    registry, store = await open_registry(tmp_path)
    try:
        await registry.register(make_spec("kept"))
        with sqlite3.connect(data_file(tmp_path)) as other:
            other.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON functions WHEN NEW.name = 'lost' "
                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        with pytest.raises(StoreError, match="could not save the change: disk says no"):
            await registry.register(make_spec("lost"))
        assert registry.revision == 1
        assert [spec.name for spec in (await registry.list())[0]] == ["kept"]
        assert (await registry.update("kept", make_spec("kept", timeout_ms=5))).revision == 2
    finally:
        await store.close()
    with sqlite3.connect(data_file(tmp_path)) as check:
        assert check.execute("SELECT value FROM meta").fetchone()[0] == 2


async def test_concurrent_mutations_are_all_stored_in_revision_order(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    registry, store = await open_registry(tmp_path)
    names = [f"fn-{index:02d}" for index in range(24)]

    async def churn(name: str) -> list[int]:
        revisions = [(await registry.register(make_spec(name))).revision]
        revisions.append((await registry.update(name, make_spec(name, concurrency=7))).revision)
        if name.endswith(("0", "5")):
            revisions.append(await registry.delete(name))
        return revisions

    try:
        results = await asyncio.gather(*(churn(name) for name in names))
        handed_out = sorted(revision for revisions in results for revision in revisions)
        assert handed_out == list(range(1, len(handed_out) + 1)), "each revision exactly once"
        expected, revision = await registry.list()
    finally:
        await store.close()

    registry, store = await open_registry(tmp_path)
    try:
        assert await registry.list() == (expected, revision)
        assert revision == len(handed_out)
        assert [spec.name for spec in expected] == [n for n in names if not n.endswith(("0", "5"))]
        assert all(spec.concurrency == 7 for spec in expected)
    finally:
        await store.close()


async def test_an_unsaved_change_is_unavailable_over_grpc(
    tmp_path: Path, make_spec: SpecFactory, settings: RegistrySettings
) -> None:
    server = await start_server(settings, store=await SqliteFunctionStore.open(tmp_path))
    try:
        with sqlite3.connect(data_file(tmp_path)) as other:
            other.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON functions BEGIN SELECT RAISE(ABORT, 'full'); END"
            )
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Register(registry_pb2.RegisterRequest(spec=make_spec("a")), timeout=5)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert raised.value.details() == "the function store could not save the change: full"
            listed = await stub.List(registry_pb2.ListFunctionsRequest(), timeout=5)
            assert (list(listed.functions), listed.revision) == ([], 0)
    finally:
        await server.stop(0)
