"""Scenarios a, b, c and the load generator's ceiling: the same wrk load at several
connection counts against the platform, the bare warm runtime, peer runtimes and a trivial server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bench.loadgen import WrkRun, run_wrk
from bench.platform import Platform, noop_spec, register, start_platform, warm_up
from bench.procs import ProcessGroups
from bench.scenarios import Context, log
from bench.scenarios.profiling import pool_targets, profiling
from bench.servers import running
from bench.stats import spread


def summarise(runs: list[WrkRun]) -> dict[str, Any]:
    """min/median/max of each figure over the repeats, plus the CDF of the median run."""
    median_run = sorted(runs, key=lambda run: run.rps)[len(runs) // 2]
    cpu_names = sorted({name for run in runs for name in run.cpu_us_per_request})
    cpu = {name: spread(run.cpu_us_per_request.get(name, 0.0) for run in runs) for name in cpu_names}
    if cpu:
        cpu["total"] = spread(sum(run.cpu_us_per_request.values()) for run in runs)
    return {
        "connections": runs[0].connections,
        "rps": spread(run.rps for run in runs),
        "p50_ms": spread(run.p50_ms for run in runs),
        "p90_ms": spread(run.p90_ms for run in runs),
        "p99_ms": spread(run.p99_ms for run in runs),
        "max_ms": spread(run.max_ms for run in runs),
        "cpu_us_per_request": cpu,
        "requests": sum(run.requests for run in runs),
        "non2xx": sum(run.non2xx for run in runs),
        "socket_errors": sum(run.socket_errors for run in runs),
        "cdf_ms": median_run.cdf_ms,
        "runs": [{k: v for k, v in asdict(run).items() if k != "cdf_ms"} for run in runs],
    }


def sweep(
    ctx: Context,
    label: str,
    url: str,
    connections: tuple[int, ...],
    *,
    cpu_of: Callable[[], ProcessGroups] | None = None,
    script: str = "post",
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    results = []
    for conns in connections:
        runs = [
            measure(ctx, f"{label} c={conns} #{n + 1}", url, conns, cpu_of=cpu_of, script=script, env=env)
            for n in range(ctx.config.repeats)
        ]
        results.append(summarise(runs))
    return results


def measure(
    ctx: Context,
    label: str,
    url: str,
    conns: int,
    *,
    cpu_of: Callable[[], ProcessGroups] | None = None,
    script: str = "post",
    env: dict[str, str] | None = None,
) -> WrkRun:
    """One wrk run of the configured duration, logged; `sweep` repeats it, (j) interleaves it."""
    run = run_wrk(url, conns, ctx.config.duration_s, script=script, env=env, cpu_of=cpu_of)
    log(f"{label}: {run.rps:,.0f} req/s p50 {run.p50_ms:.2f} ms p99 {run.p99_ms:.2f} ms non2xx {run.non2xx}")
    return run


def run_ceiling(ctx: Context) -> dict[str, Any]:
    """wrk against a trivial raw-ASGI server: what the generator can do on this machine."""
    conns = tuple(sorted({32, max(ctx.config.connections)}))
    ids_file = ctx.out_dir / "ceiling-ids.txt"
    with running("trivial-asgi", ctx.log_dir) as server:
        post = sweep(ctx, "ceiling/post", server.url, conns, cpu_of=server.pids)
        collect = sweep(
            ctx,
            "ceiling/collect-ids",
            server.url,
            (ctx.config.async_connections,),
            cpu_of=server.pids,
            script="collect",
            env={"BENCH_IDS": str(ids_file)},
        )
    ids_file.unlink(missing_ok=True)
    return {
        "server": "raw ASGI app on uvicorn (uvloop, httptools), 1 process",
        "post": post,
        "collect_ids": collect,
    }


def run_platform_warm(ctx: Context) -> dict[str, Any]:
    """(a) warm sync invoke through gateway -> scheduler -> runtime."""
    cfg = ctx.config
    platform: Platform = start_platform(ctx.log_dir / "platform-a")
    try:
        spec = noop_spec("noop-warm", concurrency=cfg.warm_concurrency, queueSize=10_000)
        register(platform.base_url, spec)
        url = f"{platform.base_url}/v1/functions/noop-warm:invoke"
        warm_up(url, 50 * cfg.warm_concurrency, parallel=2 * cfg.warm_concurrency)
        sweep_result = sweep(ctx, "a/platform", url, cfg.connections, cpu_of=platform.pids)
        if cfg.profile:
            _profile(ctx, platform, url)
        return {"function": spec, "replicas": len(platform.pids()["functions"]), "results": sweep_result}
    finally:
        platform.stop()


def _profile(ctx: Context, platform: Platform, url: str) -> None:
    """py-spy the gateway, the scheduler and one warm replica during one extra 32-connection run."""
    duration = max(5, ctx.config.duration_s)
    with profiling(ctx, "", pool_targets(platform), duration):
        run_wrk(url, 32, duration)


def run_floor(ctx: Context) -> dict[str, Any]:
    """(b) the same load straight at one warm runtime process: no platform in front."""
    with running("runtime", ctx.log_dir) as server:
        warm_up(server.url, 200, body=b'{"input":null,"metadata":{}}')
        results = sweep(
            ctx,
            "b/runtime",
            server.url,
            ctx.config.connections,
            cpu_of=server.pids,
            env={"BENCH_BODY": '{"input":null,"metadata":{}}'},
        )
    return {
        "server": "python -m nanofaas_runtime (1 process, NANOFAAS_RUNTIME_CONCURRENCY=1)",
        "results": results,
    }


def run_peers(ctx: Context) -> dict[str, Any]:
    """(c) functions-framework (gunicorn gthread, its defaults) and Flask under waitress."""
    peers: dict[str, Any] = {}
    for kind in ("functions-framework", "flask-waitress"):
        with running(kind, ctx.log_dir) as server:
            warm_up(server.url, 200)
            peers[kind] = {
                "results": sweep(ctx, f"c/{kind}", server.url, ctx.config.connections, cpu_of=server.pids)
            }
    return peers


def overhead(platform: list[dict[str, Any]], floor: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Platform overhead = (a) - (b), from the medians at each connection count."""
    rows = []
    by_conns = {row["connections"]: row for row in floor}
    for row in platform:
        base = by_conns.get(row["connections"])
        if base is None:
            continue
        rows.append(
            {
                "connections": row["connections"],
                **{
                    f"{key}_overhead_ms": row[key]["median"] - base[key]["median"]
                    for key in ("p50_ms", "p90_ms", "p99_ms")
                },
                "rps_ratio": row["rps"]["median"] / base["rps"]["median"] if base["rps"]["median"] else 0.0,
                "cpu_us_overhead": row["cpu_us_per_request"].get("total", {}).get("median", 0.0)
                - base["cpu_us_per_request"].get("total", {}).get("median", 0.0),
            }
        )
    return rows
