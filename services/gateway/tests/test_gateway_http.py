"""Routing errors, the body limit, readiness, unreachable backends and metrics."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
import orjson
import pytest
from grpc_health.v1 import health_pb2

from nanofaas_gateway import GatewayClients

from .gateway_harness import TEST_MAX_BODY_BYTES, Gateway, serve_gateway, settings_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

INVOKE = "/v1/functions/echo:invoke"
JSON_HEADERS = {"Content-Type": "application/json"}


async def test_unknown_route_is_json_404(gateway: Gateway) -> None:
    async with gateway.session.get(gateway.url("/v2/nothing")) as response:
        assert response.status == 404
        body = await response.json()
    assert body == {"error": {"code": "NOT_FOUND", "message": "no route for GET /v2/nothing"}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/v1/functions/echo"),
        ("DELETE", "/v1/functions"),
        ("GET", "/v1/internal/executions/x:complete"),
    ],
)
async def test_wrong_method_is_json_405(gateway: Gateway, method: str, path: str) -> None:
    async with gateway.session.request(method, gateway.url(path)) as response:
        assert response.status == 405
        assert "Allow" in response.headers
        body = await response.json()
    assert body["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_body_over_limit_by_content_length_is_413(gateway: Gateway) -> None:
    body = b'{"input":"' + b"x" * TEST_MAX_BODY_BYTES + b'"}'
    async with gateway.session.post(gateway.url(INVOKE), data=body, headers=JSON_HEADERS) as response:
        assert response.status == 413
        error = (await response.json())["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert gateway.scheduler.invokes == []


async def test_body_at_limit_is_accepted(gateway: Gateway) -> None:
    filler = TEST_MAX_BODY_BYTES - len(b'{"input":""}')
    body = b'{"input":"' + b"y" * filler + b'"}'
    assert len(body) == TEST_MAX_BODY_BYTES
    async with gateway.session.post(gateway.url(INVOKE), data=body, headers=JSON_HEADERS) as response:
        assert response.status == 200
    assert len(gateway.scheduler.invokes[-1].input.data) == filler + 2


async def test_declared_length_over_limit_is_refused_before_the_body_arrives(gateway: Gateway) -> None:
    """Only a few bytes of a huge declared body are sent: a 413 proves nothing waited for the rest."""
    host, port = gateway.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (
            f"POST {INVOKE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10**9}\r\n\r\n"
        )
        writer.write(head.encode() + b'{"input":')
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")
    assert gateway.scheduler.invokes == []


async def _chunks(total: int, chunk: int, hold: asyncio.Event) -> AsyncIterator[bytes]:
    yield b'{"input":"'
    sent = 0
    while sent < total:
        yield b"z" * chunk
        sent += chunk
    # Keep the request open: the answer must come without the client finishing its body.
    await hold.wait()


@pytest.mark.parametrize("path", [INVOKE, "/v1/functions"])
async def test_streamed_body_over_limit_is_413(gateway: Gateway, path: str) -> None:
    hold = asyncio.Event()
    body = _chunks(TEST_MAX_BODY_BYTES + 1, 8192, hold)
    try:
        async with gateway.session.post(gateway.url(path), data=body, headers=JSON_HEADERS) as response:
            assert response.status == 413
            assert response.headers.get("Content-Length") is not None
            error = (await response.json())["error"]
    finally:
        hold.set()
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert gateway.scheduler.invokes == []
    assert gateway.registry.registered == []


async def test_streamed_body_under_limit_is_read(gateway: Gateway) -> None:
    async def small() -> AsyncIterator[bytes]:
        yield b'{"input":'
        yield b'"chunked"}'

    async with gateway.session.post(gateway.url(INVOKE), data=small(), headers=JSON_HEADERS) as response:
        assert response.status == 200
        assert (await response.json())["output"] == "chunked"


async def test_healthz_is_always_ok(gateway: Gateway) -> None:
    async with gateway.session.get(gateway.url("/healthz")) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_readyz_checks_both_backends(gateway: Gateway) -> None:
    async with gateway.session.get(gateway.url("/readyz")) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ready"}
    await gateway.scheduler_backend.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        async with gateway.session.get(gateway.url("/readyz")) as response:
            assert response.status == 503
            error = (await response.json())["error"]
    finally:
        await gateway.scheduler_backend.health.set("", health_pb2.HealthCheckResponse.SERVING)
    assert error["code"] == "UNAVAILABLE"
    assert "scheduler" in error["message"]
    assert "registry" not in error["message"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_backends_are_503(gateway: Gateway) -> None:
    dead = f"127.0.0.1:{_closed_port()}"
    settings = settings_for(gateway, registry_address=dead, scheduler_address=dead)
    clients = GatewayClients.connect(settings)
    try:
        async with serve_gateway(settings, clients) as (base_url, _), aiohttp.ClientSession() as session:
            for method, path in (("GET", "/v1/functions"), ("POST", INVOKE), ("GET", "/readyz")):
                async with session.request(method, base_url + path, json={}) as response:
                    assert response.status == 503, path
                    assert (await response.json())["error"]["code"] == "UNAVAILABLE"
            async with session.get(base_url + "/healthz") as response:
                assert response.status == 200
    finally:
        await clients.close()


class _ExplodingScheduler:
    """Stands in for the scheduler client to raise a bug-like exception inside a route."""

    async def invoke(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("secret internals")

    async def close(self) -> None:
        pass


async def test_unhandled_exception_is_generic_json_500(gateway: Gateway) -> None:
    clients = GatewayClients.connect(gateway.settings)
    clients.invocations = _ExplodingScheduler()  # type: ignore[assignment]
    try:
        async with (
            serve_gateway(gateway.settings, clients) as (base_url, metrics),
            aiohttp.ClientSession() as session,
        ):
            async with session.post(base_url + INVOKE, json={}) as response:
                assert response.status == 500
                text = await response.text()
            labels = {"route": "/v1/functions/{name}:invoke", "method": "POST", "status": "500"}
            assert metrics.get_sample_value("gateway_requests_total", labels) == 1.0
    finally:
        await clients.close()
    assert orjson.loads(text) == {"error": {"code": "INTERNAL", "message": "internal error"}}
    assert "secret" not in text


async def test_metrics_use_route_templates(gateway: Gateway) -> None:
    def count(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        return gateway.metrics.get_sample_value("gateway_requests_total", labels) or 0.0

    invoke_route = "/v1/functions/{name}:invoke"
    before_ok = count(invoke_route, "POST", "200")
    before_415 = count(invoke_route, "POST", "415")
    before_413 = count(invoke_route, "POST", "413")
    before_404 = count("unmatched", "GET", "404")
    async with gateway.session.post(gateway.url("/v1/functions/aaa:invoke"), json={}) as response:
        assert response.status == 200
    async with gateway.session.post(gateway.url("/v1/functions/bbb:invoke"), data="x") as response:
        assert response.status == 415
    big = b"x" * (TEST_MAX_BODY_BYTES + 1)
    async with gateway.session.post(gateway.url("/v1/functions/ccc:invoke"), data=big) as response:
        assert response.status == 413
    async with gateway.session.get(gateway.url("/nowhere/at/all")) as response:
        assert response.status == 404
    assert count(invoke_route, "POST", "200") == before_ok + 1
    assert count(invoke_route, "POST", "415") == before_415 + 1
    assert count(invoke_route, "POST", "413") == before_413 + 1
    assert count("unmatched", "GET", "404") == before_404 + 1
    histogram = gateway.metrics.get_sample_value(
        "gateway_request_duration_seconds_count", {"route": invoke_route, "method": "POST"}
    )
    assert histogram is not None and histogram >= 3
    routes = {
        sample.labels["route"]
        for metric in gateway.metrics.collect()
        for sample in metric.samples
        if "route" in sample.labels
    }
    assert not any(name in route for route in routes for name in ("aaa", "bbb", "ccc", "nowhere"))
