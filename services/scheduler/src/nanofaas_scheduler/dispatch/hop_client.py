"""A small HTTP/1.1 keep-alive client for the hop to a function process (plain HTTP only).

Every attempt but an ENDPOINT's goes to a process we start or a pod we run: the
project's runtime or watchdog on a Unix socket, a user's own server on a local
TCP port, a pod IP. aiohttp's `ClientSession` cost ~163 µs of CPU per call on
that hop against ~53 µs for this client (one write per request, the answer
parsed by httptools straight from the protocol's callbacks; docs/performance.md,
"Round two, perf-hop"). ENDPOINT functions (any URL, https, redirects, the
outbound policy) keep aiohttp (endpoint_client.post_invocation).

The function protocol itself (headers, body, how an answer is judged) is not
here: function_protocol.py holds it for both clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import httptools

# Idle connections are closed by us after this long: under the runtime's 75 s keep-alive, so the
# server never closes a connection we are about to send on (asgi.py in the runtime says the same).
IDLE_TIMEOUT_S = 15.0
_CRLF = "\r\n"


class HopError(Exception):
    """The connection failed (refused, reset, cut, not accepted in time) or the answer is not HTTP."""


class Late(Exception):
    """The deadline passed before the answer; the request stays open and its answer may still come.

    No task per request to keep it: the caller decides (`answer` or `drop`), on the rare path.
    """

    def __init__(self, client: HopClient, connection: _Connection, keep_alive: bool) -> None:
        super().__init__("the deadline passed before the answer")
        self._client = client
        self._connection = connection
        self._keep_alive = keep_alive

    async def answer(self, grace: float) -> Response | None:
        """The answer if it comes within `grace` seconds (else None, and the connection is closed)."""
        try:
            async with asyncio.timeout(grace):
                response = await self._connection.late
        except (TimeoutError, HopError):
            self.drop()
            return None
        except BaseException:
            self.drop()
            raise
        self._client._done(self._connection, self._keep_alive)
        return response

    def drop(self) -> None:
        self._connection.close()


class InvalidHeader(ValueError):
    """A header value that would break the request's framing (a CR or LF in it)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a function process listens: a Unix socket `path`, else `host`:`port` over TCP."""

    host: str
    port: int = 0
    path: str = ""

    @classmethod
    def unix(cls, path: str) -> Target:
        return cls("localhost", 0, path)

    def url(self, path: str) -> str:
        """For messages: what aiohttp's URLs used to say."""
        if self.path:
            return f"http://localhost{path}"
        return f"http://{self.host}:{self.port}{path}"

    def host_header(self) -> str:
        if self.path:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: `body` is None when it passed `max_body` (the rest was never read)."""

    status: int
    content_type: str | None
    body: bytes | None
    content_length: int | None


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight, its answer parsed as it arrives."""

    def __init__(self, client: HopClient, target: Target) -> None:
        self._client = client
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.reusable = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response | None] | None = None
        self._max_body = 0
        self._reset()

    def _reset(self) -> None:
        self._content_type: str | None = None
        self._content_length: int | None = None
        self._chunked = False
        self._headers_done = False
        self._chunks: list[bytes] = []
        self._size = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's are not asyncio subclasses

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # nothing was asked: a server talking out of turn is not reused
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HopError(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._client._lost(self)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and self._content_length is None and not self._chunked:
            self._finish(b"".join(self._chunks))  # a body delimited by the end of the connection
            return
        why = str(exc) if exc is not None else "the connection closed before the answer ended"
        self._fail(HopError(why or type(exc).__name__))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-type":
            self._content_type = value.decode("latin-1")
        elif lowered == b"content-length":
            with contextlib.suppress(ValueError):
                self._content_length = int(value)
        elif lowered == b"transfer-encoding":
            self._chunked = b"chunked" in value.lower()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._content_length is not None and self._content_length > self._max_body:
            self._too_large()

    def on_body(self, body: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self._size += len(body)
        if self._size > self._max_body:
            self._too_large()
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self.reusable = self._parser.should_keep_alive()
        self._finish(b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0])

    # the request side

    def expire(self) -> None:
        """The deadline passed: wake the caller (with None) but keep reading the answer (`late`)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        self._waiter = self._client.loop.create_future()
        waiter.set_result(None)

    @property
    def late(self) -> asyncio.Future[Response | None]:
        assert self._waiter is not None
        return self._waiter

    def send(self, data: bytes, max_body: int) -> asyncio.Future[Response | None]:
        assert self.transport is not None
        self._reset()
        self.reusable = False
        self._max_body = max_body
        self._waiter = self._client.loop.create_future()
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _finish(self, body: bytes | None) -> None:
        assert self._waiter is not None
        self._waiter.set_result(
            Response(self._parser.get_status_code(), self._content_type, body, self._content_length)
        )
        self._chunks = []

    def _too_large(self) -> None:
        self._finish(None)
        self.close()  # the rest is never read

    def _fail(self, exc: HopError) -> None:
        assert self._waiter is not None
        if not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()


class HopClient:
    """A keep-alive pool per target; one request per connection at a time."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._idle: dict[Target, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        target: Target,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        max_body: int,
        keep_alive: bool = True,
        connect_timeout: float | None = None,
        deadline: float | None = None,
    ) -> Response:
        """One request and its answer; HopError when the connection fails.

        Cancelled (the caller gone, an enclosing timeout), the connection is closed: an
        answer may still be on its way, so it is never reused. At `deadline` (loop time)
        Late is raised instead, the request left open (one timer, no task).
        """
        head = _head(method, path, target, headers, len(body), keep_alive=keep_alive)
        connection = self._take(target)
        if connection is None:
            # TimeoutError when the deadline passes first (a process that does not accept).
            async with asyncio.timeout_at(deadline):
                connection = await self._connect(target, connect_timeout)
        waiter = connection.send(head + body if len(body) < 65536 else b"".join((head, body)), max_body)
        timer = None if deadline is None else self.loop.call_at(deadline, connection.expire)
        try:
            response = await waiter
        except BaseException:
            connection.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if response is None:
            raise Late(self, connection, keep_alive)
        self._done(connection, keep_alive)
        return response

    def _done(self, connection: _Connection, keep_alive: bool) -> None:
        if keep_alive and connection.reusable and not self._closed:
            self._give_back(connection)
        else:
            connection.close()

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        self._idle.clear()
        for connection in list(self._open):
            connection.close()

    def _take(self, target: Target) -> _Connection | None:
        idle = self._idle.get(target)
        stale_before = self.loop.time() - IDLE_TIMEOUT_S
        while idle:
            connection = idle.pop()
            if connection.reusable and connection.idle_since > stale_before:
                return connection
            connection.close()
        return None

    async def _connect(self, target: Target, timeout: float | None) -> _Connection:
        if self._closed:
            raise HopError("the client is closed")
        try:
            async with asyncio.timeout(timeout):
                if target.path:
                    _, connection = await self.loop.create_unix_connection(
                        lambda: _Connection(self, target), target.path
                    )
                else:
                    _, connection = await self.loop.create_connection(
                        lambda: _Connection(self, target), target.host, target.port
                    )
        except TimeoutError:
            raise HopError(f"not accepted within {timeout:g}s") from None
        except OSError as exc:
            raise HopError(str(exc) or type(exc).__name__) from exc
        self._open.add(connection)
        return connection

    def _give_back(self, connection: _Connection) -> None:
        connection.idle_since = self.loop.time()
        self._idle.setdefault(connection.target, []).append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(IDLE_TIMEOUT_S, self._close_stale)

    def _close_stale(self) -> None:
        self._sweep = None
        stale_before = self.loop.time() - IDLE_TIMEOUT_S
        for target in list(self._idle):
            kept = []
            for connection in self._idle[target]:
                if connection.reusable and connection.idle_since > stale_before:
                    kept.append(connection)
                else:
                    connection.close()
            if kept:
                self._idle[target] = kept
            else:
                del self._idle[target]
        if self._idle:
            self._sweep = self.loop.call_later(IDLE_TIMEOUT_S, self._close_stale)

    def _lost(self, connection: _Connection) -> None:
        self._open.discard(connection)
        idle = self._idle.get(connection.target)
        if idle is not None and connection in idle:
            idle.remove(connection)


def _head(
    method: str, path: str, target: Target, headers: Mapping[str, str], length: int, *, keep_alive: bool
) -> bytes:
    lines = "".join(f"{name}: {value}{_CRLF}" for name, value in headers.items())
    if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
        raise InvalidHeader("a header name or value holds a line break")
    connection = "" if keep_alive else "Connection: close\r\n"
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {target.host_header()}\r\nContent-Length: {length}\r\n"
        f"{connection}{lines}\r\n"
    ).encode()
