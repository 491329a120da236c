"""End-to-end fixtures: the three services as real processes on free ports."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from .helpers import free_port


@dataclass
class Platform:
    base_url: str
    log_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def logs(self, service: str) -> str:
        return (self.log_dir / f"{service}.log").read_text(errors="replace")


def _wait_ready(platform: Platform, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in platform.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{platform.logs(name)}")
        try:
            with urllib.request.urlopen(f"{platform.base_url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)  # polling a process we do not control: no event to await
    raise RuntimeError("platform not ready in time")


def start_platform(log_dir: Path, **overrides: str) -> Platform:
    gateway, scheduler, registry = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.update(
        NANOFAAS_GATEWAY_PORT=str(gateway),
        NANOFAAS_GATEWAY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_PORT=str(scheduler),
        NANOFAAS_SCHEDULER_METRICS_PORT=str(free_port()),
        NANOFAAS_REGISTRY_PORT=str(registry),
        NANOFAAS_REGISTRY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_ADDRESS=f"127.0.0.1:{scheduler}",
        NANOFAAS_REGISTRY_ADDRESS=f"127.0.0.1:{registry}",
        NANOFAAS_CALLBACK_URL=f"http://127.0.0.1:{gateway}",
        LOG_LEVEL="INFO",
        # Link-local (cloud metadata) addresses denied, as the cluster overlay does (docs/limits.md).
        NANOFAAS_OUTBOUND_DENY_CIDRS="169.254.0.0/16",
    )
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.update(overrides)
    platform = Platform(base_url=f"http://127.0.0.1:{gateway}", log_dir=log_dir, env=env)
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in ("registry", "scheduler", "gateway"):
        with (log_dir / f"{name}.log").open("wb") as log:
            platform.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"nanofaas_{name}"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
    try:
        _wait_ready(platform)
    except BaseException:
        stop_platform(platform)
        raise
    return platform


def stop_platform(platform: Platform) -> dict[str, int]:
    codes: dict[str, int] = {}
    for name in ("gateway", "scheduler", "registry"):
        process = platform.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            codes[name] = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            codes[name] = process.wait()
    return codes


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = start_platform(tmp_path_factory.mktemp("platform"))
    yield running
    codes = stop_platform(running)
    assert codes == {"gateway": 0, "scheduler": 0, "registry": 0}, codes


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=platform.base_url) as session:
        yield session


@pytest.fixture
def fn_name(request: pytest.FixtureRequest) -> str:
    """A function name unique to the test, so tests share one platform safely."""
    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def callback_receiver() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, object]]]]:
    """A URL for X-Callback-Url and the queue of the bodies POSTed to it."""
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        await received.put(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/done", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/done", received
    await runner.cleanup()
