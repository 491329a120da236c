"""uvicorn's request/response cycle with two savings on the hot path.

* **One write per response.** uvicorn writes the status line and headers as
  soon as the application sends `http.response.start`, and the body with the
  next message: two `write` syscalls, each able to wake the client (the
  profile put 16 % of the gateway's samples there). When the headers declare a
  Content-Length (every non-streamed response), the head is held here and
  written together with the first body chunk. A streamed response (no
  Content-Length: chunked, e.g. a followed log) still gets its head at once,
  so a follower sees the headers before the first line.
* **A disconnect callback.** `on_disconnect`, when set, is called by the
  protocol once the connection is lost mid-request, so a waiting handler can
  cancel its work without a task parked in `receive()` for each request.

uvicorn builds the cycle inside `on_headers_complete` with no hook for the
class, so the gateway's protocol re-classes each new cycle to this subclass
(connection_limits.py). Of uvicorn's behaviour it changes only where `send`'s
bytes go: it relies on `send` writing through `self.transport`, which
test_gateway_http_cycle.py checks against the pinned uvicorn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.types import Scope
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class _HeadHolder:
    """Stands in for the transport while uvicorn writes a response head: keeps the bytes."""

    __slots__ = ("head",)

    def __init__(self) -> None:
        self.head = b""

    def write(self, data: bytes) -> None:
        self.head += data


class _HeadFirst:
    """Stands in for the transport while uvicorn writes the first body chunk: head + chunk, one write."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self._transport = transport
        self._head = head

    def write(self, data: bytes) -> None:
        self._transport.writelines((self._head, data))  # one writev under uvloop: no copy of the body

    def __getattr__(self, name: str) -> Any:  # close(), is_closing(): the real transport's
        return getattr(self._transport, name)


_EXTENSION = "nanofaas.cycle"


class GatewayCycle(RequestResponseCycle):
    """RequestResponseCycle holding a Content-Length response's head for its first body write."""

    on_disconnect: Callable[[], None] | None = None
    _held_head: bytes | None = None

    @classmethod
    def adopt(cls, cycle: RequestResponseCycle) -> None:
        """Make uvicorn's new cycle a GatewayCycle, reachable from its scope (watch_disconnect)."""
        if type(cycle) is RequestResponseCycle:
            cycle.__class__ = cls
            extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})
            extensions[_EXTENSION] = cycle

    def connection_lost(self) -> None:
        """Called by the protocol when its connection is gone: tell a waiting handler, once."""
        callback, self.on_disconnect = self.on_disconnect, None
        if callback is not None and self.disconnected:
            callback()

    def forget_disconnect(self) -> None:
        self.on_disconnect = None

    async def send(self, message: ASGISendEvent) -> None:
        # uvicorn's send awaits only this drain; done first, nothing else runs while a
        # stand-in is the cycle's transport.
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if message["type"] == "http.response.start" and not self.response_started:
            transport, holder = self.transport, _HeadHolder()
            self.transport = holder  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if self.chunked_encoding is False and self.scope["method"] != "HEAD":
                self._held_head = holder.head
            elif holder.head:
                transport.write(holder.head)
            return
        head = self._held_head
        if head is None or message["type"] != "http.response.body":
            await super().send(message)
            return
        self._held_head = None
        transport = self.transport
        self.transport = _HeadFirst(transport, head)  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport


def watch_disconnect(scope: Scope, callback: Callable[[], None]) -> Callable[[], None] | None:
    """Have `callback` called if the client disconnects before the response is complete.

    Returns the function that stops the watch, or None when the scope is not
    served by a GatewayCycle (another server, a test transport): the caller
    then watches `receive` itself.
    """
    cycle = scope.get("extensions", {}).get(_EXTENSION)
    if not isinstance(cycle, GatewayCycle):
        return None
    if cycle.disconnected:
        callback()
        return _nothing
    cycle.on_disconnect = callback
    return cycle.forget_disconnect


def _nothing() -> None:
    pass
