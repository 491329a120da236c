"""Namespace lifecycle and default service accounts.

A new namespace gets its ``default`` ServiceAccount (pods are refused without one, as the
ServiceAccount admission plugin does); a namespace being deleted is emptied, then released.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ApiError
from ..resources import NAMESPACE_KEY, SERVICE_ACCOUNT_KEY
from ..store import Event
from .base import Controller, Key


class NamespaceController(Controller):
    name = "namespace-controller"

    def keys_for(self, event: Event) -> Iterable[Key]:
        key = event.resource.key
        if key == NAMESPACE_KEY and event.type != "DELETED":
            yield ("", event.obj["metadata"]["name"])
        elif key == SERVICE_ACCOUNT_KEY and event.type == "DELETED":
            yield ("", event.obj["metadata"].get("namespace", ""))

    def reconcile(self, key: Key) -> None:
        namespaces = self.resource(NAMESPACE_KEY)
        namespace = self.store.peek(namespaces, None, key[1])
        if namespace is None:
            return
        name = key[1]
        if not namespace["metadata"].get("deletionTimestamp"):
            accounts = self.resource(SERVICE_ACCOUNT_KEY)
            if self.store.peek(accounts, name, "default") is None:
                try:
                    self.store.create(accounts, name, {"metadata": {"name": "default"}})
                except ApiError as error:
                    if error.code != 409:
                        raise
            return
        left = 0
        for resource in self.registry:
            if not resource.namespaced:
                continue
            for obj in list(self.store.iter(resource, name)):
                left += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self.store.delete(resource, name, obj["metadata"]["name"], propagation="Background")
        if left:
            self.enqueue_after(key, 0.1)
            return
        released = self.store.get(namespaces, None, name)
        released.setdefault("spec", {})["finalizers"] = []
        self.store.replace(namespaces, None, name, released)
        self.store.force_remove(namespaces, None, name)
