"""Serve one invocation on an inherited listening socket: what a fork server's child runs.

The child answers with the same ASGI app as the HTTP runtime (`server.RuntimeApp`),
so `/invoke` and `/health` behave exactly as in a process started for the
invocation; only the server around it is smaller. Starting uvicorn costs a forked
child several milliseconds and its shutdown tick another 100 ms, for a server that
answers one request: here httptools (the parser uvicorn uses) frames the request,
the response goes out with `Connection: close`, and the function returns once a
`POST /invoke` has been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from http import HTTPStatus
from typing import Any

import httptools

from nanofaas_runtime import protocol
from nanofaas_runtime.asgi import JSON, App, Message

_READ_CHUNK = 64 * 1024


class _Request:
    """httptools callbacks: collects one request."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


async def serve_one_invocation(app: App, listener: socket.socket) -> None:
    """Accept connections, one request each, until a `POST /invoke` has been answered."""
    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    while True:
        connection, _ = await loop.sock_accept(listener)
        with connection:
            if await _serve_connection(loop, app, connection):
                return


async def _serve_connection(loop: asyncio.AbstractEventLoop, app: App, connection: socket.socket) -> bool:
    """One request on `connection`; True when it was the invocation."""
    request = _Request()
    parser = httptools.HttpRequestParser(request)
    try:
        while not request.complete:
            data = await loop.sock_recv(connection, _READ_CHUNK)
            if not data:
                return False  # the caller went away before sending a whole request
            parser.feed_data(data)
    except httptools.HttpParserError as exc:
        body = protocol.encode_error(protocol.ERROR_INVALID_REQUEST, f"malformed HTTP request: {exc}")
        await loop.sock_sendall(connection, _response(400, [(b"content-type", JSON)], body))
        return False
    except OSError:
        return False
    method = parser.get_method().decode("latin-1")
    url = httptools.parse_url(request.url)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": parser.get_http_version(),
        "method": method,
        "scheme": "http",
        "path": url.path.decode("latin-1"),
        "raw_path": url.path,
        "query_string": url.query or b"",
        "headers": request.headers,
    }
    body = b"".join(request.body)
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    with contextlib.suppress(OSError):  # the caller is gone: nobody left to tell
        await loop.sock_sendall(connection, _response(status, headers, b"".join(chunks)))
    return scope["path"] == protocol.INVOKE_PATH and method == "POST"


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}".encode("latin-1")]
    lines += [name + b": " + value for name, value in headers if name.lower() != b"content-length"]
    lines += [b"content-length: " + str(len(body)).encode(), b"connection: close", b"", b""]
    return b"\r\n".join(lines) + body
