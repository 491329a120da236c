"""Invocation semantics through REST: errors, deadlines, backpressure, async, idempotency, traces."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
from multidict import CIMultiDict

from .helpers import command_spec, enqueue, get_execution, invoke, python_spec, register, wait_terminal


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_handler_exception_is_502_function_error_not_retried(
    http: aiohttp.ClientSession, fn_name: str
) -> None:
    await register(http, python_spec(fn_name, "fail", maxRetries=3))
    status, headers, body = await invoke(http, fn_name, "bad")
    assert status == 502
    assert body["status"] == "error"
    assert body["error"]["code"] == "FUNCTION_ERROR"
    assert "boom: bad" in body["error"]["message"]
    assert headers["X-Execution-Id"] == body["executionId"]
    execution = await wait_terminal(http, body["executionId"])
    assert execution["attempts"] == 1


async def test_nonzero_exit_is_function_error_with_stderr(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, command_spec(fn_name, "stdio_echo.py", runtimeMode="STDIO"))
    status, _, body = await invoke(http, fn_name, {"fail": "disk on fire"})
    assert status == 502
    assert body["error"]["code"] == "FUNCTION_ERROR"
    assert "something went wrong: disk on fire" in body["error"]["message"]


async def test_crash_is_retried_and_succeeds(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: Path
) -> None:
    marker = tmp_path / "crashed-once"
    await register(
        http,
        command_spec(fn_name, "stdio_echo.py", runtimeMode="STDIO", env={"CRASH_ONCE_MARKER": str(marker)}),
    )
    status, headers, body = await invoke(http, fn_name, {"ok": True})
    assert status == 200, body
    assert marker.exists()
    execution = await wait_terminal(http, headers["X-Execution-Id"])
    assert execution["attempts"] == 2


async def test_failed_start_is_retried_then_error(http: aiohttp.ClientSession, fn_name: str) -> None:
    spec = {"name": fn_name, "image": "x", "command": ["/nonexistent/binary"], "maxRetries": 1}
    await register(http, spec)
    status, headers, body = await invoke(http, fn_name, 1)
    assert status == 502
    assert body["status"] == "error"
    execution = await wait_terminal(http, headers["X-Execution-Id"])
    assert execution["attempts"] == 2


async def test_timeout_is_408_and_kills_the_process(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    await register(
        http, python_spec(fn_name, "sleep", timeoutMs=1500, maxRetries=3, env={"PID_FILE": str(pid_file)})
    )
    status, headers, body = await invoke(http, fn_name, 60)
    assert status == 408
    assert body["status"] == "timeout"
    assert body["error"]["code"] == "TIMEOUT"
    assert headers["X-Execution-Id"] == body["executionId"]
    pid = int(pid_file.read_text())
    for _ in range(200):
        if not pid_alive(pid):
            break
        await asyncio.sleep(0.01)
    assert not pid_alive(pid)
    execution = await wait_terminal(http, body["executionId"])
    assert execution["status"] == "timeout"
    assert execution["attempts"] == 1


async def test_x_timeout_ms_lowers_the_deadline(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "sleep", executionMode="WARM", timeoutMs=60000))
    status, _, body = await invoke(http, fn_name, 30, headers={"X-Timeout-Ms": "300"})
    assert status == 408
    assert body["status"] == "timeout"


async def test_bad_x_timeout_ms_is_400(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo"))
    for value in ("0", "300001", "soon"):
        status, _, body = await invoke(http, fn_name, 1, headers={"X-Timeout-Ms": value})
        assert status == 400, value
        assert "X-Timeout-Ms" in body["error"]["message"]


async def test_body_over_limit_is_413(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo"))
    big = b"x" * (10 * 1024 * 1024 + 1)
    for action in ("invoke", "enqueue"):
        async with http.post(
            f"/v1/functions/{fn_name}:{action}",
            data=big,
            headers={"Content-Type": "application/octet-stream"},
        ) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"]


async def test_invalid_invocation_body_is_400(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo"))
    for data in (b"{not json", b"[1, 2]", b'{"input": 1, "metadata": {"k": 1}}'):
        async with http.post(
            f"/v1/functions/{fn_name}:invoke", data=data, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 400, data
            assert (await response.json())["error"]["message"]


async def test_full_queue_is_429_with_retry_after(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "sleep", executionMode="WARM", concurrency=1, queueSize=1))
    accepted = []
    rejected = None
    for _ in range(4):
        async with http.post(f"/v1/functions/{fn_name}:enqueue", json={"input": 0.5}) as response:
            if response.status == 202:
                accepted.append((await response.json())["executionId"])
            else:
                rejected = response.status, CIMultiDict(response.headers), await response.json()
                break
    assert rejected is not None
    status, headers, body = rejected
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    assert headers["X-Queue-Reject-Reason"] == "depth"
    assert body["error"]["code"]
    sync_status, sync_headers, _ = await invoke(http, fn_name, 0.1)
    assert sync_status == 429
    assert "Retry-After" in sync_headers
    for execution_id in accepted:
        assert (await wait_terminal(http, execution_id))["status"] == "success"


async def test_enqueue_then_poll_to_success(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", executionMode="WARM"))
    async with http.post(
        f"/v1/functions/{fn_name}:enqueue", json={"input": {"n": 1}}, headers={"X-Trace-Id": "trace-async"}
    ) as response:
        assert response.status == 202
        accepted = await response.json()
    assert accepted["status"] == "queued"
    execution = await wait_terminal(http, accepted["executionId"])
    assert execution["executionId"] == accepted["executionId"]
    assert execution["functionName"] == fn_name
    assert execution["status"] == "success"
    assert execution["attempts"] == 1
    assert execution["traceId"] == "trace-async"
    assert execution["output"]["input"] == {"n": 1}
    assert execution["enqueuedAt"] <= execution["startedAt"] <= execution["finishedAt"]
    assert "error" not in execution or execution["error"] is None


async def test_failed_async_execution_records_error(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "fail"))
    execution = await wait_terminal(http, await enqueue(http, fn_name, "x"))
    assert execution["status"] == "error"
    assert execution["error"]["code"] == "FUNCTION_ERROR"


async def test_unknown_execution_is_404(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/executions/no-such-execution") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"]


async def test_complete_callback_needs_the_attempts_token(http: aiohttp.ClientSession, fn_name: str) -> None:
    """Knowing an execution id is not enough to end it (issue 17, finding 2; docs/security.md)."""
    await register(http, python_spec(fn_name, "sleep", executionMode="WARM", concurrency=1))
    running = await enqueue(http, fn_name, 0.5)
    queued = await enqueue(http, fn_name, 0.5)
    forged = {"status": "success", "output": {"from": "callback"}}
    for headers, status in (({}, 401), ({"X-Completion-Token": "guess"}, 403)):
        async with http.post(
            f"/v1/internal/executions/{queued}:complete", json=forged, headers=headers
        ) as response:
            assert response.status == status
    async with http.post(
        "/v1/internal/executions/nope:complete", json=forged, headers={"X-Completion-Token": "guess"}
    ) as response:
        assert response.status == 404
    for execution_id in (running, queued):
        execution = await wait_terminal(http, execution_id)
        assert execution["status"] == "success"
        assert execution["output"] != {"from": "callback"}


async def test_idempotency_key_returns_same_execution_once(
    http: aiohttp.ClientSession, fn_name: str, tmp_path: Path
) -> None:
    count_file = tmp_path / "count"
    await register(http, python_spec(fn_name, "count", env={"COUNT_FILE": str(count_file)}))
    headers = {"Idempotency-Key": "order-42"}
    results = await asyncio.gather(*(invoke(http, fn_name, 1, headers=headers) for _ in range(3)))
    ids = {body["executionId"] for _, _, body in results}
    assert len(ids) == 1
    assert all(status == 200 for status, _, _ in results)
    status, _, again = await invoke(http, fn_name, 1, headers=headers)
    assert status == 200 and again["executionId"] in ids
    async with http.post(f"/v1/functions/{fn_name}:enqueue", json={"input": 1}, headers=headers) as response:
        assert (await response.json())["executionId"] in ids
    assert count_file.read_text().splitlines() == ["run"]
    _, _, other = await invoke(http, fn_name, 1, headers={"Idempotency-Key": "order-43"})
    assert other["executionId"] not in ids


async def test_trace_id_reaches_function_and_execution(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", executionMode="WARM"))
    status, headers, body = await invoke(http, fn_name, 1, headers={"X-Trace-Id": "abc-123"})
    assert status == 200
    assert body["output"]["traceId"] == "abc-123"
    assert (await get_execution(http, headers["X-Execution-Id"]))["traceId"] == "abc-123"
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    status, _, body = await invoke(http, fn_name, 1, headers={"traceparent": traceparent})
    assert status == 200
    assert body["output"]["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    _, _, body = await invoke(http, fn_name, 1)
    assert len(body["output"]["traceId"]) >= 16


async def test_metadata_reaches_the_handler(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo", executionMode="WARM"))
    async with http.post(
        f"/v1/functions/{fn_name}:invoke", json={"input": None, "metadata": {"tenant": "t1"}}
    ) as response:
        body = await response.json()
    assert body["output"]["metadata"] == {"tenant": "t1"}
    assert body["output"]["input"] is None


async def test_unrunnable_image_is_a_clear_error(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, {"name": fn_name, "image": "example/not-runnable-here:1"})
    status, _, body = await invoke(http, fn_name, 1)
    assert status == 502
    assert "command" in body["error"]["message"]


async def test_missing_handler_module_is_a_start_failure(http: aiohttp.ClientSession, fn_name: str) -> None:
    for mode in ("JOB", "WARM"):
        name = f"{fn_name}-{mode.lower()}"
        spec = python_spec(
            name, "echo", executionMode=mode, maxRetries=0, env={"HANDLER_MODULE": "no_such_module"}
        )
        await register(http, spec)
        status, _, body = await invoke(http, name, 1)
        assert status == 502, mode
        assert body["error"]["code"] == "START_FAILED", body
        assert "no_such_module" in body["error"]["message"], body
