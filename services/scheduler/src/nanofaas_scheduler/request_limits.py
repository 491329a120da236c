"""The checks of an InvokeRequest that the gateway makes on REST, made again on gRPC.

Invoke and Enqueue are reachable directly (any gRPC client of the scheduler), so
they must refuse what REST refuses, with the same meaning: a payload over the
limit, input that is not the JSON it claims to be, a name that cannot exist,
an unbounded idempotency key or metadata (all kept in memory for a TTL), a
callback URL that is not http(s). Every refusal is permanent, so none is
RESOURCE_EXHAUSTED (which callers retry); see docs/limits.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
import orjson

from nanofaas.v1 import scheduler_pb2, types_pb2
from nanofaas_scheduler.core.codes import code_name

JSON = "application/json"
# The FunctionSpec name rule (the registry's): any other name cannot exist.
_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9._-]{0,62}")
_SHOWN_NAME_CHARS = 64
PAYLOAD_TOO_LARGE = code_name(types_pb2.ERROR_CODE_PAYLOAD_TOO_LARGE)


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_payload_bytes: int = 10 * 1024 * 1024
    max_idempotency_key_bytes: int = 256
    max_metadata_entries: int = 64
    max_metadata_bytes: int = 16 * 1024
    max_callback_url_bytes: int = 8 * 1024


class RequestRefused(Exception):
    """A request the limits refuse: its gRPC status, message and REST error code (trailer)."""

    def __init__(self, status: grpc.StatusCode, message: str, error_code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


def shown_name(name: str) -> str:
    """A name as an error message may echo it: a 1 MB name is not sent back whole."""
    return name if len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "..."


def check_invoke_request(request: scheduler_pb2.InvokeRequest, limits: RequestLimits) -> None:
    if not request.function_name:
        raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, "function_name: required")
    if _NAME.fullmatch(request.function_name) is None:
        message = f"function '{shown_name(request.function_name)}' not found"
        raise RequestRefused(grpc.StatusCode.NOT_FOUND, message)
    data = request.input.data
    if len(data) > limits.max_payload_bytes:
        message = f"input.data: {len(data)} bytes exceeds the limit of {limits.max_payload_bytes} bytes"
        raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, message, PAYLOAD_TOO_LARGE)
    if (request.input.content_type or JSON) == JSON and data.strip():
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            message = f"input.data: invalid JSON ({exc})"
            raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, message) from None
    if len(request.idempotency_key.encode()) > limits.max_idempotency_key_bytes:
        message = f"idempotency_key: at most {limits.max_idempotency_key_bytes} bytes"
        raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, message)
    if len(request.metadata) > limits.max_metadata_entries:
        message = f"metadata: at most {limits.max_metadata_entries} entries"
        raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, message)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in request.metadata.items())
    if size > limits.max_metadata_bytes:
        message = f"metadata: keys and values exceed {limits.max_metadata_bytes} bytes"
        raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, message)
    url = request.callback_url
    if url:
        if len(url) > limits.max_callback_url_bytes:
            message = f"callback_url: at most {limits.max_callback_url_bytes} bytes"
            raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, message)
        if not url.lower().startswith(("http://", "https://")):
            message = "callback_url: must be an absolute http:// or https:// URL"
            raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, message)
