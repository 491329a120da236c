"""Prometheus metrics scraped from a real exposition endpoint after a known sequence of requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import prometheus_client
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from nanofaas_gateway import GatewayClients
from nanofaas_gateway.route_templates import method_label

from .gateway_fakes import FakeRegistry, FakeScheduler, start_registry, start_scheduler
from .gateway_harness import TEST_MAX_BODY_BYTES, make_settings, serve_gateway

INVOKE = "/v1/functions/{name}:invoke"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class MeteredGateway:
    base_url: str
    metrics_url: str
    session: aiohttp.ClientSession
    scheduler: FakeScheduler

    def url(self, path: str) -> str:
        return self.base_url + path

    async def scrape(self) -> Samples:
        """Every sample of the exposition text, keyed by (sample name, labels)."""
        async with self.session.get(self.metrics_url) as response:
            assert response.status == 200
            text = await response.text()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest_asyncio.fixture
async def metered() -> AsyncIterator[MeteredGateway]:
    """A gateway with a fresh metrics registry served over HTTP like the real metrics port."""
    registry_fake, scheduler_fake = FakeRegistry(), FakeScheduler()
    registry_backend = await start_registry(registry_fake)
    scheduler_backend = await start_scheduler(scheduler_fake)
    settings = make_settings(registry_backend.address, scheduler_backend.address)
    clients = GatewayClients.connect(settings)
    try:
        async with (
            serve_gateway(settings, clients) as (base_url, registry),
            aiohttp.ClientSession() as session,
        ):
            server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
            try:
                metrics_url = f"http://127.0.0.1:{server.server_port}/metrics"
                yield MeteredGateway(base_url, metrics_url, session, scheduler_fake)
            finally:
                await asyncio.to_thread(server.shutdown)
                server.server_close()
                await asyncio.to_thread(thread.join)
    finally:
        await clients.close()
        await scheduler_backend.stop()
        await registry_backend.stop()


def series(samples: Samples, name: str) -> dict[tuple[str, ...], float]:
    """The samples of one name, keyed by their label values in label-name order."""
    return {
        tuple(value for _, value in sorted(labels)): value_
        for (sample_name, labels), value_ in samples.items()
        if sample_name == name
    }


async def test_request_counters_histograms_and_in_flight_after_a_known_sequence(
    metered: MeteredGateway,
) -> None:
    session, url = metered.session, metered.url
    requests: list[tuple[str, str, dict[str, object], int]] = [
        ("POST", "/v1/functions", {"json": {"name": "m", "image": "i"}}, 201),
        ("GET", "/v1/functions/m", {}, 200),
        ("GET", "/v1/functions/ghost", {}, 404),
        ("POST", "/v1/functions/m:invoke", {"json": {"input": 1}}, 200),
        ("POST", "/v1/functions/other:invoke", {"json": {"input": 2}}, 200),
        ("POST", "/v1/functions/m:invoke", {"data": "x", "headers": {"Content-Type": "text/plain"}}, 415),
        ("POST", "/v1/functions/m:invoke", {"data": b"x" * (TEST_MAX_BODY_BYTES + 1)}, 413),
        ("POST", "/healthz", {}, 405),
        ("GET", "/nowhere/at/all", {}, 404),
        ("GET", "/healthz", {}, 200),
    ]
    for method, path, options, expected in requests:
        async with session.request(method, url(path), **options) as response:  # type: ignore[arg-type]
            assert response.status == expected, (method, path)
            await response.read()

    samples = await metered.scrape()
    # Labels sort as (method, route, status).
    assert series(samples, "gateway_requests_total") == {
        ("POST", "/v1/functions", "201"): 1.0,
        ("GET", "/v1/functions/{name}", "200"): 1.0,
        ("GET", "/v1/functions/{name}", "404"): 1.0,
        ("POST", INVOKE, "200"): 2.0,
        ("POST", INVOKE, "415"): 1.0,
        ("POST", INVOKE, "413"): 1.0,
        ("POST", "/healthz", "405"): 1.0,
        ("GET", "unmatched", "404"): 1.0,
        ("GET", "/healthz", "200"): 1.0,
    }
    counts = series(samples, "gateway_request_duration_seconds_count")
    assert counts == {
        ("POST", "/v1/functions"): 1.0,
        ("GET", "/v1/functions/{name}"): 2.0,
        ("POST", INVOKE): 4.0,
        ("POST", "/healthz"): 1.0,
        ("GET", "unmatched"): 1.0,
        ("GET", "/healthz"): 1.0,
    }
    inf_buckets = {
        key[1:]: value
        for key, value in series(samples, "gateway_request_duration_seconds_bucket").items()
        if key[0] == "+Inf"
    }
    assert inf_buckets == counts
    assert samples[("gateway_requests_in_flight", frozenset())] == 0.0


async def test_in_flight_counts_a_request_until_it_is_answered(metered: MeteredGateway) -> None:
    metered.scheduler.hang_invoke = True
    in_flight = ("gateway_requests_in_flight", frozenset[tuple[str, str]]())

    async def invoke() -> int:
        async with metered.session.post(metered.url("/v1/functions/slow:invoke"), json={}) as response:
            await response.read()
            return response.status

    call = asyncio.create_task(invoke())
    await metered.scheduler.invoke_received.wait()
    waiting = await metered.scrape()
    assert waiting[in_flight] == 1.0
    assert series(waiting, "gateway_requests_total") == {}
    metered.scheduler.invoke_release.set()
    assert await call == 200
    answered = await metered.scrape()
    assert answered[in_flight] == 0.0
    assert series(answered, "gateway_requests_total") == {("POST", INVOKE, "200"): 1.0}


def test_unknown_methods_share_one_label() -> None:
    assert [method_label(m) for m in ("GET", "PATCH", "PROPFIND", "BREW")] == [
        "GET",
        "PATCH",
        "OTHER",
        "OTHER",
    ]
