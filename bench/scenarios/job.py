"""(d) JOB mode: a fresh runtime process per invocation, end to end through the platform.

Also a STDIO command (a fresh process per invocation in any mode), sequentially:
the path through the watchdog.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from typing import Any

import aiohttp

from bench.config import HANDLERS_DIR
from bench.platform import RUNTIME_IMAGE, noop_spec, register, start_platform
from bench.scenarios import Context, log
from bench.stats import percentile, spread


def _ms_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    delta = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(
        start.replace("Z", "+00:00")
    )
    return delta.total_seconds() * 1000.0


async def _invoke_all(base: str, name: str, count: int, parallel: int) -> dict[str, Any]:
    """`count` sync invocations with `parallel` in flight; client latency and spawn-to-result."""
    latencies: list[float] = []
    ids: list[str] = []
    failures = 0
    todo = iter(range(count))
    url = f"{base}/v1/functions/{name}:invoke"
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            nonlocal failures
            for _ in todo:
                started = time.perf_counter()
                async with session.post(url, json={"input": None}) as response:
                    body = await response.json()
                latencies.append((time.perf_counter() - started) * 1000.0)
                if response.status != 200 or body.get("status") != "success":
                    failures += 1
                ids.append(response.headers.get("X-Execution-Id", body.get("executionId", "")))

        await asyncio.gather(*(worker() for _ in range(parallel)))
        spawn_to_result: list[float] = []
        for execution_id in ids:
            async with session.get(f"{base}/v1/executions/{execution_id}") as response:
                status = await response.json()
            value = _ms_between(status.get("startedAt"), status.get("finishedAt"))
            if value is not None:
                spawn_to_result.append(value)
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "spawn_to_result_p50_ms": percentile(spawn_to_result, 50),
        "spawn_to_result_p99_ms": percentile(spawn_to_result, 99),
        "rps": count / (sum(latencies) / 1000.0 / parallel) if latencies else 0.0,
        "failures": failures,
        "count": count,
    }


def run_job(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    platform = start_platform(ctx.log_dir / "platform-d")
    try:
        register(
            platform.base_url,
            noop_spec("noop-job", mode="JOB", concurrency=cfg.job_concurrency, queueSize=10_000),
        )
        register(
            platform.base_url,
            {
                "name": "noop-stdio",
                "image": RUNTIME_IMAGE,
                "executionMode": "JOB",
                "runtimeMode": "STDIO",
                "command": [sys.executable, str(HANDLERS_DIR / "stdio_noop.py")],
                "concurrency": cfg.job_concurrency,
            },
        )
        for name in ("noop-job", "noop-stdio"):  # page caches, first imports
            asyncio.run(_invoke_all(platform.base_url, name, 2, 1))
        result: dict[str, Any] = {}
        for label, name, parallel in (
            ("sequential", "noop-job", 1),
            (f"concurrency_{cfg.job_concurrency}", "noop-job", cfg.job_concurrency),
            ("stdio_sequential", "noop-stdio", 1),
        ):
            runs = []
            for repeat in range(cfg.repeats):
                run = asyncio.run(_invoke_all(platform.base_url, name, cfg.job_invocations, parallel))
                log(
                    f"d/job {label} #{repeat + 1}: p50 {run['p50_ms']:.1f} ms p99 {run['p99_ms']:.1f} ms "
                    f"spawn-to-result p50 {run['spawn_to_result_p50_ms']:.1f} ms"
                )
                runs.append(run)
            keys = ("p50_ms", "p99_ms", "spawn_to_result_p50_ms", "spawn_to_result_p99_ms", "rps")
            result[label] = {key: spread(run[key] for run in runs) for key in keys}
            result[label]["failures"] = sum(run["failures"] for run in runs)
            result[label]["invocations"] = sum(run["count"] for run in runs)
        return result
    finally:
        platform.stop()
