"""Pure ASGI middleware answering 413 to request bodies over the configured limit.

A declared Content-Length over the limit is refused before the application
runs. A streamed (chunked) body is counted as the application reads it; once it
crosses the limit the middleware sends the 413 itself, makes the read fail and
drops whatever the application tries to send afterwards. The connection is not
closed: the server discards the rest of the body, so clients that are still
sending can read the 413 instead of meeting a connection reset.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nanofaas_gateway import codes
from nanofaas_gateway.errors import JSON_MEDIA_TYPE, error_body


class _BodyTooLarge(Exception):
    """Raised from receive() once a streamed body passes the limit."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._message = f"request body exceeds the limit of {max_body_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self.send_413(send)
            return
        guard = _StreamGuard(self, receive, send)
        try:
            await self.app(scope, guard.receive, guard.send)
        except _BodyTooLarge:
            if not guard.rejected:
                raise

    async def send_413(self, send: Send) -> None:
        body = error_body(codes.PAYLOAD_TOO_LARGE, self._message)
        headers = [
            (b"content-type", JSON_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _StreamGuard:
    """Counts body bytes for one request and takes over the response when they overflow."""

    def __init__(self, limiter: BodyLimitMiddleware, receive: Receive, send: Send) -> None:
        self._limiter = limiter
        self._receive = receive
        self._send = send
        self._received = 0
        self._response_started = False
        self.rejected = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limiter.max_body_bytes:
                if not self._response_started and not self.rejected:
                    self.rejected = True
                    await self._limiter.send_413(self._send)
                raise _BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.rejected:
            return
        if message["type"] == "http.response.start":
            self._response_started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
