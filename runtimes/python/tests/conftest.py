"""Fixtures for the runtime suite."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import uvloop

HANDLERS = Path(__file__).resolve().parent / "handlers"


@pytest.fixture
def handler_dir() -> Path:
    """The PYTHONPATH directory holding `funcs.py`, the test handlers."""
    return HANDLERS


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run every async test on asyncio's loop and on uvloop (the scheduler and runtime use uvloop)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
