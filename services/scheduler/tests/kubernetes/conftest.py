"""The Kubernetes backend against the fake cluster (tests/fakekube), through the official client.

Images map to local commands: `nanofaas/python-runtime:test` runs this
interpreter's runtime (and has the watchdog on its PATH), as a pod of the real
image would. Every API call the backend makes is kept (`calls`), for the RBAC record.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fakekube import FakeCluster
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.dispatch.kubernetes.backend import KubernetesBackend
from nanofaas_scheduler.dispatch.kubernetes.factory import kubernetes_backend

RUNTIME_IMAGE = "nanofaas/python-runtime:test"
BIN = str(Path(sys.executable).parent)
# Every (verb, resource) any test saw the backend call, across the session.
SEEN_CALLS: set[tuple[str, str]] = set()

HANDLER = """
import os, time
def handle(request, context=None):
    value = request["input"]
    if value == "sleep":
        time.sleep(60)
    if value == "hog":
        os.kill(os.getpid(), 9)
    if value == "fail":
        raise ValueError("asked to fail")
    return {"input": value, "execution": os.environ.get("EXECUTION_ID"),
            "attempt": os.environ.get("NANOFAAS_ATTEMPT"), "pod": os.environ.get("HOSTNAME")}
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
    SEEN_CALLS.update(fake_cluster.audit.calls(user="nanofaas-scheduler"))


@pytest.fixture
async def backend(
    cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[KubernetesBackend]:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "scheduler-kubeconfig", user="nanofaas-scheduler")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    settings = Settings.from_env(
        {"NANOFAAS_BACKEND": "kubernetes", "NANOFAAS_K8S_UNSCHEDULABLE_TIMEOUT_S": "1"}
    )
    backend = kubernetes_backend(settings, CollectorRegistry())
    await backend.start()
    try:
        yield backend
    finally:
        await asyncio.wait_for(backend.close(), 20)
