"""Optional API authentication of the scheduler's gRPC API: bearer tokens from a file.

Off unless NANOFAAS_API_TOKENS_FILE names a file (docs/security.md). When on,
every call but the open methods (gRPC health by default, for probes) needs
`authorization: Bearer <token>` metadata with a token of the file; the
scheduler's own calls to the registry carry the file's first token. The
gateway and the registry have their own copy of this small module: services
share contracts, not libraries.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import grpc

log = logging.getLogger(__name__)

DEFAULT_OPEN_METHODS = ("/grpc.health.v1.Health/",)
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


class BearerAuth(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Lets a call in only with an accepted `authorization: Bearer <token>`, or to an open method.

    With `tokens` None (authentication off) only the open methods are served: what an
    external listener offers then (health for the kubelet's probes, nothing else).
    """

    def __init__(self, tokens: TokenFile | None, open_methods: Iterable[str] = DEFAULT_OPEN_METHODS) -> None:
        self._tokens = tokens
        self._open = tuple(open_methods)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = handler_call_details.method
        if self._open and method.startswith(self._open):
            return await continuation(handler_call_details)
        token = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str):
                token = bearer_token(value)
                break
        if self._tokens is not None and token and self._tokens.accepts(token):
            return await continuation(handler_call_details)
        handler = cast("grpc.RpcMethodHandler[Any, Any] | None", await continuation(handler_call_details))
        if handler is None:  # an unknown method stays UNIMPLEMENTED (grpc's stubs omit the None)
            return cast("grpc.RpcMethodHandler[Any, Any]", None)
        if self._tokens is None:
            message = "this listener serves only health without API authentication (NANOFAAS_API_TOKENS_FILE)"
        else:
            message = "a bearer token is required" if not token else "unknown bearer token"
        return _refusing(handler, f"{message} (metadata authorization: Bearer <token>)")


def _refusing(handler: grpc.RpcMethodHandler[Any, Any], message: str) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape that answers UNAUTHENTICATED before reading anything."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED, message, trailing_metadata=(("x-error-code", "UNAUTHENTICATED"),)
        )

    deserializer, serializer = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, deserializer, serializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, deserializer, serializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, deserializer, serializer)
    return grpc.unary_unary_rpc_method_handler(refuse, deserializer, serializer)


# -- the scheduler's credentials on its calls to the registry ---------------------------


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
    """Interceptors that send the platform's own token on every call to the registry."""
    kinds = (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
    return [cast("grpc.aio.ClientInterceptor", kind(tokens)) for kind in kinds]
