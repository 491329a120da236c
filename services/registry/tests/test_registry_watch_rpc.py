"""The Watch RPC: snapshot, SYNCED, live changes in revision order, cancellation, lag and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from nanofaas_registry.config import RegistrySettings
from nanofaas_registry.server import RegistryServer, start_server

if TYPE_CHECKING:
    from nanofaas.v1.registry_pb2_grpc import RegistryAsyncStub as Stub

SpecFactory = Callable[..., types_pb2.FunctionSpec]
WatchCall = grpc.aio.UnaryStreamCall[Any, registry_pb2.WatchEvent]
Event = registry_pb2.WatchEvent
TIMEOUT_S = 10


async def next_event(call: WatchCall) -> registry_pb2.WatchEvent:
    event = await asyncio.wait_for(call.read(), TIMEOUT_S)
    assert isinstance(event, registry_pb2.WatchEvent), f"stream ended: {event!r}"
    return event


async def read_until_synced(call: WatchCall) -> tuple[list[registry_pb2.WatchEvent], int]:
    snapshot: list[registry_pb2.WatchEvent] = []
    while True:
        event = await next_event(call)
        if event.type == Event.SYNCED:
            return snapshot, event.revision
        assert event.type == Event.SNAPSHOT
        snapshot.append(event)


async def register(stub: Stub, spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
    return await stub.Register(registry_pb2.RegisterRequest(spec=spec))


async def test_snapshot_synced_then_live_changes(stub: Stub, make_spec: SpecFactory) -> None:
    await register(stub, make_spec("beta"))
    await register(stub, make_spec("alpha", concurrency=2))
    call = stub.Watch(registry_pb2.WatchRequest())
    snapshot, synced = await read_until_synced(call)
    assert [(e.spec.name, e.revision, e.spec.revision) for e in snapshot] == [("alpha", 2, 2), ("beta", 1, 1)]
    assert snapshot[0].spec.concurrency == 2
    assert synced == 2

    await stub.Update(registry_pb2.UpdateRequest(name="alpha", spec=make_spec("", timeout_ms=7)))
    await stub.Delete(registry_pb2.DeleteFunctionRequest(name="beta"))
    gamma = await register(stub, make_spec("gamma"))

    put_alpha = await next_event(call)
    assert (put_alpha.type, put_alpha.revision, put_alpha.spec.name) == (Event.PUT, 3, "alpha")
    assert put_alpha.spec.timeout_ms == 7
    assert put_alpha.spec.revision == 3
    deleted = await next_event(call)
    assert (deleted.type, deleted.revision) == (Event.DELETED, 4)
    assert deleted.spec == types_pb2.FunctionSpec(name="beta")
    put_gamma = await next_event(call)
    assert (put_gamma.type, put_gamma.revision) == (Event.PUT, 5)
    assert put_gamma.spec == gamma
    call.cancel()


async def test_empty_registry_is_synced_at_zero(stub: Stub) -> None:
    call = stub.Watch(registry_pb2.WatchRequest())
    assert await read_until_synced(call) == ([], 0)
    call.cancel()


async def test_synced_carries_the_limits_the_registry_enforces(stub: Stub, make_spec: SpecFactory) -> None:
    """max_timeout_ms is the largest timeoutMs a spec may have: one more is refused."""
    call = stub.Watch(registry_pb2.WatchRequest())
    synced = await next_event(call)
    call.cancel()
    assert synced.type == Event.SYNCED
    assert synced.HasField("limits")
    largest = synced.limits.max_timeout_ms
    assert largest == 300_000
    stored = await register(stub, make_spec("longest", timeout_ms=largest))
    assert stored.timeout_ms == largest
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await register(stub, make_spec("too-long", timeout_ms=largest + 1))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == f"timeoutMs: must be between 1 and {largest}"


class WatchMirror:
    """Rebuilds registry state from one watch stream and checks its ordering rules."""

    def __init__(self, call: WatchCall) -> None:
        self.call = call
        self.state: dict[str, types_pb2.FunctionSpec] = {}
        self.synced = -1
        self.last_revision = -1

    async def sync(self) -> None:
        snapshot, self.synced = await read_until_synced(self.call)
        names = [event.spec.name for event in snapshot]
        assert names == sorted(names)
        for event in snapshot:
            assert event.revision <= self.synced
            self.state[event.spec.name] = event.spec
        self.last_revision = self.synced

    async def follow_until(self, marker: str) -> None:
        while True:
            event = await next_event(self.call)
            assert event.revision == self.last_revision + 1, "a change was missed or duplicated"
            self.last_revision = event.revision
            if event.type == Event.PUT:
                self.state[event.spec.name] = event.spec
            else:
                assert event.type == Event.DELETED
                assert self.state.pop(event.spec.name, None) is not None
            if event.spec.name == marker:
                return


async def test_watch_is_consistent_with_concurrent_mutations(stub: Stub, make_spec: SpecFactory) -> None:
    halfway = asyncio.Event()

    async def mutate(worker: int) -> None:
        for step in range(40):
            name = f"w{worker}-f{step % 5}"
            try:
                await register(stub, make_spec(name, concurrency=step + 1))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
                if step % 3 == 0:
                    await stub.Delete(registry_pb2.DeleteFunctionRequest(name=name))
                else:
                    await stub.Update(
                        registry_pb2.UpdateRequest(name=name, spec=make_spec("", concurrency=step + 1))
                    )
            if step == 20:
                halfway.set()

    early = WatchMirror(stub.Watch(registry_pb2.WatchRequest()))
    await early.sync()
    workers = [asyncio.create_task(mutate(worker)) for worker in range(4)]
    await halfway.wait()
    late = WatchMirror(stub.Watch(registry_pb2.WatchRequest()))
    await late.sync()
    await asyncio.gather(*workers)
    await register(stub, make_spec("zz-marker"))

    final = await stub.List(registry_pb2.ListFunctionsRequest())
    expected = {spec.name: spec for spec in final.functions}
    for mirror in (early, late):
        await mirror.follow_until("zz-marker")
        assert mirror.state == expected
        assert mirror.last_revision == final.revision
        mirror.call.cancel()
    assert early.synced == 0
    assert late.synced > 0


async def test_cancelled_watch_unsubscribes(server: RegistryServer, stub: Stub) -> None:
    call = stub.Watch(registry_pb2.WatchRequest())
    await read_until_synced(call)
    assert server.registry.hub.subscriber_count == 1
    call.cancel()
    await asyncio.wait_for(server.registry.hub.wait_for_subscriber_count(0), TIMEOUT_S)
    assert server.metrics.rpc_count("Watch", "CANCELLED") == 1


@pytest.fixture
async def small_queue_server() -> AsyncIterator[RegistryServer]:
    settings = RegistrySettings(host="127.0.0.1", port=0, metrics_port=0, watch_queue_capacity=2)
    running = await start_server(settings)
    try:
        yield running
    finally:
        await running.stop(0.5)


async def test_lagging_watcher_is_disconnected(
    small_queue_server: RegistryServer, make_spec: SpecFactory
) -> None:
    async with grpc.aio.insecure_channel(small_queue_server.address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        call = stub.Watch(registry_pb2.WatchRequest())
        await read_until_synced(call)
        # Five changes without yielding to the event loop: the watcher cannot drain its queue of 2.
        for index in range(5):
            await small_queue_server.registry.register(make_spec(f"fn{index}"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await next_event(call)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "fell more than 2 events behind" in (info.value.details() or "")
        assert small_queue_server.registry.hub.subscriber_count == 0
        # A fresh watch recovers the full state.
        again = stub.Watch(registry_pb2.WatchRequest())
        snapshot, synced = await read_until_synced(again)
        assert [event.spec.name for event in snapshot] == [f"fn{index}" for index in range(5)]
        assert synced == 5
        again.cancel()


async def test_shutdown_ends_watch_with_unavailable(make_spec: SpecFactory) -> None:
    running = await start_server(RegistrySettings(host="127.0.0.1", port=0, metrics_port=0))
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            call = stub.Watch(registry_pb2.WatchRequest())
            await read_until_synced(call)
            stopping = asyncio.create_task(running.stop(5))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await next_event(call)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details() == "registry is shutting down"
            await stopping
    finally:
        await running.stop(0)


async def epoch_of(call: Any) -> int:
    """The epoch a mutation sent as its initial metadata."""
    metadata = dict(await call.initial_metadata() or ())
    return int(metadata["nanofaas-registry-epoch"])


async def test_mutations_and_synced_carry_the_epoch_and_a_restart_has_a_later_one(
    settings: RegistrySettings, make_spec: SpecFactory
) -> None:
    """Finding 7: a restarted memory registry counts revisions from 0 again, in a later epoch."""
    epochs: list[int] = []
    for _ in range(2):
        server = await start_server(settings)
        try:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub: Stub = registry_pb2_grpc.RegistryStub(channel)
                call = stub.Register(registry_pb2.RegisterRequest(spec=make_spec("epoch")))
                assert (await call).revision == 1
                update = stub.Update(registry_pb2.UpdateRequest(name="epoch", spec=make_spec("")))
                await update
                delete = stub.Delete(registry_pb2.DeleteFunctionRequest(name="epoch"))
                assert (await delete).revision == 3
                watch = stub.Watch(registry_pb2.WatchRequest())
                synced = await next_event(watch)
                watch.cancel()
                assert synced.type == Event.SYNCED
                assert {await epoch_of(call), await epoch_of(update), await epoch_of(delete)} == {
                    synced.epoch
                }
                epochs.append(synced.epoch)
        finally:
            await server.stop(0.5)
    assert 0 < epochs[0] < epochs[1]
