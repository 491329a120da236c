"""POST an invocation to a function's HTTP endpoint over a keep-alive pool."""

from __future__ import annotations

import asyncio

import aiohttp

from nanofaas_runtime import protocol
from nanofaas_runtime.outcome import Outcome, OutcomeKind
from nanofaas_scheduler.dispatch.base import Invocation

JSON = "application/json"


def new_session(connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
    """One session per dispatcher (or per Unix-socket replica): connections are reused."""
    return aiohttp.ClientSession(
        connector=connector or aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
        cookie_jar=aiohttp.DummyCookieJar(),  # runtimes set no cookies; skip the jar's work per request
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )


def request_headers(invocation: Invocation) -> dict[str, str]:
    execution = invocation.execution
    headers = {
        "Content-Type": execution.request.content_type,
        protocol.HEADER_EXECUTION_ID: execution.id,
        protocol.HEADER_TRACE_ID: execution.caller_trace_id or execution.trace_id,
        protocol.HEADER_DEADLINE_MS: str(int(invocation.deadline_epoch * 1000)),
        protocol.HEADER_FUNCTION_NAME: execution.function_name,
    }
    if traceparent := invocation.traceparent or execution.traceparent:
        headers[protocol.HEADER_TRACEPARENT] = traceparent
    return headers


def request_body(invocation: Invocation) -> bytes:
    request = invocation.execution.request
    if request.content_type == JSON:
        return protocol.encode_request(request.data, request.metadata)
    return request.data


async def post_invocation(
    session: aiohttp.ClientSession, url: str, invocation: Invocation, *, keep_alive: bool = True
) -> Outcome:
    """One HTTP attempt; connection failures are CRASH so the scheduler retries them.

    `keep_alive=False` for a server that stops right after: an idle pooled
    connection would only make its graceful shutdown wait.
    """
    headers = request_headers(invocation)
    if not keep_alive:
        headers["Connection"] = "close"
    try:
        async with session.post(url, data=request_body(invocation), headers=headers) as response:
            body = await response.read()
            return protocol.decode_http_response(response.status, response.headers.get("Content-Type"), body)
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError) as exc:
        return Outcome(
            kind=OutcomeKind.CRASH, error_code="CRASH", message=f"{url}: {exc or type(exc).__name__}"
        )
    except aiohttp.InvalidURL as exc:
        return Outcome(kind=OutcomeKind.FUNCTION_ERROR, error_code="INVALID_ENDPOINT", message=str(exc))
