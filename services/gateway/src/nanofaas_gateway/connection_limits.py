"""Connection-level limits, enforced in uvicorn's HTTP protocol before any ASGI code runs.

A request head (URL and headers) is parsed before the application sees it, so
its size can only be bounded where bytes arrive: here. Without that, one 64 MB
header costs the gateway seconds of parsing, and a client that never finishes
its head keeps a socket (and a file descriptor) forever. So each connection:

* gets `header_read_timeout_s` to finish each request head (idle connections
  between requests are closed after uvicorn's keep-alive timeout);
* is refused with a JSON 414 or 431 once its URL, header bytes or header count
  pass their limit (then closed: the rest of the head is never read);
* counts toward `max_connections`: past it, the connection idle the longest is
  closed to make room, so a flood of idle sockets cannot lock out a live client.

Its requests run in a GatewayCycle (http_cycle.py: one write per response, a
disconnect callback).
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nanofaas_gateway import codes
from nanofaas_gateway.config import Settings
from nanofaas_gateway.errors import error_body
from nanofaas_gateway.http_cycle import GatewayCycle

# File descriptors kept free of HTTP connections for the gRPC channels, metrics and logs.
_RESERVED_FDS = 128
_MIN_AUTO_CONNECTIONS = 32


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_url_bytes: int
    max_header_bytes: int
    max_header_count: int
    header_read_timeout_s: float
    max_connections: int  # 0: derived from the open-file limit (auto_max_connections)


def auto_max_connections() -> int:
    """The soft open-file limit less a reserve: past it accept() would fail for everyone."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(_MIN_AUTO_CONNECTIONS, soft - _RESERVED_FDS)


class _HeadRefused(Exception):
    """Raised from a parser callback: the head broke a limit (status, code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; `limits` is set by limited_protocol()."""

    limits: ClassVar[ConnectionLimits]
    cap: ClassVar[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: _HeadRefused | None = None
        self.idle_since = time.monotonic()

    # -- connection lifecycle --------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()
        if len(self.connections) > self.cap:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        cycle = self.cycle
        super().connection_lost(exc)
        if isinstance(cycle, GatewayCycle):
            cycle.connection_lost()

    def _make_room(self) -> None:
        """Close the connection idle the longest (this one if every other is busy)."""
        idle = [c for c in self.connections if isinstance(c, LimitedHttpToolsProtocol) and c.is_idle()]
        victim = min(idle, key=lambda c: c.idle_since) if idle else self
        victim.transport.close()

    def is_idle(self) -> bool:
        """Between requests or still sending a head: nothing of it reached the application."""
        return self.cycle is None or self.cycle.response_complete

    # -- the request head ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)  # a refusal raised in a callback comes back as send_400_response
        if self.transport.is_closing():
            return
        limits = self.limits
        if self._in_head and self._head_bytes > limits.max_url_bytes + limits.max_header_bytes + 4096:
            # The parser is still inside one huge line: refuse before it buffers more.
            self._refuse(_HeadRefused(431, codes.HEADERS_TOO_LARGE, self._header_message()))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_bytes = self._header_count = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            message = f"request URL exceeds the limit of {self.limits.max_url_bytes} bytes"
            raise self._refusing(_HeadRefused(414, codes.URI_TOO_LONG, message))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        limits = self.limits
        if self._header_count > limits.max_header_count:
            message = f"request has more than {limits.max_header_count} header fields"
            raise self._refusing(_HeadRefused(431, codes.HEADERS_TOO_LARGE, message))
        if self._header_bytes > limits.max_header_bytes:
            raise self._refusing(_HeadRefused(431, codes.HEADERS_TOO_LARGE, self._header_message()))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()
        if self.cycle is not None:  # the cycle uvicorn just made (the ASGI task has not run yet)
            GatewayCycle.adopt(self.cycle)

    def on_response_complete(self) -> None:
        self.idle_since = time.monotonic()
        super().on_response_complete()

    def _refusing(self, refused: _HeadRefused) -> _HeadRefused:
        """Remember a refusal raised in a parser callback: httptools reports it as a parse error."""
        self._refusal = refused
        return refused

    def send_400_response(self, msg: str) -> None:
        """Every refused head is answered in JSON, like any other error of the gateway."""
        refused = self._refusal or _HeadRefused(400, codes.INVALID_ARGUMENT, "invalid HTTP request")
        self._refusal = None
        self._refuse(refused)

    def _header_message(self) -> str:
        return f"request headers exceed the limit of {self.limits.max_header_bytes} bytes"

    # -- the head timer --------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_read_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self.is_idle():
            return
        if self._head_bytes:
            message = f"request head not received within {self.limits.header_read_timeout_s:g} s"
            self._refuse(_HeadRefused(408, codes.TIMEOUT, message))
        else:
            self.transport.close()  # never sent a byte of this request: just let it go

    def _refuse(self, refused: _HeadRefused) -> None:
        """Answer the JSON error and close: the rest of the head is never read."""
        self._disarm_head_timer()
        if self.transport.is_closing():
            return
        body = error_body(refused.code, str(refused))
        head = b"HTTP/1.1 %d %s\r\n" % (refused.status, _REASONS[refused.status])
        self.transport.write(
            head
            + b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()


def limited_protocol(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn.Config(http=...): one class per set of limits."""
    cap = limits.max_connections or auto_max_connections()
    return type("GatewayHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits, "cap": cap})


def uvicorn_http_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.Config options that put the gateway's connection limits in force."""
    limits = ConnectionLimits(
        max_url_bytes=settings.max_url_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        header_read_timeout_s=settings.header_read_timeout_s,
        max_connections=settings.max_connections,
    )
    return {"http": limited_protocol(limits), "timeout_keep_alive": settings.idle_timeout_s}
