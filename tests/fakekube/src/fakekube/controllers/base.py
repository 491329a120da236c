"""The controller loop every controller shares: events in, keys queued, one reconcile per key.

Like client-go's work queues, a key queued twice before it is handled is reconciled once, and a
reconcile that wants another look later asks for it with :meth:`Controller.enqueue_after` rather
than sleeping. Reconciles run on the cluster's loop thread and read the store directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..errors import ApiError
from ..resources import ResourceRegistry, ResourceType
from ..store import Event, Store

log = logging.getLogger("fakekube.controllers")

Key = tuple[str, str]  # (namespace, name) of the object a controller reconciles


class Controller:
    """Subclasses set :attr:`name`, map events to keys in :meth:`keys_for` and implement :meth:`reconcile`."""

    name = "controller"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.registry: ResourceRegistry = store.registry
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._pending: set[Key] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._task: asyncio.Task[None] | None = None
        store.subscribe(self._on_event)

    def resource(self, key: tuple[str, str]) -> ResourceType:
        return self.registry.by_key(key)

    def keys_for(self, event: Event) -> Iterable[Key]:
        """The objects to reconcile because of ``event``."""
        return ()

    def reconcile(self, key: Key) -> None:
        raise NotImplementedError

    def _on_event(self, event: Event) -> None:
        for key in self.keys_for(event):
            self.enqueue(key)

    def enqueue(self, key: Key) -> None:
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def enqueue_after(self, key: Key, seconds: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.enqueue(key)

        handle = loop.call_later(max(seconds, 0.0), fire)
        self._timers.add(handle)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            try:
                self.reconcile(key)
            except ApiError as error:
                # Conflicts and races with other writers: look again shortly, as controllers requeue.
                log.debug("%s: %s on %s, requeued", self.name, error.reason, key)
                self.enqueue_after(key, 0.05)
            except Exception:
                log.exception("%s failed on %s", self.name, key)
                self.enqueue_after(key, 0.5)
            await asyncio.sleep(0)


def owner_keys(event: Event, kind: str) -> list[Key]:
    """Keys of the ``kind`` controllers owning the object in ``event`` (before and after)."""
    keys = []
    for obj in (event.obj, event.old):
        if obj is None:
            continue
        for ref in obj["metadata"].get("ownerReferences") or ():
            if ref.get("controller") and ref.get("kind") == kind:
                keys.append((obj["metadata"].get("namespace", ""), str(ref["name"])))
    return keys
