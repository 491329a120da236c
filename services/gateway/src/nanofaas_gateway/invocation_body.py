"""Hand parsing of invoke/enqueue requests (hot path: orjson, no pydantic)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.datastructures import Headers

from nanofaas.v1 import scheduler_pb2
from nanofaas_gateway.convert import JSON, OCTET_STREAM, int64_from_literal, is_json_media_type
from nanofaas_gateway.errors import invalid_argument, unsupported_media_type
from nanofaas_gateway.tracing import outgoing_traceparent

TIMEOUT_HEADER = "X-Timeout-Ms"
_INTEGER = re.compile(r"[+-]?[0-9]+")


def payload_media_type(headers: Headers) -> str:
    """JSON or OCTET_STREAM for the request's Content-Type; anything else is a 415."""
    content_type = headers.get("content-type", "")
    if is_json_media_type(content_type):
        return JSON
    if content_type.split(";", 1)[0].strip().lower() == OCTET_STREAM:
        return OCTET_STREAM
    raise unsupported_media_type(
        f"Content-Type {content_type!r} is not supported; use {JSON} or {OCTET_STREAM}"
    )


def parse_timeout_ms(headers: Headers) -> int | None:
    """X-Timeout-Ms as an int64 (clamped); its range is the scheduler's check, with the registry's limit."""
    raw = headers.get("x-timeout-ms")
    if raw is None:
        return None
    value = raw.strip()
    if _INTEGER.fullmatch(value) is None:
        raise invalid_argument(f"{TIMEOUT_HEADER}: must be an integer")
    return int64_from_literal(value)


def _json_invocation(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The input re-encoded as compact JSON, and the metadata, from an InvocationRequest body."""
    if not body.strip():
        return b"null", {}
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"body: invalid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise invalid_argument('body: must be a JSON object {"input": ..., "metadata": {...}}')
    metadata = document.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise invalid_argument("metadata: must be an object of string values")
    return orjson.dumps(document.get("input")), metadata


def build_invoke_request(
    function_name: str,
    headers: Headers,
    media_type: str,
    body: bytes,
    *,
    timeout_ms: int | None,
    min_registry_revision: int,
    callback_url: str = "",
    min_registry_epoch: int = 0,
) -> scheduler_pb2.InvokeRequest:
    request = scheduler_pb2.InvokeRequest(
        function_name=function_name,
        idempotency_key=headers.get("idempotency-key", ""),
        trace_id=headers.get("x-trace-id", ""),
        traceparent=outgoing_traceparent(headers),
        callback_url=callback_url,
        min_registry_revision=min_registry_revision,
        min_registry_epoch=min_registry_epoch,
    )
    if timeout_ms is not None:
        request.timeout_ms = timeout_ms
    if media_type == OCTET_STREAM:
        request.input.data = body
        request.input.content_type = OCTET_STREAM
        return request
    data, metadata = _json_invocation(body)
    request.input.data = data
    request.input.content_type = JSON
    if metadata:
        request.metadata.update(metadata)
    return request
