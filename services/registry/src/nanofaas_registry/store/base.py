"""The storage interface of the registry, so a persistent store can replace the in-memory one."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nanofaas.v1 import types_pb2


class StoreError(Exception):
    """The store cannot be opened or cannot save a change; str() says which file and why."""


@dataclass(frozen=True, slots=True)
class ExternalChange:
    """A change made to the store by someone other than the registry (e.g. kubectl).

    spec is the new, already validated spec (registry-owned fields unset), or None when the
    function was deleted.
    """

    name: str
    spec: types_pb2.FunctionSpec | None


class FunctionStore(abc.ABC):
    """Holds the current spec of every function and the registry's revision.

    The registry serialises all mutations, so implementations need not guard against
    concurrent writers; they must not keep references to the messages they are given
    or hand out references to messages they keep.
    """

    @abc.abstractmethod
    async def get(self, name: str) -> types_pb2.FunctionSpec | None:
        """The spec called name, or None."""

    @abc.abstractmethod
    async def list(self) -> list[types_pb2.FunctionSpec]:
        """Every spec, sorted by name."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many functions are stored."""

    @abc.abstractmethod
    async def put(self, spec: types_pb2.FunctionSpec) -> None:
        """Creates or replaces spec.name; spec.revision is the registry revision of this change.

        Returns only once the change is durable; raises StoreError (and changes nothing) if it
        cannot be saved.
        """

    @abc.abstractmethod
    async def delete(self, name: str, revision: int) -> bool:
        """Removes name at the given registry revision; False when there was no such function."""

    @abc.abstractmethod
    async def revision(self) -> int:
        """The registry revision of the last change stored (0 for an empty, fresh store)."""

    def external_changes(self) -> AsyncIterator[ExternalChange] | None:
        """Changes others make to the store, in order, for the registry to adopt; None (the default)
        for stores only the registry writes."""
        return None

    async def close(self) -> None:
        """Releases resources; the default store has none."""


class ReadsFromMemory(FunctionStore):
    """The read side every store shares: reads come from an in-memory copy kept by the writes.

    Subclasses set `_specs` (name -> spec) and `_revision` and keep them current.
    """

    _specs: dict[str, types_pb2.FunctionSpec]
    _revision: int

    async def get(self, name: str) -> types_pb2.FunctionSpec | None:
        spec = self._specs.get(name)
        return None if spec is None else copy_spec(spec)

    async def list(self) -> list[types_pb2.FunctionSpec]:
        return [copy_spec(self._specs[name]) for name in sorted(self._specs)]

    async def count(self) -> int:
        return len(self._specs)

    async def revision(self) -> int:
        return self._revision


def copy_spec(spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
    """A deep copy: stores never share messages with their callers."""
    clone = types_pb2.FunctionSpec()
    clone.CopyFrom(spec)
    return clone


def same_content(left: types_pb2.FunctionSpec, right: types_pb2.FunctionSpec) -> bool:
    """Equal apart from the registry-owned fields (timestamps, revision)."""
    return _owned_cleared(left) == _owned_cleared(right)


def _owned_cleared(spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
    clone = copy_spec(spec)
    clone.created_at_ms = clone.updated_at_ms = clone.revision = 0
    return clone
