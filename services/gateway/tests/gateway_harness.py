"""The gateway under test: the real app served by uvicorn in front of in-process gRPC fakes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import aiohttp
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from nanofaas_gateway import GatewayClients, Settings, create_app
from nanofaas_gateway.connection_limits import uvicorn_http_options

from .gateway_fakes import FakeBackend, FakeRegistry, FakeScheduler

TEST_MAX_BODY_BYTES = 100_000
TEST_DEADLINE_MARGIN_S = 0.3


class _TestServer(uvicorn.Server):
    """uvicorn.Server that signals when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@asynccontextmanager
async def serve_gateway(
    settings: Settings, clients: GatewayClients, *, on_app: Callable[[FastAPI], None] | None = None
) -> AsyncIterator[tuple[str, CollectorRegistry]]:
    """Run the real app under uvicorn on a pre-bound socket; yields (base URL, metrics registry).

    `on_app` receives the app before it serves (for tests that reach its state).
    """
    metrics = CollectorRegistry()
    app = create_app(settings, clients, metrics_registry=metrics)
    if on_app is not None:
        on_app(app)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", **uvicorn_http_options(settings)
    )
    server = _TestServer(config)
    sock = listening_socket()
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
        raise RuntimeError("uvicorn exited before listening")
    try:
        yield f"http://127.0.0.1:{port}", metrics
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Gateway:
    base_url: str
    session: aiohttp.ClientSession
    registry: FakeRegistry
    scheduler: FakeScheduler
    registry_backend: FakeBackend
    scheduler_backend: FakeBackend
    clients: GatewayClients
    settings: Settings
    metrics: CollectorRegistry
    app: FastAPI | None = None

    def url(self, path: str) -> str:
        return self.base_url + path


def make_settings(registry_address: str, scheduler_address: str) -> Settings:
    return Settings(
        port=1,  # unused: the tests hand uvicorn a pre-bound socket
        metrics_port=0,
        max_body_bytes=TEST_MAX_BODY_BYTES,
        registry_address=registry_address,
        scheduler_address=scheduler_address,
        invoke_deadline_margin_s=TEST_DEADLINE_MARGIN_S,
        readiness_timeout_s=0.5,
    )


def settings_for(gateway: Gateway, **changes: object) -> Settings:
    return replace(gateway.settings, **changes)  # type: ignore[arg-type]
