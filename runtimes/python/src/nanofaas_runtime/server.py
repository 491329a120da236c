"""WARM/JOB mode: the handler behind the HTTP function protocol, as a raw ASGI app run by uvicorn.

Routes, listening and the uvicorn set-up are shared with the watchdog (`asgi`).
Sync handlers run in worker threads (workers.py) so `/health` stays responsive
while a handler is busy.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import TYPE_CHECKING, Any

from nanofaas_runtime import asgi, protocol, tracing
from nanofaas_runtime.asgi import JSON, Receive, Scope, Send
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
from nanofaas_runtime.outcome import CODE_FUNCTION_ERROR, CONTENT_TYPE_BYTES
from nanofaas_runtime.workers import Workers

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from nanofaas_runtime.invocation_spans import InvocationSpans

log = logging.getLogger("nanofaas_runtime.server")

_BYTES = CONTENT_TYPE_BYTES.encode()
_H_CONTENT_TYPE = b"content-type"
_H_EXECUTION_ID = protocol.HEADER_EXECUTION_ID.lower().encode()
_H_TRACE_ID = protocol.HEADER_TRACE_ID.lower().encode()
_H_TRACEPARENT = protocol.HEADER_TRACEPARENT.lower().encode()
_H_DEADLINE_MS = protocol.HEADER_DEADLINE_MS.lower().encode()
_H_FUNCTION_NAME = protocol.HEADER_FUNCTION_NAME.lower().encode()
_H_ATTEMPT = protocol.HEADER_ATTEMPT.lower().encode()


class BadRequest(Exception):
    """The invocation request does not follow the protocol (answered 400)."""


def _export_invocation_environment(headers: dict[bytes, bytes], context: Context) -> None:
    os.environ["EXECUTION_ID"] = context.execution_id
    os.environ["TRACE_ID"] = context.trace_id
    if _H_ATTEMPT in headers:
        os.environ["NANOFAAS_ATTEMPT"] = str(context.attempt)
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
        so that invocation's variables (EXECUTION_ID, NANOFAAS_ATTEMPT, TRACE_ID, TRACEPARENT) are exported
        into the environment when it arrives, as if the process had been started for it.
        """
        self._single_use = single_use
        self._handler = handler
        self._function_name = function_name
        self._semaphore = asyncio.Semaphore(concurrency)
        self._workers = None if handler.is_async else Workers(concurrency)
        self._spans: InvocationSpans | None = None
        if tracer_provider is not None:
            from nanofaas_runtime.invocation_spans import InvocationSpans

            self._spans = InvocationSpans(tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asgi.route(scope, receive, send, self._invoke)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        if self._spans is None:
            status, payload, content_type = await self._answer(headers, receive, None)
        else:
            from nanofaas_runtime.invocation_spans import current, record_http_status

            traceparent = headers.get(_H_TRACEPARENT, b"").decode("latin-1")
            if (caller := self._spans.unsampled_caller(traceparent)) is not None:
                # Nothing to record: the caller's context is current, and the rest runs as
                # with tracing off (annotate and the handler's wrapper would do nothing).
                with current(caller):
                    status, payload, content_type = await self._answer(headers, receive, None)
            else:
                with self._spans.invoke(traceparent) as span:
                    status, payload, content_type = await self._answer(headers, receive, self._spans)
                    record_http_status(span, status)
        await asgi.send_response(send, status, payload, content_type)

    async def _answer(
        self, headers: dict[bytes, bytes], receive: Receive, spans: InvocationSpans | None
    ) -> tuple[int, bytes, bytes]:
        """Reads, checks and runs one invocation; returns (status, body, content type) to send."""
        body = await asgi.read_body(receive)
        kind = protocol.media_type(headers.get(_H_CONTENT_TYPE, b"").decode("latin-1"))
        if kind and kind != CONTENT_TYPE_BYTES and not protocol.is_json_media_type(kind):
            message = f"unsupported Content-Type {kind!r}"
            return 415, protocol.encode_error("UNSUPPORTED_MEDIA_TYPE", message), JSON
        try:
            request = _parse_bytes_request(body) if kind == CONTENT_TYPE_BYTES else _parse_json_request(body)
            context = self._context(headers, request["metadata"])
        except BadRequest as exc:
            return 400, protocol.encode_error(protocol.ERROR_INVALID_REQUEST, str(exc)), JSON
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
            deadline=_deadline(headers.get(_H_DEADLINE_MS)),
            metadata=metadata,
            attempt=_parse_attempt(headers.get(_H_ATTEMPT)),
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
            return 500, error, JSON
        return 200, payload, _BYTES if content_type == CONTENT_TYPE_BYTES else JSON

    async def _call(self, request: dict[str, Any], context: Context) -> Any:
        if self._workers is None:
            result = self._handler.call(request, context)
        else:
            result = await self._workers.run(self._handler.call, request, context)
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


def _parse_attempt(value: bytes | None) -> int:
    if not value:
        return 0
    try:
        return protocol.parse_attempt(value.decode("latin-1"))
    except ValueError as exc:
        raise BadRequest(f"{protocol.HEADER_ATTEMPT}: must be a non-negative integer") from exc


def serve(handler: Handler, log_level: int) -> None:
    """Run the HTTP server until SIGTERM/SIGINT (uvicorn drains in-flight requests on shutdown),
    then export the spans still buffered when tracing is on.

    Logging must already be configured (`logs.configure`), so uvicorn's own records come out as JSON.
    """
    try:
        concurrency = asgi.env_int("NANOFAAS_RUNTIME_CONCURRENCY", 1, 1, 10_000)
        listen = asgi.listen_from_env()
    except asgi.InvalidSetting as exc:
        fail_start(str(exc), asgi.EXIT_CONFIG_INVALID)
    tracing.setup_tracing()
    app = RuntimeApp(
        handler,
        concurrency,
        os.environ.get("FUNCTION_NAME", ""),
        tracing.active_tracer_provider(),
        single_use=os.environ.get("NANOFAAS_SINGLE_USE", "") == "1",
    )
    log.info(
        "runtime serving %s",
        handler.name,
        extra={"listen": listen.describe(), "concurrency": concurrency},
    )
    try:
        asgi.serve(app, listen, log_level)
    finally:
        tracing.shutdown_tracing()


def _deadline(value: bytes | None) -> float | None:
    try:
        return protocol.parse_deadline(value)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
