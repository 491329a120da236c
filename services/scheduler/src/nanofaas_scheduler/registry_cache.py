"""The scheduler's view of the registry: a spec cache and the registry's limits, kept current by Watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

Listener = Callable[[str, types_pb2.FunctionSpec | None], Awaitable[None]]

# How long an invocation may wait for the watch to reach the revision its
# caller has seen before asking the registry directly.
_CATCH_UP_S = 1.0


class FunctionCache:
    """Specs by name, at a known registry revision and epoch.

    Lookups are dictionary reads on the hot path; the registry is asked
    directly only when the cache is behind what the caller has seen or has
    no such function (it may have been registered a moment ago).

    Revisions count within a registry epoch (the registry process's start): a caller's
    mark from an earlier epoch than the cache's is already covered, since the cache's
    snapshot was taken after that registry restarted, so it never makes a call wait for a
    revision the restarted registry may not reach for a long time. While the watch is
    down (the registry restarting), the specs of the last snapshot keep serving callers
    whose mark they satisfy; a caller that has seen a later change still waits for it
    (read-your-writes), then asks the registry.
    """

    def __init__(self, stub: registry_pb2_grpc.RegistryAsyncStub, listener: Listener | None = None) -> None:
        self._stub = stub
        self._listener = listener
        self._specs: dict[str, types_pb2.FunctionSpec] = {}
        self.revision = 0
        self.epoch = 0
        # Set while the watch is connected and synced; cleared while it reconnects.
        self.synced = asyncio.Event()
        # Set at the first sync and never cleared: the scheduler is ready from then on.
        self.first_synced = asyncio.Event()
        self._advanced = asyncio.Event()
        # The registry's validation limits, from the latest SYNCED that carried them (kept
        # across reconnects); None until the first.
        self.limits: registry_pb2.Limits | None = None
        self._limits_known = asyncio.Event()

    async def max_timeout_ms(self) -> int | None:
        """The largest timeout a caller may ask for (the registry's largest timeoutMs).

        Waits a moment for a first sync (the scheduler may just have started); None while the
        registry's limits are still unknown.
        """
        if self.limits is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._limits_known.wait(), _CATCH_UP_S)
        return None if self.limits is None else self.limits.max_timeout_ms

    def behind(self, min_revision: int, min_epoch: int = 0) -> bool:
        """Has the caller seen a registry state newer than the cache's?"""
        if min_epoch and self.epoch and min_epoch != self.epoch:
            return min_epoch > self.epoch
        return min_revision > self.revision

    async def get(
        self, name: str, min_revision: int = 0, min_epoch: int = 0
    ) -> types_pb2.FunctionSpec | None:
        if self.behind(min_revision, min_epoch):
            await self._catch_up(min_revision, min_epoch)
        if self.first_synced.is_set() and not self.behind(min_revision, min_epoch):
            spec = self._specs.get(name)
            if spec is not None:
                return spec
        return await self._fetch(name)

    async def _catch_up(self, revision: int, epoch: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CATCH_UP_S
        while self.behind(revision, epoch):
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._advanced.wait(), left)
            except TimeoutError:
                return

    async def _fetch(self, name: str) -> types_pb2.FunctionSpec | None:
        try:
            return await self._stub.Get(registry_pb2.GetFunctionRequest(name=name), timeout=5.0)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def _advance(self, revision: int) -> None:
        self.revision = revision
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def _notify(self, name: str, spec: types_pb2.FunctionSpec | None) -> None:
        if self._listener is not None:
            try:
                await self._listener(name, spec)
            except Exception:
                log.exception("function change listener failed", extra={"functionName": name})

    async def run(self) -> None:
        """Follow the registry forever, resynchronising after any disconnect."""
        backoff = 0.05
        while True:
            try:
                await self._follow()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("registry watch interrupted", extra={"code": exc.code().name})
            except Exception:
                log.exception("registry watch failed")
            self.synced.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _follow(self) -> None:
        snapshot: dict[str, types_pb2.FunctionSpec] = {}
        call = self._stub.Watch(registry_pb2.WatchRequest())
        async for event in call:
            if event.type == registry_pb2.WatchEvent.SNAPSHOT:
                snapshot[event.spec.name] = event.spec
            elif event.type == registry_pb2.WatchEvent.SYNCED:
                if event.HasField("limits"):
                    self.limits = event.limits
                    self._limits_known.set()
                old, self._specs = self._specs, snapshot
                if event.epoch != self.epoch and self.first_synced.is_set():
                    log.info("registry restarted", extra={"epoch": event.epoch, "previousEpoch": self.epoch})
                self.epoch = event.epoch
                self._advance(event.revision)
                self.synced.set()
                self.first_synced.set()
                log.info(
                    "registry synced",
                    extra={"functions": len(snapshot), "revision": event.revision, "epoch": event.epoch},
                )
                for name in old.keys() - snapshot.keys():
                    await self._notify(name, None)
                for name, spec in snapshot.items():
                    if old.get(name) != spec:
                        await self._notify(name, spec)
            elif event.type == registry_pb2.WatchEvent.PUT:
                self._specs[event.spec.name] = event.spec
                self._advance(event.revision)
                await self._notify(event.spec.name, event.spec)
            elif event.type == registry_pb2.WatchEvent.DELETED:
                self._specs.pop(event.spec.name, None)
                self._advance(event.revision)
                await self._notify(event.spec.name, None)
