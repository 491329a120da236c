"""`make up` twice on one data directory: what was registered the first time is there the second."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from .helpers import command_spec, free_port, invoke, register

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def make_up(data_dir: Path) -> AsyncIterator[str]:
    """scripts/up.py on free ports with the given data directory; yields the gateway's base URL."""
    port = free_port()
    env = dict(os.environ)
    env.pop("NANOFAAS_REGISTRY_STORE", None)  # up.py's own default: sqlite
    env.update(
        NANOFAAS_DATA_DIR=str(data_dir),
        NANOFAAS_GATEWAY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_PORT=str(scheduler := free_port()),
        NANOFAAS_SCHEDULER_METRICS_PORT=str(free_port()),
        NANOFAAS_REGISTRY_PORT=str(registry := free_port()),
        NANOFAAS_REGISTRY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_ADDRESS=f"127.0.0.1:{scheduler}",
        NANOFAAS_REGISTRY_ADDRESS=f"127.0.0.1:{registry}",
    )
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts" / "up.py"),
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert up.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(120):
            while raw := await up.stdout.readline():
                lines.append(raw.decode(errors="replace"))
                if "Press Ctrl-C to stop" in lines[-1]:
                    break
        assert lines and "Press Ctrl-C to stop" in lines[-1], "make up did not come up:\n" + "".join(lines)
        yield f"http://127.0.0.1:{port}"
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            remaining, _ = await up.communicate()
    assert up.returncode == 0, "".join(lines) + remaining.decode(errors="replace")


async def functions(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/v1/functions") as response:
        assert response.status == 200
        return {summary["name"]: summary for summary in await response.json()}


async def function(http: aiohttp.ClientSession, name: str) -> dict[str, Any]:
    async with http.get(f"/v1/functions/{name}") as response:
        assert response.status == 200
        return dict(await response.json())


async def test_functions_survive_stopping_and_starting_make_up(tmp_path: Path) -> None:
    kept = command_spec("kept", "stdio_echo.py", runtimeMode="STDIO", timeoutMs=4321)
    async with make_up(tmp_path) as base, aiohttp.ClientSession(base_url=base) as http:
        await register(http, kept)
        before = await functions(http)
        registered = await function(http, "kept")
    assert registered["timeoutMs"] == 4321
    assert set(before) == {"hello", "kept"}
    assert (tmp_path / "registry.db").is_file()

    async with make_up(tmp_path) as base, aiohttp.ClientSession(base_url=base) as http:
        after = await functions(http)
        assert after == before, "same functions, neither re-created (createdAt unchanged)"
        assert await function(http, "kept") == registered
        status, _, body = await invoke(http, "hello", {"name": "again"})
        assert (status, body["output"]) == (200, {"message": "Hello, again!"})


def test_make_up_deploys_the_example_manifest() -> None:
    """up.py's example is examples/hello/function.yaml plus where the local backend finds the handler."""
    loader = importlib.util.spec_from_file_location("up", ROOT / "scripts" / "up.py")
    assert loader is not None and loader.loader is not None
    up = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(up)
    deployed = dict(up.example_spec())
    manifest = yaml.safe_load((ROOT / "examples" / "hello" / "function.yaml").read_text())
    assert deployed.pop("name") == manifest["metadata"]["name"]
    assert deployed.pop("env") == {"PYTHONPATH": str(ROOT / "examples" / "hello")}
    assert deployed == manifest["spec"]
