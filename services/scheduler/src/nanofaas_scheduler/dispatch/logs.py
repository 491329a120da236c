"""Function log lines as a backend supplies them, and the bounded in-memory book that keeps them.

A backend answers `Dispatcher.logs(query)`; the local backend keeps the lines
its processes write in a `LogBook` (a ring of recent lines per function, so
memory stays bounded whatever a function prints), a cluster backend can read
them from its pods instead. Followers get new lines through a bounded queue:
one that cannot keep up loses its oldest pending lines, never stalls the
function.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

# Lines kept per function, and the longest message kept (characters).
DEFAULT_LINES_PER_FUNCTION = 1000
MAX_MESSAGE_CHARS = 8192
# Pending lines per follower before its oldest ones are dropped.
_FOLLOWER_QUEUE = 1000
# Followers per function at once.
DEFAULT_MAX_FOLLOWERS = 32


@dataclass(frozen=True, slots=True)
class LogLine:
    ts_ms: int
    stream: str
    execution_id: str
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class LogQuery:
    function: str
    execution_id: str = ""
    since_ms: int = 0
    # 0 = every kept line.
    tail: int = 0
    follow: bool = False

    def matches(self, line: LogLine) -> bool:
        if self.execution_id and line.execution_id != self.execution_id:
            return False
        return line.ts_ms >= self.since_ms


def _text(document: dict[str, Any], key: str, default: str = "") -> str:
    value = document.get(key, default)
    return value if isinstance(value, str) else default


def parse_line(text: bytes, ts_ms: int, stream: str = "stderr") -> LogLine:
    """A line as kept: the runtime's JSON fields when it wrote JSON, else the raw text on `stream`.

    The runtime (and the watchdog) write one JSON object per line with msg, level,
    stream and executionId; anything else a function prints is kept as it is. Both
    backends read their functions' output through this one rule.
    """
    document: Any = None
    if text.startswith(b"{") and text.endswith(b"}"):
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            document = None
    if not isinstance(document, dict):
        return LogLine(ts_ms, stream, "", "INFO", text.decode("utf-8", "replace"))
    return LogLine(
        ts_ms,
        _text(document, "stream", stream),
        _text(document, "executionId"),
        _text(document, "level", "INFO"),
        _text(document, "msg"),
    )


class TooManyFollowers(Exception):
    """A function already has as many followers as the book allows."""


def select(lines: Iterable[LogLine], query: LogQuery) -> list[LogLine]:
    """The kept lines a query asks for, oldest first."""
    chosen = [line for line in lines if query.matches(line)]
    return chosen[-query.tail :] if query.tail else chosen


class _Follower:
    def __init__(self, query: LogQuery) -> None:
        self.query = query
        self.queue: asyncio.Queue[LogLine] = asyncio.Queue(_FOLLOWER_QUEUE)

    def offer(self, line: LogLine) -> None:
        if not self.query.matches(line):
            return
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(line)


class LogBook:
    """The recent lines of every function, each function's bounded to `lines_per_function`."""

    def __init__(
        self,
        lines_per_function: int = DEFAULT_LINES_PER_FUNCTION,
        max_followers: int = DEFAULT_MAX_FOLLOWERS,
    ) -> None:
        self._capacity = lines_per_function
        self._max_followers = max_followers
        self._lines: dict[str, deque[LogLine]] = {}
        self._followers: dict[str, set[_Follower]] = {}

    def append(self, function: str, line: LogLine) -> None:
        if len(line.message) > MAX_MESSAGE_CHARS:
            line = LogLine(
                line.ts_ms, line.stream, line.execution_id, line.level, line.message[:MAX_MESSAGE_CHARS]
            )
        ring = self._lines.get(function)
        if ring is None:
            ring = self._lines[function] = deque(maxlen=self._capacity)
        ring.append(line)
        for follower in self._followers.get(function, ()):
            follower.offer(line)

    def forget(self, function: str) -> None:
        """A deleted function's lines go with it (followers keep their stream until they leave)."""
        self._lines.pop(function, None)

    def read(self, query: LogQuery) -> list[LogLine]:
        return select(self._lines.get(query.function, ()), query)

    def stream(self, query: LogQuery) -> AsyncIterator[LogLine]:
        """The kept lines, then (with follow) new ones until the caller stops iterating.

        Raises TooManyFollowers at once (not on the first line) when the function has enough.
        """
        if query.follow and len(self._followers.get(query.function, ())) >= self._max_followers:
            raise TooManyFollowers(f"function '{query.function}' has {self._max_followers} followers already")
        return self._stream(query)

    async def _stream(self, query: LogQuery) -> AsyncIterator[LogLine]:
        backlog = self.read(query)
        if not query.follow:
            for line in backlog:
                yield line
            return
        # Registered in the same step as the backlog is read, so no line falls between them.
        follower = _Follower(query)
        followers = self._followers.setdefault(query.function, set())
        followers.add(follower)
        try:
            for line in backlog:
                yield line
            while True:
                yield await follower.queue.get()
        finally:
            followers.discard(follower)
            if not followers:
                self._followers.pop(query.function, None)
