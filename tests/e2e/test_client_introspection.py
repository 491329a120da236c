"""The REST routes the CLI reads, against the real services: execution listing, function status, logs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .conftest import start_platform, stop_platform
from .helpers import RUNTIME_IMAGE, enqueue, invoke, python_spec, register, wait_terminal

# Blocks until the file named by its input exists (bounded), so a test decides when it ends.
GATE = """
import os, time
def handle(request, context=None):
    deadline = time.monotonic() + 30
    while not os.path.exists(request["input"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"
"""


def gate_spec(name: str, folder: Path, **fields: Any) -> dict[str, Any]:
    (folder / "gate.py").write_text(GATE)
    env = {"PYTHONPATH": str(folder), "HANDLER_MODULE": "gate"}
    return {"name": name, "image": RUNTIME_IMAGE, "env": env, "executionMode": "WARM", **fields}


async def get_json(http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with http.get(path) as response:
        return response.status, await response.json()


async def wait_for_status(
    http: aiohttp.ClientSession, execution_id: str, state: str, timeout: float = 30
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await get_json(http, f"/v1/executions/{execution_id}"))[1]["status"] != state:
        assert loop.time() < deadline, f"{execution_id} never became {state}"
        await asyncio.sleep(0.02)


async def test_status_and_listing_show_the_queue(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: Path
) -> None:
    await register(http, gate_spec(fn_name, tmp_path, concurrency=1))
    release = tmp_path / "release"
    code, idle = await get_json(http, f"/v1/functions/{fn_name}/status")
    assert (code, idle) == (
        200,
        {
            "name": fn_name,
            # min and max are the function's minReplicas (1) and maxReplicas (= concurrency 1).
            "replicas": {"current": 0, "ready": 0, "desired": 0, "min": 1, "max": 1},
            "inFlight": 0,
            "queued": 0,
            "oldestQueuedAgeMs": 0,
        },
    )
    first = await enqueue(http, fn_name, str(release))
    await wait_for_status(http, first, "running")
    second = await enqueue(http, fn_name, str(release))
    code, busy = await get_json(http, f"/v1/functions/{fn_name}/status")
    assert (busy["inFlight"], busy["queued"], busy["replicas"]["current"]) == (1, 1, 1)
    assert busy["oldestQueuedAgeMs"] >= 0
    code, listing = await get_json(http, f"/v1/executions?function={fn_name}")
    assert [e["executionId"] for e in listing] == [second, first]
    assert [e["status"] for e in listing] == ["queued", "running"]
    code, page = await get_json(http, f"/v1/executions?function={fn_name}&before={second}&limit=1")
    assert [e["executionId"] for e in page] == [first]
    release.touch()
    for execution_id in (first, second):
        assert (await wait_terminal(http, execution_id))["status"] == "success"
    code, done = await get_json(http, f"/v1/executions?function={fn_name}&status=success")
    assert {e["executionId"] for e in done} == {first, second}
    assert all("output" not in e for e in done)  # listings never carry outputs
    code, after = await get_json(http, f"/v1/functions/{fn_name}/status")
    assert after["replicas"] == {"current": 1, "ready": 1, "desired": 1, "min": 1, "max": 1}
    assert (after["inFlight"], after["queued"], after["oldestQueuedAgeMs"]) == (0, 0, 0)


async def test_introspection_errors(http: aiohttp.ClientSession) -> None:
    for path, status, code in [
        ("/v1/functions/nope-nope/status", 404, "NOT_FOUND"),
        ("/v1/functions/nope-nope/logs", 404, "NOT_FOUND"),
        ("/v1/functions/nope-nope/logs?follow=true", 404, "NOT_FOUND"),
        ("/v1/executions?limit=5000", 400, "INVALID_ARGUMENT"),
        ("/v1/executions?before=unknown-execution", 400, "INVALID_ARGUMENT"),
        ("/v1/executions?status=finished", 400, "INVALID_ARGUMENT"),
    ]:
        got, body = await get_json(http, path)
        assert (got, body["error"]["code"]) == (status, code), path


async def read_lines(http: aiohttp.ClientSession, path: str, wanted: int, timeout: float = 15) -> list[Any]:
    """The function's log lines once at least `wanted` are kept (they arrive over a pipe: bounded poll)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, body = await get_json(http, path)
        assert status == 200, body
        if len(body["lines"]) >= wanted or loop.time() >= deadline:
            return list(body["lines"])
        await asyncio.sleep(0.05)


async def test_logs_keep_what_the_handler_printed(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "chatty", executionMode="WARM"))
    _, _, first = await invoke(http, fn_name, "one")
    _, _, second = await invoke(http, fn_name, "two")
    mine = f"/v1/functions/{fn_name}/logs?execution={second['executionId']}"
    (line,) = await read_lines(http, mine, 1)
    assert (line["message"], line["stream"], line["executionId"]) == (
        "chatty says two",
        "stdout",
        second["executionId"],
    )
    assert line["ts"].endswith("Z")
    everything = await read_lines(http, f"/v1/functions/{fn_name}/logs", 2)
    said = [entry["message"] for entry in everything if entry.get("executionId")]
    assert said == ["chatty says one", "chatty says two"]
    assert first["executionId"] in {entry.get("executionId") for entry in everything}
    last = await read_lines(http, f"/v1/functions/{fn_name}/logs?tail=1", 1)
    assert len(last) == 1
    status, body = await get_json(http, f"/v1/functions/{fn_name}/logs?tail=20000")
    assert (status, body["error"]["code"]) == (400, "INVALID_ARGUMENT")


async def test_followed_logs_stream_new_lines(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "chatty", executionMode="WARM"))
    async with http.get(f"/v1/functions/{fn_name}/logs?follow=true") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        _, _, result = await invoke(http, fn_name, "live")
        async with asyncio.timeout(15):
            while True:
                raw = (await response.content.readline()).decode()
                if raw.startswith("data: "):
                    event = orjson.loads(raw[len("data: ") :])
                    if event.get("executionId") == result["executionId"]:
                        break
    assert event["message"] == "chatty says live"


async def test_an_open_follow_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    """SIGTERM with a client following logs: every service still exits 0 and the stream ends."""
    own = start_platform(tmp_path / "platform")
    try:
        async with aiohttp.ClientSession(base_url=own.base_url) as http:
            await register(http, python_spec("followed", "chatty", executionMode="WARM"))
            async with http.get("/v1/functions/followed/logs?follow=true") as response:
                assert response.status == 200
                stopping = asyncio.ensure_future(asyncio.to_thread(stop_platform, own))
                async with asyncio.timeout(60):
                    # A clean end of the chunked stream (a cut connection raises ClientPayloadError):
                    # the gateway ended the follow at once instead of waiting out its grace.
                    await response.read()
                codes = await stopping
    finally:
        if any(process.poll() is None for process in own.processes.values()):
            stop_platform(own)
    assert codes == {"gateway": 0, "scheduler": 0, "registry": 0}, codes
