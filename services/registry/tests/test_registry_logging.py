"""Log records become one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from nanofaas_registry.logging_setup import configure_logging, enable_trace_ids, format_timestamp


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_json_lines_with_extras_and_level() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream)
    log = logging.getLogger("nanofaas_registry.test")
    log.info("hidden")
    log.warning("function %s deleted", "fn", extra={"functionName": "fn", "revision": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('{"ts":"')
    assert ', "' not in lines[0] and '": ' not in lines[0]
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "WARNING"
    assert first["service"] == "registry"
    assert first["msg"] == "function fn deleted"
    assert first["functionName"] == "fn"
    assert first["revision"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert list(first)[:4] == ["ts", "level", "service", "msg"]
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"]


def test_timestamp_is_utc_with_milliseconds_and_z() -> None:
    assert format_timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1_795_773_600.1239) == "2026-11-27T10:00:00.123Z"


@pytest.mark.usefixtures("restore_root_logger")
def test_trace_id_is_added_only_when_enabled_and_inside_a_span() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    log = logging.getLogger("nanofaas_registry.test")
    log.info("before")
    trace_ids = iter(["", "0af7651916cd43dd8448eb211c80319c"])
    enable_trace_ids(lambda: next(trace_ids))
    try:
        log.info("outside a span")
        log.info("inside a span")
    finally:
        enable_trace_ids(None)
    before, outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "traceId" not in before
    assert "traceId" not in outside
    assert inside["traceId"] == "0af7651916cd43dd8448eb211c80319c"
