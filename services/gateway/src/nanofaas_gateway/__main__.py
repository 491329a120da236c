"""`nanofaas-gateway` / `python -m nanofaas_gateway`: serve the REST API until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from types import FrameType
from typing import Any

import prometheus_client
import uvicorn
import uvloop

from nanofaas_gateway.app import create_app
from nanofaas_gateway.callbacks import CallbackDelivery, CallbackMetrics
from nanofaas_gateway.clients import GatewayClients
from nanofaas_gateway.config import ConfigError, Settings
from nanofaas_gateway.connection_limits import uvicorn_http_options
from nanofaas_gateway.log_follows import LogFollows
from nanofaas_gateway.logging_setup import configure_logging
from nanofaas_gateway.outbound_policy import policy_for
from nanofaas_gateway.startup_memory import release_startup_memory
from nanofaas_gateway.tracing import setup_tracing, shutdown_tracing

log = logging.getLogger("nanofaas_gateway")


class _GatewayServer(uvicorn.Server):
    """uvicorn.Server that logs once it listens, so supervisors and tests can wait for the line.

    Once listening it hands back the memory only start-up touched. At shutdown
    it first ends the followed log streams, which would otherwise hold the
    graceful shutdown for its whole grace.
    """

    log_follows: LogFollows | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.log_follows is not None:
            self.log_follows.close_all()
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            # The bound port, which differs from the configured one when that is 0.
            port = self.servers[0].sockets[0].getsockname()[1] if self.servers else self.config.port
            log.info("gateway listening", extra={"host": self.config.host, "port": port})
            release_startup_memory()  # what only start-up touched: out of RSS (startup_memory.py)


class _StopRequest:
    """Records SIGTERM/SIGINT received outside uvicorn's own signal capture.

    uvicorn re-raises the signal it caught once it has shut down; with this handler
    installed that re-raise is harmless and the process exits 0 instead of dying by signal.
    """

    def __init__(self) -> None:
        self.requested = False
        self.server: uvicorn.Server | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


async def serve(settings: Settings, stop: _StopRequest) -> None:
    # Before the app and the channels: they ask tracing what to install.
    tracing_on = setup_tracing()
    clients = GatewayClients.connect(settings)
    registry = prometheus_client.REGISTRY
    app = create_app(settings, clients, metrics_registry=registry)
    callbacks = CallbackDelivery(
        clients.scheduler,
        CallbackMetrics(registry),
        max_concurrent=settings.max_concurrent_callbacks,
        outbound=policy_for(settings.outbound_deny, settings.outbound_allow),
    )
    metrics_server: Any = None
    if settings.metrics_port:
        metrics_server, _ = prometheus_client.start_http_server(
            settings.metrics_port, addr=settings.host, registry=registry
        )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        **uvicorn_http_options(settings),
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    server = _GatewayServer(config)
    server.log_follows = app.state.log_follows
    stop.server = server
    server.should_exit = stop.requested
    if tracing_on:
        log.info("tracing on")
    gc.freeze()  # start-up objects (FastAPI, pydantic, gRPC) live forever: out of every GC pass
    callbacks.start()  # in the background: start-up and readiness never wait for it
    try:
        await server.serve()
    finally:
        await callbacks.close(settings.callback_grace_s)
        await clients.close()
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.shutdown)
            metrics_server.server_close()
        # After the server drained its requests, so their spans are among those exported.
        await asyncio.to_thread(shutdown_tracing)
        log.info("gateway stopped")


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        # One plain line and status 2, as every nanofaas program reports a bad setting.
        sys.stderr.write(f"nanofaas-gateway: {exc}\n")
        sys.exit(2)
    configure_logging(settings.log_level)
    stop = _StopRequest()
    stop.install()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings, stop))
    except OSError as exc:
        log.error("gateway failed to start", extra={"error": str(exc)})
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
