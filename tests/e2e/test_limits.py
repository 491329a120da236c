"""Input limits against the real services (docs/limits.md; issue findings 1, 3, 6, 8, 9, 10, 11).

One platform with small limits (so the tests move kilobytes, not the defaults' megabytes):
every oversized thing ends only its own request or execution, with a clear 4xx or
error code, and never a 429/503 (which clients retry) or a 500.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from nanofaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2

from .conftest import Platform, start_platform, stop_platform
from .helpers import free_port, python_spec, register

OUTPUT_LIMIT = 256 * 1024
LIMITS = {
    "NANOFAAS_MAX_OUTPUT_BYTES": str(OUTPUT_LIMIT),
    "NANOFAAS_MAX_BODY_BYTES": str(512 * 1024),
    "NANOFAAS_MAX_SPEC_BYTES": str(64 * 1024),
    "NANOFAAS_MAX_HEADER_BYTES": str(8 * 1024),
    "NANOFAAS_MAX_URL_BYTES": str(2 * 1024),
    "NANOFAAS_HEADER_READ_TIMEOUT_S": "1",
    "NANOFAAS_IDLE_TIMEOUT_S": "1",
    "NANOFAAS_MAX_CONNECTIONS": "150",
    # 127.0.0.2 stands for a metadata address (tests may reach only 127.0.0.1).
    "NANOFAAS_OUTBOUND_DENY_CIDRS": "169.254.0.0/16,127.0.0.2/32",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = start_platform(tmp_path_factory.mktemp("limited"), **LIMITS)
    yield running
    assert stop_platform(running) == {"gateway": 0, "scheduler": 0, "registry": 0}


@pytest.fixture
async def http(limited: Platform) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=limited.base_url) as session:
        yield session


@pytest.fixture
async def big_output_endpoint() -> AsyncIterator[str]:
    """An ENDPOINT function answering 1 MiB: with and without Content-Length (?chunked)."""
    payload = b'"' + b"x" * (1024 * 1024) + b'"'

    async def handle(request: web.Request) -> web.StreamResponse:
        if "chunked" not in request.query:
            return web.Response(body=payload, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(payload), 64 * 1024):
            await response.write(payload[start : start + 64 * 1024])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/invoke", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/invoke"
    await runner.cleanup()


async def _error(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    return dict(body["error"])


# -- finding 1: one oversized output or header never disturbs other callers -----------------


@pytest.mark.parametrize("query", ["", "?chunked"])
async def test_oversized_output_ends_only_its_execution(
    http: aiohttp.ClientSession, fn_name: str, big_output_endpoint: str, query: str
) -> None:
    await register(http, {"name": fn_name + "-big", "image": "x", "endpointUrl": big_output_endpoint + query})
    await register(http, python_spec(fn_name, "sleep", concurrency=8))

    async def innocent() -> int:
        async with http.post(f"/v1/functions/{fn_name}:invoke", json={"input": 0.5}) as response:
            return response.status

    innocents = [asyncio.create_task(innocent()) for _ in range(4)]
    async with http.post(f"/v1/functions/{fn_name}-big:invoke", json={"input": None}) as response:
        assert response.status == 502
        body = await response.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == "OUTPUT_TOO_LARGE"
    assert str(OUTPUT_LIMIT) in body["error"]["message"]
    assert await asyncio.gather(*innocents) == [200] * 4


async def test_oversized_headers_are_refused_before_the_stream(
    http: aiohttp.ClientSession, fn_name: str
) -> None:
    await register(http, python_spec(fn_name, "echo"))
    huge = {"Idempotency-Key": "k" * 20_000}
    async with http.post(f"/v1/functions/{fn_name}:invoke", json={"input": 1}, headers=huge) as response:
        assert response.status == 431
        assert (await _error(response))["code"] == "HEADERS_TOO_LARGE"
    # The shared stream is intact: the next call on a fresh connection works.
    async with (
        aiohttp.ClientSession(base_url=str(http._base_url)) as fresh,
        fresh.post(f"/v1/functions/{fn_name}:invoke", json={"input": 2}) as response,
    ):
        assert response.status == 200


# -- finding 3: header, key and metadata limits ---------------------------------------------


async def test_header_count_and_key_and_metadata_limits(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo"))
    url = f"/v1/functions/{fn_name}:enqueue"
    many = {f"X-H{i}": "v" for i in range(150)}
    async with (
        aiohttp.ClientSession(base_url=str(http._base_url)) as fresh,
        fresh.post(url, json={"input": 1}, headers=many) as response,
    ):
        assert response.status == 431
    async with http.post(url, json={"input": 1}, headers={"Idempotency-Key": "k" * 257}) as response:
        assert response.status == 400
        assert (await _error(response))["message"].startswith("Idempotency-Key:")
    metadata = {f"k{i}": "v" for i in range(65)}
    async with http.post(url, json={"input": 1, "metadata": metadata}) as response:
        assert response.status == 400
        assert (await _error(response))["message"].startswith("metadata:")
    async with http.post(url, json={"input": 1}, headers={"Idempotency-Key": "k" * 256}) as response:
        assert response.status == 202


# -- finding 6: gRPC Invoke/Enqueue refuse what REST refuses ----------------------------------


def _scheduler_address(platform: Platform) -> str:
    return platform.env["NANOFAAS_SCHEDULER_ADDRESS"]


async def test_grpc_entry_points_validate_like_rest(limited: Platform, fn_name: str) -> None:
    async with aiohttp.ClientSession(base_url=limited.base_url) as http:
        await register(http, python_spec(fn_name, "echo"))
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(_scheduler_address(limited), options=options) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)

        async def refused(request: scheduler_pb2.InvokeRequest) -> grpc.aio.AioRpcError:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Enqueue(request, timeout=10)
            return caught.value

        big = scheduler_pb2.InvokeRequest(function_name=fn_name)
        big.input.data = b'"' + b"x" * (600 * 1024) + b'"'
        error = await refused(big)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        metadata: Any = error.trailing_metadata() or ()
        trailers = {str(item[0]): str(item[1]) for item in metadata}
        assert trailers.get("x-error-code") == "PAYLOAD_TOO_LARGE"
        bad_json = scheduler_pb2.InvokeRequest(function_name=fn_name)
        bad_json.input.data = b"{not json"
        error = await refused(bad_json)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "invalid JSON" in (error.details() or "")
        error = await refused(scheduler_pb2.InvokeRequest(function_name="n" * 1_000_000))
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert len(error.details() or "") < 200
        error = await refused(scheduler_pb2.InvokeRequest(function_name=fn_name, idempotency_key="k" * 300))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        ok = scheduler_pb2.InvokeRequest(function_name=fn_name)
        ok.input.data = b"1"
        assert (await stub.Invoke(ok, timeout=30)).status == types_pb2.EXECUTION_STATE_SUCCESS


# -- finding 8: slow clients are dropped, a live client still gets through --------------------


async def test_idle_connections_are_dropped_and_live_requests_succeed(limited: Platform) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = min(300, soft // 3)
    port = int(limited.base_url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    idle: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            idle.append(sock)
        # More idle sockets than the cap (150): a live request still succeeds at once.
        async with (
            aiohttp.ClientSession(base_url=limited.base_url) as http,
            http.get("/healthz", timeout=aiohttp.ClientTimeout(total=10)) as response,
        ):
            assert response.status == 200

        # Every idle one is closed: by the cap, or after the 1 s header-read timeout (408).
        async def closed(sock: socket.socket) -> bool:
            try:
                async with asyncio.timeout(10):
                    while chunk := await loop.sock_recv(sock, 65536):
                        assert chunk.startswith(b"HTTP/1.1 408") or b"TIMEOUT" in chunk
            except (ConnectionResetError, BrokenPipeError):
                pass
            return True

        assert all(await asyncio.gather(*(closed(sock) for sock in idle)))
    finally:
        for sock in idle:
            sock.close()


async def test_long_url_is_a_json_414(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/functions/" + "a" * 100_000) as response:
        assert response.status == 414
        assert (await _error(response))["code"] == "URI_TOO_LONG"


# -- finding 9: wrong answers to bad input ----------------------------------------------------


async def test_lone_surrogates_and_deep_json_are_400(http: aiohttp.ClientSession, fn_name: str) -> None:
    for raw in (
        b'{"name": "%s", "image": "i", "env": {"A": "\\ud800"}}' % fn_name.encode(),
        b'{"name": "%s", "image": "i", "command": ["\\udfff"]}' % fn_name.encode(),
        b'{"name": "%s", "image": "i", "env": %s1%s}' % (fn_name.encode(), b"[" * 300, b"]" * 300),
        b'{"name": "x", "image": "i", "env": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ):
        headers = {"Content-Type": "application/json"}
        async with http.post("/v1/functions", data=raw, headers=headers) as response:
            assert response.status == 400, await response.text()
            assert (await _error(response))["code"] == "INVALID_ARGUMENT"
    await register(http, python_spec(fn_name, "echo"))
    deep = b'{"input": ' + b"[" * 600 + b"]" * 600 + b"}"
    async with http.post(f"/v1/functions/{fn_name}:invoke", data=deep, headers=headers) as response:
        assert response.status == 400
        assert "nested" in (await _error(response))["message"]


async def test_oversized_spec_is_413_never_429(http: aiohttp.ClientSession, fn_name: str) -> None:
    spec = {"name": fn_name, "image": "i", "env": {"BIG": "x" * (100 * 1024)}}
    async with http.post("/v1/functions", json=spec) as response:
        assert response.status == 413, await response.text()
        assert (await _error(response))["code"] == "PAYLOAD_TOO_LARGE"
        assert "Retry-After" not in response.headers


async def test_options_on_invoke_names_post(http: aiohttp.ClientSession) -> None:
    async with http.options("/v1/functions/hello:invoke") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    async with http.options("/v1/functions/hello") as response:
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}


async def test_rate_limit_must_be_a_number(http: aiohttp.ClientSession, fn_name: str) -> None:
    async with http.post(
        "/v1/functions", json={"name": fn_name, "image": "i", "rateLimitPerSecond": False}
    ) as r:
        assert r.status == 422


# -- finding 10: outbound URL policy ----------------------------------------------------------


async def test_denied_callback_and_endpoint_addresses(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo"))
    for url in ("http://169.254.169.254/latest/meta-data", "http://127.0.0.2:9/x"):
        headers = {"X-Callback-Url": url}
        async with http.post(f"/v1/functions/{fn_name}:enqueue", json={"input": 1}, headers=headers) as r:
            assert r.status == 400
            assert (await _error(r))["code"] == "URL_NOT_ALLOWED"
    await register(http, {"name": fn_name + "-meta", "image": "i", "endpointUrl": "http://127.0.0.2:9/"})
    async with http.post(f"/v1/functions/{fn_name}-meta:invoke", json={"input": 1}) as response:
        assert response.status == 502
        assert (await response.json())["error"]["code"] == "URL_NOT_ALLOWED"


# -- finding 11: curl -d, and no _created series ----------------------------------------------


async def test_curl_d_invocation_is_json(http: aiohttp.ClientSession, fn_name: str) -> None:
    await register(http, python_spec(fn_name, "echo"))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(f"/v1/functions/{fn_name}:invoke", data=b'{"input": 7}', headers=form) as response:
        assert response.status == 200
        assert (await response.json())["output"]["input"] == 7


async def test_metrics_have_no_created_series(limited: Platform) -> None:
    async with aiohttp.ClientSession() as http:
        for variable in (
            "NANOFAAS_GATEWAY_METRICS_PORT",
            "NANOFAAS_SCHEDULER_METRICS_PORT",
            "NANOFAAS_REGISTRY_METRICS_PORT",
        ):
            async with http.get(f"http://127.0.0.1:{limited.env[variable]}/metrics") as response:
                text = await response.text()
            assert "_total" in text
            assert "_created" not in text, variable
