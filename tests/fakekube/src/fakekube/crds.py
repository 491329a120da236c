"""CustomResourceDefinitions: creating one serves its kind, with its schema, like apiextensions.

The storage version is served at ``/apis/<group>/<version>/...`` and listed in discovery and
OpenAPI; objects are validated against ``openAPIV3Schema``; ``status`` and ``scale`` subresources
are honoured when declared. The CRD gets ``NamesAccepted`` and ``Established`` conditions.
Deleting the CRD deletes every object of its kind.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from .conditions import set_condition
from .resources import CRD_KEY, ResourceType
from .store import Store


def resource_of(crd: dict[str, Any]) -> ResourceType | None:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or () if v.get("served")]
    storage = next((v for v in versions if v.get("storage")), versions[0] if versions else None)
    if storage is None:
        return None
    subresources = storage.get("subresources") or {}
    return ResourceType(
        group=str(spec.get("group")),
        version=str(storage["name"]),
        plural=str(names.get("plural")),
        kind=str(names.get("kind")),
        namespaced=spec.get("scope") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=tuple(s for s in ("status", "scale") if s in subresources),
        schema=(storage.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"},
    )


class CrdController:
    """Keeps the registry in step with the stored CRDs (called by the store on every CRD write)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_change(self, crd: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        registry = self.store.registry
        before = resource_of(old) if old is not None else None
        after = resource_of(crd) if crd is not None else None
        if before is not None and (after is None or after.key != before.key):
            for obj in list(self.store.iter(before)):
                self.store.force_remove(before, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            registry.remove(before.key)
        if after is not None and crd is not None:
            registry.add(after)
            asyncio.get_running_loop().call_soon(self._establish, crd["metadata"]["name"])

    def _establish(self, name: str) -> None:
        resource = self.store.registry.by_key(CRD_KEY)
        crd = self.store.peek(resource, None, name)
        if crd is None:
            return
        status = copy.deepcopy(crd.get("status") or {})
        names = (crd.get("spec") or {}).get("names") or {}
        status["acceptedNames"] = {
            k: v
            for k, v in names.items()
            if k in ("plural", "singular", "kind", "listKind", "shortNames", "categories")
        }
        status["storedVersions"] = [
            v["name"] for v in (crd.get("spec") or {}).get("versions") or () if v.get("storage")
        ]
        set_condition(status, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
        set_condition(
            status, "Established", "True", "InitialNamesAccepted", "the initial names have been accepted"
        )
        self.store.write_status(resource, crd, status)
