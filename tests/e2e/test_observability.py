"""Metrics scraped after a known sequence of invocations, and the JSON logs of an invocation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Platform
from .helpers import command_spec, invoke, python_spec, register, wait_for_log_entry, wait_terminal


async def scrape(port: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_scheduler_metrics_count_what_happened(
    http: aiohttp.ClientSession, platform: Platform, fn_name: str, tmp_path: Path
) -> None:
    marker = tmp_path / "crashed"
    await register(
        http,
        command_spec(
            fn_name,
            "stdio_echo.py",
            runtimeMode="STDIO",
            timeoutMs=2000,
            env={"CRASH_ONCE_MARKER": str(marker)},
        ),
    )
    assert (await invoke(http, fn_name, {"n": 1}))[0] == 200  # crashes once, retried: success + 1 retry
    assert (await invoke(http, fn_name, {"n": 2}))[0] == 200
    assert (await invoke(http, fn_name, {"fail": "x"}))[0] == 502
    slow = f"{fn_name}-slow"
    await register(
        http, python_spec(slow, "sleep", executionMode="WARM", concurrency=1, queueSize=1, timeoutMs=10_000)
    )
    assert (await invoke(http, slow, 5, headers={"X-Timeout-Ms": "500"}))[0] == 408
    statuses, accepted = [], []
    for _ in range(3):  # one runs, one waits in the queue of 1, the third is refused
        async with http.post(f"/v1/functions/{slow}:enqueue", json={"input": 0.5}) as response:
            statuses.append(response.status)
            rejected = response.headers.get("X-Queue-Reject-Reason")
            if response.status == 202:
                accepted.append((await response.json())["executionId"])
    assert statuses == [202, 202, 429]
    assert rejected == "depth"
    for execution_id in accepted:
        assert (await wait_terminal(http, execution_id))["status"] == "success"

    samples = await scrape(platform.env["NANOFAAS_SCHEDULER_METRICS_PORT"])

    def value(name: str, function: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted({"function": function, **labels}.items()))), 0.0)

    assert value("function_enqueue_total", fn_name) == 3
    assert value("function_dispatch_total", fn_name) == 4
    assert value("function_retry_total", fn_name) == 1
    assert value("function_success_total", fn_name) == 2
    assert value("function_error_total", fn_name) == 1
    assert value("function_latency_seconds_count", fn_name) == 3
    assert value("function_execution_seconds_count", fn_name) == 4
    assert value("function_timeout_total", slow) == 1
    assert value("function_rejected_total", slow, reason=rejected) >= 1
    assert value("function_cold_start_seconds_count", slow) >= 1
    assert value("function_warm_pool_size", slow) >= 1
    assert value("function_queue_depth", slow) == 0
    assert value("function_inflight", slow) == 0

    async with http.delete(f"/v1/functions/{fn_name}") as response:
        assert response.status == 204
    for _ in range(100):  # the scheduler learns of the delete through its registry watch
        if not any(labels and ("function", fn_name) in labels for _, labels in await scrape_keys(platform)):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("series of a deleted function were not removed")


async def scrape_keys(platform: Platform) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    return list(await scrape(platform.env["NANOFAAS_SCHEDULER_METRICS_PORT"]))


async def test_gateway_and_registry_metrics(
    http: aiohttp.ClientSession, platform: Platform, fn_name: str
) -> None:
    await register(http, python_spec(fn_name, "echo", executionMode="WARM"))
    assert (await invoke(http, fn_name, 1))[0] == 200
    gateway = await scrape(platform.env["NANOFAAS_GATEWAY_METRICS_PORT"])
    routes = {dict(labels).get("route") for name, labels in gateway if name == "gateway_requests_total"}
    assert "/v1/functions/{name}:invoke" in routes
    assert not any(route and fn_name in route for route in routes), "raw paths must not become labels"
    registry = await scrape(platform.env["NANOFAAS_REGISTRY_METRICS_PORT"])
    assert registry[("registry_functions", ())] >= 1


async def test_failed_invocation_is_logged_as_json_with_ids(
    http: aiohttp.ClientSession, platform: Platform, fn_name: str
) -> None:
    await register(http, python_spec(fn_name, "fail"))
    status, headers, _ = await invoke(http, fn_name, "x", headers={"X-Trace-Id": "log-trace-1"})
    assert status == 502
    execution_id = headers["X-Execution-Id"]
    # The log line is written right after the response: the file may not have it yet.
    entry = await wait_for_log_entry(
        lambda: platform.logs("scheduler"),
        lambda e: e.get("executionId") == execution_id and e["msg"] == "execution ended",
    )
    assert entry["traceId"] == "log-trace-1"
    assert entry["functionName"] == fn_name
    assert entry["status"] == "error"
    assert entry["service"] == "scheduler"
    assert entry["level"] in ("INFO", "WARNING")
    assert entry["ts"].endswith("Z")


async def test_handler_output_reaches_the_log_stream_with_ids(
    http: aiohttp.ClientSession, platform: Platform, fn_name: str
) -> None:
    await register(http, python_spec(fn_name, "chatty", executionMode="WARM"))
    status, headers, _ = await invoke(http, fn_name, fn_name, headers={"X-Trace-Id": "chat-trace"})
    assert status == 200
    # The replica's stderr is forwarded as it is written.
    line = await wait_for_log_entry(
        lambda: platform.logs("scheduler"), lambda entry: f"chatty says {fn_name}" in str(entry.get("msg"))
    )
    assert line["executionId"] == headers["X-Execution-Id"]
    assert line["traceId"] == "chat-trace"
    assert line["service"] == "runtime"
