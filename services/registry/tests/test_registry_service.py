"""Every Registry RPC through a real grpc.aio server and stub, including error codes and messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest

from nanofaas.v1 import registry_pb2, types_pb2
from nanofaas_registry.server import RegistryServer

if TYPE_CHECKING:
    from nanofaas.v1.registry_pb2_grpc import RegistryAsyncStub as Stub

SpecFactory = Callable[..., types_pb2.FunctionSpec]


async def register(stub: Stub, spec: types_pb2.FunctionSpec) -> types_pb2.FunctionSpec:
    return await stub.Register(registry_pb2.RegisterRequest(spec=spec))


async def test_register_applies_defaults_and_stamps(stub: Stub, make_spec: SpecFactory) -> None:
    created = await register(stub, make_spec("echo", execution_mode_alias="POOL"))
    assert created.name == "echo"
    assert created.timeout_ms == 30_000
    assert created.concurrency == 4
    assert created.queue_size == 100
    assert created.max_retries == 3
    assert created.execution_mode == types_pb2.EXECUTION_MODE_WARM
    assert created.runtime_mode == types_pb2.RUNTIME_MODE_HTTP
    assert created.execution_mode_alias == ""
    assert created.revision == 1
    assert created.created_at_ms > 0
    assert created.updated_at_ms == created.created_at_ms
    assert await stub.Get(registry_pb2.GetFunctionRequest(name="echo")) == created


async def test_register_duplicate_is_already_exists(stub: Stub, make_spec: SpecFactory) -> None:
    await register(stub, make_spec("dup"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await register(stub, make_spec("dup", image="other"))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert info.value.details() == "function 'dup' already exists"
    stored = await stub.Get(registry_pb2.GetFunctionRequest(name="dup"))
    assert stored.image == "nanofaas/python-runtime:latest"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "9lives"}, "name: must match ^[a-zA-Z][a-zA-Z0-9._-]{0,62}$"),
        ({"image": ""}, "image: required"),
        ({"timeout_ms": 0}, "timeoutMs: must be between 1 and 300000"),
        ({"concurrency": 0}, "concurrency: must be between 1 and 10000"),
        ({"queue_size": 0}, "queueSize: must be between 1 and 1000000"),
        ({"max_retries": 101}, "maxRetries: must be between 0 and 100"),
        ({"command": ["a"], "runtime_command": "b"}, "runtimeCommand: cannot be combined with command"),
        (
            {"execution_mode": types_pb2.EXECUTION_MODE_ENDPOINT},
            "endpointUrl: required for executionMode ENDPOINT",
        ),
    ],
)
async def test_register_invalid_is_invalid_argument(
    stub: Stub, make_spec: SpecFactory, fields: dict[str, object], message: str
) -> None:
    name = fields.pop("name", "bad")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await register(stub, make_spec(name, **fields))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == message
    listed = await stub.List(registry_pb2.ListFunctionsRequest())
    assert list(listed.functions) == []
    assert listed.revision == 0


async def test_register_without_spec_names_the_field(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Register(registry_pb2.RegisterRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "name: required"


async def test_get_missing_is_not_found(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Get(registry_pb2.GetFunctionRequest(name="ghost"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "function 'ghost' not found"


async def test_list_sorted_with_revision(stub: Stub, make_spec: SpecFactory) -> None:
    empty = await stub.List(registry_pb2.ListFunctionsRequest())
    assert (list(empty.functions), empty.revision) == ([], 0)
    for name in ("zeta", "alpha", "mid"):
        await register(stub, make_spec(name))
    listed = await stub.List(registry_pb2.ListFunctionsRequest())
    assert [spec.name for spec in listed.functions] == ["alpha", "mid", "zeta"]
    assert [spec.revision for spec in listed.functions] == [2, 3, 1]
    assert listed.revision == 3


async def test_update_replaces_whole_spec(stub: Stub, make_spec: SpecFactory) -> None:
    created = await register(
        stub, make_spec("fn", env={"A": "1"}, concurrency=9, command=["python", "app.py"])
    )
    updated = await stub.Update(
        registry_pb2.UpdateRequest(name="fn", spec=types_pb2.FunctionSpec(image="img:2", timeout_ms=5))
    )
    assert updated.name == "fn"
    assert updated.image == "img:2"
    assert updated.timeout_ms == 5
    assert updated.concurrency == 4, "defaults are re-applied on a full replacement"
    assert dict(updated.env) == {}
    assert list(updated.command) == []
    assert updated.created_at_ms == created.created_at_ms
    assert updated.updated_at_ms >= created.updated_at_ms
    assert updated.revision == 2
    assert await stub.Get(registry_pb2.GetFunctionRequest(name="fn")) == updated


async def test_update_accepts_matching_name(stub: Stub, make_spec: SpecFactory) -> None:
    await register(stub, make_spec("fn"))
    updated = await stub.Update(registry_pb2.UpdateRequest(name="fn", spec=make_spec("fn", max_retries=0)))
    assert updated.max_retries == 0


async def test_update_name_mismatch(stub: Stub, make_spec: SpecFactory) -> None:
    await register(stub, make_spec("fn"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Update(registry_pb2.UpdateRequest(name="fn", spec=make_spec("other")))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "name: must match the path"


async def test_update_missing_is_not_found(stub: Stub, make_spec: SpecFactory) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Update(registry_pb2.UpdateRequest(name="ghost", spec=make_spec("")))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "function 'ghost' not found"


async def test_update_invalid_keeps_old_spec(stub: Stub, make_spec: SpecFactory) -> None:
    created = await register(stub, make_spec("fn"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Update(registry_pb2.UpdateRequest(name="fn", spec=make_spec("", timeout_ms=300_001)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "timeoutMs: must be between 1 and 300000"
    assert await stub.Get(registry_pb2.GetFunctionRequest(name="fn")) == created


async def test_delete_returns_new_revision(stub: Stub, make_spec: SpecFactory) -> None:
    await register(stub, make_spec("a"))
    await register(stub, make_spec("b"))
    deleted = await stub.Delete(registry_pb2.DeleteFunctionRequest(name="a"))
    assert deleted.revision == 3
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Get(registry_pb2.GetFunctionRequest(name="a"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stub.List(registry_pb2.ListFunctionsRequest())
    assert [spec.name for spec in listed.functions] == ["b"]
    assert listed.revision == 3
    again = await register(stub, make_spec("a"))
    assert again.revision == 4


async def test_delete_missing_is_not_found(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Delete(registry_pb2.DeleteFunctionRequest(name="ghost"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "function 'ghost' not found"


async def test_failed_mutations_do_not_bump_revision(stub: Stub, make_spec: SpecFactory) -> None:
    await register(stub, make_spec("fn"))
    for call in (
        stub.Register(registry_pb2.RegisterRequest(spec=make_spec("fn"))),
        stub.Update(registry_pb2.UpdateRequest(name="nope", spec=make_spec(""))),
        stub.Delete(registry_pb2.DeleteFunctionRequest(name="nope")),
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            await call
    assert (await stub.List(registry_pb2.ListFunctionsRequest())).revision == 1


async def test_rpc_metrics(server: RegistryServer, stub: Stub, make_spec: SpecFactory) -> None:
    metrics = server.metrics
    await register(stub, make_spec("a"))
    await register(stub, make_spec("b"))
    with pytest.raises(grpc.aio.AioRpcError):
        await register(stub, make_spec("a"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Get(registry_pb2.GetFunctionRequest(name="zzz"))
    await stub.Delete(registry_pb2.DeleteFunctionRequest(name="b"))
    assert metrics.rpc_count("Register", "OK") == 2
    assert metrics.rpc_count("Register", "ALREADY_EXISTS") == 1
    assert metrics.rpc_count("Get", "NOT_FOUND") == 1
    assert metrics.rpc_count("Delete", "OK") == 1
    assert metrics.collector_registry.get_sample_value("registry_functions") == 1
