"""Entry point: `nanofaas-registry` / `python -m nanofaas_registry`."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

import uvloop

from nanofaas_registry.config import ConfigError, RegistrySettings
from nanofaas_registry.logging_setup import configure_logging
from nanofaas_registry.server import start_server
from nanofaas_registry.startup_memory import release_startup_memory
from nanofaas_registry.store import StoreError
from nanofaas_registry.tracing import setup_tracing, shutdown_tracing

logger = logging.getLogger("nanofaas_registry")


async def serve(settings: RegistrySettings) -> None:
    """Runs until SIGTERM or SIGINT, then stops gracefully and flushes pending spans."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    setup_tracing()
    try:
        server = await start_server(settings)
        gc.freeze()  # start-up objects live forever: keep them out of every future GC pass
        release_startup_memory()  # what only start-up touched: out of RSS (startup_memory.py)
        try:
            await stop_requested.wait()
            logger.info("shutdown requested")
        finally:
            await server.stop()
    finally:
        await asyncio.to_thread(shutdown_tracing)


def main() -> int:
    try:
        settings = RegistrySettings.from_env()
    except ConfigError as exc:
        # One plain line and status 2, as every nanofaas program reports a bad setting.
        sys.stderr.write(f"nanofaas-registry: {exc}\n")
        return 2
    configure_logging(settings.log_level)
    try:
        uvloop.run(serve(settings))
    except StoreError as exc:
        # An unusable store file is an operator's problem to fix, not a crash: one clear line.
        logger.error("function store unusable", extra={"reason": str(exc)})
        return 1
    except Exception:
        logger.exception("registry failed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
