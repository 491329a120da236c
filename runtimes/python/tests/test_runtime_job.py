"""Job mode as a real process, reporting to a real local HTTP callback receiver."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from nanofaas_runtime.job import (
    EXIT_CALLBACK_FAILED,
    CallbackFailed,
    RetryPolicy,
    callback_url,
    post_completion,
)
from nanofaas_runtime.watchdog.process import free_port

from .support import handler_env, runtime_command

REQUEST = '{"input": {"x": 1}, "metadata": {"m": "v"}}'
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, object]


@dataclass
class Receiver:
    """A callback endpoint answering `fail_status` to the first `failures` calls, then 204."""

    base_url: str = ""
    failures: int = 0
    fail_status: int = 503
    calls: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(Received(request.path, dict(request.headers), orjson.loads(await request.read())))
        if len(self.calls) <= self.failures:
            return web.Response(status=self.fail_status)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    state.base_url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def run_job(handler_dir: Path, function: str, module: str = "funcs", **env: str) -> tuple[int, str]:
    """Run `python -m nanofaas_runtime --mode job` to completion; (exit code, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *runtime_command("job"),
        env=handler_env(handler_dir, module, function, **env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def job_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {"EXECUTION_ID": "exec-42", "CALLBACK_URL": receiver.base_url, **extra}


async def test_success_posts_the_output_to_the_callback(handler_dir: Path, receiver: Receiver) -> None:
    code, stderr = await run_job(
        handler_dir,
        "echo",
        **job_env(
            receiver,
            NANOFAAS_REQUEST=REQUEST,
            TRACEPARENT=TRACEPARENT,
            FUNCTION_NAME="fn",
            INVOCATION_TIMEOUT_MS="30000",
            NANOFAAS_COMPLETION_TOKEN="attempt-secret",
        ),
    )
    assert code == 0, stderr
    assert "attempt-secret" not in stderr
    [call] = receiver.calls
    assert call.path == "/v1/internal/executions/exec-42:complete"
    assert call.headers["X-Completion-Token"] == "attempt-secret"  # the platform's proof of ownership
    assert call.headers["traceparent"] == TRACEPARENT
    assert call.headers["Content-Type"] == "application/json"
    assert call.body["status"] == "success"
    output = call.body["output"]
    assert isinstance(output, dict)
    assert output["input"] == {"x": 1}
    assert output["metadata"] == {"m": "v"}
    assert output["context"]["execution_id"] == "exec-42"
    assert output["context"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert output["context"]["function_name"] == "fn"
    assert isinstance(output["context"]["deadline"], float)


async def test_request_from_file_and_bytes_output_as_base64(
    handler_dir: Path, receiver: Receiver, tmp_path: Path
) -> None:
    request_file = tmp_path / "request.json"
    request_file.write_text(REQUEST)
    code, stderr = await run_job(
        handler_dir, "bytes_out", **job_env(receiver, NANOFAAS_REQUEST_FILE=str(request_file))
    )
    assert code == 0, stderr
    [call] = receiver.calls
    assert call.body["status"] == "success"
    assert call.body["outputContentType"] == "application/octet-stream"
    assert isinstance(call.body["output"], str)
    assert base64.b64decode(call.body["output"]) == b"\x00\x01raw"


async def test_async_handler(handler_dir: Path, receiver: Receiver) -> None:
    code, _ = await run_job(handler_dir, "async_echo", **job_env(receiver, NANOFAAS_REQUEST=REQUEST))
    assert code == 0
    assert receiver.calls[0].body["output"] == {
        "async": {"x": 1},
        "context": {
            "execution_id": "exec-42",
            "trace_id": "",
            "function_name": "",
            "deadline": None,
            "metadata": {},
            "attempt": 0,
        },
    }


async def test_attempt_is_sent_back_with_every_kind_of_report(handler_dir: Path, receiver: Receiver) -> None:
    code, _ = await run_job(
        handler_dir, "async_echo", **job_env(receiver, NANOFAAS_REQUEST=REQUEST, NANOFAAS_ATTEMPT="3")
    )
    assert code == 0
    [call] = receiver.calls
    assert call.body["attempt"] == 3
    output = call.body["output"]
    assert isinstance(output, dict)
    assert output["context"]["attempt"] == 3  # the handler sees it too

    attempt_env = job_env(receiver, NANOFAAS_REQUEST=REQUEST, NANOFAAS_ATTEMPT="2")
    assert (await run_job(handler_dir, "bytes_out", **attempt_env))[0] == 0
    assert (await run_job(handler_dir, "fail", **attempt_env))[0] == 1
    assert (await run_job(handler_dir, "handle", module="no_such_module", **attempt_env))[0] == 3
    bytes_out, failed, not_loaded = (call.body for call in receiver.calls[1:])
    assert (bytes_out["attempt"], bytes_out["outputContentType"]) == (2, "application/octet-stream")
    assert failed == {
        "status": "error",
        "attempt": 2,
        "error": {"code": "FUNCTION_ERROR", "message": "boom: {'x': 1}", "type": "ValueError"},
    }
    assert (not_loaded["status"], not_loaded["attempt"]) == ("error", 2)


async def test_invalid_attempt_exits_2_without_a_report(handler_dir: Path, receiver: Receiver) -> None:
    code, stderr = await run_job(
        handler_dir, "echo", **job_env(receiver, NANOFAAS_REQUEST=REQUEST, NANOFAAS_ATTEMPT="second")
    )
    assert code == 2
    assert "NANOFAAS_ATTEMPT must be a non-negative integer, got 'second'" in stderr
    assert receiver.calls == []


async def test_receiver_failing_twice_then_accepting(handler_dir: Path, receiver: Receiver) -> None:
    receiver.failures = 2
    code, stderr = await run_job(handler_dir, "one_arg", **job_env(receiver, NANOFAAS_REQUEST=REQUEST))
    assert code == 0, stderr
    assert len(receiver.calls) == 3
    assert all(call.body == {"status": "success", "output": {"only": {"x": 1}}} for call in receiver.calls)


async def test_handler_error_is_reported_and_exits_1(handler_dir: Path, receiver: Receiver) -> None:
    code, stderr = await run_job(handler_dir, "fail", **job_env(receiver, NANOFAAS_REQUEST=REQUEST))
    assert code == 1
    assert stderr.strip().endswith("boom: {'x': 1}")
    [call] = receiver.calls
    assert call.body == {
        "status": "error",
        "error": {"code": "FUNCTION_ERROR", "message": "boom: {'x': 1}", "type": "ValueError"},
    }


async def test_404_is_final_and_exits_4(handler_dir: Path, receiver: Receiver) -> None:
    receiver.failures, receiver.fail_status = 100, 404
    code, stderr = await run_job(handler_dir, "echo", **job_env(receiver, NANOFAAS_REQUEST=REQUEST))
    assert code == EXIT_CALLBACK_FAILED
    assert len(receiver.calls) == 1
    assert "HTTP 404" in stderr


async def test_unreachable_callback_exits_4(handler_dir: Path) -> None:
    code, stderr = await run_job(
        handler_dir,
        "echo",
        EXECUTION_ID="e",
        CALLBACK_URL=f"http://127.0.0.1:{free_port()}",
        NANOFAAS_REQUEST=REQUEST,
    )
    assert code == EXIT_CALLBACK_FAILED
    assert "callback failed after 5 attempt(s)" in stderr


async def test_missing_handler_reports_start_failure(handler_dir: Path, receiver: Receiver) -> None:
    code, stderr = await run_job(
        handler_dir, "handle", module="no_such_module", **job_env(receiver, NANOFAAS_REQUEST=REQUEST)
    )
    assert code == 3
    assert "no_such_module" in stderr
    [call] = receiver.calls
    error = call.body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "START_FAILED"
    assert "not found on PYTHONPATH" in error["message"]


@pytest.mark.parametrize(
    ("request_env", "message"),
    [
        ({}, "neither NANOFAAS_REQUEST nor NANOFAAS_REQUEST_FILE is set"),
        ({"NANOFAAS_REQUEST": "{oops"}, "request is not valid JSON"),
        ({"NANOFAAS_REQUEST_FILE": "/nonexistent/request.json"}, "cannot read NANOFAAS_REQUEST_FILE"),
    ],
)
async def test_bad_request_is_reported_and_exits_2(
    handler_dir: Path, receiver: Receiver, request_env: dict[str, str], message: str
) -> None:
    code, stderr = await run_job(handler_dir, "echo", **job_env(receiver, **request_env))
    assert code == 2
    assert message in stderr
    [call] = receiver.calls
    error = call.body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "INVALID_REQUEST"
    assert message in error["message"]


async def test_without_callback_url_exits_2(handler_dir: Path) -> None:
    code, stderr = await run_job(handler_dir, "echo", EXECUTION_ID="e", NANOFAAS_REQUEST=REQUEST)
    assert code == 2
    assert "needs EXECUTION_ID and CALLBACK_URL" in stderr


def test_callback_url_quotes_the_execution_id() -> None:
    assert (
        callback_url("http://gw:8080/", "a/b c") == "http://gw:8080/v1/internal/executions/a%2Fb%20c:complete"
    )
    assert (
        callback_url("http://gw:8080/base", "e1") == "http://gw:8080/base/v1/internal/executions/e1:complete"
    )


def test_post_completion_rejects_a_non_http_url() -> None:
    with pytest.raises(CallbackFailed, match="must be an http"):
        post_completion("ftp://x/y", b"{}", {}, RetryPolicy(attempts=1))
