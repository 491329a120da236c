"""Function processes' stderr joins the scheduler's log stream, one JSON object per line.

The project's runtime already writes JSON log lines (with executionId and
traceId); anything else a user's command prints is wrapped so the stream stays
machine-readable. Each line is also kept in the backend's LogBook, which
serves `GET /v1/functions/{name}/logs`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import orjson

from nanofaas_scheduler.dispatch.logs import LogBook, parse_line
from nanofaas_scheduler.logging_setup import format_timestamp


def function_log_sink(function: str, book: LogBook | None = None) -> Callable[[bytes], None]:
    def forward(line: bytes) -> None:
        text = line.rstrip(b"\r")
        if not text.strip():
            return
        if book is not None:
            book.append(function, parse_line(text, time.time_ns() // 1_000_000))
        if not (text.startswith(b"{") and text.endswith(b"}")):
            text = orjson.dumps(
                {
                    "ts": format_timestamp(time.time()),
                    "level": "INFO",
                    "service": "function",
                    "functionName": function,
                    "msg": text.decode("utf-8", "replace"),
                }
            )
        sys.stderr.buffer.write(text + b"\n")
        sys.stderr.flush()

    return forward
