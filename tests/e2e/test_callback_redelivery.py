"""A completion callback that falls due while no gateway is connected is delivered once one connects.

The scheduler keeps due callbacks in its outbox; gateways deliver them. Here the only
gateway is stopped, the execution ends (an operator's completion, sent straight to the
scheduler since no gateway is up: API authentication is on, so a completion without an
attempt's token is allowed to a caller with an API token), the callback waits in the outbox
(seen on the scheduler's metrics), and a newly started gateway subscribes and delivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc

from nanofaas.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2

from .conftest import Platform, start_platform, stop_platform
from .helpers import python_spec, register

WAIT_S = 30.0
API_TOKEN = "e2e-operator-token"


async def metric(http: aiohttp.ClientSession, port: str, sample: str) -> float | None:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


async def metric_becomes(http: aiohttp.ClientSession, port: str, sample: str, value: float) -> None:
    """Scrape until the sample has the value (another process updates it: no event to await)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if await metric(http, port, sample) == value:
                return
            await asyncio.sleep(0.05)


def spawn_gateway(platform: Platform) -> subprocess.Popen[bytes]:
    with (platform.log_dir / "gateway.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "nanofaas_gateway"], env=platform.env, stdout=log, stderr=subprocess.STDOUT
        )


async def start_gateway(platform: Platform) -> None:
    """Another gateway process with the platform's settings, in place of the stopped one."""
    platform.processes["gateway"] = await asyncio.to_thread(spawn_gateway, platform)
    async with aiohttp.ClientSession() as http, asyncio.timeout(WAIT_S):
        while True:  # polling a process we do not control: no event to await
            assert platform.processes["gateway"].poll() is None, platform.logs("gateway")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(f"{platform.base_url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)


async def test_callback_due_without_a_gateway_is_delivered_when_one_connects(
    tmp_path: Path, callback_receiver: tuple[str, asyncio.Queue[dict[str, object]]]
) -> None:
    url, received = callback_receiver
    tokens = tmp_path / "api-tokens"
    tokens.write_text(f"{API_TOKEN}\n")
    platform = await asyncio.to_thread(
        start_platform, tmp_path / "logs", NANOFAAS_SHUTDOWN_GRACE_S="1", NANOFAAS_API_TOKENS_FILE=str(tokens)
    )
    env = platform.env
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    try:
        async with aiohttp.ClientSession(base_url=platform.base_url, headers=auth) as http:
            await register(http, python_spec("cb", "sleep", executionMode="WARM", concurrency=1))
            for value, headers in (
                (30, {}),
                (0, {"X-Callback-Url": url}),
            ):  # the second waits behind the first
                async with http.post(
                    "/v1/functions/cb:enqueue", json={"input": value}, headers=headers
                ) as response:
                    assert response.status == 202
                    queued = (await response.json())["executionId"]

        gateway = platform.processes["gateway"]
        gateway.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(gateway.wait, WAIT_S) == 0

        async with grpc.aio.insecure_channel(env["NANOFAAS_SCHEDULER_ADDRESS"]) as channel:
            scheduler = scheduler_pb2_grpc.SchedulerStub(channel)
            completion = scheduler_pb2.CompleteExecutionRequest(
                execution_id=queued,
                status=types_pb2.EXECUTION_STATE_SUCCESS,
                output=types_pb2.Payload(data=b'{"from": "runtime"}', content_type="application/json"),
            )
            metadata = (("authorization", f"Bearer {API_TOKEN}"),)
            await scheduler.CompleteExecution(completion, metadata=metadata, timeout=WAIT_S)
            ended = await scheduler.GetExecution(
                scheduler_pb2.GetExecutionRequest(execution_id=queued), metadata=metadata
            )
            assert ended.status == types_pb2.EXECUTION_STATE_SUCCESS

        async with aiohttp.ClientSession() as scrape:
            scheduler_metrics = env["NANOFAAS_SCHEDULER_METRICS_PORT"]
            assert await metric(scrape, scheduler_metrics, "callbacks_pending") == 1.0  # waiting, undelivered
            assert received.empty()

            await start_gateway(platform)
            body = await asyncio.wait_for(received.get(), WAIT_S)
            assert body["executionId"] == queued
            assert body["functionName"] == "cb"
            assert body["status"] == "success"
            assert body["output"] == {"from": "runtime"}
            await metric_becomes(scrape, scheduler_metrics, "callbacks_pending", 0.0)  # acknowledged
            gateway_metrics = env["NANOFAAS_GATEWAY_METRICS_PORT"]
            sample = 'gateway_callbacks_total{outcome="delivered"}'
            assert await metric(scrape, gateway_metrics, sample) == 1.0
        assert received.empty()  # delivered once
    finally:
        codes = await asyncio.to_thread(stop_platform, platform)
    assert codes == {"gateway": 0, "scheduler": 0, "registry": 0}, codes
