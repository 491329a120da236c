"""The Kubernetes backend against the fake cluster (tests/fakekube), through the official client.

Images map to local commands: `nanofaas/python-runtime:test` runs this
interpreter's runtime (and has the watchdog on its PATH), as a pod of the real
image would. Every API call the backend makes is kept (`calls`), for the RBAC record.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fakekube import FakeCluster
from nanofaas.v1 import types_pb2
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.dispatch.kubernetes import naming
from nanofaas_scheduler.dispatch.kubernetes.backend import KubernetesBackend
from nanofaas_scheduler.dispatch.kubernetes.factory import kubernetes_backend

from ..conftest import RecordingObserver, make_spec

RUNTIME_IMAGE = "nanofaas/python-runtime:test"
SCHEDULER_USER = "nanofaas-scheduler"
BIN = str(Path(sys.executable).parent)

HANDLER = """
import os, socket, time
def handle(request, context=None):
    value = request["input"]
    started = time.time()
    if value == "sleep":
        if os.environ.get("NOTIFY_PORT"):  # tell the test the request is on the pod
            socket.create_connection(("127.0.0.1", int(os.environ["NOTIFY_PORT"]))).close()
        time.sleep(60)
    if value == "hog":
        os.kill(os.getpid(), 9)
    if value == "slow":
        time.sleep(1.5)
    if value == "env":
        return {"GREETING": os.environ.get("GREETING")}
    if value == "fail":
        raise ValueError("asked to fail")
    return {"input": value, "execution": os.environ.get("EXECUTION_ID"),
            "attempt": os.environ.get("NANOFAAS_ATTEMPT"), "pod": os.environ.get("HOSTNAME"),
            "started": started, "ended": time.time()}
"""


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    (tmp_path / "handler.py").write_text(HANDLER)
    return tmp_path


@pytest.fixture
def cluster(fake_cluster: FakeCluster) -> Iterator[FakeCluster]:
    fake_cluster.add_image(
        RUNTIME_IMAGE,
        [sys.executable, "-m", "nanofaas_runtime"],
        env={"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", "PYTHONUNBUFFERED": "1"},
    )
    yield fake_cluster


BackendMaker = Callable[..., Awaitable[KubernetesBackend]]


@pytest.fixture
async def make_backend(
    cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[BackendMaker]:
    """Backends built as the scheduler builds them (settings, $KUBECONFIG), closed at the end."""
    kubeconfig = cluster.write_kubeconfig(tmp_path / "scheduler-kubeconfig", user=SCHEDULER_USER)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    made: list[KubernetesBackend] = []

    async def make(
        registry: CollectorRegistry | None = None, *, start: bool = True, **env: str
    ) -> KubernetesBackend:
        settings = Settings.from_env(
            {"NANOFAAS_BACKEND": "kubernetes", "NANOFAAS_K8S_UNSCHEDULABLE_TIMEOUT_S": "1", **env}
        )
        backend = kubernetes_backend(settings, registry or CollectorRegistry())
        made.append(backend)
        if start:
            await backend.start()
        return backend

    try:
        yield make
    finally:
        for backend in made:
            await asyncio.wait_for(backend.close(), 20)


@pytest.fixture
async def backend(make_backend: BackendMaker) -> KubernetesBackend:
    return await make_backend()


def runtime_spec(handler_dir: Path, **fields: Any) -> types_pb2.FunctionSpec:
    """A function on the runtime image, with the test handler."""
    return make_spec(**{"image": RUNTIME_IMAGE, "env": {"PYTHONPATH": str(handler_dir)}, **fields})


def ours(cluster: FakeCluster, plural: str, group: str = "") -> list[dict[str, Any]]:
    return [
        obj
        for obj in cluster.objects(plural, "default", group=group)
        if (obj["metadata"].get("labels") or {}).get(naming.MANAGED_BY) == naming.MANAGER
    ]


async def wait_off_loop(cluster: FakeCluster, predicate: Callable[[], bool], what: str) -> None:
    """Wait for the cluster's state off the event loop (the backend works on the loop meanwhile)."""
    await asyncio.to_thread(cluster.wait_until, predicate, timeout=20, message=what)


async def no_jobs_left(cluster: FakeCluster) -> None:
    await wait_off_loop(cluster, lambda: not ours(cluster, "jobs", "batch"), "every Job deleted")
    await wait_off_loop(cluster, lambda: not cluster.objects("pods", "default"), "every pod deleted")


class ReadyReplicas(RecordingObserver):
    """Lets a test await the backend seeing `count` ready replicas of a function (an event)."""

    def __init__(self, count: int = 1) -> None:
        super().__init__()
        self.reached = asyncio.Event()
        self._count = count

    def replicas_changed(self, function: str, replicas: int) -> None:
        super().replicas_changed(function, replicas)
        if replicas >= self._count:
            self.reached.set()


class ReplicaChanges(RecordingObserver):
    """Lets a test await the backend's own view reaching a ready count (the cluster's may lead it)."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def replicas_changed(self, function: str, replicas: int) -> None:
        super().replicas_changed(function, replicas)
        self._changed.set()

    async def until(self, function: str, ready: int, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while self.replicas.get(function) != ready:
                self._changed.clear()
                await self._changed.wait()


class Arrivals:
    """A TCP port the handler connects to when a "sleep" request reached it (an event to await)."""

    def __init__(self) -> None:
        self.port = 0
        self._arrived = asyncio.Event()

    def _connected(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self._arrived.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self._arrived.wait(), 20)
        self._arrived.clear()


@pytest.fixture
async def arrivals() -> AsyncIterator[Arrivals]:
    found = Arrivals()
    server = await asyncio.start_server(found._connected, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found
