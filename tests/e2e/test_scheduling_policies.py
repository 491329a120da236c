"""Scheduler policies seen through REST: early rejection and completion callbacks."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from .helpers import enqueue, get_execution, invoke, python_spec, register, wait_terminal


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


async def test_hot_function_does_not_delay_another(http: aiohttp.ClientSession, fn_name: str) -> None:
    hot, cold = f"{fn_name}-hot", f"{fn_name}-cold"
    await register(http, python_spec(hot, "sleep", executionMode="WARM", concurrency=1, queueSize=50))
    await register(http, python_spec(cold, "echo", executionMode="WARM"))
    backlog = [await enqueue(http, hot, 0.5) for _ in range(10)]
    status, _, body = await invoke(http, cold, "first")
    assert status == 200 and body["output"]["input"] == "first"
    states = []
    for execution_id in backlog:
        states.append((await get_execution(http, execution_id))["status"])
    assert "queued" in states, "the cold function was served while the hot backlog was still queued"
    for execution_id in backlog:
        await wait_terminal(http, execution_id)


async def test_deadline_reaches_the_runtime(http: aiohttp.ClientSession, fn_name: str) -> None:
    import time

    await register(http, python_spec(fn_name, "echo", executionMode="WARM", timeoutMs=20000))
    before = time.time()
    status, _, body = await invoke(http, fn_name, 1, headers={"X-Timeout-Ms": "5000"})
    after = time.time()
    assert status == 200
    deadline = body["output"]["deadline"]
    assert before + 5 - 1 <= deadline <= after + 5 + 1


async def test_delete_ends_queued_work_and_finishes_inflight(
    http: aiohttp.ClientSession, fn_name: str
) -> None:
    await register(http, python_spec(fn_name, "sleep", executionMode="WARM", concurrency=1))
    running = await enqueue(http, fn_name, 0.5)
    queued = [await enqueue(http, fn_name, 0.5) for _ in range(2)]
    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 204
    for execution_id in queued:
        body = await wait_terminal(http, execution_id)
        assert body["status"] == "error"
        assert isinstance(body["error"], dict) and body["error"]["code"] == "FUNCTION_DELETED"
    assert (await wait_terminal(http, running))["status"] == "success"


async def test_function_rate_limit_is_429_rate(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", executionMode="WARM", rateLimitPerSecond=0.5))
    async with http.get(f"/v1/functions/{fn_name}") as response:
        assert (await response.json())["rateLimitPerSecond"] == 0.5
    first = await enqueue(http, fn_name, 1)
    async with http.post(f"/v1/functions/{fn_name}:enqueue", json={"input": 2}) as response:
        assert response.status == 429
        assert response.headers["X-Queue-Reject-Reason"] == "rate"
        assert int(response.headers["Retry-After"]) >= 1
    await wait_terminal(http, first)


async def test_disconnected_sync_caller_is_not_dispatched(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: Path
) -> None:
    count_file = tmp_path / "count"
    env = {"COUNT_FILE": str(count_file)}

    async def set_handler(handler: str) -> None:
        spec = python_spec(fn_name, handler, concurrency=1, env=env)
        async with http.put(f"/v1/functions/{fn_name}", json=spec) as response:
            assert response.status == 200

    await register(http, python_spec(fn_name, "sleep", concurrency=1, env=env))
    busy = await enqueue(http, fn_name, 1.0)  # holds the only slot
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.3):
            await invoke(http, fn_name, 0)  # queued behind `busy`; the caller gives up
    await set_handler("count")  # anything dispatched from now on leaves a line in COUNT_FILE
    await wait_terminal(http, busy)
    after = await enqueue(http, fn_name, 0)
    await wait_terminal(http, after)
    assert count_file.read_text().splitlines() == ["run"], "the abandoned call was dispatched"
