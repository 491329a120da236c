"""The whole scheduler (gRPC, queues, retries) on the kubernetes backend, built from its settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from fakekube import FakeCluster
from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.server import SchedulerServer

from ..test_server import FakeRegistry
from .conftest import SCHEDULER_USER, no_jobs_left, runtime_spec


@pytest.fixture
async def scheduler(
    cluster: FakeCluster, handler_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[scheduler_pb2_grpc.SchedulerAsyncStub]:
    monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(tmp_path / "kc", user=SCHEDULER_USER)))
    specs = (
        runtime_spec(handler_dir, name="ok"),
        runtime_spec(handler_dir, name="crashy", max_retries=1),
        runtime_spec(handler_dir, name="missing", image="registry.example/missing:1", max_retries=3),
    )
    registry = grpc.aio.server()
    registry_pb2_grpc.add_RegistryServicer_to_server(FakeRegistry(*specs), registry)  # type: ignore[abstract]
    port = registry.add_insecure_port("127.0.0.1:0")
    await registry.start()
    settings = Settings.from_env(
        {
            "NANOFAAS_BACKEND": "kubernetes",
            "NANOFAAS_SCHEDULER_PORT": "0",
            "NANOFAAS_SCHEDULER_METRICS_PORT": "0",
            "NANOFAAS_REGISTRY_ADDRESS": f"127.0.0.1:{port}",
        }
    )
    server = SchedulerServer(settings, metrics_registry=CollectorRegistry())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield scheduler_pb2_grpc.SchedulerStub(channel)
    finally:
        await server.stop()
        await registry.stop(None)


async def invoke(
    stub: scheduler_pb2_grpc.SchedulerAsyncStub, function: str, data: bytes
) -> scheduler_pb2.InvokeResponse:
    request = scheduler_pb2.InvokeRequest(
        function_name=function, input=types_pb2.Payload(data=data, content_type="application/json")
    )
    response: scheduler_pb2.InvokeResponse = await stub.Invoke(request, timeout=60)
    return response


def jobs_created(cluster: FakeCluster) -> int:
    records = cluster.audit.records(user=SCHEDULER_USER)
    return sum(1 for r in records if (r.verb, r.resource, r.code) == ("create", "jobs", 201))


async def test_invocations_retries_and_start_failures_through_the_scheduler(
    scheduler: scheduler_pb2_grpc.SchedulerAsyncStub, cluster: FakeCluster
) -> None:
    ok = await invoke(scheduler, "ok", b'"hi"')
    assert ok.status == types_pb2.EXECUTION_STATE_SUCCESS, ok
    assert b'"input":"hi"' in ok.output.data

    crashed = await invoke(scheduler, "crashy", b'"hog"')
    assert crashed.error.code == "CRASH", crashed
    missing = await invoke(scheduler, "missing", b"1")
    assert missing.error.code == "START_FAILED", missing
    assert "registry.example/missing:1" in missing.error.message
    # ok: 1 Job; crashy: the first attempt and its one retry; missing: never retried.
    assert jobs_created(cluster) == 1 + 2 + 1
    await no_jobs_left(cluster)
