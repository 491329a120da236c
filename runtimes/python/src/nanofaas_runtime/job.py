"""Job mode: what a Kubernetes Job runs. One request from the environment, one handler call,
the result POSTed to the platform's callback, then exit.

The request is the InvocationRequest JSON `{"input", "metadata"}` in env NANOFAAS_REQUEST
or in the file named by NANOFAAS_REQUEST_FILE; EXECUTION_ID, CALLBACK_URL, TRACE_ID,
TRACEPARENT, FUNCTION_NAME, INVOCATION_TIMEOUT_MS and NANOFAAS_ATTEMPT (sent back in the
report, so a stale attempt's is ignored) give the rest. The callback uses only the stdlib
HTTP client: a Job pays its start-up on every invocation.

Exit codes: 0 success; 1 the handler raised (reported as FUNCTION_ERROR); 2 bad request
or environment; 3 the handler could not be loaded; 4 the callback could not be delivered
(takes precedence: the platform never learnt the result).
"""

from __future__ import annotations

import base64
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from nanofaas_runtime.handler import (
    EXIT_HANDLER_LOAD_FAILED,
    HandlerLoadError,
    encode_output,
    exception_message,
    load_handler,
)
from nanofaas_runtime.oneshot import (
    EXIT_BAD_INPUT,
    EXIT_FUNCTION_ERROR,
    EXIT_OK,
    BadInput,
    attempt_from_env,
    call_once,
    context_from_env,
    handler_span,
    parse_request,
    run_traced,
    traced_context,
)
from nanofaas_runtime.outcome import CODE_FUNCTION_ERROR, CODE_START_FAILED, CONTENT_TYPE_BYTES

if TYPE_CHECKING:
    from nanofaas_runtime.invocation_spans import InvocationSpans

EXIT_CALLBACK_FAILED = 4
"""Exit status when the result could not be delivered to CALLBACK_URL."""

CODE_INVALID_REQUEST = "INVALID_REQUEST"
COMPLETE_PATH = "/v1/internal/executions/{execution_id}:complete"

CALLBACK_ATTEMPTS = 5
CALLBACK_FIRST_BACKOFF = 0.1  # seconds, doubled after each failed attempt
CALLBACK_ATTEMPT_TIMEOUT = 5.0
CALLBACK_TOTAL_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try delivering the result: bounded attempts and bounded total time."""

    attempts: int = CALLBACK_ATTEMPTS
    first_backoff: float = CALLBACK_FIRST_BACKOFF
    attempt_timeout: float = CALLBACK_ATTEMPT_TIMEOUT
    total_seconds: float = CALLBACK_TOTAL_SECONDS


class CallbackFailed(Exception):
    """The callback was refused (4xx) or every attempt failed."""


def callback_url(base_url: str, execution_id: str) -> str:
    """`{base}/v1/internal/executions/{id}:complete` for a base URL such as http://gateway:8080."""
    from urllib.parse import quote

    return base_url.rstrip("/") + COMPLETE_PATH.format(execution_id=quote(execution_id, safe=""))


def success_body(payload: bytes, content_type: str, attempt: int | None = None) -> bytes:
    """The completion body; JSON output is spliced in as is, bytes travel as base64.

    `attempt` (from NANOFAAS_ATTEMPT) lets the platform ignore the report of a stale attempt.
    """
    if content_type == CONTENT_TYPE_BYTES:
        body: dict[str, object] = {"status": "success"}
        if attempt is not None:
            body["attempt"] = attempt
        body["output"] = base64.b64encode(payload).decode("ascii")
        body["outputContentType"] = CONTENT_TYPE_BYTES
        return orjson.dumps(body)
    head = b'{"status":"success",'
    if attempt is not None:
        head += b'"attempt":' + str(attempt).encode() + b","
    return head + b'"output":' + payload + b"}"


def error_body(code: str, message: str, error_type: str | None = None, attempt: int | None = None) -> bytes:
    error: dict[str, str] = {"code": code, "message": message}
    if error_type is not None:
        error["type"] = error_type
    body: dict[str, object] = {"status": "error"}
    if attempt is not None:
        body["attempt"] = attempt
    body["error"] = error
    return orjson.dumps(body)


def post_completion(
    url: str, body: bytes, headers: dict[str, str], policy: RetryPolicy = RetryPolicy()
) -> None:
    """POST `body` to `url`, retrying connection errors and 5xx/429 with doubling backoff.

    Any other status >= 300 (404: the execution is unknown) is final. Raises CallbackFailed.
    """
    started = time.monotonic()
    backoff = policy.first_backoff
    last_error = "no attempt made"
    attempt = 0
    for attempt in range(1, policy.attempts + 1):
        remaining = policy.total_seconds - (time.monotonic() - started)
        if remaining <= 0:
            break
        try:
            status = _post_once(url, body, headers, min(policy.attempt_timeout, remaining))
        except OSError as exc:  # refused, reset, DNS, timeout (socket.timeout is an OSError)
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if status < 300:
                return
            last_error = f"HTTP {status}"
            if status < 500 and status != 429:
                raise CallbackFailed(f"callback refused with {last_error}")
        if attempt < policy.attempts:
            time.sleep(min(backoff, max(0.0, policy.total_seconds - (time.monotonic() - started))))
            backoff *= 2
    raise CallbackFailed(f"callback failed after {attempt} attempt(s): {last_error}")


def _post_once(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackFailed(f"CALLBACK_URL must be an http(s) URL, got {url!r}")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", "Content-Length": str(len(body)), **headers},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    except http.client.HTTPException as exc:  # malformed answer: treat like a broken connection
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


def _trace_headers(spans: InvocationSpans | None) -> dict[str, str]:
    """X-Trace-Id as given; traceparent of the invoke span when tracing is on, else passed through."""
    headers = {}
    if trace_id := os.environ.get("TRACE_ID", "").strip():
        headers["X-Trace-Id"] = trace_id
    traceparent = os.environ.get("TRACEPARENT", "").strip()
    if spans is not None:
        from nanofaas_runtime.invocation_spans import current_traceparent

        traceparent = current_traceparent() or traceparent
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


def _completion_token_header() -> dict[str, str]:
    """The attempt's completion token, the platform's proof that this report is this attempt's.

    Without it the platform refuses the report (401, docs/security.md). It is a
    secret: sent only in this header, never printed.
    """
    token = os.environ.get("NANOFAAS_COMPLETION_TOKEN", "").strip()
    return {"X-Completion-Token": token} if token else {}


def read_job_request() -> bytes:
    """The request JSON from NANOFAAS_REQUEST, else from the file named by NANOFAAS_REQUEST_FILE."""
    inline = os.environ.get("NANOFAAS_REQUEST")
    if inline is not None and inline.strip():
        return inline.encode()
    path = os.environ.get("NANOFAAS_REQUEST_FILE", "").strip()
    if not path:
        raise BadInput("neither NANOFAAS_REQUEST nor NANOFAAS_REQUEST_FILE is set")
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise BadInput(f"cannot read NANOFAAS_REQUEST_FILE {path!r}: {exc.strerror}") from exc


def _report(
    url: str, body: bytes, exit_code: int, message: str = "", spans: InvocationSpans | None = None
) -> int:
    """Deliver the completion; the exit code is `exit_code`, or 4 if delivery failed."""
    if message:
        _stderr(message)
    try:
        post_completion(url, body, {**_trace_headers(spans), **_completion_token_header()})
    except CallbackFailed as exc:
        _stderr(f"nanofaas-runtime: {exc} ({url})")
        return EXIT_CALLBACK_FAILED
    return exit_code


def run() -> int:
    """Run the one invocation of a Job and return the process exit code."""
    started = time.time()
    execution_id = os.environ.get("EXECUTION_ID", "").strip()
    base_url = os.environ.get("CALLBACK_URL", "").strip()
    if not execution_id or not base_url:
        return _fail("nanofaas-runtime: job mode needs EXECUTION_ID and CALLBACK_URL", EXIT_BAD_INPUT)
    try:
        attempt = attempt_from_env()
    except BadInput as exc:  # no report: the platform could not match it to an attempt
        return _fail(f"nanofaas-runtime: {exc}", EXIT_BAD_INPUT)
    url = callback_url(base_url, execution_id)
    return run_traced("job", lambda spans: _run(url, attempt, started, spans))


def _run(url: str, attempt: int | None, started: float, spans: InvocationSpans | None) -> int:
    try:
        handler = load_handler()
    except HandlerLoadError as exc:
        message = f"cannot load handler: {exc}"
        body = error_body(CODE_START_FAILED, message, attempt=attempt)
        return _report(url, body, EXIT_HANDLER_LOAD_FAILED, f"nanofaas-runtime: {message}", spans)
    try:
        context = traced_context(context_from_env(started), spans)
        request = parse_request(read_job_request())
    except BadInput as exc:
        body = error_body(CODE_INVALID_REQUEST, str(exc), attempt=attempt)
        return _report(url, body, EXIT_BAD_INPUT, f"nanofaas-runtime: {exc}", spans)
    try:
        with handler_span(spans):
            payload, content_type = encode_output(call_once(handler, request, context))
    except (Exception, SystemExit) as exc:
        message = exception_message(exc)
        body = error_body(CODE_FUNCTION_ERROR, message, type(exc).__name__, attempt)
        return _report(url, body, EXIT_FUNCTION_ERROR, message, spans)
    return _report(url, success_body(payload, content_type, attempt), EXIT_OK, spans=spans)


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _fail(message: str, exit_code: int) -> int:
    _stderr(message)
    return exit_code
