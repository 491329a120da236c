"""WARM/JOB mode: the handler behind the HTTP function protocol, as a raw ASGI app run by uvicorn.

No web framework: two routes do not justify its import time, and cold start is
what users feel. Sync handlers run in worker threads so `/health` stays
responsive while a handler is busy.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from nanofaas_runtime import protocol, tracing
from nanofaas_runtime.capture import invocation_scope
from nanofaas_runtime.handler import (
    Context,
    Handler,
    InvalidRequest,
    build_request,
    encode_output,
    exception_message,
    fail_start,
    parse_request,
)
from nanofaas_runtime.outcome import CODE_FUNCTION_ERROR, CONTENT_TYPE_BYTES, CONTENT_TYPE_JSON

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from nanofaas_runtime.invocation_spans import InvocationSpans

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EXIT_CONFIG_INVALID = 2

log = logging.getLogger("nanofaas_runtime.server")

_HEALTH_BODY = b'{"status":"ok"}'
_JSON = CONTENT_TYPE_JSON.encode()
_BYTES = CONTENT_TYPE_BYTES.encode()
_H_CONTENT_TYPE = b"content-type"
_H_EXECUTION_ID = protocol.HEADER_EXECUTION_ID.lower().encode()
_H_TRACE_ID = protocol.HEADER_TRACE_ID.lower().encode()
_H_TRACEPARENT = protocol.HEADER_TRACEPARENT.lower().encode()
_H_DEADLINE_MS = protocol.HEADER_DEADLINE_MS.lower().encode()
_H_FUNCTION_NAME = protocol.HEADER_FUNCTION_NAME.lower().encode()


class BadRequest(Exception):
    """The invocation request does not follow the protocol (answered 400)."""


def _export_invocation_environment(headers: dict[bytes, bytes], context: Context) -> None:
    os.environ["EXECUTION_ID"] = context.execution_id
    os.environ["TRACE_ID"] = context.trace_id
    if traceparent := headers.get(_H_TRACEPARENT, b"").decode("latin-1"):
        os.environ["TRACEPARENT"] = traceparent


class RuntimeApp:
    """ASGI app serving `GET /health` and `POST /invoke` for one loaded handler."""

    def __init__(
        self,
        handler: Handler,
        concurrency: int = 1,
        function_name: str = "",
        tracer_provider: TracerProvider | None = None,
        single_use: bool = False,
    ) -> None:
        """Spans are recorded only with a `tracer_provider`; without one no OpenTelemetry code runs.

        `single_use`: the process was started ahead of time for exactly one JOB invocation,
        so that invocation's variables (EXECUTION_ID, TRACE_ID, TRACEPARENT) are exported
        into the environment when it arrives, as if the process had been started for it.
        """
        self._single_use = single_use
        self._handler = handler
        self._function_name = function_name
        self._semaphore = asyncio.Semaphore(concurrency)
        self._executor = (
            None
            if handler.is_async
            else ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="handler")
        )
        self._spans: InvocationSpans | None = None
        if tracer_provider is not None:
            from nanofaas_runtime.invocation_spans import InvocationSpans

            self._spans = InvocationSpans(tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == protocol.INVOKE_PATH:
            if method == "POST":
                await self._invoke(scope, receive, send)
            else:
                await _send_error(send, 405, "METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}")
        elif path == protocol.HEALTH_PATH:
            if method in ("GET", "HEAD"):
                await _send(send, 200, _HEALTH_BODY, _JSON)
            else:
                await _send_error(send, 405, "METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}")
        else:
            await _send_error(send, 404, "NOT_FOUND", f"no route for {path}")

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        if self._spans is None:
            status, payload, content_type = await self._answer(headers, receive, None)
        else:
            from nanofaas_runtime.invocation_spans import record_http_status

            traceparent = headers.get(_H_TRACEPARENT, b"").decode("latin-1")
            with self._spans.invoke(traceparent) as span:
                status, payload, content_type = await self._answer(headers, receive, self._spans)
                record_http_status(span, status)
        await _send(send, status, payload, content_type)

    async def _answer(
        self, headers: dict[bytes, bytes], receive: Receive, spans: InvocationSpans | None
    ) -> tuple[int, bytes, bytes]:
        """Reads, checks and runs one invocation; returns (status, body, content type) to send."""
        body = await _read_body(receive)
        kind = protocol.media_type(headers.get(_H_CONTENT_TYPE, b"").decode("latin-1"))
        if kind and kind != CONTENT_TYPE_BYTES and not protocol.is_json_media_type(kind):
            message = f"unsupported Content-Type {kind!r}"
            return 415, protocol.encode_error("UNSUPPORTED_MEDIA_TYPE", message), _JSON
        try:
            request = _parse_bytes_request(body) if kind == CONTENT_TYPE_BYTES else _parse_json_request(body)
            context = self._context(headers, request["metadata"])
        except BadRequest as exc:
            return 400, protocol.encode_error(protocol.ERROR_INVALID_REQUEST, str(exc)), _JSON
        if self._single_use:
            _export_invocation_environment(headers, context)
        if spans is not None:
            from nanofaas_runtime.invocation_spans import annotate

            context = annotate(context, keep_trace_id=_H_TRACE_ID in headers)
        async with self._semaphore:
            return await self._run(request, context, spans)

    def _context(self, headers: dict[bytes, bytes], metadata: dict[str, str]) -> Context:
        trace_id = headers.get(_H_TRACE_ID, b"").decode("latin-1")
        if not trace_id and _H_TRACEPARENT in headers:
            trace_id = protocol.trace_id_from_traceparent(headers[_H_TRACEPARENT].decode("latin-1"))
        return Context(
            execution_id=headers.get(_H_EXECUTION_ID, b"").decode("latin-1"),
            trace_id=trace_id,
            function_name=headers.get(_H_FUNCTION_NAME, b"").decode("latin-1") or self._function_name,
            deadline=_parse_deadline(headers.get(_H_DEADLINE_MS)),
            metadata=metadata,
        )

    async def _run(
        self, request: dict[str, Any], context: Context, spans: InvocationSpans | None
    ) -> tuple[int, bytes, bytes]:
        try:
            with invocation_scope(context.execution_id, context.function_name, context.trace_id):
                if spans is None:
                    result = await self._call(request, context)
                else:
                    with spans.handler():
                        result = await self._call(request, context)
            payload, content_type = encode_output(result)
        except (Exception, SystemExit) as exc:
            log.warning(
                "handler raised %s",
                type(exc).__name__,
                exc_info=exc,
                extra=_log_fields(context),
            )
            error = protocol.encode_error(CODE_FUNCTION_ERROR, exception_message(exc), type(exc).__name__)
            return 500, error, _JSON
        return 200, payload, _BYTES if content_type == CONTENT_TYPE_BYTES else _JSON

    async def _call(self, request: dict[str, Any], context: Context) -> Any:
        if self._executor is None:
            result = self._handler.call(request, context)
        else:
            # The copied context carries the invocation into the worker thread (for captured prints).
            run_in_context = contextvars.copy_context().run
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self._executor, run_in_context, self._handler.call, request, context
            )
        if inspect.isawaitable(result):
            result = await result
        return result


def _log_fields(context: Context) -> dict[str, str]:
    fields = {"executionId": context.execution_id, "functionName": context.function_name}
    if context.trace_id:
        fields["traceId"] = context.trace_id
    return fields


def _parse_bytes_request(body: bytes) -> dict[str, Any]:
    return build_request(body, {})


def _parse_json_request(body: bytes) -> dict[str, Any]:
    try:
        return parse_request(body, "request body")
    except InvalidRequest as exc:
        raise BadRequest(str(exc)) from exc


def _parse_deadline(value: bytes | None) -> float | None:
    if not value:
        return None
    try:
        return int(value) / 1000.0
    except ValueError as exc:
        raise BadRequest(f"{protocol.HEADER_DEADLINE_MS}: must be unix epoch milliseconds") from exc


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    await _send(send, status, protocol.encode_error(code, message), _JSON)


def _env_int(name: str, default: int, minimum: int, maximum: int = 2**31 - 1) -> int:
    """The integer in `name` (unset or blank: `default`); the error text is the same in every service."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        fail_start(
            f"{name}: must be an integer between {minimum} and {maximum} (got {raw!r})", EXIT_CONFIG_INVALID
        )
    return value


def _inherited_socket(fd: int) -> socket.socket:
    """The listening socket the scheduler bound for us (family detected from the descriptor)."""
    sock = socket.socket(fileno=fd)
    sock.listen(2048)  # no-op for a listening socket, makes a merely bound one usable
    return sock


def serve(handler: Handler, log_level: int) -> None:
    """Run the HTTP server until SIGTERM/SIGINT (uvicorn drains in-flight requests on shutdown),
    then export the spans still buffered when tracing is on.

    Logging must already be configured (`logs.configure`), so uvicorn's own records come out as JSON.
    """
    import uvicorn

    concurrency = _env_int("NANOFAAS_RUNTIME_CONCURRENCY", 1, 1, 10_000)
    listen_fd = os.environ.get("NANOFAAS_LISTEN_FD", "").strip()
    host = os.environ.get("HOST", "").strip() or "0.0.0.0"
    port = _env_int("PORT", 8080, 0, 65535)
    tracing.setup_tracing()
    app = RuntimeApp(
        handler,
        concurrency,
        os.environ.get("FUNCTION_NAME", ""),
        tracing.active_tracer_provider(),
        single_use=os.environ.get("NANOFAAS_SINGLE_USE", "") == "1",
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
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
        # Longer than a typical client keep-alive (aiohttp: 15 s) so the client, not we, closes
        # idle connections: no request is ever sent on a connection we are closing.
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    sockets = [_inherited_socket(_env_int("NANOFAAS_LISTEN_FD", 0, 0))] if listen_fd else None
    log.info(
        "runtime serving %s",
        handler.name,
        extra={"listen": f"fd {listen_fd}" if listen_fd else f"{host}:{port}", "concurrency": concurrency},
    )
    _exit_normally_after_uvicorn_stops()
    try:
        server.run(sockets=sockets)
    finally:
        tracing.shutdown_tracing()


def _exit_normally_after_uvicorn_stops() -> None:
    """uvicorn drains on SIGTERM/SIGINT, then re-raises the signal under the handler it found.

    With the default handler that kills the process (exit 143) before `run()` returns, so the
    last spans would never be exported. A no-op handler lets `run()` return: exit 0, as documented.
    """
    import signal

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: None)
