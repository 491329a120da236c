"""A node lost under a request in flight, through the whole platform: CRASH, retried on another pod.

A cluster of its own (three nodes; each test loses one) and a platform of its own, so the shared
cluster keeps its node. The handler marks each request's arrival with a file (polled: a pod's
process writes it, outside anything the test can await) and only the first request sleeps, so
the retry on another pod answers at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fakekube import FakeCluster

from .conftest import BIN, SCHEDULER_USER, _platform, helpers
from .test_kubernetes_lifecycle import kube_spec, wait_arrival, wait_pods


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeCluster, Any]]:
    with FakeCluster(nodes=3, work_dir=tmp_path_factory.mktemp("lossy-fakekube")) as cluster:
        path = f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        cluster.add_image(
            helpers.RUNTIME_IMAGE, [sys.executable, "-m", "nanofaas_runtime"], env={"PATH": path}
        )
        kubeconfig = cluster.write_kubeconfig(
            tmp_path_factory.mktemp("lossy-kube") / "config", user=SCHEDULER_USER
        )
        platform = _platform.start_platform(
            tmp_path_factory.mktemp("lossy-platform"),
            NANOFAAS_BACKEND="kubernetes",
            KUBECONFIG=str(kubeconfig),
            NANOFAAS_K8S_NAMESPACE="default",
        )
        try:
            yield cluster, platform
        finally:
            codes = _platform.stop_platform(platform)
        assert codes == {"gateway": 0, "scheduler": 0, "registry": 0}, codes


@pytest.mark.parametrize("mode", ["JOB", "WARM"])
async def test_a_request_on_a_lost_node_is_a_crash_retried_on_another_pod(
    lossy: tuple[FakeCluster, Any], fn_name: str, tmp_path: Path, mode: str
) -> None:
    cluster, platform = lossy
    async with aiohttp.ClientSession(base_url=platform.base_url) as http:
        spec = kube_spec(fn_name, executionMode=mode, maxRetries=2, env={"ARRIVED_DIR": str(tmp_path)})
        await helpers.register(http, spec)
        call = asyncio.ensure_future(helpers.invoke(http, fn_name, {"sleep_once": 60}))
        await wait_arrival(tmp_path)
        first = (await wait_pods(cluster, fn_name))[0]["metadata"]["name"]
        node = cluster.node_of("default", first)
        assert node is not None
        await asyncio.to_thread(cluster.lose_node, node)
        status, headers, body = await asyncio.wait_for(call, 45)  # long before the 60 s sleep ends
        assert status == 200, body
        assert body["output"]["pod"] != first  # answered by another pod
        execution = await helpers.get_execution(http, headers["X-Execution-Id"])
        assert execution["attempts"] == 2, execution  # the first one ended as CRASH
        assert len(os.listdir(tmp_path)) == 2  # the request reached two processes
        async with http.delete(f"/v1/functions/{fn_name}") as response:
            assert response.status == 204
