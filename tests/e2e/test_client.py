"""nanofaas-client against the real platform: the sync, asyncio and gRPC clients."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from nanofaas_client import (
    AlreadyExists,
    AsyncClient,
    Client,
    ExecutionFailed,
    InvalidRequest,
    NotFound,
    PlatformUnreachable,
    RateLimited,
    RetryPolicy,
    propagate,
)
from nanofaas_client.grpc_client import GrpcClient
from nanofaas_client.manifest import FUNCTION_SPEC_FIELDS

from nanofaas.v1 import scheduler_pb2, types_pb2

from .conftest import Platform
from .helpers import free_port, python_spec
from .test_client_introspection import gate_spec

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def wait_running(client: Client, execution_id: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get_execution(execution_id).status != "running":
        assert time.monotonic() < deadline, f"{execution_id} never ran"
        time.sleep(0.02)


def test_sync_client_crud_invoke_and_wait(platform: Platform, fn_name: str) -> None:
    with Client(platform.base_url) as client:
        summary = client.register(python_spec(fn_name, "echo"))
        assert (summary.name, summary.execution_mode) == (fn_name, "JOB")
        with pytest.raises(AlreadyExists):
            client.register(python_spec(fn_name, "echo"))
        assert fn_name in {f.name for f in client.list_functions()}
        spec = client.get_function(fn_name)
        assert spec["timeoutMs"] == 30000
        updated = client.update({**spec, "env": {**spec["env"], "GREETING": "hi"}})
        assert updated["env"]["GREETING"] == "hi"
        with pytest.raises(InvalidRequest, match="concurrency"):
            client.update({**spec, "concurrency": 0})
        with propagate(TRACEPARENT):
            result = client.invoke(fn_name, {"n": 1}, metadata={"k": "v"})
        assert result.output["input"] == {"n": 1}
        assert result.output["metadata"] == {"k": "v"}
        assert result.output["env"]["GREETING"] == "hi"
        assert client.get_execution(result.execution_id).trace_id == TRACE_ID
        first = client.enqueue(fn_name, 2, idempotency_key="same-key")
        again = client.enqueue(fn_name, 3, idempotency_key="same-key")
        assert first.execution_id == again.execution_id
        ended = client.wait(first.execution_id, timeout_s=30)
        assert (ended.status, ended.output["input"]) == ("success", 2)
        assert client.list_executions(function=fn_name, limit=1)[0].execution_id == first.execution_id
        client.delete(fn_name)
        with pytest.raises(NotFound):
            client.get_function(fn_name)
        with pytest.raises(NotFound):
            client.invoke(fn_name)


def test_failures_raise_their_family(platform: Platform, fn_name: str) -> None:
    with Client(platform.base_url) as client:
        client.register(python_spec(fn_name, "fail", executionMode="WARM"))
        with pytest.raises(ExecutionFailed) as caught:
            client.invoke(fn_name, "x")
        assert caught.value.code == "FUNCTION_ERROR"
        assert "boom: x" in caught.value.message
        assert caught.value.execution_id
        ended = client.wait(client.enqueue(fn_name, "y").execution_id, timeout_s=30)
        assert ended.status == "error" and ended.error is not None and ended.error.code == "FUNCTION_ERROR"


def test_retry_after_is_honoured_when_asked(platform: Platform, fn_name: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with Client(platform.base_url) as client:
        client.register(gate_spec(fn_name, tmp_path, concurrency=1, queueSize=1))
        running = client.enqueue(fn_name, str(release))
        wait_running(client, running.execution_id)
        client.enqueue(fn_name, str(release))  # fills the queue of one
        with pytest.raises(RateLimited) as caught:
            client.enqueue(fn_name, str(release))
        assert caught.value.retry_after_s is not None and caught.value.reason == "depth"
    # With the opt-in, the client waits Retry-After and tries again; the queue drains meanwhile.
    release.touch()
    with Client(platform.base_url, retry_rate_limited=RetryPolicy(max_attempts=10)) as patient:
        admitted = patient.enqueue(fn_name, str(release))
        assert patient.wait(admitted.execution_id, timeout_s=30).status == "success"


def test_the_manifest_has_exactly_the_functionspec_fields(platform: Platform) -> None:
    document = httpx.get(f"{platform.base_url}/openapi.json", timeout=10).json()
    assert set(FUNCTION_SPEC_FIELDS) == set(document["components"]["schemas"]["FunctionSpec"]["properties"])


def test_unreachable_platform() -> None:
    with Client(f"http://127.0.0.1:{free_port()}") as client, pytest.raises(PlatformUnreachable):
        client.list_functions()


async def test_async_client(platform: Platform, fn_name: str) -> None:
    async with AsyncClient(platform.base_url) as client:
        await client.register(python_spec(fn_name, "chatty", executionMode="WARM"))
        follow = client.follow_logs(fn_name)
        reader = asyncio.ensure_future(anext(follow))
        result = await client.invoke(fn_name, "async")
        assert result.output == "ok"
        line = await asyncio.wait_for(reader, 15)
        while line.execution_id != result.execution_id:
            line = await asyncio.wait_for(anext(follow), 15)
        assert line.message == "chatty says async"
        await follow.aclose()  # type: ignore[attr-defined]
        status = await client.function_status(fn_name)
        assert (status.name, status.replicas.current, status.in_flight) == (fn_name, 1, 0)
        kept = await client.logs(fn_name, execution=result.execution_id)
        assert [entry.message for entry in kept] == ["chatty says async"]
        await client.delete(fn_name)


async def test_grpc_client(platform: Platform, fn_name: str) -> None:
    registry, scheduler = (
        platform.env["NANOFAAS_REGISTRY_ADDRESS"],
        platform.env["NANOFAAS_SCHEDULER_ADDRESS"],
    )
    async with GrpcClient(registry, scheduler) as client:
        spec = python_spec(fn_name, "echo")
        stored = await client.register(
            types_pb2.FunctionSpec(name=fn_name, image=spec["image"], env=spec["env"])
        )
        assert stored.concurrency == 4
        request = scheduler_pb2.InvokeRequest(
            function_name=fn_name,
            input=types_pb2.Payload(data=b'"grpc"', content_type="application/json"),
            min_registry_revision=stored.revision,
        )
        answer = await client.invoke(request)
        assert answer.status == types_pb2.EXECUTION_STATE_SUCCESS
        assert (await client.get_execution(answer.execution_id)).function_name == fn_name
        status = await client.function_status(fn_name)
        assert status.name == fn_name
        with pytest.raises(NotFound):
            await client.function_status("no-such-function")
        await client.delete(fn_name)
