"""The one place that turns failures into `{"error": {"code", "message"}}` responses."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, cast

import grpc
import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from nanofaas_gateway import codes

log = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"

# gRPC status -> (HTTP status, REST error code).
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.NOT_FOUND: (404, codes.NOT_FOUND),
    grpc.StatusCode.ALREADY_EXISTS: (409, codes.ALREADY_EXISTS),
    grpc.StatusCode.INVALID_ARGUMENT: (400, codes.INVALID_ARGUMENT),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, codes.RESOURCE_EXHAUSTED),
    grpc.StatusCode.DEADLINE_EXCEEDED: (408, codes.TIMEOUT),
    grpc.StatusCode.UNAVAILABLE: (503, codes.UNAVAILABLE),
    grpc.StatusCode.UNAUTHENTICATED: (401, codes.UNAUTHENTICATED),
    grpc.StatusCode.PERMISSION_DENIED: (403, codes.PERMISSION_DENIED),
}
# Error codes for plain HTTP errors raised by routing and request parsing; any other
# 4xx is an INVALID_ARGUMENT and any other status an INTERNAL error.
_HTTP_CODES: dict[int, str] = {
    400: codes.INVALID_ARGUMENT,
    401: codes.UNAUTHENTICATED,
    403: codes.PERMISSION_DENIED,
    404: codes.NOT_FOUND,
    405: codes.METHOD_NOT_ALLOWED,
    408: codes.TIMEOUT,
    413: codes.PAYLOAD_TOO_LARGE,
    415: codes.UNSUPPORTED_MEDIA_TYPE,
    422: codes.VALIDATION_ERROR,
    429: codes.RESOURCE_EXHAUSTED,
    503: codes.UNAVAILABLE,
}
# Codes a service may name in trailing metadata that have a status of their own.
_NAMED_STATUS: dict[str, int] = {codes.PAYLOAD_TOO_LARGE: 413, codes.CRASH: 502}
_DEFAULT_RETRY_AFTER = "1"
INTERNAL_MESSAGE = "internal error"


class ApiError(Exception):
    """A failure with a known REST answer, raised anywhere in request handling."""

    def __init__(
        self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def not_found(message: str) -> ApiError:
    return ApiError(404, codes.NOT_FOUND, message)


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, codes.INVALID_ARGUMENT, message)


def validation_error(message: str) -> ApiError:
    return ApiError(422, codes.VALIDATION_ERROR, message)


def unauthenticated(message: str) -> ApiError:
    # The scheme a client should use (RFC 6750).
    return ApiError(401, codes.UNAUTHENTICATED, message, {"WWW-Authenticate": "Bearer"})


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, codes.UNSUPPORTED_MEDIA_TYPE, message)


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_response(
    status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(error_body(code, message), status_code, headers, media_type=JSON_MEDIA_TYPE)


def internal_error_response(headers: Mapping[str, str] | None = None) -> Response:
    """The generic 500: a fault of the gateway or an answer it cannot map, details only in logs."""
    return error_response(500, codes.INTERNAL, INTERNAL_MESSAGE, headers)


def _trailing_metadata(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    metadata = cast("Iterable[tuple[str, str | bytes]]", exc.trailing_metadata() or ())
    values: dict[str, str] = {}
    for key, value in metadata:
        values[str(key).lower()] = value.decode() if isinstance(value, bytes) else str(value)
    return values


def grpc_error_response(exc: grpc.aio.AioRpcError) -> Response:
    """Map a failed gRPC call to its REST error; unknown codes become a generic 500."""
    mapped = _GRPC_TO_HTTP.get(exc.code())
    if mapped is None:
        log.error("unexpected gRPC error", extra={"grpcCode": exc.code().name, "details": exc.details()})
        return internal_error_response()
    status_code, code = mapped
    message = exc.details() or code.lower().replace("_", " ")
    headers: dict[str, str] = {}
    trailers = _trailing_metadata(exc)
    # A service may name the precise REST error code (e.g. SHUTTING_DOWN for UNAVAILABLE).
    named = trailers.get("x-error-code", "")
    code = named if named in codes.ALL_CODES else code
    # A permanent refusal with its own status (e.g. a spec or payload over a size limit: 413).
    status_code = _NAMED_STATUS.get(code, status_code)
    if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
        retry_after = trailers.get("retry-after", "").strip()
        headers["Retry-After"] = (
            retry_after if retry_after.isascii() and retry_after.isdigit() else _DEFAULT_RETRY_AFTER
        )
        if reason := trailers.get("x-queue-reject-reason"):
            headers["X-Queue-Reject-Reason"] = reason
    return error_response(status_code, code, message, headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_error_response(exc: RequestValidationError) -> Response:
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return error_response(400, codes.INVALID_ARGUMENT, f"body: invalid JSON ({detail})")
    messages = [
        f"{_field_path(tuple(error.get('loc', ())))}: {error.get('msg', 'invalid')}" for error in errors
    ]
    return error_response(422, codes.VALIDATION_ERROR, "; ".join(messages) or "invalid request")


def http_error_response(exc: StarletteHTTPException) -> Response:
    code = _HTTP_CODES.get(exc.status_code)
    if code is None:
        code = codes.INVALID_ARGUMENT if 400 <= exc.status_code < 500 else codes.INTERNAL
    message = exc.detail if isinstance(exc.detail, str) else code.lower().replace("_", " ")
    return error_response(exc.status_code, code, message, exc.headers)


async def _on_api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


async def _on_grpc_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.aio.AioRpcError)
    return grpc_error_response(exc)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and exc.detail == HTTPStatus.NOT_FOUND.phrase:
        exc = StarletteHTTPException(404, f"no route for {request.method} {request.url.path}")
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        exc = StarletteHTTPException(405, message, {"Allow": allowed_methods(request)})
    return http_error_response(exc)


async def _on_unexpected_error(_: Request, exc: Exception) -> Response:
    return internal_error_response()


def allowed_methods(request: Request) -> str:
    """Allow for a 405: the methods of every route the path matches.

    Starlette names only the first route that matches the path, and `{name}` matches
    `hello:invoke` too; no name or id holds a ':', so a route is counted only if its
    path parameters hold none.
    """
    methods: set[str] = set()
    for route in getattr(request.app.state, "all_routes", request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        match = regex.fullmatch(request.url.path) if regex is not None else None
        if match is not None and not any(":" in value for value in match.groupdict().values()):
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(grpc.aio.AioRpcError, _on_grpc_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
