"""Fixtures for the runtime suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import aiohttp
import pytest
import uvloop

from nanofaas_runtime.watchdog.process import free_port

from .server_process import ServerProcess
from .support import child_env, watchdog_command

HANDLERS = Path(__file__).resolve().parent / "handlers"


@pytest.fixture
def handler_dir() -> Path:
    """The PYTHONPATH directory holding `funcs.py`, the test handlers."""
    return HANDLERS


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start_watchdog() -> AsyncIterator[Callable[..., Awaitable[ServerProcess]]]:
    """Start `python -m nanofaas_runtime.watchdog --mode <mode> -- <command>` on a free port, ready.

    Keyword arguments are its environment (on top of `child_env()`); `log_sink` gets its stderr lines.
    """
    servers: list[ServerProcess] = []

    async def start(
        command: Sequence[str],
        mode: str = "stdio",
        log_sink: Callable[[bytes], None] | None = None,
        **env: str,
    ) -> ServerProcess:
        server = await ServerProcess.start(
            watchdog_command(mode, command), env=child_env(**env), port=free_port(), log_sink=log_sink
        )
        servers.append(server)
        await server.wait_ready(30)
        return server

    yield start
    for server in servers:
        await server.stop()


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run every async test on asyncio's loop and on uvloop (the scheduler and runtime use uvloop)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
