"""`make up` twice on one data directory: what was registered the first time is there the second."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from .helpers import command_spec, invoke, make_up, register

ROOT = Path(__file__).resolve().parents[2]


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
    async with make_up(tmp_path) as (base, _), aiohttp.ClientSession(base_url=base) as http:
        await register(http, kept)
        before = await functions(http)
        registered = await function(http, "kept")
    assert registered["timeoutMs"] == 4321
    assert set(before) == {"hello", "kept"}
    assert (tmp_path / "registry.db").is_file()

    async with make_up(tmp_path) as (base, _), aiohttp.ClientSession(base_url=base) as http:
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
