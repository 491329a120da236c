"""The lean HTTP client to the processes and pods we run, against real servers on real sockets.

A scripted asyncio server (each test says what it answers) checks what the
client must do that aiohttp did: keep-alive reuse, the output cap without
reading the rest, connection failures as CRASH (and told to the caller), bodies
delimited by the end of the connection, a cancelled request's connection never
reused; plus the real runtime on a Unix socket under uvloop, as the scheduler runs it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import OutcomeKind
from nanofaas_scheduler.dispatch import http_invoke
from nanofaas_scheduler.dispatch.hop_client import HopClient, Target
from nanofaas_scheduler.dispatch.http_invoke import invoke

from .conftest import make_attempt, make_spec

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A TCP server on 127.0.0.1 that answers every request with `answer`; counts connections."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                await self.answer(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> Target:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return Target("127.0.0.1", self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def client() -> AsyncIterator[HopClient]:
    hop = HopClient()
    yield hop
    await hop.close()


async def _scripted(answer: Answer) -> tuple[Scripted, Target]:
    server = Scripted(answer)
    return server, await server.start()


def _answer(raw: bytes, *, close: bool = False) -> Answer:
    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return answer


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'


async def test_keep_alive_reuses_one_connection_and_sends_the_protocol_headers(client: HopClient) -> None:
    server, target = await _scripted(_answer(OK))
    spec = make_spec()
    attempt = make_attempt(spec, b'{"x":1}', execution_id="exec-1")
    for _ in range(3):
        outcome = await invoke(client, target, attempt, pod_uid="uid-1")
        assert outcome.kind is OutcomeKind.SUCCESS
        assert outcome.output == b'{"a":1}'
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /invoke HTTP/1.1\r\n")
    assert b"X-Execution-Id: exec-1\r\n" in first
    assert b"X-Pod-Uid: uid-1\r\n" in first
    assert first.endswith(b'\r\n\r\n{"input":{"x":1},"metadata":{}}')


async def test_keep_alive_false_asks_to_close_and_opens_a_new_connection(client: HopClient) -> None:
    server, target = await _scripted(_answer(OK))
    attempt = make_attempt(make_spec())
    for _ in range(2):
        assert (await invoke(client, target, attempt, keep_alive=False)).kind is OutcomeKind.SUCCESS
    assert server.connections == 2
    assert b"Connection: close\r\n" in server.requests[0]


async def test_a_connection_the_server_closes_is_not_reused(client: HopClient) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1"
    server, target = await _scripted(_answer(closing, close=True))
    attempt = make_attempt(make_spec())
    for _ in range(2):
        assert (await invoke(client, target, attempt)).kind is OutcomeKind.SUCCESS
    assert server.connections == 2


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_output_over_the_cap_is_output_too_large_and_the_rest_unread(
    client: HopClient, chunked: bool
) -> None:
    body = b'"' + b"x" * 4096 + b'"'
    if chunked:
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(body),
            body,
        )
    else:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server, target = await _scripted(_answer(raw))
    http_invoke.set_max_output_bytes(1024)
    try:
        outcome = await invoke(client, target, make_attempt(make_spec()))
        again = await invoke(client, target, make_attempt(make_spec()))
    finally:
        http_invoke.set_max_output_bytes(http_invoke.DEFAULT_MAX_OUTPUT_BYTES)
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR
    assert outcome.error_code == codes.OUTPUT_TOO_LARGE
    assert "1024 bytes" in outcome.message
    assert again.error_code == codes.OUTPUT_TOO_LARGE
    assert server.connections == 2  # the connection with unread output was dropped


async def test_a_body_ended_by_the_connection_is_read_whole(client: HopClient) -> None:
    raw = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"until":"eof"}'
    _, target = await _scripted(_answer(raw, close=True))
    outcome = await invoke(client, target, make_attempt(make_spec()))
    assert outcome.kind is OutcomeKind.SUCCESS
    assert outcome.output == b'{"until":"eof"}'


async def test_error_answers_follow_the_protocol_table(client: HopClient) -> None:
    body = b'{"error":{"code":"TIMEOUT","message":"x"}}'
    raw = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    _, target = await _scripted(_answer(raw))
    outcome = await invoke(client, target, make_attempt(make_spec()))
    assert outcome.kind is OutcomeKind.TIMEOUT


@pytest.mark.parametrize(
    "raw",
    [
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cut',  # cut mid-body
        b"",  # closed without an answer
        b"NOT HTTP AT ALL\r\n\r\n",  # not HTTP
    ],
)
async def test_a_broken_connection_is_a_crash_told_to_the_caller(client: HopClient, raw: bytes) -> None:
    _, target = await _scripted(_answer(raw, close=True))
    failures: list[bool] = []
    outcome = await invoke(
        client, target, make_attempt(make_spec()), on_connection_failure=lambda: failures.append(True)
    )
    assert outcome.kind is OutcomeKind.CRASH
    assert outcome.message.startswith(f"http://127.0.0.1:{target.port}/invoke: ")
    assert failures == [True]


async def test_a_refused_connection_is_a_crash(client: HopClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        failures: list[bool] = []
        outcome = await invoke(
            client,
            Target("127.0.0.1", port),
            make_attempt(make_spec()),
            connect_timeout=5.0,
            on_connection_failure=lambda: failures.append(True),
        )
    assert outcome.kind is OutcomeKind.CRASH
    assert failures == [True]


async def test_a_cancelled_request_never_reuses_its_connection(client: HopClient) -> None:
    release = asyncio.Event()
    calls = 0

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()  # the first answer comes only after its caller gave up
        writer.write(OK)
        await writer.drain()

    server, target = await _scripted(answer)
    attempt = make_attempt(make_spec())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await invoke(client, target, attempt)
    release.set()
    outcome = await invoke(client, target, attempt)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert server.connections == 2


async def test_a_header_with_a_line_break_is_refused_before_sending(client: HopClient) -> None:
    server, target = await _scripted(_answer(OK))
    attempt = make_attempt(make_spec(), b"1", content_type="application/json\r\nX-Evil: 1")
    outcome = await invoke(client, target, attempt)
    assert outcome.kind is OutcomeKind.FUNCTION_ERROR
    assert server.requests == []


def test_the_runtime_on_a_unix_socket_under_uvloop(tmp_path: Path) -> None:
    """The scheduler's loop and transport: a real runtime replica on a handed-over Unix socket."""
    path = str(tmp_path / "r.sock")
    handlers = tmp_path / "handlers"
    handlers.mkdir()
    (handlers / "echo.py").write_text("def handle(request, context=None):\n    return request['input']\n")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    env = {
        **os.environ,
        "PYTHONPATH": str(handlers),
        "HANDLER_MODULE": "echo",
        "NANOFAAS_LISTEN_FD": str(listener.fileno()),
    }
    runtime = subprocess.Popen(
        [sys.executable, "-m", "nanofaas_runtime"], env=env, pass_fds=(listener.fileno(),)
    )
    listener.close()

    async def calls() -> list[bytes]:
        hop = HopClient()
        target = Target.unix(path)
        try:
            outputs = []
            for n in range(3):
                outcome = await invoke(hop, target, make_attempt(make_spec(), b'{"n":%d}' % n))
                assert outcome.kind is OutcomeKind.SUCCESS, outcome
                outputs.append(outcome.output)
            return outputs
        finally:
            await hop.close()

    try:
        assert uvloop.run(calls()) == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    finally:
        runtime.terminate()
        runtime.wait(10)
