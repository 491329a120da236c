"""`nanofaas-scheduler`: run the scheduler until SIGTERM or SIGINT."""

from __future__ import annotations

import os

# The scheduler forks function processes while gRPC threads run; gRPC's fork
# handlers cannot help there and only log noise, so they are off.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import asyncio
import gc
import signal

from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.logging_setup import configure
from nanofaas_scheduler.server import SchedulerServer


async def serve(settings: Settings) -> None:
    server = SchedulerServer(settings)
    await server.start()
    # Start-up objects live forever: keep them out of every future GC pass.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main() -> None:
    configure("scheduler")
    try:
        import uvloop

        uvloop.run(serve(Settings.from_env()))
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        asyncio.run(serve(Settings.from_env()))


if __name__ == "__main__":
    main()
