"""StreamTail: a drained pipe whose lines can be forwarded as they arrive."""

from __future__ import annotations

import asyncio

from nanofaas_runtime.watchdog.process import MAX_LINE_BYTES, StreamTail


async def test_lines_are_forwarded_whole_and_the_tail_is_kept() -> None:
    stream = asyncio.StreamReader()
    lines: list[bytes] = []
    tail = StreamTail(stream, limit=16, sink=lines.append)
    stream.feed_data(b"first li")
    stream.feed_data(b"ne\nsecond line\nthird")
    stream.feed_data(b"x" * (MAX_LINE_BYTES + 5))
    stream.feed_eof()
    await tail.finish(timeout=5)
    assert lines[:2] == [b"first line", b"second line"]
    assert lines[2] == b"third" + b"x" * (MAX_LINE_BYTES - 5)  # an endless line is cut, not held
    assert lines[3] == b"x" * 10
    assert tail.text().endswith("x" * 10)
