"""After a known sequence of RPCs the registry's Prometheus numbers equal what happened."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from nanofaas.v1 import registry_pb2, types_pb2
from nanofaas_registry.server import RegistryServer

if TYPE_CHECKING:
    from nanofaas.v1.registry_pb2_grpc import RegistryAsyncStub as Stub

SpecFactory = Callable[..., types_pb2.FunctionSpec]


async def expect_error(call: Awaitable[object], code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code


def sample(server: RegistryServer, name: str, **labels: str) -> float:
    value = server.metrics.collector_registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_counts_per_method_and_code_and_durations(
    server: RegistryServer, stub: Stub, make_spec: SpecFactory
) -> None:
    for name in ("a", "b", "c"):
        await stub.Register(registry_pb2.RegisterRequest(spec=make_spec(name)))
    await expect_error(
        stub.Register(registry_pb2.RegisterRequest(spec=make_spec("a"))), grpc.StatusCode.ALREADY_EXISTS
    )
    await expect_error(
        stub.Register(registry_pb2.RegisterRequest(spec=make_spec("9bad"))), grpc.StatusCode.INVALID_ARGUMENT
    )
    await stub.Get(registry_pb2.GetFunctionRequest(name="a"))
    await expect_error(stub.Get(registry_pb2.GetFunctionRequest(name="zzz")), grpc.StatusCode.NOT_FOUND)
    await stub.List(registry_pb2.ListFunctionsRequest())
    await stub.Update(registry_pb2.UpdateRequest(name="b", spec=make_spec("b", timeout_ms=5)))
    await stub.Delete(registry_pb2.DeleteFunctionRequest(name="c"))
    await expect_error(stub.Delete(registry_pb2.DeleteFunctionRequest(name="c")), grpc.StatusCode.NOT_FOUND)

    expected = {
        ("Register", "OK"): 3,
        ("Register", "ALREADY_EXISTS"): 1,
        ("Register", "INVALID_ARGUMENT"): 1,
        ("Get", "OK"): 1,
        ("Get", "NOT_FOUND"): 1,
        ("List", "OK"): 1,
        ("Update", "OK"): 1,
        ("Delete", "OK"): 1,
        ("Delete", "NOT_FOUND"): 1,
    }
    for (method, code), count in expected.items():
        assert sample(server, "registry_rpc_total", method=method, code=code) == count, (method, code)
    assert sample(server, "registry_rpc_total", method="Update", code="NOT_FOUND") == 0
    assert sample(server, "registry_functions") == 2
    for method, count in {"Register": 5, "Get": 2, "List": 1, "Update": 1, "Delete": 2}.items():
        assert sample(server, "registry_rpc_duration_seconds_count", method=method) == count, method
        assert sample(server, "registry_rpc_duration_seconds_sum", method=method) > 0


async def test_watch_is_counted_when_the_stream_ends(server: RegistryServer, stub: Stub) -> None:
    stream = stub.Watch(registry_pb2.WatchRequest())
    first = await stream.read()
    assert isinstance(first, registry_pb2.WatchEvent)
    assert first.type == registry_pb2.WatchEvent.SYNCED
    await server.registry.hub.wait_for_subscriber_count(1)
    assert sample(server, "registry_rpc_total", method="Watch", code="CANCELLED") == 0
    stream.cancel()
    await asyncio.wait_for(server.registry.hub.wait_for_subscriber_count(0), 5)
    assert sample(server, "registry_rpc_total", method="Watch", code="CANCELLED") == 1
    assert sample(server, "registry_rpc_duration_seconds_count", method="Watch") == 0
