"""JSON-lines logging to stderr (ts, level, service, msg + extra fields), level from LOG_LEVEL."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

SERVICE = "runtime"

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged as a field.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line so the platform can parse and ship runtime logs."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname,
            "service": self._service,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def timestamp(created: float) -> str:
    """UTC ISO-8601 with milliseconds, the `ts` of every JSON log line."""
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def configure(service: str = SERVICE) -> int:
    """Send every logger (uvicorn's included) to stderr as JSON lines; returns the level used."""
    level = logging.getLevelName(os.environ.get("LOG_LEVEL", "INFO").strip().upper())
    if not isinstance(level, int):
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return level
