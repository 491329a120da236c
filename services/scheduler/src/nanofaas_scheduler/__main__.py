"""`nanofaas-scheduler`: run the scheduler until SIGTERM or SIGINT."""

from __future__ import annotations

import os

# The scheduler forks function processes while gRPC threads run; gRPC's fork
# handlers cannot help there and only log noise, so they are off.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import asyncio
import gc
import logging
import signal
import sys

import uvloop

from nanofaas_scheduler.config import ConfigError, Settings
from nanofaas_scheduler.logging_setup import configure_logging
from nanofaas_scheduler.server import SchedulerServer
from nanofaas_scheduler.startup_memory import release_startup_memory

log = logging.getLogger("nanofaas_scheduler")


async def serve(settings: Settings) -> None:
    server = SchedulerServer(settings)
    await server.start()
    # Start-up objects live forever: keep them out of every future GC pass.
    gc.freeze()
    release_startup_memory()  # what only start-up touched: out of RSS (startup_memory.py)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        # One plain line and status 2, as every nanofaas program reports a bad setting.
        sys.stderr.write(f"nanofaas-scheduler: {exc}\n")
        sys.exit(2)
    configure_logging(settings.log_level)
    try:
        uvloop.run(serve(settings))
    except ConfigError as exc:  # found at start (e.g. a pod template the cluster refuses)
        sys.stderr.write(f"nanofaas-scheduler: {exc}\n")
        sys.exit(2)
    except Exception:
        log.exception("scheduler failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
