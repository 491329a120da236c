"""The watchdog's ASGI app: the function HTTP protocol in front of any STDIO/FILE command.

Every `POST /invoke` runs the command once, in its own process group (`oneshot`
judges how it ended), and the outcome becomes the response of
docs/function-protocol.md: success 200, FUNCTION_ERROR 500, death by a signal
502 CRASH, a command that cannot start 503 START_FAILED, the deadline 504 TIMEOUT.
The request body reaches the command exactly as it arrived (stdin or $INPUT_FILE).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from nanofaas_runtime import asgi, protocol
from nanofaas_runtime.asgi import JSON, Receive, Scope, Send
from nanofaas_runtime.handler import InvalidRequest, parse_request
from nanofaas_runtime.logs import format_timestamp
from nanofaas_runtime.outcome import (
    CODE_CRASH,
    CODE_START_FAILED,
    CONTENT_TYPE_BYTES,
    Outcome,
    OutcomeKind,
)
from nanofaas_runtime.outcome import timeout as timed_out
from nanofaas_runtime.watchdog.oneshot import invoke_file, invoke_stdio
from nanofaas_runtime.watchdog.process import cancel_task

log = logging.getLogger("nanofaas_runtime.watchdog")

SERVICE = "watchdog"
MODES = ("stdio", "file")

StderrSink = Callable[[bytes], None]
Run = Callable[[bytes, Mapping[str, str], float, StderrSink], Coroutine[Any, Any, Outcome]]
"""Runs the command once: (request body, environment, seconds allowed, stderr sink) -> outcome."""

_H_CONTENT_TYPE = b"content-type"
_H_EXECUTION_ID = protocol.HEADER_EXECUTION_ID.lower().encode()
_H_TRACE_ID = protocol.HEADER_TRACE_ID.lower().encode()
_H_TRACEPARENT = protocol.HEADER_TRACEPARENT.lower().encode()
_H_DEADLINE_MS = protocol.HEADER_DEADLINE_MS.lower().encode()
_H_FUNCTION_NAME = protocol.HEADER_FUNCTION_NAME.lower().encode()
_H_ATTEMPT = protocol.HEADER_ATTEMPT.lower().encode()

# Per-invocation variables: taken from the request's headers, never left over from our own environment.
_PER_INVOCATION = {
    _H_EXECUTION_ID: "EXECUTION_ID",
    _H_TRACE_ID: "TRACE_ID",
    _H_TRACEPARENT: "TRACEPARENT",
    _H_ATTEMPT: "NANOFAAS_ATTEMPT",
}
# Ours, not the command's: the listening socket is not inherited by the command.
_NOT_INHERITED = frozenset({"NANOFAAS_LISTEN_FD"})

_STATUS = {
    OutcomeKind.FUNCTION_ERROR: 500,
    OutcomeKind.CRASH: 502,
    OutcomeKind.TIMEOUT: 504,
}
_SHUTTING_DOWN = (503, protocol.encode_error(CODE_CRASH, "the watchdog is shutting down"))
_STOPPED = (503, protocol.encode_error(CODE_CRASH, "the watchdog shut down before the command finished"))
_ALREADY_USED = (503, protocol.encode_error(CODE_CRASH, "this single-use watchdog has served its invocation"))


@dataclass(frozen=True, slots=True)
class Settings:
    """How the watchdog runs its command (see `cli` for where each value comes from)."""

    mode: str  # "stdio" or "file"
    command: tuple[str, ...]
    concurrency: int = 64
    default_timeout: float = 30.0  # seconds, when a request has no X-Deadline-Ms
    single_use: bool = False
    grace: float = 5.0  # seconds running invocations get after SIGTERM


class BadRequest(Exception):
    """The invocation request does not follow the protocol (answered 400)."""


def command_runner(mode: str, command: Sequence[str]) -> Run:
    """The STDIO or FILE machinery bound to `command`."""
    invoke = invoke_stdio if mode == "stdio" else invoke_file

    async def run(request: bytes, env: Mapping[str, str], seconds: float, sink: StderrSink) -> Outcome:
        return await invoke(command, request, env=env, timeout=seconds, stderr_sink=sink)

    return run


class WatchdogApp:
    """ASGI app serving `GET /health` and `POST /invoke`, one command process per invocation.

    At most `concurrency` commands run at once; further invocations wait (within their
    deadline) for a slot. It is also the server's `asgi.Lifecycle`: on shutdown new
    invocations are refused, running ones get `grace` seconds, then their process groups
    are killed and they are answered 503 CRASH (the caller retries them).
    """

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._run = command_runner(settings.mode, settings.command)
        self._base_env = {key: value for key, value in environ.items() if key not in _NOT_INHERITED}
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._running: set[asyncio.Task[Outcome]] = set()
        self._claimed = False  # an invocation has arrived (what NANOFAAS_SINGLE_USE allows once)
        self._draining = False
        self._request_exit: Callable[[], None] = lambda: None

    def attach(self, request_exit: Callable[[], None]) -> None:
        self._request_exit = request_exit

    def shutting_down(self) -> None:
        if self._draining:
            return
        self._draining = True
        if self._running:
            grace = self._settings.grace
            log.info("waiting for %d invocation(s)", len(self._running), extra={"graceSeconds": grace})
            asyncio.get_running_loop().call_later(grace, self._stop_running)

    def _stop_running(self) -> None:
        """Cancelling an invocation kills its command's process group (see `oneshot`)."""
        if self._running:
            log.warning("grace over: stopping %d invocation(s)", len(self._running))
        for task in self._running:
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asgi.route(scope, receive, send, self._invoke)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        body = await asgi.read_body(receive)
        if self._settings.single_use and self._claimed:
            await asgi.send_response(send, *_ALREADY_USED, JSON)
            return
        self._claimed = True
        try:
            status, payload = await self._answer(headers, body)
            await asgi.send_response(send, status, payload, JSON)
        finally:
            if self._settings.single_use:  # its one invocation is over: exit
                self._request_exit()

    async def _answer(self, headers: dict[bytes, bytes], body: bytes) -> tuple[int, bytes]:
        if self._draining:
            return _SHUTTING_DOWN
        kind = protocol.media_type(headers.get(_H_CONTENT_TYPE, b"").decode("latin-1"))
        if kind and kind != CONTENT_TYPE_BYTES and not protocol.is_json_media_type(kind):
            return 415, protocol.encode_error("UNSUPPORTED_MEDIA_TYPE", f"unsupported Content-Type {kind!r}")
        try:
            if kind != CONTENT_TYPE_BYTES:
                parse_request(body, "request body")  # checked here; the command gets the bytes as they came
            deadline = _deadline(headers.get(_H_DEADLINE_MS))
            env = self._invocation_env(headers)
        except (BadRequest, InvalidRequest) as exc:
            return 400, protocol.encode_error(protocol.ERROR_INVALID_REQUEST, str(exc))
        budget = self._settings.default_timeout if deadline is None else deadline - time.time()
        outcome = await self._run_in_slot(body, env, budget)
        if outcome is None:
            return _STOPPED
        if outcome.kind is not OutcomeKind.SUCCESS:
            fields = {**_log_fields(env), "error": outcome.message}
            log.warning("invocation ended with %s", outcome.error_code, extra=fields)
        return _response(outcome)

    def _invocation_env(self, headers: dict[bytes, bytes]) -> dict[str, str]:
        """Our environment plus this invocation's variables, taken from its headers."""
        env = dict(self._base_env)
        for header, name in _PER_INVOCATION.items():
            env.pop(name, None)
            if value := _header(headers, header):
                env[name] = value
        try:
            protocol.parse_attempt(env.get("NANOFAAS_ATTEMPT", "0"))
        except ValueError as exc:
            raise BadRequest(f"{protocol.HEADER_ATTEMPT}: must be a non-negative integer") from exc
        if function_name := _header(headers, _H_FUNCTION_NAME):
            env["FUNCTION_NAME"] = function_name
        return env

    async def _run_in_slot(self, body: bytes, env: dict[str, str], budget: float) -> Outcome | None:
        """Wait for a free slot and run the command, both within `budget` seconds; None if shut down."""
        if budget <= 0:
            return timed_out(f"timed out: {protocol.HEADER_DEADLINE_MS} had passed on arrival")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            slots = self._settings.concurrency
            return timed_out(f"timed out after {budget:.3g}s waiting for one of {slots} slots")
        try:
            if self._draining:
                return None
            remaining = round(max(deadline - loop.time(), 0.001), 3)
            # The absolute deadline; INVOCATION_TIMEOUT_MS stays the function's own timeout.
            env["NANOFAAS_DEADLINE_MS"] = str(int((time.time() + remaining) * 1000))
            task = asyncio.create_task(self._run(body, env, remaining, _stderr_sink(env)))
            self._running.add(task)
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:  # our caller (the server) gave up: leave nothing running
                await cancel_task(task)
                raise
            finally:
                self._running.discard(task)
            return None if task.cancelled() else task.result()
        finally:
            self._slots.release()


def _header(headers: dict[bytes, bytes], name: bytes) -> str:
    """A header's value for the command's environment, which cannot hold NUL."""
    value = headers.get(name, b"").decode("latin-1")
    if "\x00" in value:
        raise BadRequest(f"{name.decode()}: must not contain NUL")
    return value


def _response(outcome: Outcome) -> tuple[int, bytes]:
    if outcome.kind is OutcomeKind.SUCCESS:
        return 200, outcome.output
    status = 503 if outcome.error_code == CODE_START_FAILED else _STATUS[outcome.kind]
    return status, protocol.encode_error(outcome.error_code, outcome.message)


def _log_fields(env: Mapping[str, str]) -> dict[str, str]:
    fields = {"executionId": env.get("EXECUTION_ID", ""), "functionName": env.get("FUNCTION_NAME", "")}
    if trace_id := env.get("TRACE_ID"):
        fields["traceId"] = trace_id
    return fields


def _stderr_sink(env: Mapping[str, str]) -> StderrSink:
    """The command's stderr lines join our log stream: JSON lines as they are, others wrapped."""
    fields = _log_fields(env)

    def forward(line: bytes) -> None:
        text = line.rstrip(b"\r")
        if not text.strip():
            return
        if not (text.startswith(b"{") and text.endswith(b"}")):
            entry = {
                "ts": format_timestamp(time.time()),
                "level": "WARNING",
                "service": SERVICE,
                "msg": text.decode("utf-8", "replace"),
                **fields,
                "stream": "stderr",
            }
            text = orjson.dumps(entry)
        sys.stderr.buffer.write(text + b"\n")
        sys.stderr.buffer.flush()

    return forward


def _deadline(value: bytes | None) -> float | None:
    try:
        return protocol.parse_deadline(value)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
