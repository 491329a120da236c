"""Fixtures: one gateway (uvicorn + gRPC fakes) per test module, with fakes reset per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import pytest_asyncio
from fastapi import FastAPI

from nanofaas_gateway import GatewayClients

from .gateway_fakes import FakeRegistry, FakeScheduler, start_registry, start_scheduler
from .gateway_harness import Gateway, make_settings, serve_gateway


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def module_gateway() -> AsyncIterator[Gateway]:
    registry, scheduler = FakeRegistry(), FakeScheduler()
    registry_backend = await start_registry(registry)
    scheduler_backend = await start_scheduler(scheduler)
    settings = make_settings(registry_backend.address, scheduler_backend.address)
    clients = GatewayClients.connect(settings)
    apps: list[FastAPI] = []
    try:
        async with (
            serve_gateway(settings, clients, on_app=apps.append) as (base_url, metrics),
            aiohttp.ClientSession() as session,
        ):
            yield Gateway(
                base_url,
                session,
                registry,
                scheduler,
                registry_backend,
                scheduler_backend,
                clients,
                settings,
                metrics,
                apps[0],
            )
    finally:
        await clients.close()
        await scheduler_backend.stop()
        await registry_backend.stop()


@pytest.fixture
def gateway(module_gateway: Gateway) -> Iterator[Gateway]:
    """The module's gateway with fakes reset, so every test starts from empty backends."""
    module_gateway.registry.reset()
    module_gateway.scheduler.reset()
    yield module_gateway
