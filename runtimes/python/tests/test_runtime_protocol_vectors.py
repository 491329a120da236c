"""The function side replays the protocol's golden vectors (proto/function-protocol/vectors.json).

Every `requests` vector is sent as its exact `http` request to a real runtime
server whose handler reports what it received (`handlerRequest`), and through a
real watchdog to a command that reports its stdin and environment. Every
`responses` vector with a `handler` is produced by a real runtime server, and
every one with a `command` by a real watchdog process running a small command
doing that; both must answer exactly the vector's `response`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from nanofaas_runtime.watchdog.process import free_port

from .server_process import ServerProcess
from .support import handler_env, python_command, runtime_command

REPO_ROOT = Path(__file__).resolve().parents[3]
VECTORS: dict[str, Any] = orjson.loads((REPO_ROOT / "proto/function-protocol/vectors.json").read_bytes())
REQUESTS: list[dict[str, Any]] = VECTORS["requests"]
HANDLER_RESPONSES = [vector for vector in VECTORS["responses"] if "handler" in vector]
COMMAND_RESPONSES = [vector for vector in VECTORS["responses"] if "command" in vector]
# A deadline the watchdog kills a sleeping command at; generous next to a Python start-up.
SHORT_DEADLINE_MS = 1500

StartWatchdog = Callable[..., Awaitable[ServerProcess]]
StartRuntime = Callable[[str], Awaitable[str]]


def _names(vectors: list[dict[str, Any]]) -> list[str]:
    return [vector["name"] for vector in vectors]


def test_every_function_side_behaviour_is_replayed() -> None:
    """Guards the selection above: a vector the function side must produce is never skipped."""
    assert VECTORS["version"] == 1
    assert len(REQUESTS) >= 3
    assert {"returns", "returnsBase64", "raises"} <= {key for v in HANDLER_RESPONSES for key in v["handler"]}
    command_keys = {key for v in COMMAND_RESPONSES for key in v["command"]}
    assert {"stdout", "stderr", "exit", "signal", "argv", "sleepPastDeadline"} <= command_keys


@pytest.fixture
async def start_runtime(handler_dir: Path) -> AsyncIterator[StartRuntime]:
    """Start `python -m nanofaas_runtime` serving funcs.<function>; returns its base URL."""
    servers: list[ServerProcess] = []

    async def start(function: str) -> str:
        env = handler_env(handler_dir, "funcs", function)
        server = await ServerProcess.start(runtime_command(), env=env, port=free_port())
        servers.append(server)
        await server.wait_ready(30)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.stop()


def _body(message: dict[str, Any]) -> bytes:
    if "bodyBase64" in message:
        return base64.b64decode(message["bodyBase64"])
    body: str = message["body"]
    return body.encode()


async def _send(
    http: aiohttp.ClientSession, base_url: str, request: dict[str, Any], **override: str
) -> tuple[int, str | None, bytes]:
    """Send a vector's `http` request exactly (headers as given, `override` replacing some)."""
    headers = {**request["headers"], **override}
    async with http.request(
        request["method"], base_url + request["path"], data=_body(request), headers=headers
    ) as response:
        return response.status, response.headers.get("Content-Type"), await response.read()


def _future_deadline(milliseconds: int = 30_000) -> str:
    return str(int(time.time() * 1000) + milliseconds)


def _assert_json(actual: Any, expected: Any) -> None:
    """Equality, except that `messageStartsWith` in an expected object matches a `message` prefix."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), actual
        prefix = expected.get("messageStartsWith")
        wanted = {key for key in expected if key != "messageStartsWith"} | ({"message"} if prefix else set())
        assert set(actual) == wanted, actual
        if prefix is not None:
            assert actual["message"].startswith(prefix), actual["message"]
        for key, value in expected.items():
            if key != "messageStartsWith":
                _assert_json(actual[key], value)
    else:
        assert actual == expected


def _assert_response(expected: dict[str, Any], status: int, content_type: str | None, body: bytes) -> None:
    assert status == expected["status"], body
    media_type = content_type.split(";")[0].strip() if content_type else None
    assert media_type == expected["contentType"]
    if "json" in expected:
        _assert_json(orjson.loads(body), expected["json"])
    else:
        assert body == _body(expected)


@pytest.mark.parametrize("vector", REQUESTS, ids=_names(REQUESTS))
async def test_runtime_handler_receives_the_handler_request(
    vector: dict[str, Any], start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    url = await start_runtime("report")
    status, _, raw = await _send(http, url, vector["http"])
    assert status == 200, raw
    received = orjson.loads(raw)
    assert received["request"] == vector["handlerRequest"]
    headers = vector["http"]["headers"]
    context = received["context"]
    assert context["execution_id"] == headers["X-Execution-Id"]
    assert context["trace_id"] == headers["X-Trace-Id"]
    assert context["function_name"] == headers["X-Function-Name"]
    assert context["attempt"] == int(headers["X-Attempt"])
    assert context["deadline"] == int(headers["X-Deadline-Ms"]) / 1000


_REPORT_STDIN_AND_ENV = """
    import base64, json, os, sys
    names = ("EXECUTION_ID", "TRACE_ID", "TRACEPARENT", "FUNCTION_NAME", "NANOFAAS_ATTEMPT")
    print(json.dumps({
        "stdinBase64": base64.b64encode(sys.stdin.buffer.read()).decode(),
        "env": {name: os.environ[name] for name in names if name in os.environ},
    }))
"""


@pytest.mark.parametrize("vector", REQUESTS, ids=_names(REQUESTS))
async def test_watchdog_command_gets_the_body_as_sent_and_the_headers_as_env(
    vector: dict[str, Any], start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    server = await start_watchdog(python_command(_REPORT_STDIN_AND_ENV))
    # The vectors' deadlines are fixed instants, long past by now: the watchdog would not start the command.
    request = vector["http"]
    status, _, raw = await _send(
        http, f"http://127.0.0.1:{server.port}", request, **{"X-Deadline-Ms": _future_deadline()}
    )
    assert status == 200, raw
    received = orjson.loads(raw)
    assert base64.b64decode(received["stdinBase64"]) == _body(request)
    headers = request["headers"]
    expected_env = {
        "EXECUTION_ID": headers["X-Execution-Id"],
        "TRACE_ID": headers["X-Trace-Id"],
        "FUNCTION_NAME": headers["X-Function-Name"],
        "NANOFAAS_ATTEMPT": headers["X-Attempt"],
    }
    if "traceparent" in headers:
        expected_env["TRACEPARENT"] = headers["traceparent"]
    assert received["env"] == expected_env


JSON_REQUESTS = [
    vector for vector in REQUESTS if vector["http"]["headers"]["Content-Type"] == "application/json"
]


@pytest.mark.parametrize("vector", JSON_REQUESTS, ids=_names(JSON_REQUESTS))
async def test_watchdog_around_the_runtime_stdio_mode_gives_the_handler_request(
    vector: dict[str, Any], start_watchdog: StartWatchdog, http: aiohttp.ClientSession, handler_dir: Path
) -> None:
    """The image path of a STDIO function: watchdog -> `nanofaas-runtime --mode stdio` -> handler."""
    env = handler_env(handler_dir, "funcs", "report")
    server = await start_watchdog(runtime_command("stdio"), **env)
    request = vector["http"]
    status, _, raw = await _send(
        http, f"http://127.0.0.1:{server.port}", request, **{"X-Deadline-Ms": _future_deadline()}
    )
    assert status == 200, raw
    received = orjson.loads(raw)
    assert received["request"] == vector["handlerRequest"]
    assert received["context"]["execution_id"] == request["headers"]["X-Execution-Id"]
    assert received["context"]["attempt"] == int(request["headers"]["X-Attempt"])


@pytest.mark.parametrize("vector", HANDLER_RESPONSES, ids=_names(HANDLER_RESPONSES))
async def test_runtime_answers_the_handler_behaviour_exactly(
    vector: dict[str, Any], start_runtime: StartRuntime, http: aiohttp.ClientSession
) -> None:
    url = await start_runtime("vector")
    body = orjson.dumps({"input": vector["handler"], "metadata": {}})
    async with http.post(
        url + "/invoke", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        status, content_type, raw = (
            response.status,
            response.headers.get("Content-Type"),
            await response.read(),
        )
    _assert_response(vector["response"], status, content_type, raw)


def _command_for(behaviour: dict[str, Any]) -> list[str]:
    """A small command doing what a vector's `command` says."""
    if "argv" in behaviour:
        return list(behaviour["argv"])
    if "signal" in behaviour:
        return python_command(f"import os, signal\nos.kill(os.getpid(), signal.{behaviour['signal']})")
    if behaviour.get("sleepPastDeadline"):
        return python_command("import time\ntime.sleep(120)")
    stdout, stderr, code = behaviour.get("stdout", ""), behaviour.get("stderr", ""), behaviour["exit"]
    return python_command(
        f"import sys\nsys.stdout.write({stdout!r})\nsys.stderr.write({stderr!r})\nsys.exit({code})"
    )


@pytest.mark.parametrize("vector", COMMAND_RESPONSES, ids=_names(COMMAND_RESPONSES))
async def test_watchdog_answers_the_command_behaviour_exactly(
    vector: dict[str, Any], start_watchdog: StartWatchdog, http: aiohttp.ClientSession
) -> None:
    server = await start_watchdog(_command_for(vector["command"]))
    deadline = SHORT_DEADLINE_MS if vector["command"].get("sleepPastDeadline") else 30_000
    headers = {"Content-Type": "application/json", "X-Deadline-Ms": _future_deadline(deadline)}
    async with http.post(
        f"http://127.0.0.1:{server.port}/invoke", data=b'{"input":null,"metadata":{}}', headers=headers
    ) as response:
        status, content_type, raw = (
            response.status,
            response.headers.get("Content-Type"),
            await response.read(),
        )
    _assert_response(vector["response"], status, content_type, raw)
