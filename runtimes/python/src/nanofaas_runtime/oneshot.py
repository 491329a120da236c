"""STDIO and FILE modes: one request, one handler call, one JSON output, then exit.

Exit codes: 0 success; 1 the handler raised (its message is the last thing on
stderr, which the watchdog reports as the FUNCTION_ERROR); 2 bad request or
environment; 3 the handler could not be loaded. asyncio is imported only when
the handler is async, to keep this path's start-up minimal.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from nanofaas_runtime.handler import (
    Context,
    Handler,
    InvalidRequest,
    encode_output,
    exception_message,
    load_handler_or_exit,
)
from nanofaas_runtime.handler import parse_request as parse_invocation_request
from nanofaas_runtime.outcome import CONTENT_TYPE_BYTES
from nanofaas_runtime.protocol import parse_attempt, trace_id_from_traceparent
from nanofaas_runtime.tracing import ONESHOT_FLUSH_TIMEOUT_S, shutdown_tracing, start_invocation_spans

if TYPE_CHECKING:
    from nanofaas_runtime.invocation_spans import InvocationSpans

EXIT_OK = 0
EXIT_FUNCTION_ERROR = 1
EXIT_BAD_INPUT = 2

T = TypeVar("T")


class BadInput(Exception):
    """The request or environment given to a one-shot run is unusable."""


def attempt_from_env() -> int | None:
    """NANOFAAS_ATTEMPT (the attempt this process runs), None when unset; BadInput when not an integer."""
    raw = os.environ.get("NANOFAAS_ATTEMPT", "").strip()
    if not raw:
        return None
    try:
        return parse_attempt(raw)
    except ValueError as exc:
        raise BadInput(f"NANOFAAS_ATTEMPT must be a non-negative integer, got {raw!r}") from exc


def context_from_env(started: float) -> Context:
    """Context from EXECUTION_ID, TRACE_ID (else TRACEPARENT), FUNCTION_NAME, NANOFAAS_ATTEMPT and
    the deadline: NANOFAAS_DEADLINE_MS (absolute, set by the watchdog), else INVOCATION_TIMEOUT_MS."""
    timeout_ms = os.environ.get("INVOCATION_TIMEOUT_MS", "").strip()
    deadline_ms = os.environ.get("NANOFAAS_DEADLINE_MS", "").strip()
    deadline = None
    if deadline_ms:
        try:
            deadline = int(deadline_ms) / 1000.0
        except ValueError as exc:
            raise BadInput(f"NANOFAAS_DEADLINE_MS must be an integer, got {deadline_ms!r}") from exc
    elif timeout_ms:
        try:
            deadline = started + int(timeout_ms) / 1000.0
        except ValueError as exc:
            raise BadInput(f"INVOCATION_TIMEOUT_MS must be an integer, got {timeout_ms!r}") from exc
    return Context(
        execution_id=os.environ.get("EXECUTION_ID", ""),
        trace_id=os.environ.get("TRACE_ID", "")
        or trace_id_from_traceparent(os.environ.get("TRACEPARENT", "")),
        function_name=os.environ.get("FUNCTION_NAME", ""),
        deadline=deadline,
        attempt=attempt_from_env() or 0,
    )


def parse_request(raw: bytes) -> dict[str, Any]:
    """The request of a one-shot run; a malformed one is bad input (exit 2)."""
    try:
        return parse_invocation_request(raw)
    except InvalidRequest as exc:
        raise BadInput(str(exc)) from exc


def call_once(handler: Handler, request: dict[str, Any], context: Context) -> Any:
    """Call the handler to completion, running an event loop only if it returned an awaitable."""
    result = handler.call(request, context)
    if hasattr(result, "__await__"):
        import asyncio

        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def encode_json_output(value: Any) -> bytes:
    """STDIO/FILE outputs are JSON only; bytes have no JSON form, so returning them is an error."""
    payload, content_type = encode_output(value)
    if content_type == CONTENT_TYPE_BYTES:
        raise TypeError("handler returned bytes, but STDIO/FILE mode outputs a JSON value")
    return payload


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Route anything the handler prints (even from C code or subprocesses) away from the output stream."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run(mode: str) -> int:
    """Run one invocation in `stdio` or `file` mode and return the process exit code."""
    started = time.time()
    handler = load_handler_or_exit()
    return run_traced(mode, lambda spans: _run(mode, handler, started, spans))


def run_traced(trigger: str, body: Callable[[InvocationSpans | None], int]) -> int:
    """Runs `body` inside an `invoke` span continuing env TRACEPARENT when tracing is on.

    The process exits right after, so the spans are exported first (bounded by
    ONESHOT_FLUSH_TIMEOUT_S). With tracing off `body` just runs: nothing is imported.
    """
    spans = start_invocation_spans()
    if spans is None:
        return body(None)
    from nanofaas_runtime.invocation_spans import record_exit_code

    _quiet_exporter_warnings()

    try:
        with spans.invoke(os.environ.get("TRACEPARENT", ""), trigger) as span:
            exit_code = body(spans)
            record_exit_code(span, exit_code)
        return exit_code
    finally:
        shutdown_tracing(ONESHOT_FLUSH_TIMEOUT_S)


def _quiet_exporter_warnings() -> None:
    """The last stderr line is the error the watchdog reports: an exporter warning must not replace it."""
    if os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG":
        return
    import logging

    otel_logger = logging.getLogger("opentelemetry")
    otel_logger.addHandler(logging.NullHandler())
    otel_logger.propagate = False


def traced_context(context: Context, spans: InvocationSpans | None) -> Context:
    """The context annotated on the invoke span (trace_id = the OTel one unless TRACE_ID is set)."""
    if spans is None:
        return context
    from nanofaas_runtime.invocation_spans import annotate

    return annotate(context, keep_trace_id=bool(os.environ.get("TRACE_ID", "")))


def handler_span(spans: InvocationSpans | None) -> AbstractContextManager[object]:
    return nullcontext() if spans is None else spans.handler()


def _run(mode: str, handler: Handler, started: float, spans: InvocationSpans | None) -> int:
    output_path = ""
    try:
        context = traced_context(context_from_env(started), spans)
        if mode == "stdio":
            request = parse_request(sys.stdin.buffer.read())
        else:
            request = parse_request(_read_file(_env_path("INPUT_FILE")))
            output_path = _env_path("OUTPUT_FILE")
    except BadInput as exc:
        return _fail(f"nanofaas-runtime: {exc}", EXIT_BAD_INPUT)
    try:
        with handler_span(spans):
            if mode == "stdio":
                with stdout_to_stderr():
                    payload = encode_json_output(call_once(handler, request, context))
            else:
                payload = encode_json_output(call_once(handler, request, context))
    except (Exception, SystemExit) as exc:
        _debug_traceback(exc)
        return _fail(exception_message(exc), EXIT_FUNCTION_ERROR)
    if not output_path:
        _write_stdout(payload)
        return EXIT_OK
    try:
        _write_file(output_path, payload)
    except OSError as exc:
        return _fail(
            f"nanofaas-runtime: cannot write OUTPUT_FILE {output_path!r}: {exc.strerror}", EXIT_BAD_INPUT
        )
    return EXIT_OK


def _env_path(name: str) -> str:
    path = os.environ.get(name, "")
    if not path:
        raise BadInput(f"{name} is not set")
    return path


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise BadInput(f"cannot read INPUT_FILE {path!r}: {exc.strerror}") from exc


def _write_file(path: str, payload: bytes) -> None:
    with open(path, "wb") as file:
        file.write(payload)


def _write_stdout(payload: bytes) -> None:
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()


def _fail(message: str, exit_code: int) -> int:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    return exit_code


def _debug_traceback(exc: BaseException) -> None:
    """Tracebacks only at LOG_LEVEL=DEBUG: otherwise the stderr tail is the user-facing message."""
    if os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG":
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
