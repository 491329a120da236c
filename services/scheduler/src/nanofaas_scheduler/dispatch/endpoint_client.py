"""ENDPOINT functions' client: aiohttp, for any URL a user gives (https included).

Its own module so that aiohttp (~9 MiB of RSS with what it imports) is loaded
only by a scheduler that calls an ENDPOINT function: the processes and pods we
run are reached through the lean hop client (http_invoke.invoke).
"""

from __future__ import annotations

import asyncio

import aiohttp

from nanofaas_scheduler.core import codes
from nanofaas_scheduler.core.outcome import Outcome, crash, function_error
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.function_protocol import decode_response, request_body, request_headers
from nanofaas_scheduler.dispatch.http_invoke import max_output_bytes, output_too_large

_READ_CHUNK = 256 * 1024


async def _read_capped(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None once it passes the output limit (the rest is never read)."""
    limit = max_output_bytes()
    if response.content_length is not None:
        if response.content_length > limit:
            return None
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def new_session() -> aiohttp.ClientSession:
    """The ENDPOINT dispatcher's session: connections are reused."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
        cookie_jar=aiohttp.DummyCookieJar(),  # functions set no cookies; skip the jar's work per request
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )


async def post_invocation(session: aiohttp.ClientSession, url: str, attempt: Attempt) -> Outcome:
    """One attempt to an ENDPOINT function's URL (any URL, https); failures as `invoke`'s."""
    try:
        async with session.post(
            url, data=request_body(attempt), headers=request_headers(attempt)
        ) as response:
            body = await _read_capped(response)
            if body is None:
                response.close()  # the connection is not reused: the rest of the body is unread
                return output_too_large(response.content_length)
            return decode_response(response.status, response.headers.get("Content-Type"), body)
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError) as exc:
        return crash(f"{url}: {exc or type(exc).__name__}")
    except aiohttp.InvalidURL as exc:
        return function_error(str(exc), codes.INVALID_ENDPOINT)
