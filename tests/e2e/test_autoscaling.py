"""Autoscaling of WARM pools on the local backend, against the real services and processes.

The platform runs with tiny autoscaler windows and each function with a tiny
scaleDownDelayMs, so a scale-down takes a fraction of a second; every wait is
a bounded poll of GET /v1/functions/{name}/status (what a client sees), never
a sleep standing in for an event.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import Platform, start_platform, stop_platform
from .helpers import enqueue, invoke, python_spec, register, wait_terminal

FAST_AUTOSCALER = {
    "NANOFAAS_AUTOSCALE_TICK_MS": "20",
    "NANOFAAS_AUTOSCALE_STABLE_WINDOW_MS": "200",
    "NANOFAAS_AUTOSCALE_PANIC_WINDOW_MS": "100",
}


# Every function these tests registered: none may leave a process behind the platform.
REGISTERED: list[str] = []


@pytest.fixture(scope="module")
def scaling_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = start_platform(tmp_path_factory.mktemp("autoscaling"), **FAST_AUTOSCALER)
    yield running
    assert stop_platform(running) == {"gateway": 0, "scheduler": 0, "registry": 0}
    for name in REGISTERED:  # a replica kept at minReplicas stops with the scheduler
        asyncio.run(wait_processes(name, 0))


@pytest.fixture
async def client(scaling_platform: Platform) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=scaling_platform.base_url) as session:
        yield session


async def status(http: aiohttp.ClientSession, name: str) -> dict[str, Any]:
    async with http.get(f"/v1/functions/{name}/status") as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def wait_replicas(http: aiohttp.ClientSession, name: str, **wanted: int) -> dict[str, Any]:
    """Poll the status until replicas match `wanted` (e.g. current=3, ready=3); bounded."""
    async with asyncio.timeout(30):
        while True:
            body = await status(http, name)
            if all(body["replicas"][key] == value for key, value in wanted.items()):
                return body
            await asyncio.sleep(0.02)


def function_processes(name: str) -> list[int]:
    """Pids of the live replicas of `name`: processes with FUNCTION_NAME=name whose parent has not.

    (A replica may have children of its own, which carry its environment.)
    """
    marker = f"FUNCTION_NAME={name}".encode()
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if marker in environ.split(b"\0") and fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    return sorted(pid for pid, parent in parents.items() if parent not in parents)


async def wait_processes(name: str, count: int) -> None:
    """A stopped replica leaves the pool at once; its process exits soon after: poll, bounded."""
    async with asyncio.timeout(10):
        while len(function_processes(name)) != count:  # noqa: ASYNC110  # /proc has no event
            await asyncio.sleep(0.02)


async def scheduler_metric(platform: Platform, sample: str) -> float:
    """One sample of the scheduler's /metrics (0 when absent), e.g. 'function_inflight{function="f"}'."""
    url = f"http://127.0.0.1:{platform.env['NANOFAAS_SCHEDULER_METRICS_PORT']}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scaling_spec(name: str, **fields: Any) -> dict[str, Any]:
    REGISTERED.append(name)
    return python_spec(
        name,
        "gate",
        executionMode="WARM",
        concurrency=3,
        maxReplicas=3,
        scaleDownDelayMs=100,
        timeoutMs=60_000,
        **fields,
    )


async def test_a_burst_grows_the_pool_to_max_and_idle_shrinks_it_to_min(
    client: aiohttp.ClientSession, scaling_platform: Platform, fn_name: str, tmp_path: Path
) -> None:
    await register(client, scaling_spec(fn_name, minReplicas=1))
    gate = tmp_path / "open"
    executions = [await enqueue(client, fn_name, str(gate)) for _ in range(5)]
    busy = await wait_replicas(client, fn_name, current=3, ready=3, desired=3)
    assert busy["replicas"]["max"] == 3 and busy["inFlight"] == 3 and busy["queued"] == 2
    assert len(function_processes(fn_name)) == 3
    for gauge in ("function_replicas_desired", "function_replicas_current"):
        assert await scheduler_metric(scaling_platform, f'{gauge}{{function="{fn_name}"}}') == 3
    gate.touch()
    results = [await wait_terminal(client, execution_id) for execution_id in executions]
    assert {result["status"] for result in results} == {"success"}
    assert len({result["output"] for result in results}) == 3  # spread over the three replicas
    idle = await wait_replicas(client, fn_name, current=1, desired=1)
    assert (idle["replicas"]["min"], idle["inFlight"], idle["queued"]) == (1, 0, 0)
    await wait_processes(fn_name, 1)


async def test_min_replicas_zero_idles_at_zero_processes_and_answers_the_next_invocation(
    client: aiohttp.ClientSession, scaling_platform: Platform, fn_name: str, tmp_path: Path
) -> None:
    await register(client, scaling_spec(fn_name, minReplicas=0))
    gate = tmp_path / "open"
    gate.touch()
    assert (await status(client, fn_name))["replicas"]["current"] == 0  # nothing started yet
    code, _, first = await invoke(client, fn_name, str(gate))
    assert code == 200, first
    await wait_replicas(client, fn_name, current=0, desired=0, ready=0)
    await wait_processes(fn_name, 0)
    # At zero replicas: the invocation waits for the first replica, then runs.
    code, _, again = await invoke(client, fn_name, str(gate))
    assert code == 200 and again["status"] == "success", again
    assert again["output"] != first["output"]  # a new process
    cold_starts = f'function_cold_start_seconds_count{{function="{fn_name}"}}'
    assert await scheduler_metric(scaling_platform, cold_starts) == 2  # one per start from zero
    await wait_replicas(client, fn_name, current=0)
    await wait_processes(fn_name, 0)
    for gauge in ("function_replicas_desired", "function_replicas_current"):
        assert await scheduler_metric(scaling_platform, f'{gauge}{{function="{fn_name}"}}') == 0


async def test_the_status_is_404_for_an_unknown_function(client: aiohttp.ClientSession) -> None:
    async with client.get("/v1/functions/no-such-fn/status") as response:
        assert response.status == 404
