"""Function processes' stderr joins the scheduler's log stream, one JSON object per line.

The project's runtime already writes JSON log lines (with executionId and
traceId); anything else a user's command prints is wrapped so the stream stays
machine-readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import orjson


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def function_log_sink(function: str) -> Callable[[bytes], None]:
    def forward(line: bytes) -> None:
        text = line.rstrip(b"\r")
        if not text.strip():
            return
        if not (text.startswith(b"{") and text.endswith(b"}")):
            text = orjson.dumps(
                {
                    "ts": _timestamp(),
                    "level": "INFO",
                    "service": "function",
                    "functionName": function,
                    "msg": text.decode("utf-8", "replace"),
                }
            )
        sys.stderr.buffer.write(text + b"\n")
        sys.stderr.flush()

    return forward
