"""What a client sees when the scheduler dies (kill -9) with executions in flight.

Queues and execution records live in the scheduler's memory by design, so they are lost; the
functions (in the registry) are not. docs/persistence.md states exactly these answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp

from .conftest import Platform, _wait_ready, start_platform, stop_platform
from .helpers import enqueue, get_execution, invoke, python_spec, register

WAIT_S = 30


def wait_for_file(path: Path) -> int:
    """The pid a function wrote to path (polling: the function process offers no event)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} never written")


def orphans(pid_files: Iterable[Path]) -> set[int]:
    """Pids of the function processes whose environment names one of pid_files (this test's own)."""
    markers = {f"PID_FILE={path}".encode() for path in pid_files}
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if markers & set((entry / "environ").read_bytes().split(b"\0")):
                    found.add(int(entry.name))
    return found


def kill_scheduler(platform: Platform) -> None:
    platform.processes["scheduler"].send_signal(signal.SIGKILL)
    platform.processes["scheduler"].wait(timeout=WAIT_S)


def restart_scheduler(platform: Platform) -> None:
    """A new scheduler on the same port and settings; returns once the platform is ready again."""
    with (platform.log_dir / "scheduler-restarted.log").open("wb") as log:
        platform.processes["scheduler"] = subprocess.Popen(
            [sys.executable, "-m", "nanofaas_scheduler"],
            env=platform.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    _wait_ready(platform)


async def test_executions_in_flight_are_lost_with_the_scheduler_functions_are_not(tmp_path: Path) -> None:
    platform = await asyncio.to_thread(
        start_platform,
        tmp_path / "logs",
        NANOFAAS_REGISTRY_STORE="sqlite",
        NANOFAAS_DATA_DIR=str(tmp_path / "data"),
    )
    pid_files = {name: tmp_path / f"{name}.pid" for name in ("queued", "waited")}
    try:
        async with aiohttp.ClientSession(base_url=platform.base_url) as http:
            for name, pid_file in pid_files.items():
                await register(
                    http, python_spec(name, "sleep", env={"PID_FILE": str(pid_file)}, maxRetries=0)
                )
            execution_id = await enqueue(http, "queued", 20)
            waiting = asyncio.create_task(invoke(http, "waited", 20))
            for pid_file in pid_files.values():
                await asyncio.to_thread(wait_for_file, pid_file)
            assert (await get_execution(http, execution_id))["status"] == "running"

            await asyncio.to_thread(kill_scheduler, platform)

            status, _, body = await asyncio.wait_for(waiting, WAIT_S)
            # It was running: it may have run, so it is no retryable 503 but a CRASH (issue 17).
            assert (status, body["error"]["code"]) == (502, "CRASH")
            assert "may have run" in body["error"]["message"] and body["executionId"]
            async with http.get(f"/v1/executions/{execution_id}") as response:
                assert response.status == 503
                assert (await response.json())["error"]["code"] == "UNAVAILABLE"

            await asyncio.to_thread(restart_scheduler, platform)

            async with http.get(f"/v1/executions/{execution_id}") as response:
                assert response.status == 404
                assert await response.json() == {
                    "error": {"code": "NOT_FOUND", "message": f"execution '{execution_id}' not found"}
                }
            async with http.get("/v1/functions") as response:
                assert {summary["name"] for summary in await response.json()} == set(pid_files)
    finally:
        # Function processes of the killed scheduler end with it (the lifeline pipe); this is only
        # the safety net if one did not, so a failing test leaves nothing running.
        for pid in orphans(pid_files.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(stop_platform, platform)
