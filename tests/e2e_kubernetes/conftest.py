"""The platform (three real processes) on the kubernetes backend, against a fake cluster.

The cluster (tests/fakekube) runs in this test process; the scheduler reaches it over HTTPS
with a kubeconfig, as it would reach kind. Images map to local commands: the runtime image
runs this interpreter's runtime (with the watchdog on its PATH); `example/any:1`, the image of
the suite's command functions, has no entrypoint (they all give a command).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fakekube import FakeCluster
from nanofaas_scheduler.dispatch.kubernetes import naming

from .suite import e2e_module

_platform = e2e_module("conftest")
helpers = e2e_module("helpers")
# Fixtures of tests/e2e that do not depend on the backend, shared as they are.
callback_receiver = _platform.callback_receiver
SCHEDULER_USER = "nanofaas-scheduler"
BIN = str(Path(sys.executable).parent)


# Tests of tests/e2e that assert what only the local backend does, and why each does not apply.
LOCAL_ONLY = {
    # The local backend cannot run an image that is neither the runtime's nor given a command
    # (UNRUNNABLE_FUNCTION); a cluster runs any image. Its counterpart here is the image-pull test.
    "test_unrunnable_image_is_a_clear_error": "any image is runnable on Kubernetes",
    "test_failure_path_produces_its_error_code[unrunnable_function]": "any image is runnable on Kubernetes",
    "test_every_error_code_is_produced_by_some_path": "needs the unrunnable_function path above",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [item for item in items if item.name not in LOCAL_ONLY]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.name in LOCAL_ONLY])
        items[:] = kept


def job_objects(cluster: FakeCluster, plural: str, group: str = "") -> list[dict[str, Any]]:
    """Our JOB-mode objects of that kind (Jobs, or their pods)."""
    return [
        obj
        for obj in cluster.objects(plural, "default", group=group)
        if (obj["metadata"].get("labels") or {}).get(naming.COMPONENT) == naming.COMPONENT_JOB
    ]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCluster]:
    with FakeCluster(work_dir=tmp_path_factory.mktemp("fakekube")) as running:
        path = f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        running.add_image(
            helpers.RUNTIME_IMAGE, [sys.executable, "-m", "nanofaas_runtime"], env={"PATH": path}
        )
        for image in ("example/any:1", "x"):  # images of command functions: no entrypoint
            running.add_image(image, [], env={"PATH": path})
        yield running
        # No Job or Job pod of ours outlives the suite (the platform has stopped by now).
        left = [
            o["metadata"]["name"]
            for p, g in (("jobs", "batch"), ("pods", ""))
            for o in job_objects(running, p, g)
        ]
        assert not left, f"left behind: {left}"


@pytest.fixture(scope="session")
def platform(cluster: FakeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    kubeconfig = cluster.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", user=SCHEDULER_USER)
    running = _platform.start_platform(
        tmp_path_factory.mktemp("platform"),
        NANOFAAS_BACKEND="kubernetes",
        KUBECONFIG=str(kubeconfig),
        NANOFAAS_K8S_NAMESPACE="default",
        # Short autoscaler windows (test_autoscaling_kubernetes.py); functions keep their own
        # scale-down delay (60 s unless they say otherwise), so the other tests see steady pools.
        NANOFAAS_AUTOSCALE_TICK_MS="50",
        NANOFAAS_AUTOSCALE_STABLE_WINDOW_MS="300",
        NANOFAAS_AUTOSCALE_PANIC_WINDOW_MS="150",
    )
    yield running
    codes = _platform.stop_platform(running)
    assert codes == {"gateway": 0, "scheduler": 0, "registry": 0}, codes


@pytest.fixture
async def http(platform: Any) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=platform.base_url) as session:
        yield session


@pytest.fixture
def fn_name(request: pytest.FixtureRequest) -> str:
    """A function name unique to the test, so tests share one platform safely."""
    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:6]}"
