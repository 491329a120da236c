"""Handler print()s in HTTP mode become structured log lines carrying the executionId.

`install()` replaces sys.stdout/sys.stderr with `CapturedStream`s. While an invocation
runs (`invocation_scope`), whole lines written by the handler are emitted on the real
stderr as `{"ts","level","service":"runtime","msg","executionId","functionName","stream"}`
(plus "traceId" when the invocation has one);
outside an invocation writes pass straight through. Output written at the file
descriptor level (C extensions, subprocesses) and from threads the handler starts
itself is not attributed and passes through unchanged.

Never installed in STDIO mode, where stdout carries the result.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from nanofaas_runtime.logs import SERVICE, format_timestamp

MAX_LINE_CHARS = 64 * 1024
"""A longer run of output without a newline is emitted in pieces of this size."""

_LEVELS = {"stdout": "INFO", "stderr": "WARNING"}


@dataclass(frozen=True, slots=True, eq=False)
class Invocation:
    """Identity of one running invocation (compared by identity, so equal ids never share a buffer)."""

    execution_id: str
    function_name: str
    trace_id: str = ""


current_invocation: ContextVar[Invocation | None] = ContextVar("nanofaas_invocation", default=None)


class CapturedStream(io.TextIOBase):
    """A text stream that turns lines written inside an invocation into JSON log lines on `sink`."""

    def __init__(self, stream_name: str, original: TextIO, sink: TextIO, lock: threading.Lock) -> None:
        super().__init__()
        self._stream_name = stream_name
        self._level = _LEVELS.get(stream_name, "INFO")
        self._original = original
        self._sink = sink
        self._lock = lock  # shared by both streams: one JSON line is never interleaved with another
        self._partial: dict[Invocation, str] = {}

    @property
    def original(self) -> TextIO:
        return self._original

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._original.encoding

    @property
    def buffer(self) -> Any:
        """Binary writes are not line-attributed: they go to the real stream."""
        return self._original.buffer

    def fileno(self) -> int:
        return self._original.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        invocation = current_invocation.get()
        if invocation is None:
            return self._original.write(text)
        with self._lock:
            pending = self._partial.pop(invocation, "") + text
            *lines, rest = pending.split("\n")
            while len(rest) >= MAX_LINE_CHARS:
                lines.append(rest[:MAX_LINE_CHARS])
                rest = rest[MAX_LINE_CHARS:]
            if rest:
                self._partial[invocation] = rest
            for line in lines:
                self._emit(invocation, line)
        return len(text)

    def flush(self) -> None:
        self._original.flush()

    def finish(self, invocation: Invocation) -> None:
        """Emit what the invocation left without a trailing newline."""
        with self._lock:
            rest = self._partial.pop(invocation, "")
            if rest:
                self._emit(invocation, rest)

    def _emit(self, invocation: Invocation, line: str) -> None:
        entry = {
            "ts": format_timestamp(time.time()),
            "level": self._level,
            "service": SERVICE,
            "msg": line.rstrip("\r"),
            "executionId": invocation.execution_id,
            "functionName": invocation.function_name,
            "stream": self._stream_name,
        }
        if invocation.trace_id:
            entry["traceId"] = invocation.trace_id
        self._sink.write(orjson.dumps(entry).decode() + "\n")
        self._sink.flush()


_installed: list[CapturedStream] = []


def install() -> None:
    """Wrap sys.stdout and sys.stderr (idempotent); JSON lines go to the real stderr."""
    if _installed:
        return
    lock = threading.Lock()
    real_stderr = sys.stderr
    stdout = CapturedStream("stdout", sys.stdout, real_stderr, lock)
    stderr = CapturedStream("stderr", real_stderr, real_stderr, lock)
    sys.stdout, sys.stderr = stdout, stderr
    _installed.extend((stdout, stderr))


def uninstall() -> None:
    """Restore the original streams (for tests)."""
    if not _installed:
        return
    stdout, stderr = _installed
    sys.stdout, sys.stderr = stdout.original, stderr.original
    _installed.clear()


@contextmanager
def invocation_scope(execution_id: str, function_name: str, trace_id: str = "") -> Iterator[Invocation]:
    """Attribute output written in this context (and contexts copied from it) to the invocation."""
    invocation = Invocation(execution_id, function_name, trace_id)
    token = current_invocation.set(invocation)
    try:
        yield invocation
    finally:
        current_invocation.reset(token)
        for stream in _installed:
            stream.finish(invocation)
