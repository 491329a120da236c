"""The durable FunctionStore: one SQLite file (stdlib sqlite3, WAL) under the data directory.

Why it looks like this:

- Every mutation is one transaction that writes the function row and the registry revision
  together, so after any crash (kill -9 included) the file holds exactly the acknowledged
  changes and a revision that never goes backwards. `synchronous=FULL` makes each commit
  durable before the registry answers, at the cost of an fsync per mutation.
- That fsync can take milliseconds, so the blocking calls run on one dedicated thread (which
  also owns the connection, as sqlite3 wants); the event loop only awaits their result and
  keeps serving RPCs and watch streams meanwhile.
- Reads never touch the file: the store keeps a copy of every valid spec in memory, loaded
  at open and updated after each commit. The registry process is the only writer (an
  exclusive lock on `registry.db.lock` keeps a second registry off the same file).
- Rows are checked when loaded: a row that cannot be decoded, or no longer passes the
  registry's validation, is skipped with one error line naming the function and the field;
  the rest are served. A file that SQLite cannot read at all stops the start-up with a clear
  StoreError and is never written to.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from google.protobuf import json_format

from nanofaas.v1 import types_pb2
from nanofaas_registry.store.base import ReadsFromMemory, StoreError, copy_spec
from nanofaas_registry.validation import SpecValidationError, normalize_spec

logger = logging.getLogger(__name__)

T = TypeVar("T")

DB_FILE_NAME = "registry.db"
SCHEMA_VERSION = 1

# Each entry brings a file from user_version i to i + 1, in one transaction.
# Version 0 is a file SQLite has just created (or one this registry never initialised).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # spec: the FunctionSpec in protobuf's JSON mapping (camelCase REST field names), so a
        # row stays readable with the sqlite3 shell and decodes across proto field additions.
        """CREATE TABLE functions (
            name TEXT PRIMARY KEY NOT NULL,
            revision INTEGER NOT NULL,
            spec TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) STRICT""",
        "INSERT INTO meta (key, value) VALUES ('revision', 0)",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A stored function that is not served, and why ("<field>: <problem>")."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Loaded:
    specs: dict[str, types_pb2.FunctionSpec]
    revision: int
    skipped: list[SkippedRow]


class SqliteFunctionStore(ReadsFromMemory):
    """Create it with `await SqliteFunctionStore.open(data_dir)`; close it when done."""

    def __init__(
        self,
        path: Path,
        executor: ThreadPoolExecutor,
        connection: sqlite3.Connection,
        lock_file: IO[bytes],
        loaded: _Loaded,
    ) -> None:
        self._path = path
        self._executor = executor
        self._connection = connection
        self._lock_file = lock_file
        self._specs = loaded.specs
        self._revision = loaded.revision
        self.skipped: list[SkippedRow] = loaded.skipped
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    async def open(cls, data_dir: Path) -> SqliteFunctionStore:
        """Opens (creating or migrating if needed) data_dir/registry.db; raises StoreError."""
        path = data_file(data_dir)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-sqlite")
        loop = asyncio.get_running_loop()
        lock_file: IO[bytes] | None = None
        connection: sqlite3.Connection | None = None
        try:
            lock_file = await loop.run_in_executor(executor, _acquire_lock, data_dir, path)
            connection = await loop.run_in_executor(executor, _connect, path)
            loaded = await loop.run_in_executor(executor, _load, connection, path)
        except BaseException:
            if connection is not None:
                await loop.run_in_executor(executor, connection.close)
            if lock_file is not None:
                lock_file.close()
            executor.shutdown(wait=True)
            raise
        for row in loaded.skipped:
            logger.error(
                "stored function skipped",
                extra={"functionName": row.name, "reason": row.reason, "path": str(path)},
            )
        logger.info(
            "function store opened",
            extra={
                "path": str(path),
                "functions": len(loaded.specs),
                "skipped": len(loaded.skipped),
                "revision": loaded.revision,
            },
        )
        return cls(path, executor, connection, lock_file, loaded)

    async def put(self, spec: types_pb2.FunctionSpec) -> None:
        stored = copy_spec(spec)
        encoded = json_format.MessageToJson(stored, indent=None, sort_keys=True)
        revision = max(self._revision, stored.revision)

        def write(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO functions (name, revision, spec) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET revision = excluded.revision, spec = excluded.spec",
                (stored.name, stored.revision, encoded),
            )
            _set_revision(connection, revision)

        await self._transaction(write)
        self._specs[stored.name] = stored
        self._revision = revision

    async def delete(self, name: str, revision: int) -> bool:
        if name not in self._specs:
            return False
        new_revision = max(self._revision, revision)

        def write(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM functions WHERE name = ?", (name,))
            _set_revision(connection, new_revision)

        await self._transaction(write)
        del self._specs[name]
        self._revision = new_revision
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._connection.close)
        self._executor.shutdown(wait=True)
        self._lock_file.close()  # releases the flock

    async def _transaction(self, write: Callable[[sqlite3.Connection], None]) -> None:
        """Runs write in one IMMEDIATE transaction on the store's thread; StoreError on failure."""
        if self._closed:
            raise StoreError("the function store is closed")
        connection = self._connection

        def run() -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                write(connection)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except sqlite3.Error as exc:
            logger.error("function store write failed", extra={"path": str(self._path), "error": str(exc)})
            raise StoreError(f"the function store could not save the change: {exc}") from exc


def _acquire_lock(data_dir: Path, path: Path) -> IO[bytes]:
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_file = open(f"{path}.lock", "ab")  # noqa: SIM115 - held open for the store's life
    except OSError as exc:
        raise StoreError(f"{data_dir}: cannot use the data directory: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock_file.close()
        raise StoreError(f"{path}: another registry is using this function store") from None
    return lock_file


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, durable commits."""
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the function store: {exc}") from exc
    try:
        connection.execute("PRAGMA busy_timeout = 5000")
        # Checked before anything is written: switching to WAL already rewrites the header.
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: the function store has schema version {version}, newer than this registry's "
                f"{SCHEMA_VERSION}; run a newer registry"
            )
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch the function store to WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous = FULL")
        _migrate(connection, path, version)
    except sqlite3.Error as exc:
        connection.close()
        raise _unreadable(path, exc) from exc
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection, path: Path, version: int) -> None:
    """Applies the migrations after `version`, each in its own transaction."""
    while version < SCHEMA_VERSION:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[version]:
                connection.execute(statement)
            version += 1
            connection.execute(f"PRAGMA user_version = {version}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        logger.info("function store migrated", extra={"path": str(path), "schemaVersion": version})


def _load(connection: sqlite3.Connection, path: Path) -> _Loaded:
    try:
        (stored_revision,) = connection.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        rows = connection.execute("SELECT name, revision, spec FROM functions ORDER BY name").fetchall()
    except (sqlite3.Error, TypeError) as exc:
        raise _unreadable(path, exc) from exc
    specs: dict[str, types_pb2.FunctionSpec] = {}
    skipped: list[SkippedRow] = []
    # Skipped rows still count: a revision they carry was handed out, so it is never reused.
    revision = max([int(stored_revision), *(int(row_revision) for _, row_revision, _ in rows)])
    for name, row_revision, encoded in rows:
        try:
            specs[name] = decode_row(name, int(row_revision), encoded)
        except SpecValidationError as exc:
            skipped.append(SkippedRow(name, str(exc)))
    return _Loaded(specs, revision, skipped)


def decode_row(name: str, revision: int, encoded: str) -> types_pb2.FunctionSpec:
    """The spec a stored row holds, re-validated with today's rules (defaults applied).

    Raises SpecValidationError naming the field, so a row written by an older registry whose
    value is no longer accepted is reported, not served half-understood.
    """
    spec = types_pb2.FunctionSpec()
    try:
        # Unknown fields come from a newer registry: dropping them beats not serving the function.
        json_format.Parse(encoded, spec, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise SpecValidationError("spec", f"stored JSON cannot be decoded: {exc}") from None
    if spec.name != name:
        raise SpecValidationError("name", f"the stored spec is named {spec.name!r}, its row {name!r}")
    normalized = normalize_spec(spec)
    normalized.created_at_ms = spec.created_at_ms
    normalized.updated_at_ms = spec.updated_at_ms
    normalized.revision = revision
    return normalized


def _unreadable(path: Path, exc: Exception) -> StoreError:
    """The error for a file SQLite cannot read; the file is left exactly as it is."""
    return StoreError(f"{path}: cannot read the function store ({exc}); move it aside to start empty")


def _set_revision(connection: sqlite3.Connection, revision: int) -> None:
    connection.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (revision,))


def data_file(data_dir: Path) -> Path:
    """Where the sqlite store of data_dir keeps its functions."""
    return data_dir / DB_FILE_NAME
