"""Every execution mode and runtime mode of the local backend, through REST."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from .helpers import FUNCTIONS_DIR, command_spec, free_port, get_execution, invoke, python_spec, register


async def test_job_runs_python_handler_in_fresh_process(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", env={"GREETING": "hey"}))
    status, headers, body = await invoke(http, fn_name, {"a": 1})
    assert status == 200, body
    assert body["status"] == "success"
    assert headers["X-Execution-Id"] == body["executionId"]
    output = body["output"]
    assert output["input"] == {"a": 1}
    assert output["executionId"] == body["executionId"]
    assert output["functionName"] == fn_name
    assert output["env"] == {
        "FUNCTION_NAME": fn_name,
        "GREETING": "hey",
        "INVOCATION_TIMEOUT_MS": "30000",
        "EXECUTION_ID": body["executionId"],
        "TRACE_ID": output["traceId"],
    }
    # Later invocations may run on a process started ahead (a standby): still fresh, same environment.
    pids = {output["pid"]}
    for n in range(3):
        _, _, later = await invoke(http, fn_name, n, headers={"X-Trace-Id": f"job-{n}"})
        assert later["output"]["pid"] not in pids
        pids.add(later["output"]["pid"])
        assert later["output"]["env"]["EXECUTION_ID"] == later["executionId"]
        assert later["output"]["env"]["TRACE_ID"] == f"job-{n}"


async def test_warm_reuses_one_process(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", executionMode="WARM", concurrency=1))
    pids = set()
    for n in range(3):
        status, _, body = await invoke(http, fn_name, n)
        assert status == 200, body
        assert body["output"]["input"] == n
        pids.add(body["output"]["pid"])
    assert len(pids) == 1


async def test_warm_replaces_a_dead_replica(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", executionMode="WARM", concurrency=1))
    _, _, first = await invoke(http, fn_name, 1)
    pid = first["output"]["pid"]
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
    status, _, second = await invoke(http, fn_name, 2)
    assert status == 200, second
    assert second["output"]["pid"] != pid


async def test_async_handler(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "async_echo", executionMode="WARM"))
    status, _, body = await invoke(http, fn_name, "x")
    assert status == 200
    assert body["output"] == {"async": True, "input": "x"}


@pytest.mark.parametrize("mode", ["JOB", "WARM"])
async def test_stdio_command(http: aiohttp.ClientSession, fn_name: str, mode: str) -> None:
    await register(http, command_spec(fn_name, "stdio_echo.py", runtimeMode="STDIO", executionMode=mode))
    async with http.post(
        f"/v1/functions/{fn_name}:invoke",
        json={"input": {"x": [1, 2]}, "metadata": {"k": "v"}},
        headers={"X-Trace-Id": "trace-stdio"},
    ) as response:
        assert response.status == 200
        body = await response.json()
    output = body["output"]
    assert output["input"] == {"x": [1, 2]}
    assert output["metadata"] == {"k": "v"}
    assert output["env"]["FUNCTION_NAME"] == fn_name
    assert output["env"]["EXECUTION_ID"] == body["executionId"]
    assert output["env"]["TRACE_ID"] == "trace-stdio"
    assert output["env"]["INVOCATION_TIMEOUT_MS"] == "30000"


async def test_stdio_python_runtime(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", runtimeMode="STDIO"))
    status, _, body = await invoke(http, fn_name, [1, 2, 3])
    assert status == 200, body
    assert body["output"]["input"] == [1, 2, 3]


async def test_file_command(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, command_spec(fn_name, "file_echo.py", runtimeMode="FILE"))
    status, _, body = await invoke(http, fn_name, {"f": 1})
    assert status == 200, body
    assert body["output"] == {"input": {"f": 1}, "mode": "file", "executionId": body["executionId"]}


async def test_file_python_runtime(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", runtimeMode="FILE"))
    status, _, body = await invoke(http, fn_name, "file")
    assert status == 200, body
    assert body["output"]["input"] == "file"


@pytest.mark.parametrize("mode", ["JOB", "WARM"])
async def test_users_own_http_server(http: aiohttp.ClientSession, fn_name: str, mode: str) -> None:
    await register(http, command_spec(fn_name, "own_server.py", executionMode=mode))
    status, _, body = await invoke(http, fn_name, "hello")
    assert status == 200, body
    assert body["output"]["own"] is True
    assert body["output"]["input"] == "hello"
    assert body["output"]["executionId"] == body["executionId"]


async def test_runtime_command_is_split_without_a_shell(http: aiohttp.ClientSession, fn_name: str) -> None:
    script = FUNCTIONS_DIR / "stdio_echo.py"
    spec = {
        "name": fn_name,
        "image": "example/any:1",
        "runtimeCommand": f"{sys.executable} {script} 'two words' $HOME ';' `id`",
        "runtimeMode": "STDIO",
    }
    await register(http, spec)
    status, _, body = await invoke(http, fn_name, 1)
    assert status == 200, body
    assert body["output"]["argv"] == ["two words", "$HOME", ";", "`id`"]


@pytest.fixture
async def endpoint_server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A user-run endpoint: a real HTTP server in the test process."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        payload = await request.json()
        if payload["input"] == "fail":
            return web.json_response(
                {"error": {"code": "FUNCTION_ERROR", "message": "endpoint says no"}}, status=500
            )
        return web.json_response({"endpoint": True, "input": payload["input"]})

    app = web.Application()
    app.router.add_post("/run", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}/run", seen
    await runner.cleanup()


async def test_endpoint_mode(
    http: aiohttp.ClientSession, fn_name: str, endpoint_server: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = endpoint_server
    await register(http, {"name": fn_name, "image": "example/any:1", "endpointUrl": url})
    status, headers, body = await invoke(http, fn_name, {"q": 1}, headers={"X-Trace-Id": "trace-ep"})
    assert status == 200, body
    assert body["output"] == {"endpoint": True, "input": {"q": 1}}
    assert seen[-1]["X-Execution-Id"] == headers["X-Execution-Id"]
    assert seen[-1]["X-Trace-Id"] == "trace-ep"
    status, _, body = await invoke(http, fn_name, "fail")
    assert status == 502
    assert body["error"] == {"code": "FUNCTION_ERROR", "message": "endpoint says no"}


async def test_unreachable_endpoint_is_retried_then_error(http: aiohttp.ClientSession, fn_name: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing-listens"
    await register(http, {"name": fn_name, "image": "x", "endpointUrl": url, "maxRetries": 2})
    status, headers, body = await invoke(http, fn_name, 1)
    assert status == 502
    assert body["status"] == "error"
    assert (await get_execution(http, headers["X-Execution-Id"]))["attempts"] == 3


async def test_octet_stream_in_and_out(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "reverse_bytes", executionMode="WARM"))
    data = bytes(range(256))
    async with http.post(
        f"/v1/functions/{fn_name}:invoke", data=data, headers={"Content-Type": "application/octet-stream"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/octet-stream")
        assert response.headers["X-Execution-Id"]
        assert await response.read() == data[::-1]


async def test_concurrency_limit_is_never_exceeded(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: object
) -> None:
    """Four concurrent sleeps with concurrency 2: the warm pool never grows past 2 processes."""
    await register(http, python_spec(fn_name, "sleep", executionMode="WARM", concurrency=2))
    results = await asyncio.gather(*(invoke(http, fn_name, 0.3) for _ in range(4)))
    assert [status for status, _, _ in results] == [200] * 4
    ids = [headers["X-Execution-Id"] for _, headers, _ in results]
    spans = []
    for execution_id in ids:
        status_body = await get_execution(http, execution_id)
        spans.append((status_body["startedAt"], status_body["finishedAt"]))
    for moment, _ in spans:
        overlapping = sum(1 for start, end in spans if start <= moment < end)
        assert overlapping <= 2, json.dumps(spans)
