"""The kubernetes store on the fake cluster: Function objects are the registry's functions.

The platform runs on the local backend with NANOFAAS_REGISTRY_STORE=kubernetes against fakekube
(a real API server with the CRD installed); kubectl and REST both change functions.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from fakekube.cluster import FakeCluster
from nanofaas.v1 import registry_pb2, registry_pb2_grpc, types_pb2

from .conftest import Platform, _wait_ready, start_platform, stop_platform
from .helpers import FUNCTIONS_DIR, invoke, register

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "deploy" / "kustomize" / "base" / "function-crd.yaml"
WAIT_S = 30


def ready(function: dict[str, Any] | None) -> tuple[str, str, str] | None:
    """The Ready condition's (status, reason, message), or None."""
    for condition in ((function or {}).get("status") or {}).get("conditions", []):
        if condition["type"] == "Ready":
            return condition["status"], condition.get("reason", ""), condition.get("message", "")
    return None


def function_object(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "nanofaas.io/v1", "kind": "Function", "metadata": {"name": name}, "spec": spec}


class Kubectl:
    def __init__(self, kubeconfig: Path, work: Path) -> None:
        self._kubeconfig = kubeconfig
        self._work = work

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(self._kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def apply(self, document: dict[str, Any]) -> str:
        path = self._work / f"{document['metadata']['name']}.json"
        path.write_text(json.dumps(document))
        # Server-side: fakekube answers client-side apply's strategic merge patch on a custom resource
        # with 415 (a real API server makes kubectl fall back to a merge patch).
        return self("apply", "--server-side", "-f", str(path))


@asynccontextmanager
async def registry_events(platform: Platform) -> AsyncIterator[asyncio.Queue[registry_pb2.WatchEvent]]:
    """The registry's Watch stream as a queue (what the scheduler follows)."""
    events: asyncio.Queue[registry_pb2.WatchEvent] = asyncio.Queue()
    async with grpc.aio.insecure_channel(platform.env["NANOFAAS_REGISTRY_ADDRESS"]) as channel:
        stream = registry_pb2_grpc.RegistryStub(channel).Watch(registry_pb2.WatchRequest())

        async def pump() -> None:
            async for event in stream:
                events.put_nowait(event)

        task = asyncio.create_task(pump())
        try:
            await next_change(events, registry_pb2.WatchEvent.SYNCED, "")  # live from here on
            yield events
        finally:
            stream.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def next_change(
    events: asyncio.Queue[registry_pb2.WatchEvent], kind: int, name: str
) -> registry_pb2.WatchEvent:
    async def find() -> registry_pb2.WatchEvent:
        while True:
            event = await events.get()
            if event.type == kind and event.spec.name == name:
                return event

    return await asyncio.wait_for(find(), WAIT_S)


async def first_invoke(http: aiohttp.ClientSession, name: str, value: object) -> tuple[int, Any]:
    """The first invocation after start-up, retried while the scheduler cannot reach the registry yet.

    The scheduler's registry channel may still be in its reconnect backoff right after start-up
    (the kubernetes store makes the registry start later than the scheduler), and the platform
    has no readiness signal for that, so this polls (bounded).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        status, _, body = await invoke(http, name, value)
        unreachable = status == 503 and "registry unavailable" in str(body)
        if not unreachable or loop.time() > deadline:
            return status, body
        await asyncio.sleep(0.05)


@pytest.fixture
def kubectl(fake_cluster: FakeCluster, tmp_path: Path) -> Kubectl:
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    run = Kubectl(kubeconfig, tmp_path)
    run("apply", "-f", str(CRD))
    run("wait", "--for=condition=Established", "crd/functions.nanofaas.io", "--timeout=30s")
    return run


@pytest.fixture
async def platform(kubectl: Kubectl, tmp_path: Path) -> AsyncIterator[Platform]:
    running = await asyncio.to_thread(
        start_platform,
        tmp_path / "logs",
        NANOFAAS_REGISTRY_STORE="kubernetes",
        KUBECONFIG=str(tmp_path / "kubeconfig"),
        NANOFAAS_NAMESPACE="default",
    )
    try:
        yield running
    finally:
        await asyncio.to_thread(stop_platform, running)


async def test_kubectl_and_rest_manage_the_same_functions(
    platform: Platform, kubectl: Kubectl, fake_cluster: FakeCluster
) -> None:
    def function(name: str) -> dict[str, Any] | None:
        return fake_cluster.get("functions", "default", name, group="nanofaas.io")

    echo = function_object(
        "echo",
        image="example/any:1",
        command=[sys.executable, str(FUNCTIONS_DIR / "stdio_echo.py")],
        runtimeMode="STDIO",
    )
    async with registry_events(platform) as events, aiohttp.ClientSession(base_url=platform.base_url) as http:
        # kubectl apply -> served and invocable, with the revision in the object's status.
        await asyncio.to_thread(kubectl.apply, echo)
        put = await next_change(events, registry_pb2.WatchEvent.PUT, "echo")
        served = await asyncio.to_thread(
            fake_cluster.wait_for,
            "functions",
            "default",
            "echo",
            lambda fn: ready(fn) == ("True", "Served", ""),
            group="nanofaas.io",
        )
        assert served is not None and served["status"]["observedRevision"] == put.revision
        status, body = await first_invoke(http, "echo", {"hello": "cluster"})
        assert status == 200, body
        assert body["output"]["input"] == {"hello": "cluster"}

        # The example applies as it is.
        await asyncio.to_thread(
            kubectl, "apply", "--server-side", "-f", str(ROOT / "examples" / "hello" / "function.yaml")
        )
        await next_change(events, registry_pb2.WatchEvent.PUT, "hello")
        async with http.get("/v1/functions/hello") as response:
            assert response.status == 200
            assert (await response.json())["executionMode"] == "WARM"

        # kubectl edit -> a new revision; the object keeps the user's fields, defaults are not written in.
        await asyncio.to_thread(kubectl.apply, {**echo, "spec": {**echo["spec"], "timeoutMs": 7000}})
        changed = await next_change(events, registry_pb2.WatchEvent.PUT, "echo")
        assert changed.revision > put.revision and changed.spec.timeout_ms == 7000
        edited = function("echo")
        assert edited is not None and "concurrency" not in edited["spec"]

        # Valid for the CRD's schema but not for the registry: not served, and the status says why.
        broken = function_object("broken", image="img:1", executionMode="ENDPOINT")
        await asyncio.to_thread(kubectl.apply, broken)
        refused = await asyncio.to_thread(
            fake_cluster.wait_for,
            "functions",
            "default",
            "broken",
            lambda fn: ready(fn) is not None,
            group="nanofaas.io",
        )
        assert ready(refused) == ("False", "InvalidSpec", "endpointUrl: required for executionMode ENDPOINT")
        async with http.get("/v1/functions/broken") as response:
            assert response.status == 404

        # REST -> a Function object.
        await register(http, {"name": "from-rest", "image": "img:2", "concurrency": 3})
        created = function("from-rest")
        assert created is not None and created["spec"]["concurrency"] == 3
        assert ready(created) == ("True", "Served", "")
        # ...but a name Kubernetes cannot hold is refused with the reason.
        async with http.post("/v1/functions", json={"name": "Upper", "image": "img:2"}) as response:
            assert response.status == 400
            message = (await response.json())["error"]["message"]
            assert message.startswith("name: must be a lower-case DNS name")

        # kubectl delete -> gone from the registry; invoking it is a 404.
        await asyncio.to_thread(kubectl, "delete", "function", "echo")
        await next_change(events, registry_pb2.WatchEvent.DELETED, "echo")
        status, _, body = await invoke(http, "echo", {})
        assert status == 404, body

    # A registry restart (kill -9) serves the same functions at the same revision.
    async with grpc.aio.insecure_channel(platform.env["NANOFAAS_REGISTRY_ADDRESS"]) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        before = await stub.List(registry_pb2.ListFunctionsRequest(), timeout=5)
        await asyncio.to_thread(restart_registry, platform)
        after = await stub.List(registry_pb2.ListFunctionsRequest(), timeout=5, wait_for_ready=True)
        assert list(after.functions) == list(before.functions)
        assert after.revision == before.revision
        assert [spec.name for spec in after.functions] == ["from-rest", "hello"]
        newer = await stub.Register(
            registry_pb2.RegisterRequest(spec=types_pb2.FunctionSpec(name="later", image="i")),
            timeout=5,
        )
        assert newer.revision == before.revision + 1


def restart_registry(platform: Platform) -> None:
    process = platform.processes["registry"]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=WAIT_S)
    with (platform.log_dir / "registry-restarted.log").open("wb") as log:
        platform.processes["registry"] = subprocess.Popen(
            [sys.executable, "-m", "nanofaas_registry"],
            env=platform.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    _wait_ready(platform)


async def test_without_the_crd_the_registry_says_so_and_exits(
    fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    kubeconfig = fake_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    env = {
        **os.environ,
        "NANOFAAS_REGISTRY_STORE": "kubernetes",
        "KUBECONFIG": str(kubeconfig),
        "NANOFAAS_REGISTRY_PORT": "0",
        "NANOFAAS_REGISTRY_METRICS_PORT": "0",
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nanofaas_registry", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), WAIT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 1
    last = json.loads(stderr.decode().splitlines()[-1])
    assert last["msg"] == "function store unusable"
    assert last["reason"] == (
        "cannot read Function objects in namespace 'default': 404 Not Found "
        "(is the CRD functions.nanofaas.io installed?)"
    )
