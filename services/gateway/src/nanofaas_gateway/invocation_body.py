"""Hand parsing of invoke/enqueue requests (hot path: orjson, no pydantic)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.datastructures import Headers

from nanofaas.v1 import scheduler_pb2
from nanofaas_gateway import codes
from nanofaas_gateway.config import Settings
from nanofaas_gateway.convert import JSON, OCTET_STREAM, int64_from_literal, is_json_request_body
from nanofaas_gateway.errors import ApiError, invalid_argument, unsupported_media_type
from nanofaas_gateway.outbound_policy import OutboundPolicy, UrlNotAllowed
from nanofaas_gateway.tracing import outgoing_traceparent

TIMEOUT_HEADER = "X-Timeout-Ms"
_DEFAULT_SETTINGS = Settings()
_INTEGER = re.compile(r"[+-]?[0-9]+")


def payload_media_type(headers: Headers) -> str:
    """JSON or OCTET_STREAM for the request's Content-Type; anything else is a 415.

    No type, and curl's default form type, are read as JSON.
    """
    content_type = headers.get("content-type", "")
    if is_json_request_body(content_type):
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


def _json_invocation(body: bytes, settings: Settings) -> tuple[bytes, dict[str, str]]:
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
    check_metadata(metadata, settings)
    try:
        data = orjson.dumps(document.get("input"))
    except orjson.JSONEncodeError:  # orjson encodes at most 254 levels of nesting
        raise invalid_argument(f"input: nested deeper than {MAX_JSON_DEPTH} levels") from None
    return data, metadata


# The deepest JSON input accepted (orjson's limit when it re-encodes the input compactly).
MAX_JSON_DEPTH = 254


def check_metadata(metadata: dict[str, str], settings: Settings) -> None:
    """Metadata travels with the execution everywhere: bounded in entries and in bytes."""
    if len(metadata) > settings.max_metadata_entries:
        raise invalid_argument(f"metadata: at most {settings.max_metadata_entries} entries")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > settings.max_metadata_bytes:
        raise invalid_argument(f"metadata: keys and values exceed {settings.max_metadata_bytes} bytes")


def idempotency_key(headers: Headers, settings: Settings) -> str:
    """The Idempotency-Key header, bounded: the scheduler keeps every key for its TTL."""
    key = headers.get("idempotency-key", "")
    if len(key) > settings.max_idempotency_key_bytes:
        raise invalid_argument(f"Idempotency-Key: at most {settings.max_idempotency_key_bytes} bytes")
    return key


def callback_url(headers: Headers, outbound: OutboundPolicy) -> str:
    """X-Callback-Url: an absolute http(s) URL to an address the outbound policy allows."""
    url = headers.get("x-callback-url", "")
    if not url:
        return ""
    if not url.lower().startswith(("http://", "https://")):
        raise invalid_argument("X-Callback-Url: must be an absolute http:// or https:// URL")
    try:
        outbound.check_literal(url)
    except UrlNotAllowed as exc:
        raise ApiError(400, codes.URL_NOT_ALLOWED, f"X-Callback-Url: {exc}") from None
    return url


def build_invoke_request(
    function_name: str,
    headers: Headers,
    media_type: str,
    body: bytes,
    *,
    timeout_ms: int | None,
    min_registry_revision: int,
    settings: Settings = _DEFAULT_SETTINGS,
    callback_url: str = "",
    min_registry_epoch: int = 0,
) -> scheduler_pb2.InvokeRequest:
    request = scheduler_pb2.InvokeRequest(
        function_name=function_name,
        idempotency_key=idempotency_key(headers, settings),
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
    data, metadata = _json_invocation(body, settings)
    request.input.data = data
    request.input.content_type = JSON
    if metadata:
        request.metadata.update(metadata)
    return request
