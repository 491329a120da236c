"""JSON-lines logging to stderr: one object per line, the same shape in every nanofaas process.

`{"ts":"2026-11-27T10:00:00.123Z","level":"INFO","service":"runtime","msg":"...","logger":"..."}`,
then the fields passed with `extra=`, then `traceId`/`spanId` of the current OpenTelemetry
span when one is current, and `exc` (the traceback) when an exception is logged.

The gateway, registry, scheduler and runtime each keep their own copy of this module
(services share contracts, not code); tests/e2e/test_conformance.py proves the copies
behave alike, so change them together.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

SERVICE = "runtime"
# The LOG_LEVEL values understood (any case); anything else means INFO, with a warning.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Attributes every LogRecord has (built directly: a record factory may add fields of its own);
# anything else was passed with `extra=` and is logged too.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

log = logging.getLogger(__name__)


def format_timestamp(created: float) -> str:
    """ISO-8601 UTC with milliseconds and "Z", e.g. 2026-11-27T10:00:00.123Z.

    datetime rounds the float to the microsecond before the milliseconds are cut, so float
    error never loses one: .123 is stored as .12299999..., which truncated directly is .122.
    """
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _add_span_ids(entry: dict[str, Any]) -> None:
    """traceId/spanId of the current span; free while OpenTelemetry is not even imported."""
    get_current_span = getattr(sys.modules.get("opentelemetry.trace"), "get_current_span", None)
    if get_current_span is None:
        return
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return
    trace_id = format(context.trace_id, "032x")
    if not entry.get("traceId"):
        entry["traceId"] = trace_id
    if entry["traceId"] == trace_id:  # an explicit traceId of another trace gets no foreign spanId
        entry["spanId"] = format(context.span_id, "016x")


class JsonFormatter(logging.Formatter):
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
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_") and key not in entry:
                entry[key] = value
        _add_span_ids(entry)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "", stream: TextIO | None = None, service: str = SERVICE) -> int:
    """Route every logger through one JSON handler on stderr (or `stream`); returns the level set.

    `level` is LOG_LEVEL in any case, empty meaning INFO. An unknown value also means INFO and
    is reported in one warning line: a typo must neither pass unnoticed nor stop the service.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    name = level.strip().upper() or "INFO"
    known = name in LEVELS
    resolved = logging.getLevelNamesMapping()[name] if known else logging.INFO
    root.setLevel(resolved)
    if not known:
        log.warning(
            "unknown LOG_LEVEL %r, using INFO (expected one of %s)",
            level,
            ", ".join(LEVELS),
            extra={"logLevel": level},
        )
    return resolved


def configure(service: str = SERVICE) -> int:
    """configure_logging from LOG_LEVEL (the runtime has no settings object); returns the level."""
    return configure_logging(os.environ.get("LOG_LEVEL", ""), service=service)
