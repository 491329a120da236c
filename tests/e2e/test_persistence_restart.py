"""The sqlite store with real registry processes: kill -9 mid-stream, restart, and the scheduler's Watch.

Every registration the registry acknowledged before SIGKILL must be there after the restart,
at the revision it was acknowledged with; revisions carry on from there. The scheduler's
registry follower (its Watch) must resync across the restart and see changes made afterwards.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from nanofaas_scheduler.registry_cache import FunctionCache

from .helpers import free_port

WAIT_S = 30
IMAGE = "nanofaas/python-runtime:latest"


async def wait_serving(address: str) -> None:
    """Follows the health Watch stream (it waits for the server to come up) until SERVING."""
    async with grpc.aio.insecure_channel(address) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="nanofaas.v1.Registry"), wait_for_ready=True
        )
        async for response in stream:
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                stream.cancel()
                return
    raise AssertionError("health stream ended before SERVING")


@asynccontextmanager
async def registry_process(data_dir: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """A sqlite-backed registry on 127.0.0.1:port, serving; killed on exit if still running."""
    env = {
        **os.environ,
        "NANOFAAS_REGISTRY_STORE": "sqlite",
        "NANOFAAS_DATA_DIR": str(data_dir),
        "NANOFAAS_REGISTRY_HOST": "127.0.0.1",
        "NANOFAAS_REGISTRY_PORT": str(port),
        "NANOFAAS_REGISTRY_METRICS_PORT": "0",
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nanofaas_registry", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await asyncio.wait_for(wait_serving(f"127.0.0.1:{port}"), WAIT_S)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def spec(name: str, concurrency: int | None = None) -> types_pb2.FunctionSpec:
    return types_pb2.FunctionSpec(name=name, image=IMAGE, concurrency=concurrency)


async def test_every_acknowledged_registration_survives_kill_9(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    acknowledged: dict[str, int] = {}
    enough = asyncio.Event()

    async def writer(stub: registry_pb2_grpc.RegistryAsyncStub, index: int) -> None:
        """Registers until the registry dies; records only what it acknowledged."""
        for number in range(10_000):
            name = f"w{index}-{number}"
            try:
                created = await stub.Register(registry_pb2.RegisterRequest(spec=spec(name)), timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), exc
                return
            acknowledged[name] = created.revision
            if len(acknowledged) >= 60:
                enough.set()

    async with registry_process(tmp_path, port) as process, grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        writers = [asyncio.create_task(writer(stub, index)) for index in range(4)]
        await asyncio.wait_for(enough.wait(), WAIT_S)
        process.kill()  # SIGKILL while the writers are still registering
        await process.wait()
        await asyncio.wait_for(asyncio.gather(*writers), WAIT_S)
    assert len(acknowledged) >= 60

    async with registry_process(tmp_path, port), grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        listed = await stub.List(registry_pb2.ListFunctionsRequest(), timeout=5)
        stored = {function.name: function.revision for function in listed.functions}
        missing = acknowledged.keys() - stored.keys()
        assert not missing, f"acknowledged but lost: {sorted(missing)}"
        assert {name: stored[name] for name in acknowledged} == acknowledged
        # A registration that died unacknowledged may or may not have landed, but revisions stay unique.
        assert len(set(stored.values())) == len(stored)
        assert listed.revision == max(stored.values()) >= max(acknowledged.values())
        after = await stub.Register(registry_pb2.RegisterRequest(spec=spec("after-restart")), timeout=5)
        assert after.revision == listed.revision + 1


async def test_scheduler_watch_resyncs_after_a_registry_restart(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    # What the scheduler's listener was last told about each function: its revision, or None once deleted.
    told: dict[str, int | None] = {}
    notified = asyncio.Queue[None]()

    async def listener(name: str, function: types_pb2.FunctionSpec | None) -> None:
        told[name] = None if function is None else function.revision
        notified.put_nowait(None)

    async def told_exactly(expected: dict[str, int | None]) -> None:
        while told != expected:
            await asyncio.wait_for(notified.get(), WAIT_S)

    channel = grpc.aio.insecure_channel(address)
    cache = FunctionCache(registry_pb2_grpc.RegistryStub(channel), listener)
    follower = asyncio.create_task(cache.run())
    try:
        async with registry_process(tmp_path, port) as process:
            stub = registry_pb2_grpc.RegistryStub(channel)
            first = await stub.Register(registry_pb2.RegisterRequest(spec=spec("stays")), timeout=5)
            doomed = await stub.Register(registry_pb2.RegisterRequest(spec=spec("doomed")), timeout=5)
            await told_exactly({"stays": first.revision, "doomed": doomed.revision})
            process.kill()
            await process.wait()
        revision_before = cache.revision

        async with registry_process(tmp_path, port):
            # Changes made right after the restart, very likely before the follower reconnects.
            updated = await stub.Update(
                registry_pb2.UpdateRequest(name="stays", spec=spec("stays", concurrency=9)), timeout=5
            )
            deleted = await stub.Delete(registry_pb2.DeleteFunctionRequest(name="doomed"), timeout=5)
            added = await stub.Register(registry_pb2.RegisterRequest(spec=spec("new")), timeout=5)
            assert updated.revision == doomed.revision + 1 > first.revision
            assert deleted.revision == updated.revision + 1
            await told_exactly({"stays": updated.revision, "doomed": None, "new": added.revision})
            assert cache.revision == added.revision > revision_before
            stays = await cache.get("stays", min_revision=added.revision)
            assert stays is not None and stays.concurrency == 9
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await channel.close(None)
