"""The in-memory FunctionStore: nothing survives a restart."""

from __future__ import annotations

from nanofaas.v1 import types_pb2
from nanofaas_registry.store.base import FunctionStore, copy_spec


class InMemoryFunctionStore(FunctionStore):
    """A dict of copies; copies in and out keep callers from mutating stored specs."""

    def __init__(self) -> None:
        self._specs: dict[str, types_pb2.FunctionSpec] = {}
        self._revision = 0

    async def get(self, name: str) -> types_pb2.FunctionSpec | None:
        spec = self._specs.get(name)
        return None if spec is None else copy_spec(spec)

    async def list(self) -> list[types_pb2.FunctionSpec]:
        return [copy_spec(self._specs[name]) for name in sorted(self._specs)]

    async def count(self) -> int:
        return len(self._specs)

    async def put(self, spec: types_pb2.FunctionSpec) -> None:
        self._specs[spec.name] = copy_spec(spec)
        self._revision = max(self._revision, spec.revision)

    async def delete(self, name: str, revision: int) -> bool:
        if self._specs.pop(name, None) is None:
            return False
        self._revision = max(self._revision, revision)
        return True

    async def revision(self) -> int:
        return self._revision
