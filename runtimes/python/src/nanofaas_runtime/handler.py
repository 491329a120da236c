"""Loading and calling the user's handler: the contract every runtime mode shares.

A handler is `handle(request, context=None)` (sync or async, or taking only
`request`), found as `HANDLER_FUNCTION` in the module `HANDLER_MODULE` on PYTHONPATH.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson

from nanofaas_runtime.outcome import CONTENT_TYPE_BYTES, CONTENT_TYPE_JSON

EXIT_HANDLER_LOAD_FAILED = 3
"""Exit status when the handler cannot be loaded, so the platform reports a start failure."""

DEFAULT_MODULE = "handler"
DEFAULT_FUNCTION = "handle"

_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class HandlerLoadError(Exception):
    """The handler module or function is missing or broken; start-up must fail."""


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may want to know about the invocation it serves."""

    execution_id: str = ""
    trace_id: str = ""
    function_name: str = ""
    deadline: float | None = None  # absolute, unix epoch seconds
    metadata: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0  # which attempt of the execution this is (1, 2, ...; 0 when not told)

    def remaining_seconds(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        import time

        return max(0.0, self.deadline - time.time())


@dataclass(frozen=True, slots=True)
class Handler:
    """A loaded handler and how to call it (decided once, at load time)."""

    func: Callable[..., Any]
    name: str
    is_async: bool
    context_mode: str  # "positional", "keyword" or "none"

    def call(self, request: dict[str, Any], context: Context) -> Any:
        """Call the handler; for an async handler this returns the awaitable to await."""
        if self.context_mode == "positional":
            return self.func(request, context)
        if self.context_mode == "keyword":
            return self.func(request, context=context)
        return self.func(request)


def load_handler(module_name: str | None = None, function_name: str | None = None) -> Handler:
    """Import the handler named by the arguments or HANDLER_MODULE / HANDLER_FUNCTION."""
    module_name = module_name or os.environ.get("HANDLER_MODULE") or DEFAULT_MODULE
    function_name = function_name or os.environ.get("HANDLER_FUNCTION") or DEFAULT_FUNCTION
    module = _import_module(module_name)
    func = getattr(module, function_name, None)
    if func is None:
        raise HandlerLoadError(f"module {module_name!r} has no attribute {function_name!r}")
    if not callable(func):
        raise HandlerLoadError(f"{module_name}.{function_name} is not callable")
    return Handler(
        func=func,
        name=f"{module_name}.{function_name}",
        is_async=_is_async(func),
        context_mode=_context_mode(func, f"{module_name}.{function_name}"),
    )


def load_handler_or_exit() -> Handler:
    """Load the handler from the environment; on failure explain why on stderr and exit 3."""
    try:
        return load_handler()
    except HandlerLoadError as exc:
        fail_start(f"cannot load handler: {exc}")


def fail_start(message: str, exit_code: int = EXIT_HANDLER_LOAD_FAILED) -> NoReturn:
    """A fatal start-up error: one plain line on stderr (its tail becomes the platform's message)."""
    sys.stderr.write(f"nanofaas-runtime: {message}\n")
    sys.stderr.flush()
    raise SystemExit(exit_code)


def _import_module(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise HandlerLoadError(
                f"module {module_name!r} not found on PYTHONPATH ({os.environ.get('PYTHONPATH', '')!r})"
            ) from exc
        raise HandlerLoadError(f"importing {module_name!r} failed: {describe_exception(exc)}") from exc
    except BaseException as exc:  # any failure while importing user code is a load failure
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise HandlerLoadError(f"importing {module_name!r} failed: {describe_exception(exc)}") from exc


def _is_async(func: Callable[..., Any]) -> bool:
    """`async def` functions, and objects whose `__call__` is one."""
    if inspect.iscoroutinefunction(func):
        return True
    call = None if inspect.isroutine(func) else type(func).__call__
    return call is not None and inspect.iscoroutinefunction(call)


def _context_mode(func: Callable[..., Any], name: str) -> str:
    """Whether the handler takes the context positionally, as `context=`, or not at all."""
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: assume the full contract
        return "positional"
    kinds = [p.kind for p in parameters]
    positional = sum(
        k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in kinds
    )
    if inspect.Parameter.VAR_POSITIONAL in kinds or positional >= 2:
        return "positional"
    if positional == 0:
        raise HandlerLoadError(f"{name} must accept the request as its first argument")
    keyword_context = any(
        p.name == "context" and p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters
    )
    if keyword_context or inspect.Parameter.VAR_KEYWORD in kinds:
        return "keyword"
    return "none"


def build_request(input_value: Any, metadata: Mapping[str, str]) -> dict[str, Any]:
    return {"input": input_value, "metadata": dict(metadata)}


def describe_exception(exc: BaseException) -> str:
    """`Type: message` for logs and load errors."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def exception_message(exc: BaseException) -> str:
    """The message reported as the FUNCTION_ERROR (the type name when the exception has none)."""
    return str(exc) or type(exc).__name__


def encode_output(value: Any) -> tuple[bytes, str]:
    """Serialise a handler's return value: bytes stay raw, anything else becomes one JSON value.

    Raises TypeError when the value cannot be represented as JSON.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), CONTENT_TYPE_BYTES
    try:
        return orjson.dumps(value, option=_JSON_OPTIONS), CONTENT_TYPE_JSON
    except orjson.JSONEncodeError as exc:
        encoded = _encode_with_stdlib(value)
        if encoded is None:
            raise TypeError(f"handler returned a value that is not JSON serializable: {exc}") from exc
        return encoded, CONTENT_TYPE_JSON


def _encode_with_stdlib(value: Any) -> bytes | None:
    """Fallback for what orjson refuses but JSON allows (integers beyond 64 bits)."""
    import json

    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError):
        return None


class InvalidRequest(ValueError):
    """A request that is not `{"input": <any JSON>, "metadata": {str: str}}`."""


def parse_request(raw: bytes, what: str = "request") -> dict[str, Any]:
    """The `{"input", "metadata"}` request JSON as the handler's request dict.

    One parser for every mode (HTTP body, stdin, INPUT_FILE, a Job's request);
    `what` names the source in error messages.
    """
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidRequest(f'{what} must be a JSON object {{"input": ..., "metadata": {{...}}}}')
    metadata = parsed.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidRequest("metadata: must be an object of strings")
    return build_request(parsed.get("input"), metadata)
