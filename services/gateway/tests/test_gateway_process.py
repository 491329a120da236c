"""`python -m nanofaas_gateway` as a real process: serving, metrics, JSON logs, clean exit."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from nanofaas.v1 import scheduler_pb2, types_pb2

from .gateway_fakes import FakeRegistry, FakeScheduler, start_registry, start_scheduler

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    port: int
    metrics_port: int
    log_lines: list[dict[str, Any]] = field(default_factory=list)
    raw_lines: list[bytes] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def read_until(self, message: str) -> dict[str, Any]:
        """Read stderr log lines until one has `msg` == message."""
        assert self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                raise AssertionError(f"stderr closed before {message!r}: {self.raw_lines!r}")
            self.raw_lines.append(line)
            entry = orjson.loads(line)
            self.log_lines.append(entry)
            if entry.get("msg") == message:
                return dict(entry)

    async def drain(self) -> None:
        """Read the rest of stderr (after the process exited)."""
        assert self.process.stderr is not None
        for line in (await self.process.stderr.read()).splitlines():
            self.raw_lines.append(line)
            self.log_lines.append(orjson.loads(line))


@asynccontextmanager
async def gateway_process(env_overrides: dict[str, str]) -> AsyncIterator[GatewayProcess]:
    port, metrics_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
    env.update(
        {
            "NANOFAAS_GATEWAY_HOST": "127.0.0.1",
            "NANOFAAS_GATEWAY_PORT": str(port),
            "NANOFAAS_GATEWAY_METRICS_PORT": str(metrics_port),
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(env_overrides)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nanofaas_gateway",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield GatewayProcess(process, port, metrics_port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_process_serves_requests_and_exits_0_on_sigterm() -> None:
    registry_fake, scheduler_fake = FakeRegistry(), FakeScheduler()
    registry = await start_registry(registry_fake)
    scheduler = await start_scheduler(scheduler_fake)
    overrides = {
        "NANOFAAS_REGISTRY_ADDRESS": registry.address,
        "NANOFAAS_SCHEDULER_ADDRESS": scheduler.address,
    }
    try:
        async with gateway_process(overrides) as gateway, aiohttp.ClientSession() as session:
            listening = await asyncio.wait_for(gateway.read_until("gateway listening"), STARTUP_TIMEOUT_S)
            assert listening["port"] == gateway.port
            async with session.get(gateway.base_url + "/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok"}
            async with session.get(gateway.base_url + "/readyz") as response:
                assert response.status == 200
            spec = {"name": "proc", "image": "img"}
            async with session.post(gateway.base_url + "/v1/functions", json=spec) as response:
                assert response.status == 201
            async with session.post(
                gateway.base_url + "/v1/functions/proc:invoke", json={"input": 42}
            ) as response:
                assert response.status == 200
                assert (await response.json())["output"] == 42
            assert scheduler_fake.invokes[-1].min_registry_revision == registry_fake.specs["proc"].revision
            async with session.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics") as response:
                assert response.status == 200
                exposition = await response.text()
            assert 'gateway_requests_total{method="GET",route="/healthz",status="200"} 1.0' in exposition
            assert 'route="/v1/functions/{name}:invoke"' in exposition

            gateway.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(gateway.process.wait(), STARTUP_TIMEOUT_S) == 0
            await gateway.drain()
    finally:
        await scheduler.stop()
        await registry.stop()
    for entry in gateway.log_lines:
        assert {"ts", "level", "service", "msg"} <= set(entry)
        assert entry["service"] == "gateway"
    assert any(entry["msg"] == "gateway stopped" for entry in gateway.log_lines)
    assert not any(b"Traceback" in line for line in gateway.raw_lines)


async def test_sigint_also_exits_0_and_metrics_can_be_disabled() -> None:
    async with gateway_process({"NANOFAAS_GATEWAY_METRICS_PORT": "0"}) as gateway:
        await asyncio.wait_for(gateway.read_until("gateway listening"), STARTUP_TIMEOUT_S)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics")
        gateway.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(gateway.process.wait(), STARTUP_TIMEOUT_S) == 0


async def test_invalid_configuration_exits_2_naming_the_variable() -> None:
    async with gateway_process({"NANOFAAS_MAX_BODY_BYTES": "lots"}) as gateway:
        _, stderr = await asyncio.wait_for(gateway.process.communicate(), STARTUP_TIMEOUT_S)
        assert gateway.process.returncode == 2
    assert stderr.decode().splitlines() == [
        "nanofaas-gateway: NANOFAAS_MAX_BODY_BYTES: must be an integer between 1 and 2147483647 (got 'lots')"
    ]


async def test_process_subscribes_to_callbacks_at_start_and_delivers() -> None:
    """The wiring: the process subscribes by itself, POSTs what is offered, counts it, leaves cleanly."""
    registry_fake, scheduler_fake = FakeRegistry(), FakeScheduler()
    registry = await start_registry(registry_fake)
    scheduler = await start_scheduler(scheduler_fake)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    overrides = {
        "NANOFAAS_REGISTRY_ADDRESS": registry.address,
        "NANOFAAS_SCHEDULER_ADDRESS": scheduler.address,
    }
    try:
        async with gateway_process(overrides) as gateway, aiohttp.ClientSession() as session:
            await asyncio.wait_for(gateway.read_until("callback stream open"), STARTUP_TIMEOUT_S)
            status = types_pb2.ExecutionStatus(
                execution_id="cb-1", function_name="f", status=types_pb2.EXECUTION_STATE_ERROR
            )
            status.error.code, status.error.message = "FUNCTION_ERROR", "boom"
            scheduler_fake.callbacks.offer(
                scheduler_pb2.CallbackDue(
                    delivery_id=9, url=f"http://127.0.0.1:{hook_port}/hook", status=status
                )
            )
            body = orjson.loads(await asyncio.wait_for(received.get(), STARTUP_TIMEOUT_S))
            assert body["executionId"] == "cb-1"
            assert body["error"] == {"code": "FUNCTION_ERROR", "message": "boom"}
            await asyncio.wait_for(
                scheduler_fake.callbacks.wait_for(lambda f: f.acks == [9]), STARTUP_TIMEOUT_S
            )
            async with session.get(f"http://127.0.0.1:{gateway.metrics_port}/metrics") as response:
                exposition = await response.text()
            assert 'gateway_callbacks_total{outcome="delivered"} 1.0' in exposition
            gateway.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(gateway.process.wait(), STARTUP_TIMEOUT_S) == 0
            await gateway.drain()
        assert scheduler_fake.callbacks.half_closed == 1
    finally:
        await runner.cleanup()
        await scheduler.stop()
        await registry.stop()
    assert not any(b"Traceback" in line for line in gateway.raw_lines)


async def test_aiohttp_is_not_loaded_until_a_callback_is_delivered() -> None:
    # ~9 MiB of resident memory that a gateway without callbacks never needs (callbacks.py).
    check = "import sys, nanofaas_gateway.__main__; sys.exit('aiohttp' in sys.modules)"
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", check)
    assert await asyncio.wait_for(process.wait(), 60) == 0
