"""The garbage collector: cascading deletion through ``metadata.ownerReferences``.

Background deletion removes the owner at once and this controller then deletes every dependent
whose owners are all gone; foreground deletion keeps the owner (``foregroundDeletion`` finalizer,
``deletionTimestamp`` set) until its blocking dependents are gone. Orphaning is done by the store
as the owner is deleted. Dependents that name an owner which no longer exists are collected too.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..store import FOREGROUND, Event
from .base import Controller, Key


class GarbageCollector(Controller):
    name = "garbage-collector"

    def keys_for(self, event: Event) -> Iterable[Key]:
        metadata = event.obj["metadata"]
        if event.type == "DELETED" or FOREGROUND in (metadata.get("finalizers") or ()):
            yield (metadata["uid"], "")
        for ref in metadata.get("ownerReferences") or ():
            yield (str(ref.get("uid")), "")

    def reconcile(self, key: Key) -> None:
        uid = key[0]
        owner = self.store.by_uid(uid)
        if owner is not None:
            resource, obj = owner
            metadata = obj["metadata"]
            if not metadata.get("deletionTimestamp") or FOREGROUND not in (metadata.get("finalizers") or ()):
                return
            blocking = 0
            for dep_resource, dependent in self.store.dependents(uid):
                ref = next(r for r in dependent["metadata"]["ownerReferences"] if r.get("uid") == uid)
                if ref.get("blockOwnerDeletion"):
                    blocking += 1
                if not dependent["metadata"].get("deletionTimestamp"):
                    self.store.delete(
                        dep_resource,
                        dependent["metadata"].get("namespace"),
                        dependent["metadata"]["name"],
                        propagation="Foreground",
                    )
            if blocking == 0:
                self.store.remove_finalizer(resource, metadata.get("namespace"), metadata["name"], FOREGROUND)
            return
        for dep_resource, dependent in self.store.dependents(uid):
            refs = dependent["metadata"]["ownerReferences"]
            alive = [r for r in refs if self.store.by_uid(str(r.get("uid"))) is not None]
            namespace, name = dependent["metadata"].get("namespace"), dependent["metadata"]["name"]
            if not alive:
                if not dependent["metadata"].get("deletionTimestamp"):
                    self.store.delete(dep_resource, namespace, name, propagation="Background")
            else:
                fresh = self.store.get(dep_resource, namespace, name)
                fresh["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self.store.replace(dep_resource, namespace, name, fresh)
