"""Log records become one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from nanofaas_registry.logging_setup import configure_logging


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
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "WARNING"
    assert first["service"] == "registry"
    assert first["msg"] == "function fn deleted"
    assert first["functionName"] == "fn"
    assert first["revision"] == 3
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"]
