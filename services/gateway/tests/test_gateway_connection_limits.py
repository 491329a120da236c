"""Connection-level limits (connection_limits.py) on the real uvicorn protocol, over raw sockets.

Raw sockets, because these limits act before HTTP is complete: a head that never ends,
a header line larger than the limit, more connections than the cap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nanofaas_gateway import GatewayClients

from .gateway_harness import Gateway, serve_gateway, settings_for


@asynccontextmanager
async def limited_gateway(gateway: Gateway, **limits: object) -> AsyncIterator[tuple[str, int]]:
    settings = settings_for(gateway, **limits)
    clients = GatewayClients.connect(settings)
    try:
        async with serve_gateway(settings, clients) as (base_url, _):
            host, port = base_url.removeprefix("http://").split(":")
            yield host, int(port)
    finally:
        await clients.close()


async def exchange(address: tuple[str, int], data: bytes) -> tuple[int, dict[str, Any], bytes]:
    """Send data, read until the server closes: (status, JSON body, raw answer)."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}, answer


async def test_header_bytes_url_and_count_limits_answer_json(gateway: Gateway) -> None:
    async with limited_gateway(
        gateway, max_header_bytes=2048, max_url_bytes=512, max_header_count=10
    ) as address:
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 4096 + b"\r\n\r\n"
        status, body, answer = await exchange(address, big)
        assert (status, body["error"]["code"]) == (431, "HEADERS_TOO_LARGE")
        assert b"application/json" in answer and b"connection: close" in answer
        # One huge header line still unfinished: refused without waiting for its end.
        status, body, _ = await exchange(address, b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 16_000)
        assert status == 431
        status, body, _ = await exchange(address, b"GET /" + b"u" * 1000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body["error"]["code"]) == (414, "URI_TOO_LONG")
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(11))
        status, body, _ = await exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert status == 431 and "header fields" in str(body)
        status, body, _ = await exchange(address, b"NOT HTTP AT ALL\r\n\r\n")
        assert (status, body["error"]["code"]) == (400, "INVALID_ARGUMENT")
        # Within the limits, requests are served as always.
        ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert (await exchange(address, ok))[0] == 200


async def test_an_unfinished_head_is_timed_out_with_408(gateway: Gateway) -> None:
    async with limited_gateway(gateway, header_read_timeout_s=0.3) as address:
        status, body, _ = await exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert (status, body["error"]["code"]) == (408, "TIMEOUT")
        reader, writer = await asyncio.open_connection(*address)  # silent: closed without an answer
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


async def test_past_the_cap_the_longest_idle_connection_is_dropped(gateway: Gateway) -> None:
    async with limited_gateway(gateway, max_connections=5) as address:
        idle = [await asyncio.open_connection(*address) for _ in range(5)]
        for _, writer in idle:
            writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finished
            await writer.drain()
        ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert (await exchange(address, ok))[0] == 200
        # The oldest idle connection made room for it.
        assert await asyncio.wait_for(idle[0][0].read(), 10) == b""
        for _, writer in idle:
            writer.close()
