"""Completion callbacks delivered to a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from nanofaas_scheduler.callbacks import CallbackSender
from nanofaas_scheduler.core.execution import Execution, Request
from nanofaas_scheduler.core.outcome import Outcome, OutcomeKind


class Receiver:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[dict[str, object]] = []
        self.calls = 0
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.failures:
            return web.Response(status=503)
        self.bodies.append(orjson.loads(await request.read()))
        self.got.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[str, Receiver]]:
    receiver = Receiver(failures=2)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/hook", receiver
    await runner.cleanup()


def ended(url: str) -> Execution:
    execution = Execution(
        id="e1",
        function_name="fn",
        request=Request(b"1", "application/json", {}),
        trace_id="t",
        callback_url=url,
    )
    execution.attempts = 1
    execution.finish(Outcome(kind=OutcomeKind.SUCCESS, output=b'{"ok":true}'))
    return execution


async def test_callback_is_retried_until_delivered(receiver_url: tuple[str, Receiver]) -> None:
    url, receiver = receiver_url
    sender = CallbackSender(base_delay_s=0.01)
    sender(ended(url))
    await receiver.got.wait()
    await sender.close()
    assert receiver.calls == 3
    body = receiver.bodies[0]
    assert body["executionId"] == "e1"
    assert body["status"] == "success"
    assert body["output"] == {"ok": True}
    assert sender.delivered == 1 and sender.failed == 0


async def test_undeliverable_callback_is_counted_not_raised() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = CallbackSender(attempts=2, base_delay_s=0.01)
    sender(ended(f"http://127.0.0.1:{port}/nobody"))
    sender(ended(""))  # no callback asked for: nothing is sent
    await sender.close(grace_s=10)
    assert sender.failed == 1 and sender.delivered == 0
