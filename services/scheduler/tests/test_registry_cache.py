"""FunctionCache against a real grpc.aio server speaking the registry contract (registry.proto).

The registry here is a small fake written on the contract, not the registry package (the
scheduler's tests never import another service): it can hold its watch events back, drop
its watchers and keep new watches waiting, so every resynchronisation path is reached on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from nanofaas_scheduler.registry_cache import FunctionCache

Change = tuple[str, types_pb2.FunctionSpec | None]
WAIT_S = 15.0
# Reconnect quickly once the registry is back: the channel's default first backoff is 1 s.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]
_SERVER_OPTIONS = [("grpc.so_reuseport", 0)]  # a restart must get the port back, not share it
SNAPSHOT, SYNCED, PUT, DELETED = (
    registry_pb2.WatchEvent.SNAPSHOT,
    registry_pb2.WatchEvent.SYNCED,
    registry_pb2.WatchEvent.PUT,
    registry_pb2.WatchEvent.DELETED,
)


class FakeRegistry(registry_pb2_grpc.RegistryServicer):
    """Specs in memory with a revision per change; Get and Watch as registry.proto describes them."""

    def __init__(self) -> None:
        self.specs: dict[str, types_pb2.FunctionSpec] = {}
        self.revision = 0
        self.epoch = 1_000  # registry.proto: when this registry started; a restart has a later one
        self.gets: list[str] = []  # every name asked for with Get
        self.watch_gate = asyncio.Event()  # cleared: a new Watch waits here before its snapshot
        self.watch_gate.set()
        self.watch_arrived = asyncio.Event()  # set by every Watch call as it arrives
        self._watchers: list[asyncio.Queue[registry_pb2.WatchEvent | None]] = []
        self._held: list[registry_pb2.WatchEvent] | None = None

    def put(self, name: str, image: str = "nanofaas/python-runtime:latest") -> types_pb2.FunctionSpec:
        self.revision += 1
        spec = types_pb2.FunctionSpec(name=name, image=image, revision=self.revision)
        self.specs[name] = spec
        self._publish(registry_pb2.WatchEvent(type=PUT, spec=spec, revision=self.revision))
        return spec

    def delete(self, name: str) -> None:
        self.revision += 1
        del self.specs[name]
        gone = types_pb2.FunctionSpec(name=name)  # DELETED carries only the name
        self._publish(registry_pb2.WatchEvent(type=DELETED, spec=gone, revision=self.revision))

    def hold_events(self) -> None:
        """Changes still happen, but watchers hear of them only at release_events()."""
        self._held = []

    def release_events(self) -> None:
        held, self._held = self._held or [], None
        for event in held:
            self._publish(event)

    def drop_watchers(self) -> None:
        """End every open watch with UNAVAILABLE, as a registry shutting down does."""
        for queue in self._watchers:
            queue.put_nowait(None)

    def _publish(self, event: registry_pb2.WatchEvent) -> None:
        if self._held is not None:
            self._held.append(event)
            return
        for queue in self._watchers:
            queue.put_nowait(event)

    async def Get(self, request: registry_pb2.GetFunctionRequest, context: Any) -> types_pb2.FunctionSpec:
        self.gets.append(request.name)
        if request.name not in self.specs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"function '{request.name}' not found")
        return self.specs[request.name]

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: Any
    ) -> AsyncIterator[registry_pb2.WatchEvent]:
        self.watch_arrived.set()
        await self.watch_gate.wait()
        # Snapshot and subscription in one step, so no change falls between them.
        snapshot, revision = list(self.specs.values()), self.revision
        queue: asyncio.Queue[registry_pb2.WatchEvent | None] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            for spec in snapshot:
                yield registry_pb2.WatchEvent(type=SNAPSHOT, spec=spec, revision=revision)
            yield registry_pb2.WatchEvent(type=SYNCED, revision=revision, epoch=self.epoch)
            while (event := await queue.get()) is not None:
                yield event
            await context.abort(grpc.StatusCode.UNAVAILABLE, "watcher dropped; watch again")
        finally:
            self._watchers.remove(queue)


async def serve(registry: FakeRegistry, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    registry_pb2_grpc.add_RegistryServicer_to_server(registry, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    assert bound, f"port {port} could not be bound"
    await server.start()
    return server, bound


@dataclass
class Harness:
    registry: FakeRegistry
    server: grpc.aio.Server
    port: int
    cache: FunctionCache = field(init=False)
    changes: asyncio.Queue[Change] = field(default_factory=asyncio.Queue)
    failing_names: set[str] = field(default_factory=set)

    async def listener(self, name: str, spec: types_pb2.FunctionSpec | None) -> None:
        if name in self.failing_names:
            raise RuntimeError(f"listener cannot take {name}")
        self.changes.put_nowait((name, spec))

    async def next_changes(self, count: int) -> dict[str, types_pb2.FunctionSpec | None]:
        """The next `count` notifications, by name (the cache notifies them in no promised order)."""
        async with asyncio.timeout(WAIT_S):
            changes = [await self.changes.get() for _ in range(count)]
        assert len({name for name, _ in changes}) == count, changes
        return dict(changes)

    async def synced(self) -> None:
        await asyncio.wait_for(self.cache.synced.wait(), WAIT_S)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """A cache following a registry that holds a, b and c; the first sync already seen."""
    registry = FakeRegistry()  # type: ignore[abstract]  # the cache calls only Get and Watch
    for name in ("a", "b", "c"):
        registry.put(name)
    server, port = await serve(registry)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=_CHANNEL_OPTIONS)
    harness = Harness(registry, server, port)
    harness.cache = FunctionCache(registry_pb2_grpc.RegistryStub(channel), harness.listener)
    follower = asyncio.create_task(harness.cache.run())
    try:
        await harness.synced()
        first = await harness.next_changes(3)
        assert first == {name: registry.specs[name] for name in ("a", "b", "c")}
        yield harness
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await channel.close(None)
        await harness.server.stop(None)


async def test_first_sync_serves_every_function_from_the_cache(harness: Harness) -> None:
    assert harness.cache.revision == 3
    for name in ("a", "b", "c"):
        assert await harness.cache.get(name) == harness.registry.specs[name]
    assert harness.registry.gets == []


async def test_live_changes_reach_the_cache_and_the_listener(harness: Harness) -> None:
    added = harness.registry.put("d")
    assert await harness.next_changes(1) == {"d": added}
    harness.registry.delete("a")
    assert await harness.next_changes(1) == {"a": None}
    assert harness.cache.revision == harness.registry.revision == 5
    assert await harness.cache.get("d") == added
    assert harness.registry.gets == []
    assert await harness.cache.get("a") is None  # not cached: the registry is asked, and says NOT_FOUND
    assert harness.registry.gets == ["a"]


async def test_resync_after_a_dropped_watch_reports_what_changed_meanwhile(harness: Harness) -> None:
    registry = harness.registry
    registry.watch_gate.clear()
    registry.watch_arrived.clear()
    registry.drop_watchers()
    await asyncio.wait_for(registry.watch_arrived.wait(), WAIT_S)  # the cache is watching again
    assert not harness.cache.synced.is_set()
    # Out of sync, the last snapshot still answers (the registry may be down: finding 7).
    assert await harness.cache.get("c") == registry.specs["c"]
    assert registry.gets == []
    registry.delete("a")
    changed = registry.put("b", image="example/changed:2")
    added = registry.put("d")
    registry.watch_gate.set()
    assert await harness.next_changes(3) == {"a": None, "b": changed, "d": added}
    assert harness.cache.synced.is_set()
    assert harness.cache.revision == registry.revision == 6
    assert await harness.cache.get("b") == changed
    assert await harness.cache.get("c") == registry.specs["c"]
    assert registry.gets == []  # both served from the cache
    assert harness.changes.empty(), "c did not change and must not be reported"


async def test_a_lookup_waits_for_the_watch_to_reach_the_callers_revision(harness: Harness) -> None:
    harness.registry.hold_events()
    changed = harness.registry.put("b", image="example/changed:2")
    lookup = asyncio.create_task(harness.cache.get("b", min_revision=changed.revision))
    await asyncio.sleep(0)  # the lookup runs up to its wait for the watch
    assert not lookup.done()
    harness.registry.release_events()
    assert await asyncio.wait_for(lookup, WAIT_S) == changed
    assert harness.registry.gets == []  # answered by the watch, not by asking


async def test_a_lookup_asks_the_registry_when_the_watch_stays_behind(harness: Harness) -> None:
    harness.registry.hold_events()
    changed = harness.registry.put("b", image="example/changed:2")
    assert await asyncio.wait_for(harness.cache.get("b", min_revision=changed.revision), WAIT_S) == changed
    assert harness.registry.gets == ["b"]
    assert harness.cache.revision == 3  # the watch itself is still behind
    harness.registry.release_events()
    assert await harness.next_changes(1) == {"b": changed}


async def test_a_function_not_yet_in_the_cache_is_fetched(harness: Harness) -> None:
    harness.registry.hold_events()
    added = harness.registry.put("new")
    assert await harness.cache.get("new") == added
    assert harness.registry.gets == ["new"]
    harness.registry.release_events()
    assert await harness.next_changes(1) == {"new": added}
    assert await harness.cache.get("new") == added
    assert harness.registry.gets == ["new"]  # cached from now on


async def test_an_unknown_function_is_none(harness: Harness) -> None:
    assert await harness.cache.get("missing") is None
    assert await harness.cache.get("missing", min_revision=1) is None
    assert harness.registry.gets == ["missing", "missing"]


async def test_a_failing_listener_does_not_stop_the_watch(harness: Harness) -> None:
    harness.failing_names.add("bad")
    bad = harness.registry.put("bad")
    good = harness.registry.put("good")
    assert await harness.next_changes(1) == {"good": good}
    assert await harness.cache.get("bad") == bad
    assert harness.registry.gets == []


async def test_while_the_registry_is_down_and_after_it_returns(harness: Harness) -> None:
    registry = harness.registry
    await harness.server.stop(None)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await harness.cache.get("elsewhere")  # nothing cached to answer with: the failure is the caller's
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    registry.delete("a")
    added = registry.put("d")
    harness.server, _ = await serve(registry, harness.port)
    assert await harness.next_changes(2) == {"a": None, "d": added}
    await harness.synced()
    assert harness.cache.revision == registry.revision
    assert await harness.cache.get("d") == added


async def test_cached_specs_keep_serving_while_the_registry_is_down(harness: Harness) -> None:
    """Finding 7: invocations of known functions go on; read-your-writes still holds."""
    cache, registry = harness.cache, harness.registry
    await harness.server.stop(None)
    assert await cache.get("a", min_revision=3, min_epoch=registry.epoch) == registry.specs["a"]
    assert registry.gets == []
    # A caller who has seen a change the cache has not (a later revision or epoch) is not
    # answered from the cache: after the bounded catch-up the registry is asked, and is down.
    for mark in ({"min_revision": 4}, {"min_revision": 1, "min_epoch": registry.epoch + 1}):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await cache.get("a", **mark)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_restarted_registry_never_makes_old_marks_wait(harness: Harness) -> None:
    """A registry that forgot its revisions (memory store) restarts with a later epoch at revision 1."""
    old_epoch = harness.registry.epoch
    await harness.server.stop(None)
    restarted = FakeRegistry()  # type: ignore[abstract]
    restarted.epoch = old_epoch + 1
    again = restarted.put("a")
    harness.registry = restarted
    harness.server, _ = await serve(restarted, harness.port)
    assert await harness.next_changes(2) == {"b": None, "c": None}  # a: same spec, not reported
    assert (harness.cache.epoch, harness.cache.revision) == (restarted.epoch, 1)
    # The gateway's mark from before the restart (revision 3 of the old epoch) is covered.
    assert not harness.cache.behind(3, old_epoch)
    assert await harness.cache.get("a", min_revision=3, min_epoch=old_epoch) == again
    assert restarted.gets == []  # no catch-up wait, no fall-back to asking the registry
    # Within the new epoch, revisions are compared as before.
    assert harness.cache.behind(2, restarted.epoch)
    assert not harness.cache.behind(1, restarted.epoch)
