"""The raw-ASGI plumbing and uvicorn set-up shared by the runtime's HTTP server and the watchdog.

Both serve the function HTTP protocol (docs/function-protocol.md) with the same
routes and the same listening conventions -- `PORT` and `HOST`, or a listening
socket inherited in `NANOFAAS_LISTEN_FD` -- so the platform starts either the
same way. No web framework: two routes do not justify its import time, and cold
start is what users feel.
"""

from __future__ import annotations

import math
import os
import signal
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nanofaas_runtime import protocol
from nanofaas_runtime.outcome import CONTENT_TYPE_JSON

if TYPE_CHECKING:
    import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

EXIT_CONFIG_INVALID = 2
JSON = CONTENT_TYPE_JSON.encode()
_HEALTH_BODY = b'{"status":"ok"}'
_DEFAULT_PORT = 8080
_H_POD_UID = protocol.HEADER_POD_UID.lower().encode()


class InvalidSetting(ValueError):
    """An environment variable holds an unusable value; the process must not start (exit 2)."""


class Lifecycle(Protocol):
    """What an app may want from the server running it."""

    def attach(self, request_exit: Callable[[], None]) -> None:
        """Called once before serving, with a function that stops the server as SIGTERM does."""

    def shutting_down(self) -> None:
        """Called when the server stops accepting, before it waits for in-flight requests."""


async def route(scope: Scope, receive: Receive, send: Send, invoke: App) -> None:
    """`GET /health` -> 200 at once, `POST /invoke` -> `invoke`, anything else 404 or 405."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == protocol.INVOKE_PATH:
        if method == "POST":
            if (refusal := misdirected(scope)) is not None:
                await send_error(send, 503, "CRASH", refusal)
            else:
                await invoke(scope, receive, send)
        else:
            await send_error(send, 405, "METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}")
    elif path == protocol.HEALTH_PATH:
        if method in ("GET", "HEAD"):
            await send_response(send, 200, _HEALTH_BODY, JSON)
        else:
            await send_error(send, 405, "METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}")
    else:
        await send_error(send, 404, "NOT_FOUND", f"no route for {path}")


def misdirected(scope: Scope) -> str | None:
    """Why a request meant for another pod must not run here, or None.

    A pod IP is reused once its pod is gone, so a caller whose view of the cluster
    lags can reach another function's pod (or a process that is no pod) on the
    same address. The caller names the pod it means in `X-Pod-Uid`; a process that
    is not that pod answers 503 CRASH without running anything, and the caller
    retries elsewhere. Without the header (the local backend, ENDPOINT callers)
    nothing is checked.
    """
    wanted = next((v for k, v in scope["headers"] if k == _H_POD_UID), None)
    if wanted is None:
        return None
    mine = os.environ.get(protocol.POD_UID_ENV, "")
    if wanted.decode("latin-1") == mine:
        return None
    return (
        f"misdirected: the request was meant for pod {wanted.decode('latin-1')!r} but reached "
        f"{'pod ' + repr(mine) if mine else 'a process that is no pod'} (a reused pod IP)"
    )


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def send_response(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    await send_response(send, status, protocol.encode_error(code, message), JSON)


def env_int(name: str, default: int, minimum: int, maximum: int = 2**31 - 1) -> int:
    """An integer setting from the environment (unset or blank: `default`).

    InvalidSetting when it is not one in range; the text is the same in every service.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise InvalidSetting(f"{name}: must be an integer between {minimum} and {maximum} (got {raw!r})")
    return value


@dataclass(frozen=True, slots=True)
class Listen:
    """Where to serve: an inherited listening socket when `fd` is set, else `host`:`port`."""

    host: str
    port: int
    fd: int | None = None

    def describe(self) -> str:
        return f"fd {self.fd}" if self.fd is not None else f"{self.host}:{self.port}"


def listen_from_env() -> Listen:
    """`NANOFAAS_LISTEN_FD` (a socket the platform bound for us), else `HOST` (0.0.0.0) and `PORT` (8080)."""
    fd = env_int("NANOFAAS_LISTEN_FD", 0, 0) if os.environ.get("NANOFAAS_LISTEN_FD", "").strip() else None
    host = os.environ.get("HOST", "").strip() or "0.0.0.0"
    return Listen(host=host, port=env_int("PORT", _DEFAULT_PORT, 0, 65535), fd=fd)


def _inherited_socket(fd: int) -> socket.socket:
    """The listening socket the platform bound for us (family detected from the descriptor)."""
    sock = socket.socket(fileno=fd)
    sock.listen(2048)  # no-op for a listening socket, makes a merely bound one usable
    return sock


def serve(
    app: App,
    listen: Listen,
    log_level: int,
    lifecycle: Lifecycle | None = None,
    graceful_timeout: float | None = None,
) -> None:
    """Run `app` on uvicorn until SIGTERM/SIGINT (or `lifecycle`'s exit request), then return.

    On shutdown uvicorn stops accepting and waits for in-flight requests (cancelling
    them after `graceful_timeout` seconds, when given). Logging must already be
    configured (`logs.configure`), so uvicorn's own records come out as JSON.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=listen.host,
        port=listen.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        log_config=None,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        # Longer than the scheduler's client keep-alive (15 s) so the client, not we, closes
        # idle connections: no request is ever sent on a connection we are closing.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=None if graceful_timeout is None else math.ceil(graceful_timeout),
    )
    server = _server(config, lifecycle)
    sockets = [_inherited_socket(listen.fd)] if listen.fd is not None else None
    _exit_normally_after_uvicorn_stops()
    server.run(sockets=sockets)


def _server(config: uvicorn.Config, lifecycle: Lifecycle | None) -> uvicorn.Server:
    import uvicorn

    if lifecycle is None:
        return uvicorn.Server(config)
    app: Lifecycle = lifecycle

    class _Server(uvicorn.Server):
        """Tells the app when shutdown starts, so it can refuse new work and bound the old."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.shutting_down()
            await super().shutdown(sockets)

    server = _Server(config)

    def request_exit() -> None:
        server.should_exit = True

    app.attach(request_exit)
    return server


def _exit_normally_after_uvicorn_stops() -> None:
    """uvicorn drains on SIGTERM/SIGINT, then re-raises the signal under the handler it found.

    With the default handler that kills the process (exit 143) before `run()` returns, so
    nothing after it (the runtime's last span export) would run. A no-op handler lets `run()`
    return: exit 0, as documented.
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: None)
