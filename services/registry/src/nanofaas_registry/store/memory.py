"""The in-memory FunctionStore: nothing survives a restart."""

from __future__ import annotations

from nanofaas.v1 import types_pb2
from nanofaas_registry.store.base import ReadsFromMemory, copy_spec


class InMemoryFunctionStore(ReadsFromMemory):
    """A dict of copies; copies in and out keep callers from mutating stored specs."""

    def __init__(self) -> None:
        self._specs: dict[str, types_pb2.FunctionSpec] = {}
        self._revision = 0

    async def put(self, spec: types_pb2.FunctionSpec) -> None:
        self._specs[spec.name] = copy_spec(spec)
        self._revision = max(self._revision, spec.revision)

    async def delete(self, name: str, revision: int) -> bool:
        if self._specs.pop(name, None) is None:
            return False
        self._revision = max(self._revision, revision)
        return True
