"""GatewayCycle (http_cycle.py): what it writes to the transport, message by message.

A recording transport, because the point is the number of writes, which a
client reading the socket cannot see.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from nanofaas_gateway.http_cycle import GatewayCycle, watch_disconnect
from nanofaas_gateway.routes.invocations import watch_client_gone


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def cycle_for(transport: RecordingTransport, method: str = "POST") -> RequestResponseCycle:
    cycle = RequestResponseCycle(
        scope={"type": "http", "method": method, "path": "/", "headers": []},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    GatewayCycle.adopt(cycle)
    return cycle


def scope_of(cycle: RequestResponseCycle) -> dict[str, Any]:
    return cycle.scope  # type: ignore[return-value]


async def test_a_sized_response_is_one_write_of_head_and_body() -> None:
    transport = RecordingTransport()
    cycle = cycle_for(transport)
    await cycle.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    assert transport.writes == []
    await cycle.send({"type": "http.response.body", "body": b"ok"})
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    assert cycle.response_complete


async def test_a_sized_response_in_chunks_sends_the_head_with_the_first() -> None:
    transport = RecordingTransport()
    cycle = cycle_for(transport)
    await cycle.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await cycle.send({"type": "http.response.body", "body": b"ab", "more_body": True})
    await cycle.send({"type": "http.response.body", "body": b"cd"})
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab", b"cd"]


@pytest.mark.parametrize("method", ["POST", "HEAD"])
async def test_a_streamed_or_head_response_gets_its_head_at_once(method: str) -> None:
    # A followed log (no Content-Length) must show its headers before the first line.
    transport = RecordingTransport()
    cycle = cycle_for(transport, method)
    headers = [] if method == "POST" else [(b"content-length", b"5")]
    await cycle.send({"type": "http.response.start", "status": 200, "headers": headers})
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    await cycle.send({"type": "http.response.body", "body": b""})
    assert cycle.response_complete


async def test_the_disconnect_callback_runs_once_and_only_while_watched() -> None:
    transport = RecordingTransport()
    cycle = cycle_for(transport)
    assert isinstance(cycle, GatewayCycle)
    calls: list[str] = []
    stop = watch_disconnect(scope_of(cycle), lambda: calls.append("gone"))
    assert stop is not None
    cycle.disconnected = True
    cycle.connection_lost()
    cycle.connection_lost()
    assert calls == ["gone"]
    # Already gone when the watch starts: called at once.
    assert watch_disconnect(scope_of(cycle), lambda: calls.append("late")) is not None
    assert calls == ["gone", "late"]
    # Stopped: never called.
    other = cycle_for(RecordingTransport())
    stop = watch_disconnect(scope_of(other), lambda: calls.append("stopped"))
    assert stop is not None
    stop()
    other.disconnected = True
    assert isinstance(other, GatewayCycle)
    other.connection_lost()
    assert calls == ["gone", "late"]


def test_another_servers_scope_has_no_watch() -> None:
    assert watch_disconnect({"type": "http"}, lambda: None) is None


async def test_a_paused_transport_is_drained_before_anything_is_written() -> None:
    transport = RecordingTransport()
    cycle = cycle_for(transport)
    cycle.flow.pause_writing()
    start = asyncio.create_task(
        cycle.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    )
    await asyncio.sleep(0)
    assert not start.done()
    assert cycle.transport is cast(object, transport)  # no stand-in while it waits
    cycle.flow.resume_writing()
    await asyncio.wait_for(start, 5)
    await cycle.send({"type": "http.response.body", "body": b"ok"})
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]


async def test_under_another_server_a_task_watches_receive() -> None:
    # No GatewayCycle in the scope: watch_client_gone falls back to a task on `receive`.
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return await messages.get()

    stop = watch_client_gone({"type": "http"}, receive, gone.set)
    messages.put_nowait({"type": "http.request", "body": b""})
    messages.put_nowait({"type": "http.disconnect"})
    await asyncio.wait_for(gone.wait(), 5)
    stop()
    # Stopped at once: the task never reads, so the disconnect stays queued and nobody is told.
    late: list[str] = []
    quiet = watch_client_gone({"type": "http"}, receive, lambda: late.append("late"))
    quiet()
    messages.put_nowait({"type": "http.disconnect"})
    for _ in range(3):
        await asyncio.sleep(0)  # a few loop turns for a task that would run
    assert messages.qsize() == 1
    assert late == []
