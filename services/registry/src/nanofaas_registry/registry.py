"""The registry's domain logic: revisioned CRUD over a FunctionStore plus the Watch feed.

Every mutation and every watch start runs under one lock, so the revision order, the
store contents and the order events reach watchers always agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nanofaas.v1 import registry_pb2, types_pb2
from nanofaas_registry.metrics import RegistryMetrics
from nanofaas_registry.store.base import ExternalChange, FunctionStore, same_content
from nanofaas_registry.validation import normalize_spec
from nanofaas_registry.watch import Subscription, WatchHub

logger = logging.getLogger(__name__)


class RegistryError(Exception):
    """A request the registry refuses; str() is the message shown to the caller."""


class FunctionNotFoundError(RegistryError):
    def __init__(self, name: str) -> None:
        super().__init__(f"function '{name}' not found")
        self.name = name


class FunctionExistsError(RegistryError):
    def __init__(self, name: str) -> None:
        super().__init__(f"function '{name}' already exists")
        self.name = name


class NameMismatchError(RegistryError):
    """Update's spec.name differs from the name in the path."""

    def __init__(self) -> None:
        super().__init__("name: must match the path")


def unix_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class WatchStart:
    """What a new watcher gets atomically: the current specs, their revision and the live feed."""

    snapshot: list[types_pb2.FunctionSpec]
    revision: int
    subscription: Subscription


class FunctionRegistry:
    """Validates, stores and announces function specs. Create it with FunctionRegistry.open()."""

    def __init__(
        self,
        store: FunctionStore,
        hub: WatchHub,
        metrics: RegistryMetrics,
        *,
        revision: int,
        clock: Callable[[], int] = unix_ms,
    ) -> None:
        self._store = store
        self._hub = hub
        self._metrics = metrics
        self._revision = revision
        self._clock = clock
        self._lock = asyncio.Lock()
        # This process's epoch: revisions are ordered within it (see WatchEvent.epoch).
        self.epoch = unix_ms()

    @classmethod
    async def open(
        cls,
        store: FunctionStore,
        *,
        hub: WatchHub | None = None,
        metrics: RegistryMetrics | None = None,
        clock: Callable[[], int] = unix_ms,
    ) -> FunctionRegistry:
        """Resumes from the store's revision so revisions never go backwards across restarts."""
        registry = cls(
            store,
            hub or WatchHub(),
            metrics or RegistryMetrics(with_process_metrics=False),
            revision=await store.revision(),
            clock=clock,
        )
        registry._metrics.set_function_count(await store.count())
        return registry

    @property
    def revision(self) -> int:
        """The revision of the last mutation (0 before any)."""
        return self._revision

    @property
    def hub(self) -> WatchHub:
        return self._hub

    async def register(self, spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
        """Stores a new function. Raises SpecValidationError or FunctionExistsError."""
        normalized = normalize_spec(spec)
        async with self._lock:
            if await self._store.get(normalized.name) is not None:
                raise FunctionExistsError(normalized.name)
            now = self._clock()
            normalized.created_at_ms = now
            normalized.updated_at_ms = now
            await self._commit_put(normalized)
        logger.info(
            "function registered",
            extra={"functionName": normalized.name, "revision": normalized.revision},
        )
        return normalized

    async def get(self, name: str) -> types_pb2.FunctionSpec:
        spec = await self._store.get(name)
        if spec is None:
            raise FunctionNotFoundError(name)
        return spec

    async def list(self) -> tuple[list[types_pb2.FunctionSpec], int]:
        """All specs sorted by name, with the revision they are current at."""
        async with self._lock:
            return await self._store.list(), self._revision

    async def update(self, name: str, spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
        """Replaces the whole spec (defaults re-applied), keeping its creation time."""
        if spec.name and spec.name != name:
            raise NameMismatchError()
        candidate = types_pb2.FunctionSpec()
        candidate.CopyFrom(spec)
        candidate.name = name
        async with self._lock:
            current = await self._store.get(name)
            if current is None:
                raise FunctionNotFoundError(name)
            normalized = normalize_spec(candidate)
            normalized.created_at_ms = current.created_at_ms
            normalized.updated_at_ms = max(self._clock(), current.created_at_ms)
            await self._commit_put(normalized)
        logger.info(
            "function updated",
            extra={"functionName": name, "revision": normalized.revision},
        )
        return normalized

    async def delete(self, name: str) -> int:
        """Removes the function; returns the revision of the deletion."""
        async with self._lock:
            if await self._store.get(name) is None:
                raise FunctionNotFoundError(name)
            revision = await self._commit_delete(name)
        logger.info("function deleted", extra={"functionName": name, "revision": revision})
        return revision

    async def adopt(self, change: ExternalChange) -> int | None:
        """Serves a change someone else made to the store (kubectl on a Function object).

        It gets the next revision and reaches watchers like a change through the API; returns
        that revision, or None when there was nothing to do (deleting an unknown function).
        """
        async with self._lock:
            current = await self._store.get(change.name)
            if change.spec is None:
                if current is None:
                    return None
                revision = await self._commit_delete(change.name)
            else:
                normalized = normalize_spec(change.spec)
                if current is not None and same_content(current, normalized):
                    return None  # e.g. the store reporting back a change the registry made itself
                now = self._clock()
                normalized.created_at_ms = now if current is None else current.created_at_ms
                normalized.updated_at_ms = max(now, normalized.created_at_ms)
                await self._commit_put(normalized)
                revision = normalized.revision
        logger.info(
            "external change adopted",
            extra={"functionName": change.name, "revision": revision, "deleted": change.spec is None},
        )
        return revision

    async def follow_store(self) -> None:
        """Adopts the store's external changes until cancelled (returns at once for other stores).

        A change that cannot be adopted is logged and skipped, so one bad object blocks nothing.
        """
        changes = self._store.external_changes()
        if changes is None:
            return
        async for change in changes:
            try:
                await self.adopt(change)
            except Exception:
                logger.exception("external change not adopted", extra={"functionName": change.name})

    async def watch(self) -> WatchStart:
        """Snapshot and subscription taken together, so no change is missed or seen twice."""
        async with self._lock:
            snapshot = await self._store.list()
            return WatchStart(snapshot, self._revision, self._hub.subscribe())

    def close(self) -> None:
        """Ends every watch stream (shutdown)."""
        self._hub.close()

    async def _commit_put(self, spec: types_pb2.FunctionSpec) -> None:
        """Stamps the next revision, stores, then announces; the revision advances only once stored."""
        revision = self._revision + 1
        spec.revision = revision
        await self._store.put(spec)
        self._revision = revision
        event_spec = types_pb2.FunctionSpec()
        event_spec.CopyFrom(spec)
        self._hub.publish(
            registry_pb2.WatchEvent(type=registry_pb2.WatchEvent.PUT, spec=event_spec, revision=revision)
        )
        self._metrics.set_function_count(await self._store.count())

    async def _commit_delete(self, name: str) -> int:
        """Removes name at the next revision, then announces it; returns that revision."""
        revision = self._revision + 1
        await self._store.delete(name, revision)
        self._revision = revision
        self._hub.publish(
            registry_pb2.WatchEvent(
                type=registry_pb2.WatchEvent.DELETED,
                spec=types_pb2.FunctionSpec(name=name),
                revision=revision,
            )
        )
        self._metrics.set_function_count(await self._store.count())
        return revision
