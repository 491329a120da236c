"""SIGTERM to the scheduler with queued and in-flight work: nobody waits forever, nothing is lost."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from .conftest import start_platform, stop_platform
from .helpers import enqueue, get_execution, invoke, python_spec, register


async def test_sigterm_drains_inflight_and_ends_queued(tmp_path: Path) -> None:
    platform = await asyncio.to_thread(start_platform, tmp_path / "logs", NANOFAAS_SHUTDOWN_GRACE_S="20")
    try:
        async with aiohttp.ClientSession(base_url=platform.base_url) as http:
            pid_file = tmp_path / "running"
            await register(
                http,
                python_spec(
                    "slow", "sleep", executionMode="WARM", concurrency=1, env={"PID_FILE": str(pid_file)}
                ),
            )
            inflight = asyncio.create_task(invoke(http, "slow", 3))
            for _ in range(3000):  # the handler writes the file when it starts; no event crosses processes
                if pid_file.exists():
                    break
                await asyncio.sleep(0.01)
            queued_sync = asyncio.create_task(invoke(http, "slow", 0))
            queued_async = await enqueue(http, "slow", 0)

            scheduler = platform.processes["scheduler"]
            scheduler.send_signal(signal.SIGTERM)

            status, _, body = await queued_sync
            assert status == 503
            assert body["error"]["code"] == "SHUTTING_DOWN"
            ended = await get_execution(http, queued_async)
            assert ended["status"] == "error"
            assert ended["error"]["code"] == "SHUTTING_DOWN"
            status, _, body = await invoke(http, "slow", 0)
            assert status == 503
            assert body["error"]["code"] == "SHUTTING_DOWN"
            async with http.get("/readyz") as response:
                assert response.status == 503

            status, _, body = await inflight
            assert status == 200, body
            assert body["output"] == "slept"
            assert await asyncio.to_thread(scheduler.wait, 30) == 0
    finally:
        codes = await asyncio.to_thread(stop_platform, platform)
    assert codes["scheduler"] == 0
