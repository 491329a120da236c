"""Scheduler policies seen through REST: early rejection and completion callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from .conftest import free_port, invoke, python_spec, register


@pytest.fixture
async def callback_receiver() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, object]]]]:
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


async def test_callback_url_receives_the_final_status(
    http: aiohttp.ClientSession,
    fn_name: str,
    callback_receiver: tuple[str, asyncio.Queue[dict[str, object]]],
) -> None:
    url, received = callback_receiver
    await register(http, python_spec(fn_name, "echo", executionMode="WARM"))
    async with http.post(
        f"/v1/functions/{fn_name}:enqueue", json={"input": "cb"}, headers={"X-Callback-Url": url}
    ) as response:
        assert response.status == 202
        execution_id = (await response.json())["executionId"]
    body = await asyncio.wait_for(received.get(), 30)
    assert body["executionId"] == execution_id
    assert body["status"] == "success"
    assert body["functionName"] == fn_name
    assert isinstance(body["output"], dict) and body["output"]["input"] == "cb"


async def test_sync_call_rejected_early_when_it_cannot_finish(
    http: aiohttp.ClientSession, fn_name: str
) -> None:
    """Once the scheduler has seen a 2 s execution, a 1 s sync call behind a busy slot gets 429 at once."""
    await register(http, python_spec(fn_name, "sleep", executionMode="WARM", concurrency=1))
    status, _, _ = await invoke(http, fn_name, 2)
    assert status == 200
    async with http.post(f"/v1/functions/{fn_name}:enqueue", json={"input": 2}) as response:
        assert response.status == 202
    status, headers, body = await invoke(http, fn_name, 0, headers={"X-Timeout-Ms": "1000"})
    assert status == 429
    assert headers["X-Queue-Reject-Reason"] == "estimated_wait"
    assert int(headers["Retry-After"]) >= 1
    assert "estimated wait" in body["error"]["message"]
