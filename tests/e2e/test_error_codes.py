"""Every error code the platform produces, reached through REST against the real services.

Each path below provokes one failure the way a client (or a function) would and
returns the codes it saw, in REST error bodies or on executions. The tests check
that each path produces what it should, that every code produced is a value of
ErrorCode (proto/nanofaas/v1/types.proto), and that every ErrorCode value is
produced by some path, except the few listed in NOT_REACHABLE_FROM_REST.
docs/errors.md describes each code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from nanofaas.v1 import types_pb2

from .conftest import Platform, start_platform, stop_platform
from .helpers import FUNCTIONS_DIR, command_spec, free_port, invoke, python_spec, register

ENUM_CODES = frozenset(
    name.removeprefix("ERROR_CODE_")
    for name, value in types_pb2.ErrorCode.items()
    if value != types_pb2.ERROR_CODE_UNSPECIFIED
)
# Codes no REST request can produce, each with the unit tests that produce it instead.
NOT_REACHABLE_FROM_REST = {
    # A fault of the platform itself: by design no request causes one (a request that did
    # would be a bug, found and fixed, like endpoint hosts that failed IDNA encoding).
    # services/gateway/tests/test_gateway_http.py::test_unhandled_exception_is_generic_json_500,
    # services/gateway/tests/test_gateway_invocations.py::test_unexpected_grpc_error_is_generic_500
    # and ::test_failed_execution_is_invocation_response (an execution that ended INTERNAL: 500).
    "INTERNAL",
}
WAIT_S = 30.0
BUSY_S = 5  # how long a "busy" invocation holds a function's only slot

Http = aiohttp.ClientSession
Path_ = Callable[[Http, Platform, str, Path], Awaitable[set[str]]]


def code_of(body: dict[str, Any]) -> str:
    return str(body["error"]["code"])


async def request(http: Http, method: str, url: str, **options: Any) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url, **options) as response:
        return response.status, await response.json()


async def wait_terminal(http: Http, execution_id: str) -> dict[str, Any]:
    """Poll the execution like a client would, until it has ended."""
    async with asyncio.timeout(WAIT_S):
        while True:
            status, body = await request(http, "GET", f"/v1/executions/{execution_id}")
            assert status == 200, body
            if body["status"] in ("success", "error", "timeout"):
                return body
            await asyncio.sleep(0.02)


async def poll(found: Callable[[], Any]) -> Any:
    """Wait for another process's trace (a file it writes, a log line): no event crosses processes."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if result := found():
                return result
            await asyncio.sleep(0.02)


async def enqueue(http: Http, name: str, value: Any, headers: dict[str, str] | None = None) -> str:
    status, body = await request(
        http, "POST", f"/v1/functions/{name}:enqueue", json={"input": value}, headers=headers
    )
    assert status == 202, body
    return str(body["executionId"])


async def busy_function(http: Http, name: str) -> str:
    """A function whose only slot is held for BUSY_S, so what is enqueued next stays queued."""
    await register(http, python_spec(name, "sleep", executionMode="WARM", concurrency=1))
    return await enqueue(http, name, BUSY_S)


# -- request errors ---------------------------------------------------------------------


async def invalid_argument(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """A value the registry refuses, a header the scheduler refuses, a body that is no JSON."""
    status, spec_body = await request(
        http, "POST", "/v1/functions", json={"name": name, "image": "x", "concurrency": 0}
    )
    assert (status, spec_body["error"]["message"]) == (400, "concurrency: must be between 1 and 10000")
    await register(http, python_spec(name, "echo"))
    status, _, header_body = await invoke(http, name, 1, headers={"X-Timeout-Ms": "0"})
    assert (status, header_body["error"]["message"]) == (400, "X-Timeout-Ms: must be between 1 and 300000")
    status, json_body = await request(
        http,
        "POST",
        f"/v1/functions/{name}:invoke",
        data=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    return {code_of(spec_body), code_of(header_body), code_of(json_body)}


async def validation_error(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    status, body = await request(http, "POST", "/v1/functions", json={"name": name, "image": 5})
    assert status == 422
    assert body["error"]["message"].startswith("image:")
    return {code_of(body)}


async def not_found(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    answers = [
        await request(http, "GET", f"/v1/functions/{name}"),
        await request(http, "POST", f"/v1/functions/{name}:invoke", json={"input": 1}),
        await request(http, "GET", f"/v1/executions/{name}"),
        await request(http, "GET", "/v1/no-such-route"),
    ]
    assert {status for status, _ in answers} == {404}
    return {code_of(body) for _, body in answers}


async def already_exists(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await register(http, {"name": name, "image": "x"})
    status, body = await request(http, "POST", "/v1/functions", json={"name": name, "image": "x"})
    assert status == 409
    return {code_of(body)}


async def method_not_allowed(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    status, body = await request(http, "PATCH", "/v1/functions")
    assert status == 405
    return {code_of(body)}


async def payload_too_large(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await register(http, python_spec(name, "echo"))
    big = b"x" * (10 * 1024 * 1024 + 1)  # the platform's default body limit, plus one
    status, body = await request(
        http,
        "POST",
        f"/v1/functions/{name}:enqueue",
        data=big,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 413
    return {code_of(body)}


async def unsupported_media_type(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await register(http, python_spec(name, "echo"))
    status, body = await request(
        http, "POST", f"/v1/functions/{name}:invoke", data=b"hi", headers={"Content-Type": "text/plain"}
    )
    assert status == 415
    return {code_of(body)}


async def resource_exhausted(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await register(http, python_spec(name, "echo", rateLimitPerSecond=0.01))
    await enqueue(http, name, 1)
    async with http.post(f"/v1/functions/{name}:enqueue", json={"input": 2}) as response:
        assert response.status == 429
        assert response.headers["X-Queue-Reject-Reason"] == "rate"
        assert int(response.headers["Retry-After"]) >= 1
        return {code_of(await response.json())}


# -- how executions end -----------------------------------------------------------------


async def function_error(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await register(http, python_spec(name, "fail"))
    status, _, body = await invoke(http, name, "x")
    assert status == 502
    return {code_of(body)}


async def timeout(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await register(http, python_spec(name, "sleep", executionMode="WARM", timeoutMs=60_000))
    status, _, body = await invoke(http, name, 30, headers={"X-Timeout-Ms": "500"})
    assert (status, body["status"]) == (408, "timeout")
    return {code_of(body)}


async def crash(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """The process kills itself (SIGKILL); with maxRetries 0 the crash is the outcome."""
    marker = tmp / f"{name}-crashed"
    spec = command_spec(
        name, "stdio_echo.py", runtimeMode="STDIO", maxRetries=0, env={"CRASH_ONCE_MARKER": str(marker)}
    )
    await register(http, spec)
    status, _, body = await invoke(http, name, {"ok": True})
    assert status == 502
    assert marker.exists()
    return {code_of(body)}


async def start_failed(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await register(http, {"name": name, "image": "x", "command": ["/nonexistent/binary"], "maxRetries": 0})
    status, _, body = await invoke(http, name, 1)
    assert status == 502
    return {code_of(body)}


async def unrunnable_function(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await register(http, {"name": name, "image": "example/not-runnable-here:1"})
    status, _, body = await invoke(http, name, 1)
    assert status == 502
    return {code_of(body)}


async def invalid_endpoint(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """A syntactically fine URL the HTTP client refuses (no IPv4 address has five parts)."""
    await register(http, {"name": name, "image": "x", "endpointUrl": "http://1.2.3.4.5/invoke"})
    status, _, body = await invoke(http, name, 1)
    assert status == 502
    return {code_of(body)}


async def output_too_large(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """An endpoint declaring a body over the output limit (32 MiB): refused unread."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await register(http, {"name": name, "image": "x", "endpointUrl": f"http://127.0.0.1:{port}/"})
        status, _, body = await invoke(http, name, 1)
    assert status == 502
    return {code_of(body)}


async def headers_too_large(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    async with aiohttp.ClientSession(base_url=platform.base_url) as fresh:
        status, body = await request(fresh, "GET", "/v1/functions", headers={"X-Big": "b" * 40_000})
    assert status == 431
    return {code_of(body)}


async def uri_too_long(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    async with aiohttp.ClientSession(base_url=platform.base_url) as fresh:
        status, body = await request(fresh, "GET", "/v1/functions/" + "u" * 10_000)
    assert status == 414
    return {code_of(body)}


async def url_not_allowed(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """A callback to the cloud metadata address (the e2e platform denies link-local addresses)."""
    await register(http, python_spec(name, "echo"))
    headers = {"X-Callback-Url": "http://169.254.169.254/latest/meta-data"}
    status, body = await request(http, "POST", f"/v1/functions/{name}:enqueue", json={}, headers=headers)
    assert status == 400
    return {code_of(body)}


async def function_deleted(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    await busy_function(http, name)
    queued = await enqueue(http, name, 0)
    async with http.delete(f"/v1/functions/{name}") as response:
        assert response.status == 204
    execution = await wait_terminal(http, queued)
    assert execution["status"] == "error"
    return {code_of(execution)}


async def cancelled(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """A sync caller gives up while its invocation is queued; nobody is left to read the answer,
    so the code is read from the scheduler's "execution ended" log line."""
    await busy_function(http, name)
    trace_id = f"cancel-{uuid.uuid4().hex}"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.5):
            await invoke(http, name, 0, headers={"X-Trace-Id": trace_id})

    def ended_line() -> dict[str, Any] | None:
        for line in platform.logs("scheduler").splitlines():
            if trace_id in line and '"execution ended"' in line:
                return dict(json.loads(line))
        return None

    return {str((await poll(ended_line))["errorCode"])}


async def invalid_request(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """The real job runtime (what a Kubernetes Job runs) finds no request and reports it by callback.

    It reports the attempt of an ENDPOINT served here, with the completion token that
    attempt's invocation carried (docs/security.md): only that attempt's runtime may.
    """
    invoked: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    reported = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        await invoked.put(dict(request.headers))
        with contextlib.suppress(TimeoutError):  # the report ends the attempt: this call is dropped
            await asyncio.wait_for(reported.wait(), WAIT_S)
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/invoke", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await register(http, {"name": name, "image": "x", "endpointUrl": f"http://127.0.0.1:{port}/invoke"})
        running = await enqueue(http, name, 0)
        headers = await asyncio.wait_for(invoked.get(), WAIT_S)
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(FUNCTIONS_DIR),
            "HANDLER_MODULE": "handlers",
            "HANDLER_FUNCTION": "echo",
            "EXECUTION_ID": running,
            "NANOFAAS_ATTEMPT": headers["X-Attempt"],
            "NANOFAAS_COMPLETION_TOKEN": headers["X-Completion-Token"],
            "CALLBACK_URL": platform.base_url,
        }
        job = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nanofaas_runtime", "--mode", "job", env=env, stderr=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(WAIT_S):
            _, stderr = await job.communicate()
        assert job.returncode == 2, stderr  # bad request or environment, reported to the platform
        execution = await wait_terminal(http, running)
    finally:
        reported.set()
        await runner.cleanup()
    assert execution["status"] == "error"
    return {code_of(execution)}


async def shutting_down(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """SIGTERM to the scheduler of a platform of its own: refused admissions, readiness, then gone."""
    own = await asyncio.to_thread(start_platform, tmp / "shutdown", NANOFAAS_SHUTDOWN_GRACE_S="20")
    codes: set[str] = set()
    try:
        async with aiohttp.ClientSession(base_url=own.base_url) as own_http:
            pid_file = tmp / "shutdown-running"
            spec = python_spec(
                name, "sleep", executionMode="WARM", concurrency=1, env={"PID_FILE": str(pid_file)}
            )
            await register(own_http, spec)
            inflight = asyncio.create_task(invoke(own_http, name, 3))  # keeps the scheduler up
            await poll(pid_file.exists)  # written by the handler as it starts
            queued = await enqueue(own_http, name, 0)
            scheduler = own.processes["scheduler"]
            scheduler.send_signal(signal.SIGTERM)
            execution = await wait_terminal(own_http, queued)
            codes.add(code_of(execution))
            status, _, refused = await invoke(own_http, name, 0)
            assert status == 503
            codes.add(code_of(refused))
            status, not_ready = await request(own_http, "GET", "/readyz")
            assert status == 503
            codes.add(code_of(not_ready))
            status, _, _ = await inflight
            assert status == 200
            assert await asyncio.to_thread(scheduler.wait, WAIT_S) == 0
            status, _, gone = await invoke(own_http, name, 0)  # nobody answers at the scheduler's address
            assert status == 503
            codes.add(code_of(gone))
    finally:
        await asyncio.to_thread(stop_platform, own)
    return codes


async def unauthenticated(http: Http, platform: Platform, name: str, tmp: Path) -> set[str]:
    """A completion without the attempt's token, then with a made-up one (docs/security.md)."""
    running = await busy_function(http, name)
    url = f"/v1/internal/executions/{running}:complete"
    body = {"status": "success", "output": {"forged": True}}
    status, missing = await request(http, "POST", url, json=body)
    assert status == 401, missing
    status, wrong = await request(http, "POST", url, json=body, headers={"X-Completion-Token": "forged"})
    assert status == 403, wrong
    return {code_of(missing), code_of(wrong)}


# (path, the codes it must produce)
PATHS: dict[str, tuple[Path_, set[str]]] = {
    "invalid_argument": (invalid_argument, {"INVALID_ARGUMENT"}),
    "validation_error": (validation_error, {"VALIDATION_ERROR"}),
    "not_found": (not_found, {"NOT_FOUND"}),
    "already_exists": (already_exists, {"ALREADY_EXISTS"}),
    "method_not_allowed": (method_not_allowed, {"METHOD_NOT_ALLOWED"}),
    "payload_too_large": (payload_too_large, {"PAYLOAD_TOO_LARGE"}),
    "unsupported_media_type": (unsupported_media_type, {"UNSUPPORTED_MEDIA_TYPE"}),
    "resource_exhausted": (resource_exhausted, {"RESOURCE_EXHAUSTED"}),
    "function_error": (function_error, {"FUNCTION_ERROR"}),
    "timeout": (timeout, {"TIMEOUT"}),
    "crash": (crash, {"CRASH"}),
    "start_failed": (start_failed, {"START_FAILED"}),
    "unrunnable_function": (unrunnable_function, {"UNRUNNABLE_FUNCTION"}),
    "invalid_endpoint": (invalid_endpoint, {"INVALID_ENDPOINT"}),
    "function_deleted": (function_deleted, {"FUNCTION_DELETED"}),
    "cancelled": (cancelled, {"CANCELLED"}),
    "invalid_request": (invalid_request, {"INVALID_REQUEST"}),
    "shutting_down": (shutting_down, {"SHUTTING_DOWN", "UNAVAILABLE"}),
    "unauthenticated": (unauthenticated, {"UNAUTHENTICATED", "PERMISSION_DENIED"}),
    "output_too_large": (output_too_large, {"OUTPUT_TOO_LARGE"}),
    "headers_too_large": (headers_too_large, {"HEADERS_TOO_LARGE"}),
    "uri_too_long": (uri_too_long, {"URI_TOO_LONG"}),
    "url_not_allowed": (url_not_allowed, {"URL_NOT_ALLOWED"}),
}
# What each path produced in this session, so the coverage check runs only what is missing.
PRODUCED: dict[str, set[str]] = {}


async def run_path(path: str, http: Http, platform: Platform, tmp: Path) -> set[str]:
    produce, expected = PATHS[path]
    name = f"codes-{path.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    codes = await produce(http, platform, name, tmp)
    PRODUCED[path] = codes
    assert codes <= ENUM_CODES, f"{path} produced codes ErrorCode does not list: {codes - ENUM_CODES}"
    assert codes == expected, path
    return codes


@pytest.mark.parametrize("path", list(PATHS))
async def test_failure_path_produces_its_error_code(
    path: str, http: Http, platform: Platform, tmp_path: Path
) -> None:
    await run_path(path, http, platform, tmp_path)


async def test_every_error_code_is_produced_by_some_path(
    http: Http, platform: Platform, tmp_path: Path
) -> None:
    assert NOT_REACHABLE_FROM_REST <= ENUM_CODES, "the allow-list names a code ErrorCode does not have"
    for path in PATHS.keys() - PRODUCED.keys():  # run alone, or after a failed path
        await run_path(path, http, platform, tmp_path)
    produced = set().union(*PRODUCED.values())
    assert produced <= ENUM_CODES
    assert not produced & NOT_REACHABLE_FROM_REST, "an allow-listed code is reachable: take it off the list"
    assert ENUM_CODES - NOT_REACHABLE_FROM_REST - produced == set(), "no path produces these codes"
