"""Completions need the attempt's token (issue 17, finding 2), against the real services.

The function is an ENDPOINT served by this test, so the test sees exactly what
the function side receives (the invocation's headers, the completion token
among them) and decides when and how each attempt answers. Reproduced first:
before the fix, a POST of `{"status":"success","output":{"forged":true}}` to
`:complete` with only the execution id (it leaks through X-Execution-Id, logs,
callbacks) made the waiting caller receive the forged output.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .conftest import Platform
from .helpers import free_port, get_execution, register

WAIT_S = 30.0
FORGED = {"status": "success", "output": {"forged": True}}


@dataclass
class Arrival:
    headers: dict[str, str]
    answer: asyncio.Future[web.Response]


@dataclass
class EndpointFunction:
    """The function side: each invocation waits until the test answers it."""

    url: str
    arrivals: asyncio.Queue[Arrival] = field(default_factory=asyncio.Queue)

    async def next(self) -> Arrival:
        return await asyncio.wait_for(self.arrivals.get(), WAIT_S)


@pytest.fixture
async def endpoint() -> AsyncIterator[EndpointFunction]:
    function = EndpointFunction(url="")

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        arrival = Arrival(dict(request.headers), asyncio.get_running_loop().create_future())
        await function.arrivals.put(arrival)
        return await asyncio.wait_for(arrival.answer, WAIT_S)

    app = web.Application()
    app.router.add_post("/invoke", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    function.url = f"http://127.0.0.1:{port}/invoke"
    try:
        yield function
    finally:
        await runner.cleanup()


async def complete(
    http: aiohttp.ClientSession, execution_id: str, body: Any, token: str | None = None
) -> tuple[int, dict[str, Any] | None]:
    headers = {} if token is None else {"X-Completion-Token": token}
    async with http.post(
        f"/v1/internal/executions/{execution_id}:complete", json=body, headers=headers
    ) as response:
        return response.status, (await response.json() if response.status != 204 else None)


async def invoke(http: aiohttp.ClientSession, name: str) -> tuple[int, Any]:
    async with http.post(f"/v1/functions/{name}:invoke", json={"input": 1}) as response:
        return response.status, await response.json()


def assert_not_logged(platform: Platform, *secrets: str) -> None:
    for service in ("gateway", "scheduler", "registry"):
        logs = platform.logs(service)
        for secret in secrets:
            assert secret not in logs, f"a completion token is in the {service} log"


async def test_a_forged_completion_is_refused_and_the_caller_gets_the_real_result(
    http: aiohttp.ClientSession, platform: Platform, fn_name: str, endpoint: EndpointFunction
) -> None:
    await register(http, {"name": fn_name, "image": "x", "endpointUrl": endpoint.url})
    caller = asyncio.create_task(invoke(http, fn_name))
    arrival = await endpoint.next()
    execution_id, token = arrival.headers["X-Execution-Id"], arrival.headers["X-Completion-Token"]
    assert len(token) >= 43

    status, body = await complete(http, execution_id, FORGED)  # the id alone, as in the finding
    assert status == 401 and body is not None and body["error"]["code"] == "UNAUTHENTICATED"
    status, body = await complete(http, execution_id, FORGED, token="x" * len(token))
    assert status == 403 and body is not None and body["error"]["code"] == "PERMISSION_DENIED"
    status, body = await complete(http, execution_id, {"error": "x"}, token)  # once: success, null output
    assert status == 422 and body is not None and body["error"]["code"] == "VALIDATION_ERROR"
    assert (await get_execution(http, execution_id))["status"] == "running"

    arrival.answer.set_result(web.json_response({"real": True}))
    status, result = await asyncio.wait_for(caller, WAIT_S)
    assert (status, result["output"]) == (200, {"real": True})
    # The owner repeating itself after the end: accepted, without effect.
    assert (await complete(http, execution_id, FORGED, token))[0] == 204
    ended = await get_execution(http, execution_id)
    assert ended["output"] == {"real": True}
    assert token not in str(ended)
    assert_not_logged(platform, token)


async def test_the_owner_reports_out_of_band_and_may_repeat_itself(
    http: aiohttp.ClientSession, platform: Platform, fn_name: str, endpoint: EndpointFunction
) -> None:
    await register(http, {"name": fn_name, "image": "x", "endpointUrl": endpoint.url})
    caller = asyncio.create_task(invoke(http, fn_name))
    arrival = await endpoint.next()
    execution_id, token = arrival.headers["X-Execution-Id"], arrival.headers["X-Completion-Token"]
    report = {"status": "success", "output": {"reported": True}, "attempt": int(arrival.headers["X-Attempt"])}
    assert (await complete(http, execution_id, report, token))[0] == 204
    status, result = await asyncio.wait_for(caller, WAIT_S)
    assert (status, result["output"]) == (200, {"reported": True})
    assert (await complete(http, execution_id, report, token))[0] == 204
    assert (await get_execution(http, execution_id))["output"] == {"reported": True}
    assert_not_logged(platform, token)


async def test_another_attempts_token_is_refused(
    http: aiohttp.ClientSession, platform: Platform, fn_name: str, endpoint: EndpointFunction
) -> None:
    await register(http, {"name": fn_name, "image": "x", "endpointUrl": endpoint.url, "maxRetries": 1})
    caller = asyncio.create_task(invoke(http, fn_name))
    first = await endpoint.next()
    first.answer.set_result(web.Response(status=503))  # a crash: retried
    second = await endpoint.next()
    execution_id = second.headers["X-Execution-Id"]
    assert second.headers["X-Attempt"] == "2"
    old, current = first.headers["X-Completion-Token"], second.headers["X-Completion-Token"]
    assert old != current
    status, body = await complete(http, execution_id, {**FORGED, "attempt": 2}, old)
    assert status == 403 and body is not None and body["error"]["code"] == "PERMISSION_DENIED"
    # The first attempt's own (stale) report is ignored, not refused: its runtime did nothing wrong.
    assert (await complete(http, execution_id, FORGED, old))[0] == 204
    assert (await get_execution(http, execution_id))["status"] == "running"

    second.answer.set_result(web.json_response({"attempt": 2}))
    status, result = await asyncio.wait_for(caller, WAIT_S)
    assert (status, result["output"]) == (200, {"attempt": 2})
    assert_not_logged(platform, old, current)
