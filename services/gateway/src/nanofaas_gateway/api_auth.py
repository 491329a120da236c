"""Optional API authentication: bearer tokens from a file, for REST and for the gateway's own gRPC calls.

Off unless NANOFAAS_API_TOKENS_FILE names a file (docs/security.md). The file
holds one token per line (blank lines and `#` comments ignored), so several
clients can have their own and a rotation can overlap old and new. It is
re-read whenever it changes (size, mtime or inode: a Kubernetes Secret volume
swaps a symlink), so rotating needs no restart. The first token is the
platform's own: the gateway sends it to the scheduler and the registry.

The completion route is the exception: a runtime authenticates it with the
completion token of its attempt, which the scheduler checks; an API token there
only makes the caller an operator (allowed to complete without one).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Iterable
from typing import Any, cast

import grpc
from starlette.types import ASGIApp, Receive, Scope, Send

from nanofaas_gateway import codes
from nanofaas_gateway.errors import error_body

log = logging.getLogger(__name__)

COMPLETION_TOKEN_HEADER = "X-Completion-Token"
DEFAULT_OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
_SCOPE_KEY = "nanofaas.api_authenticated"
_COMPLETE_PATH = re.compile(r"^/v1/internal/executions/[^/]+:complete$")
_BEARER = "bearer "


class TokenFileError(ValueError):
    """The tokens file cannot be used at start; str() names the file and why."""


class TokenFile:
    """The accepted tokens, re-read when the file changes; a failed re-read keeps the last good set.

    One token per line (blank lines and `#` comments ignored): several clients, and
    overlapping old and new tokens during a rotation. A change is seen by its inode,
    size or mtime (a Kubernetes Secret volume swaps a symlink), so rotating needs no
    restart. The first token is the platform's own, sent on its outgoing calls.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: tuple[bytes, ...] = ()
        try:
            self._reload(os.stat(path))
        except OSError as exc:
            raise TokenFileError(f"{path}: cannot read ({exc.strerror})") from None
        if not self._tokens:
            raise TokenFileError(f"{path}: holds no token (one per line)")

    def _reload(self, stat: os.stat_result) -> None:
        with open(self.path, "rb") as file:
            lines = file.read().splitlines()
        self._tokens = tuple(t for t in (line.strip() for line in lines) if t and not t.startswith(b"#"))
        self._stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def tokens(self) -> tuple[bytes, ...]:
        try:
            stat = os.stat(self.path)
            if (stat.st_ino, stat.st_size, stat.st_mtime_ns) != self._stamp:
                self._reload(stat)
                log.info("API tokens reloaded", extra={"tokens": len(self._tokens)})
        except OSError as exc:
            log.warning("API tokens file unreadable; keeping the last tokens", extra={"error": exc.strerror})
        return self._tokens

    def accepts(self, token: str) -> bool:
        """Constant-time comparison against every accepted token."""
        given = token.encode("utf-8", "surrogatepass")
        found = False
        for known in self.tokens():
            found |= hmac.compare_digest(given, known)
        return found

    def own(self) -> str:
        """The platform's own credential: the file's first token."""
        tokens = self.tokens()
        return tokens[0].decode("utf-8", "replace") if tokens else ""


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` value, or ""."""
    if authorization[: len(_BEARER)].lower() != _BEARER:
        return ""
    return authorization[len(_BEARER) :].strip()


def is_api_authenticated(scope: Scope) -> bool:
    """Whether the middleware let this request in on an API token (not merely an open path)."""
    return bool(scope.get(_SCOPE_KEY, False))


class ApiAuthMiddleware:
    """Refuses REST requests without an accepted bearer token, except the open paths and completions."""

    def __init__(
        self, app: ASGIApp, tokens: TokenFile, open_paths: Iterable[str] = DEFAULT_OPEN_PATHS
    ) -> None:
        self.app = app
        self._tokens = tokens
        self._open = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        token = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = bearer_token(value.decode("latin-1"))
                break
        if token and self._tokens.accepts(token):
            scope[_SCOPE_KEY] = True
        elif path not in self._open and not _COMPLETE_PATH.match(path):
            await _refuse(send, "a bearer token is required" if not token else "unknown bearer token")
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, message: str) -> None:
    body = error_body(codes.UNAUTHENTICATED, f"{message} (Authorization: Bearer <token>)")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the gateway's credentials on its gRPC calls ------------------------------------


class _Credentials:
    """Adds `authorization: Bearer <own token>` to a call (read per call: rotation applies)."""

    def __init__(self, tokens: TokenFile) -> None:
        self._tokens = tokens

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", f"Bearer {self._tokens.own()}")
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files an interceptor under the first of the four kinds it is, so each kind
# needs its own object; its continuations are awaitable (its stubs say otherwise).
class _UnaryUnary(_Credentials, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _UnaryStream(_Credentials, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _StreamUnary(_Credentials, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStream(_Credentials, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def bearer_credentials(tokens: TokenFile) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that send the platform's own token on every call to the scheduler and the registry."""
    kinds = (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
    return [cast("grpc.aio.ClientInterceptor", kind(tokens)) for kind in kinds]
