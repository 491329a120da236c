"""The HTTP (WARM/JOB) runtime as a real process on a free port, driven over real HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from nanofaas_runtime.watchdog.process import free_port

from .server_process import ServerProcess
from .support import handler_env, runtime_command

StartRuntime = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_runtime(handler_dir: Path) -> AsyncIterator[StartRuntime]:
    """Start `python -m nanofaas_runtime` serving funcs.<function>; returns its base URL."""
    servers: list[ServerProcess] = []

    async def start(function: str, **env: str) -> str:
        server = await ServerProcess.start(
            runtime_command(), env=handler_env(handler_dir, "funcs", function, **env), port=free_port()
        )
        servers.append(server)
        await server.wait_ready(30)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.stop()


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, content_type: str = "application/json", **headers: str
) -> tuple[int, str, bytes]:
    async with http.post(
        url + "/invoke", data=body, headers={"Content-Type": content_type, **headers}
    ) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


async def test_health(start_runtime: StartRuntime, http: aiohttp.ClientSession) -> None:
    url = await start_runtime("echo")
    async with http.get(url + "/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_invoke_json_with_context_from_headers(
    start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    url = await start_runtime("echo", FUNCTION_NAME="from-env")
    body = b'{"input":{"n": [1, 2]},"metadata":{"tenant":"a"}}'
    status, content_type, raw = await post(
        http,
        url,
        body,
        **{
            "X-Execution-Id": "exec-1",
            "X-Trace-Id": "trace-1",
            "X-Deadline-Ms": "1700000000500",
            "X-Attempt": "2",
        },
    )
    assert (status, content_type) == (200, "application/json")
    assert orjson.loads(raw) == {
        "input": {"n": [1, 2]},
        "metadata": {"tenant": "a"},
        "context": {
            "execution_id": "exec-1",
            "trace_id": "trace-1",
            "function_name": "from-env",
            "deadline": 1700000000.5,
            "metadata": {"tenant": "a"},
            "attempt": 2,
        },
    }


async def test_trace_id_from_traceparent_and_function_name_header(
    start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    url = await start_runtime("echo")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    _, _, raw = await post(
        http, url, b'{"input": 1}', traceparent=traceparent, **{"X-Function-Name": "hdr-fn"}
    )
    context = orjson.loads(raw)["context"]
    assert context["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert context["function_name"] == "hdr-fn"
    assert context["deadline"] is None
    assert context["attempt"] == 0  # no X-Attempt


async def test_invoke_bytes_in_and_out(start_runtime: StartRuntime, http: aiohttp.ClientSession) -> None:
    url = await start_runtime("echo")
    status, content_type, raw = await post(http, url, b"\x00\xffdata", "application/octet-stream")
    assert (status, content_type, raw) == (200, "application/octet-stream", b"\x00\xffdata!")


async def test_async_handler(start_runtime: StartRuntime, http: aiohttp.ClientSession) -> None:
    url = await start_runtime("async_echo")
    status, _, raw = await post(http, url, b'{"input": "hi"}', **{"X-Execution-Id": "e-9"})
    assert status == 200
    assert orjson.loads(raw)["async"] == "hi"
    assert orjson.loads(raw)["context"]["execution_id"] == "e-9"


async def test_handler_exception_is_500_function_error(
    start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    url = await start_runtime("fail")
    status, content_type, raw = await post(http, url, b'{"input": 5}')
    assert (status, content_type) == (500, "application/json")
    assert orjson.loads(raw) == {
        "error": {"code": "FUNCTION_ERROR", "message": "boom: 5", "type": "ValueError"}
    }


async def test_async_handler_exception(start_runtime: StartRuntime, http: aiohttp.ClientSession) -> None:
    url = await start_runtime("async_fail")
    status, _, raw = await post(http, url, b'{"input": 5}')
    assert status == 500
    assert orjson.loads(raw)["error"]["type"] == "KeyError"


async def test_unserializable_output_is_function_error(
    start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    url = await start_runtime("unserializable")
    status, _, raw = await post(http, url, b'{"input": 5}')
    assert status == 500
    assert "not JSON serializable" in orjson.loads(raw)["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"input": 1, "metadata": {"k": 1}}', "metadata: must be an object of strings"),
    ],
)
async def test_malformed_request_is_400(
    start_runtime: StartRuntime, http: aiohttp.ClientSession, body: bytes, message: str
) -> None:
    url = await start_runtime("echo")
    status, _, raw = await post(http, url, body)
    assert status == 400
    error = orjson.loads(raw)["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"].startswith(message)


async def test_bad_deadline_header_and_unknown_routes(
    start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    url = await start_runtime("echo")
    status, _, _ = await post(http, url, b'{"input": 1}', **{"X-Deadline-Ms": "soon"})
    assert status == 400
    status, _, raw = await post(http, url, b'{"input": 1}', **{"X-Attempt": "first"})
    assert status == 400
    assert orjson.loads(raw)["error"]["message"] == "X-Attempt: must be a non-negative integer"
    status, _, _ = await post(http, url, b"x", "text/plain")
    assert status == 415
    async with http.get(url + "/invoke") as response:
        assert response.status == 405
    async with http.get(url + "/nope") as response:
        assert response.status == 404


async def test_a_request_meant_for_another_pod_is_refused_without_running(
    start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    """A reused pod IP: the caller names the pod it means; any other process answers 503 CRASH."""
    pod = await start_runtime("echo", NANOFAAS_POD_UID="uid-of-this-pod")
    status, _, raw = await post(http, pod, b'{"input": 1}', **{"X-Pod-Uid": "uid-of-another-pod"})
    assert status == 503
    error = orjson.loads(raw)["error"]
    assert error["code"] == "CRASH"
    assert "'uid-of-another-pod'" in error["message"] and "'uid-of-this-pod'" in error["message"]
    assert (await post(http, pod, b'{"input": 1}', **{"X-Pod-Uid": "uid-of-this-pod"}))[0] == 200
    assert (await post(http, pod, b'{"input": 1}'))[0] == 200  # no header: not checked
    no_pod = await start_runtime("echo")
    status, _, raw = await post(http, no_pod, b'{"input": 1}', **{"X-Pod-Uid": "uid-of-this-pod"})
    assert status == 503
    assert "a process that is no pod" in orjson.loads(raw)["error"]["message"]


async def _gated_call(http: aiohttp.ClientSession, url: str, gate: Any) -> dict[str, Any]:
    status, _, raw = await post(http, url, orjson.dumps({"input": gate}))
    assert status == 200
    result: dict[str, Any] = orjson.loads(raw)
    return result


async def _open_gate(tmp_path: Path, name: str) -> tuple[dict[str, str], Callable[[], Awaitable[None]]]:
    """FIFOs a gated handler blocks on; returns the gate and a coroutine waiting until it is entered."""
    started, release = tmp_path / f"{name}-started", tmp_path / f"{name}-release"
    os.mkfifo(started)
    os.mkfifo(release)

    async def entered() -> None:
        await asyncio.to_thread(started.read_text)

    return {"started": str(started), "release": str(release)}, entered


async def _release(gate: dict[str, str]) -> None:
    await asyncio.to_thread(Path(gate["release"]).write_text, "go")


async def test_health_responds_while_sync_handler_is_busy_and_concurrency_1_serialises(
    start_runtime: StartRuntime, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await start_runtime("gated")
    gate, entered = await _open_gate(tmp_path, "a")
    blocked = asyncio.create_task(_gated_call(http, url, gate))
    await entered()
    async with http.get(url + "/health") as response:  # the loop is free while the handler blocks
        assert response.status == 200
    queued = asyncio.create_task(_gated_call(http, url, None))
    done, _ = await asyncio.wait({queued}, timeout=0.5)
    assert not done  # waits for the busy slot (with concurrency 2 it answers at once, see below)
    await _release(gate)
    assert (await blocked)["active"] == 1
    assert (await queued)["active"] == 1  # it only ran once the first invocation had finished


async def test_concurrency_setting_allows_parallel_invocations(
    start_runtime: StartRuntime, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = await start_runtime("gated", NANOFAAS_RUNTIME_CONCURRENCY="2")
    gate, entered = await _open_gate(tmp_path, "b")
    blocked = asyncio.create_task(_gated_call(http, url, gate))
    await entered()
    assert (await _gated_call(http, url, None))["active"] == 2  # ran beside the blocked one
    await _release(gate)
    assert (await blocked)["active"] == 1


async def test_invalid_concurrency_fails_start(handler_dir: Path) -> None:
    server = await ServerProcess.start(
        runtime_command(),
        env=handler_env(handler_dir, "funcs", "echo", NANOFAAS_RUNTIME_CONCURRENCY="0"),
        port=free_port(),
    )
    assert await server.wait_exit() == 2
    await server.stop()
    expected = "NANOFAAS_RUNTIME_CONCURRENCY: must be an integer between 1 and 10000 (got '0')"
    assert expected in server.stderr_tail()


async def test_serves_an_inherited_listening_socket(handler_dir: Path, http: aiohttp.ClientSession) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = handler_env(handler_dir, "funcs", "echo", NANOFAAS_LISTEN_FD=str(listener.fileno()))
        server = await ServerProcess.start(
            runtime_command(), env=env, port=port, pass_fds=[listener.fileno()]
        )
        try:
            await server.wait_ready(30)
            status, _, raw = await post(http, f"http://127.0.0.1:{port}", b'{"input": "fd"}')
            assert status == 200
            assert orjson.loads(raw)["input"] == "fd"
        finally:
            await server.stop()


async def test_a_single_use_process_exports_its_invocation_into_the_environment(
    start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    url = await start_runtime("invocation_environment", NANOFAAS_SINGLE_USE="1")
    headers = {"X-Execution-Id": "e-9", "X-Attempt": "3", "X-Trace-Id": "t-9"}
    status, _, body = await post(http, url, b'{"input": null}', **headers)
    assert status == 200
    assert orjson.loads(body) == {"EXECUTION_ID": "e-9", "NANOFAAS_ATTEMPT": "3", "TRACE_ID": "t-9"}
