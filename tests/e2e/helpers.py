"""What the end-to-end tests do through the REST API, in one place: register, invoke, enqueue, poll.

Fixtures (the platform processes) live in conftest.py; this module holds plain functions
so every test file uses the same calls and the same bounded waits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

FUNCTIONS_DIR = Path(__file__).resolve().parent / "functions"
UP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "up.py"
RUNTIME_IMAGE = "nanofaas/python-runtime:latest"
TERMINAL_STATES = ("success", "error", "timeout")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_spec(name: str, handler: str, **fields: Any) -> dict[str, Any]:
    """A function on the project's Python runtime, running a handler from functions/."""
    env = {"PYTHONPATH": str(FUNCTIONS_DIR), "HANDLER_MODULE": "handlers", "HANDLER_FUNCTION": handler}
    env.update(fields.pop("env", {}))
    return {"name": name, "image": RUNTIME_IMAGE, "env": env, **fields}


def command_spec(name: str, script: str, **fields: Any) -> dict[str, Any]:
    """A function whose process is a script from functions/ run by this interpreter."""
    return {
        "name": name,
        "image": "example/any:1",
        "command": [sys.executable, str(FUNCTIONS_DIR / script)],
        **fields,
    }


async def register(http: aiohttp.ClientSession, spec: dict[str, Any]) -> dict[str, Any]:
    async with http.post("/v1/functions", json=spec) as response:
        body = await response.json()
        assert response.status == 201, body
        return dict(body)


async def invoke(
    http: aiohttp.ClientSession, name: str, input_value: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], Any]:
    async with http.post(
        f"/v1/functions/{name}:invoke", json={"input": input_value}, headers=headers
    ) as response:
        return response.status, CIMultiDict(response.headers), await response.json()


async def enqueue(
    http: aiohttp.ClientSession, name: str, value: object, headers: dict[str, str] | None = None
) -> str:
    """Enqueue one invocation (it must be accepted); returns its execution id."""
    async with http.post(f"/v1/functions/{name}:enqueue", json={"input": value}, headers=headers) as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["executionId"])


async def get_execution(http: aiohttp.ClientSession, execution_id: str) -> dict[str, Any]:
    async with http.get(f"/v1/executions/{execution_id}") as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def wait_terminal(
    http: aiohttp.ClientSession, execution_id: str, timeout: float = 30
) -> dict[str, Any]:
    """Poll the execution like a client would, until it has ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        body = await get_execution(http, execution_id)
        if body["status"] in TERMINAL_STATES:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"execution {execution_id} did not end")


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among a log's lines (a log may also hold other output)."""
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


async def wait_for_log_entry(
    read_log: Callable[[], str], predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """The first JSON log line matching `predicate`, re-reading the log until it is written.

    The log is another process's file: there is no event to await, so it is polled (bounded).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        matching = [entry for entry in json_lines(read_log()) if predicate(entry)]
        if matching:
            return matching[0]
        if loop.time() >= deadline:
            raise AssertionError(f"no matching log line within {timeout} s")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def make_up(data_dir: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """scripts/up.py (`make up`'s launcher) on free ports with the given data directory.

    Yields the gateway's base URL and the lines printed until it was up; on leaving, Ctrl-C
    (SIGINT) stops it and its exit status must be 0.
    """
    port = free_port()
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        str(UP_SCRIPT),
        "--port",
        str(port),
        env=up_env(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert up.stdout is not None
    lines: list[str] = []
    try:
        await read_until_up(up.stdout, lines)
        yield f"http://127.0.0.1:{port}", lines
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            remaining, _ = await up.communicate()
    assert up.returncode == 0, "".join(lines) + remaining.decode(errors="replace")


async def read_until_up(stdout: asyncio.StreamReader, lines: list[str]) -> None:
    """Collect `make up`'s output lines until it says it is up (bounded)."""
    async with asyncio.timeout(120):
        while raw := await stdout.readline():
            lines.append(raw.decode(errors="replace"))
            if "Press Ctrl-C to stop" in lines[-1]:
                break
    assert lines and "Press Ctrl-C to stop" in lines[-1], "make up did not come up:\n" + "".join(lines)


def up_env(data_dir: Path) -> dict[str, str]:
    """The environment for scripts/up.py: free ports for every service, the given data directory."""
    env = dict(os.environ)
    env.pop("NANOFAAS_REGISTRY_STORE", None)  # up.py's own default: sqlite
    env.update(
        NANOFAAS_DATA_DIR=str(data_dir),
        NANOFAAS_GATEWAY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_PORT=str(scheduler := free_port()),
        NANOFAAS_SCHEDULER_METRICS_PORT=str(free_port()),
        NANOFAAS_REGISTRY_PORT=str(registry := free_port()),
        NANOFAAS_REGISTRY_METRICS_PORT=str(free_port()),
        NANOFAAS_SCHEDULER_ADDRESS=f"127.0.0.1:{scheduler}",
        NANOFAAS_REGISTRY_ADDRESS=f"127.0.0.1:{registry}",
    )
    return env
