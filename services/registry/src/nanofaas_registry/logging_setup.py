"""JSON-lines logging to stderr: one object per line with ts, level, service, msg and extras.

`{"ts":"2026-11-27T10:00:00.123Z","level":"INFO","service":"registry","msg":"...",...}`:
compact, UTC with milliseconds and "Z", the same shape every nanofaas service writes.
Once tracing is on, records logged inside a traced RPC also carry its traceId.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

SERVICE = "registry"

# Attributes every LogRecord has; anything else was passed via `extra=` and is emitted as a field.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)

# Returns the current OpenTelemetry trace id ("" outside a span); set only when tracing is on,
# so with tracing off the formatter never touches OpenTelemetry.
_trace_id_source: Callable[[], str] | None = None


def enable_trace_ids(source: Callable[[], str] | None) -> None:
    """Adds `traceId` from `source` to every record logged inside a span (None turns it off)."""
    global _trace_id_source
    _trace_id_source = source


def format_timestamp(created: float) -> str:
    """ISO-8601 UTC with milliseconds and "Z", e.g. 2026-11-27T10:00:00.123Z."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonLineFormatter(logging.Formatter):
    """Formats a record as a single JSON object so log shippers need no parsing rules."""

    def __init__(self, service: str = SERVICE) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": format_timestamp(record.created),
            "level": record.levelname,
            "service": self._service,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if _trace_id_source is not None and "traceId" not in entry:
            trace_id = _trace_id_source()
            if trace_id:
                entry["traceId"] = trace_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Replaces the root handlers with one JSON-lines handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    resolved = logging.getLevelName(level.upper())
    root.setLevel(resolved if isinstance(resolved, int) else logging.INFO)
