"""Log records become one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from nanofaas_registry.logging_setup import configure_logging, format_timestamp


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
    # Stored as ...0.12299999: the millisecond must not be lost to float error.
    assert format_timestamp(1_795_773_600.123) == "2026-11-27T10:00:00.123Z"
    assert format_timestamp(1_700_000_000.001) == "2023-11-14T22:13:20.001Z"


@pytest.mark.usefixtures("restore_root_logger")
def test_unknown_level_falls_back_to_info_with_one_warning() -> None:
    stream = io.StringIO()
    assert configure_logging("verbose", stream) == logging.INFO
    logging.getLogger("nanofaas_registry.test").debug("hidden")
    logging.getLogger("nanofaas_registry.test").info("shown")
    warning, shown = (json.loads(line) for line in stream.getvalue().splitlines())
    assert warning["level"] == "WARNING"
    assert "'verbose'" in warning["msg"] and "INFO" in warning["msg"]
    assert warning["logLevel"] == "verbose"
    assert shown["msg"] == "shown"


@pytest.mark.usefixtures("restore_root_logger")
def test_trace_and_span_ids_are_added_inside_a_valid_span() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    log = logging.getLogger("nanofaas_registry.test")
    log.info("outside a span")
    with TracerProvider().get_tracer("test").start_as_current_span("work") as span:
        log.info("inside a span")
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert not {"traceId", "spanId"} & set(outside)
    context = span.get_span_context()
    assert inside["traceId"] == f"{context.trace_id:032x}"
    assert inside["spanId"] == f"{context.span_id:016x}"
