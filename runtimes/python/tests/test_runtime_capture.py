"""Handler stdout/stderr captured into structured logs: the stream in-process, then a real HTTP runtime."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from nanofaas_runtime.capture import MAX_LINE_CHARS, CapturedStream, Invocation, current_invocation

from .support import handler_env, runtime_command

Entry = dict[str, Any]


def make_stream() -> tuple[CapturedStream, io.StringIO, io.StringIO]:
    original, sink = io.StringIO(), io.StringIO()
    return CapturedStream("stdout", original, sink, threading.Lock()), original, sink


def entries(sink: io.StringIO) -> list[Entry]:
    return [orjson.loads(line) for line in sink.getvalue().splitlines()]


def test_outside_an_invocation_writes_pass_through() -> None:
    stream, original, sink = make_stream()
    stream.write("plain\n")
    assert (original.getvalue(), sink.getvalue()) == ("plain\n", "")


def test_lines_inside_an_invocation_become_json_entries() -> None:
    stream, original, sink = make_stream()
    invocation = Invocation("e-1", "fn")
    token = current_invocation.set(invocation)
    try:
        stream.write("a")
        stream.write("b\nc\r\n")
        stream.write("tail")
        stream.finish(invocation)
    finally:
        current_invocation.reset(token)
    assert original.getvalue() == ""
    logged = entries(sink)
    assert [entry["msg"] for entry in logged] == ["ab", "c", "tail"]
    first = logged[0]
    assert (first["executionId"], first["functionName"], first["stream"]) == ("e-1", "fn", "stdout")
    assert (first["level"], first["service"]) == ("INFO", "runtime")
    assert first["ts"].endswith("Z")
    assert "traceId" not in first


def test_entries_carry_the_trace_id_of_the_invocation() -> None:
    stream, _, sink = make_stream()
    invocation = Invocation("e-2", "fn", "4bf92f3577b34da6a3ce929d0e0e4736")
    token = current_invocation.set(invocation)
    try:
        stream.write("traced line\n")
    finally:
        current_invocation.reset(token)
    (entry,) = entries(sink)
    assert (entry["executionId"], entry["traceId"]) == ("e-2", "4bf92f3577b34da6a3ce929d0e0e4736")


def test_a_line_without_newline_is_cut_at_the_limit() -> None:
    stream, _, sink = make_stream()
    invocation = Invocation("e-2", "")
    token = current_invocation.set(invocation)
    try:
        stream.write("x" * (MAX_LINE_CHARS + 5))
        assert [len(entry["msg"]) for entry in entries(sink)] == [MAX_LINE_CHARS]
        stream.finish(invocation)
    finally:
        current_invocation.reset(token)
    assert [len(entry["msg"]) for entry in entries(sink)] == [MAX_LINE_CHARS, 5]


@dataclass
class Runtime:
    """A runtime process on a pre-bound socket, with its stderr collected line by line."""

    url: str
    process: asyncio.subprocess.Process
    stderr_lines: list[bytes] = field(default_factory=list)
    stdout: bytearray = field(default_factory=bytearray)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def json_entries(self) -> list[Entry]:
        return [orjson.loads(line) for line in self.stderr_lines if line.startswith(b"{")]

    def captured(self, execution_id: str) -> list[Entry]:
        return [e for e in self.json_entries() if e.get("executionId") == execution_id and "stream" in e]

    async def wait_for(self, predicate: Callable[[Runtime], bool], timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


async def _collect_lines(stream: asyncio.StreamReader, runtime: Runtime) -> None:
    while line := await stream.readline():
        runtime.stderr_lines.append(line.rstrip(b"\n"))
        runtime.changed.set()


async def _collect_bytes(stream: asyncio.StreamReader, runtime: Runtime) -> None:
    while chunk := await stream.read(4096):
        runtime.stdout += chunk
        runtime.changed.set()


StartRuntime = Callable[..., Any]


@pytest.fixture
async def start_runtime(handler_dir: Path) -> AsyncIterator[StartRuntime]:
    started: list[tuple[Runtime, list[asyncio.Task[None]]]] = []

    async def start(function: str, **env: str) -> Runtime:
        # The socket is bound and listening before the child starts: requests simply queue until it serves.
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            port = listener.getsockname()[1]
            process = await asyncio.create_subprocess_exec(
                *runtime_command(),
                env=handler_env(
                    handler_dir, "funcs", function, NANOFAAS_LISTEN_FD=str(listener.fileno()), **env
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=[listener.fileno()],
            )
        runtime = Runtime(f"http://127.0.0.1:{port}", process)
        assert process.stderr is not None and process.stdout is not None
        tasks = [
            asyncio.create_task(_collect_lines(process.stderr, runtime)),
            asyncio.create_task(_collect_bytes(process.stdout, runtime)),
        ]
        started.append((runtime, tasks))
        return runtime

    yield start
    for runtime, tasks in started:
        if runtime.process.returncode is None:
            runtime.process.kill()
        await runtime.process.wait()
        await asyncio.gather(*tasks)


async def invoke(url: str, execution_id: str, value: Any, **headers: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/invoke",
            data=orjson.dumps({"input": value}),
            headers={"Content-Type": "application/json", "X-Execution-Id": execution_id, **headers},
        ) as response,
    ):
        assert response.status == 200
        return await response.json()


async def test_sync_handler_output_is_logged_with_the_execution_id(start_runtime: StartRuntime) -> None:
    runtime: Runtime = await start_runtime("chatty", FUNCTION_NAME="talker")
    assert await invoke(runtime.url, "exec-7", 5) == {"ok": True}
    await runtime.wait_for(lambda r: len(r.captured("exec-7")) == 4)
    captured = runtime.captured("exec-7")
    assert [(e["stream"], e["msg"]) for e in captured] == [
        ("stdout", "hello 5"),
        ("stdout", "built in pieces"),
        ("stderr", "warning line"),
        ("stdout", "unterminated"),
    ]
    assert all(e["functionName"] == "talker" and e["service"] == "runtime" for e in captured)
    assert [e["level"] for e in captured] == ["INFO", "INFO", "WARNING", "INFO"]
    assert runtime.stdout == b""  # nothing of it leaks to the real stdout


async def test_output_lines_carry_the_trace_id_of_the_traceparent(start_runtime: StartRuntime) -> None:
    runtime: Runtime = await start_runtime("chatty", FUNCTION_NAME="talker")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert await invoke(runtime.url, "exec-8", 1, traceparent=traceparent) == {"ok": True}
    await runtime.wait_for(lambda r: len(r.captured("exec-8")) == 4)
    assert {e["traceId"] for e in runtime.captured("exec-8")} == {"0af7651916cd43dd8448eb211c80319c"}


async def test_concurrent_async_invocations_are_attributed_apart(start_runtime: StartRuntime) -> None:
    runtime: Runtime = await start_runtime("async_chatty", NANOFAAS_RUNTIME_CONCURRENCY="2")
    results = await asyncio.gather(invoke(runtime.url, "a", "A"), invoke(runtime.url, "b", "B"))
    assert list(results) == [{"ok": "A"}, {"ok": "B"}]
    await runtime.wait_for(lambda r: len(r.captured("a")) == 3 and len(r.captured("b")) == 3)
    assert [e["msg"] for e in runtime.captured("a")] == ["A step 0", "A step 1", "A step 2"]
    assert [e["msg"] for e in runtime.captured("b")] == ["B step 0", "B step 1", "B step 2"]


async def test_subprocess_output_passes_through_unattributed(start_runtime: StartRuntime) -> None:
    runtime: Runtime = await start_runtime("printing")
    assert await invoke(runtime.url, "exec-p", None) == {"printed": True}
    await runtime.wait_for(lambda r: b"chatter from a subprocess" in r.stdout)
    await runtime.wait_for(lambda r: len(r.captured("exec-p")) == 1)
    assert runtime.captured("exec-p")[0]["msg"] == "chatter on stdout"
    assert b"chatter on stdout" not in runtime.stdout
