"""(g) RSS of each service idle, and after N completed (retained) executions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.platform import noop_spec, register, start_platform, warm_up
from bench.scenarios import Context, log
from bench.scenarios.async_enqueue import enqueue_for, read_ids, wait_all_done

MAX_CHUNKS = 100


def run_memory(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    target = cfg.memory_executions
    ids_file = ctx.out_dir / "memory-ids.txt"
    retained = str(max(200_000, 2 * target))
    platform = start_platform(ctx.log_dir / "platform-g", NANOFAAS_MAX_EXECUTIONS=retained)
    try:
        time.sleep(2.0)  # let start-up allocations settle before calling it idle
        idle = platform.rss()
        register(
            platform.base_url, noop_spec("noop-mem", concurrency=cfg.warm_concurrency, queueSize=1_000_000)
        )
        base = platform.base_url
        warm_up(f"{base}/v1/functions/noop-mem:invoke", 200, parallel=2 * cfg.warm_concurrency)
        baseline = platform.rss()
        accepted, rate, chunks = 0, 2000.0, 0
        started = time.monotonic()
        ids: list[str] = []
        while accepted < target and chunks < MAX_CHUNKS:
            remaining = target - accepted
            per_thread = -(-remaining // 2)
            duration = max(1, min(30, round(remaining / rate * 1.2 + 1)))
            run = enqueue_for(f"{base}/v1/functions/noop-mem:enqueue", 32, duration, ids_file, per_thread)
            ids = read_ids(ids_file)
            accepted += len(ids)
            rate = max(100.0, len(ids) / run.duration_s)
            chunks += 1
        check = asyncio.run(wait_all_done(base, ids, timeout_s=600.0, tail_only=True))
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        after = platform.rss()
        log(
            f"g/memory: {accepted} executions in {elapsed:.0f} s; "
            f"RSS idle {sum(idle.values()) / 2**20:.0f} MiB"
            f", after {sum(after.values()) / 2**20:.0f} MiB"
        )
        growth = {name: after[name] - baseline[name] for name in after}
        return {
            "executions": accepted,
            "seconds": elapsed,
            "rss_idle_bytes": idle,
            "rss_baseline_bytes": baseline,
            "rss_after_bytes": after,
            "idle_total_mib": sum(idle.values()) / 2**20,
            "after_total_mib": sum(after.values()) / 2**20,
            "bytes_per_execution": {name: value / accepted for name, value in growth.items()},
            "bytes_per_execution_total": sum(growth.values()) / accepted,
            "tail_not_success": check["not_success"],
            "tail_lost": check["lost"],
            "max_executions_setting": int(retained),
        }
    finally:
        ids_file.unlink(missing_ok=True)
        platform.stop()
