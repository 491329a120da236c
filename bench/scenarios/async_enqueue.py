"""(e) async: enqueue as fast as wrk can for a while, then wait until every accepted execution
has ended; report accepted/s, drain time and how many were lost. Also the helpers (g) uses."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import WrkRun, run_wrk
from bench.platform import Platform, noop_spec, register, start_platform, warm_up
from bench.procs import ProcessGroups
from bench.scenarios import Context, log
from bench.scenarios.profiling import pool_targets, profiling
from bench.stats import spread

PENDING = ("queued", "running")
POLL_PARALLEL = 32


def read_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        if line.strip():
            ids.append(str(json.loads(line)["executionId"]))
    return ids


async def _poll(session: aiohttp.ClientSession, base: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The current ExecutionStatus of each id (`{}` for a 404), `POLL_PARALLEL` requests in flight."""
    found: dict[str, dict[str, Any]] = {}
    todo = iter(ids)

    async def worker() -> None:
        for execution_id in todo:
            async with session.get(f"{base}/v1/executions/{execution_id}") as response:
                found[execution_id] = await response.json() if response.status == 200 else {}

    await asyncio.gather(*(worker() for _ in range(POLL_PARALLEL)))
    return found


async def wait_all_done(
    base: str, ids: list[str], timeout_s: float, tail_only: bool = False
) -> dict[str, Any]:
    """Wait for the tail of each wrk thread's ids, then check every id (or only the tail).

    The queue is FIFO, so once the last accepted executions have ended the rest have too;
    polling a small tail first keeps the poller from competing with the drain for CPU.
    """
    deadline = time.monotonic() + timeout_s
    half = len(ids) // 2
    tail = list(dict.fromkeys(ids[-16:] + ids[max(0, half - 16) : half]))
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            statuses = await _poll(session, base, tail)
            if all(s.get("status") not in PENDING for s in statuses.values()):
                break
            await asyncio.sleep(0.2)
        pending = tail if tail_only else list(ids)
        final: dict[str, dict[str, Any]] = {}
        while pending and time.monotonic() < deadline:
            statuses = await _poll(session, base, pending)
            final.update(statuses)
            pending = [i for i, s in statuses.items() if s and s.get("status") in PENDING]
            if pending:
                await asyncio.sleep(0.2)
    finished = [_epoch(s["finishedAt"]) for s in final.values() if s.get("finishedAt")]
    return {
        "checked": len(final),
        "lost": sum(1 for s in final.values() if not s) + len(pending),
        "not_success": sum(1 for s in final.values() if s and s.get("status") != "success"),
        "last_finished_at": max(finished) if finished else float("nan"),
    }


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def enqueue_for(
    url: str,
    connections: int,
    duration_s: float,
    ids_file: Path,
    limit: int = 0,
    *,
    cpu_of: Callable[[], ProcessGroups] | None = None,
) -> WrkRun:
    env = {"BENCH_IDS": str(ids_file), "BENCH_LIMIT": str(limit)}
    return run_wrk(url, connections, duration_s, script="collect", env=env, cpu_of=cpu_of)


@contextmanager
def sampling_lane(status_url: str, samples: list[tuple[int, int]], every_s: float = 0.25) -> Iterator[None]:
    """Sample (queued, in flight) of one function from its status endpoint while the block runs.

    Shows whether enqueue outruns the executions (a growing queue) or the executions keep up
    (the queue stays near empty and the accepted rate is what the platform completes).
    """
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            try:
                with urllib.request.urlopen(status_url, timeout=2.0) as response:
                    body = json.loads(response.read())
                samples.append((int(body["queued"]), int(body["inFlight"])))
            except OSError:
                continue  # a sample lost under load is only a missing point

    thread = threading.Thread(target=sample, name="lane-sampler", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5.0)


def _lane_summary(samples: list[tuple[int, int]]) -> dict[str, float]:
    if not samples:
        return {"samples": 0}
    queued = [q for q, _ in samples]
    inflight = [i for _, i in samples]
    return {
        "samples": len(samples),
        "queued_median": statistics.median(queued),
        "queued_max": max(queued),
        "inflight_median": statistics.median(inflight),
    }


def _profile(ctx: Context, platform: Platform, base: str, ids_file: Path) -> None:
    """py-spy the gateway, the scheduler and one replica during one extra enqueue run."""
    duration = max(5, ctx.config.duration_s)
    with profiling(ctx, "e", pool_targets(platform), duration):
        enqueue_for(
            f"{base}/v1/functions/noop-async:enqueue", ctx.config.async_connections, duration, ids_file
        )
    asyncio.run(wait_all_done(base, read_ids(ids_file), timeout_s=300.0, tail_only=True))


def run_async(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    platform = start_platform(ctx.log_dir / "platform-e")
    ids_file = ctx.out_dir / "async-ids.txt"
    try:
        register(
            platform.base_url, noop_spec("noop-async", concurrency=cfg.warm_concurrency, queueSize=1_000_000)
        )
        base = platform.base_url
        warm_up(
            f"{base}/v1/functions/noop-async:invoke",
            20 * cfg.warm_concurrency,
            parallel=2 * cfg.warm_concurrency,
        )
        runs = []
        for repeat in range(cfg.repeats):
            samples: list[tuple[int, int]] = []
            with sampling_lane(f"{base}/v1/functions/noop-async/status", samples):
                run = enqueue_for(
                    f"{base}/v1/functions/noop-async:enqueue",
                    cfg.async_connections,
                    cfg.duration_s,
                    ids_file,
                    cpu_of=platform.pids,
                )
            ids = read_ids(ids_file)
            check = asyncio.run(wait_all_done(base, ids, timeout_s=max(300.0, 30.0 * cfg.duration_s)))
            accepted = len(ids)
            row = {
                "accepted": accepted,
                "accepted_per_s": accepted / run.duration_s,
                "rejected_non2xx": run.non2xx,
                "socket_errors": run.socket_errors,
                "enqueue_p50_ms": run.p50_ms,
                "enqueue_p99_ms": run.p99_ms,
                "drain_s": max(0.0, check["last_finished_at"] - run.ended_at),
                "total_s": check["last_finished_at"] - run.started_at,
                "completed_per_s": accepted / (check["last_finished_at"] - run.started_at),
                "lost": check["lost"] + (run.requests - run.non2xx - accepted),
                "not_success": check["not_success"],
                # CPU of each process during the enqueue run, per accepted execution (the
                # executions that ran meanwhile included: that is what shares the cores).
                "cpu_us_per_accepted": {
                    name: us * run.requests / max(accepted, 1) for name, us in run.cpu_us_per_request.items()
                },
                "lane": _lane_summary(samples),
            }
            log(
                f"e/async #{repeat + 1}: {row['accepted_per_s']:,.0f} accepted/s, "
                f"drain {row['drain_s']:.1f} s, "
                f"lost {row['lost']}, not success {row['not_success']}"
            )
            runs.append(row)
        if cfg.profile:
            _profile(ctx, platform, base, ids_file)
        keys = ("accepted_per_s", "enqueue_p50_ms", "enqueue_p99_ms", "drain_s", "completed_per_s")
        summary: dict[str, Any] = {key: spread(float(r[key]) for r in runs) for key in keys}
        for key in ("accepted", "rejected_non2xx", "socket_errors", "lost", "not_success"):
            summary[key] = sum(int(r[key]) for r in runs)
        names = sorted({name for r in runs for name in r["cpu_us_per_accepted"]})
        summary["cpu_us_per_accepted"] = {
            name: spread(float(r["cpu_us_per_accepted"].get(name, 0.0)) for r in runs) for name in names
        }
        summary["connections"] = cfg.async_connections
        summary["runs"] = runs
        return summary
    finally:
        ids_file.unlink(missing_ok=True)
        platform.stop()
