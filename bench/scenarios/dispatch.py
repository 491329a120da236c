"""(f) dispatch cost vs number of registered functions (1, 100, 10,000).

Every function is an ENDPOINT function pointing at one shared warm runtime process, so the
only thing that changes between cases is how many functions the control plane holds; traffic
is spread round-robin over the first `dispatch_hot` of them (all of them when fewer). Each case
runs on a platform of its own, started fresh, so no case inherits another's retained executions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.loadgen import run_wrk
from bench.platform import endpoint_spec, register_many, start_platform, warm_up
from bench.scenarios import Context, log
from bench.scenarios.profiling import profiling
from bench.scenarios.sync_load import sweep
from bench.servers import Server, running

TARGET_CONCURRENCY = 8


def _name(index: int) -> str:
    return f"fn-{index:05d}"


def run_dispatch(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    paths_file = ctx.out_dir / "dispatch-paths.txt"
    with running("runtime", ctx.log_dir, NANOFAAS_RUNTIME_CONCURRENCY=str(TARGET_CONCURRENCY)) as target:
        try:
            cases = [_run_case(ctx, target, size, paths_file) for size in sorted(cfg.dispatch_sizes)]
        finally:
            paths_file.unlink(missing_ok=True)
    first, last = cases[0], cases[-1]
    return {
        "endpoint_runtime_concurrency": TARGET_CONCURRENCY,
        "cases": cases,
        "rps_change": last["rps"]["median"] / first["rps"]["median"] - 1.0,
        "p50_change": last["p50_ms"]["median"] / first["p50_ms"]["median"] - 1.0,
        "cpu_change": last["cpu_us_per_request"]["total"]["median"]
        / first["cpu_us_per_request"]["total"]["median"]
        - 1.0,
    }


def _run_case(ctx: Context, target: Server, size: int, paths_file: Path) -> dict[str, Any]:
    """One case on a platform of its own, started fresh: each starts with an empty execution
    store, so the executions a case retains (up to NANOFAAS_MAX_EXECUTIONS, walked by every
    full GC) do not weigh on the next case and pass for a cost of the registry's size."""
    platform = start_platform(ctx.log_dir / f"platform-f{size}")
    try:
        specs = [endpoint_spec(_name(i), target.url, concurrency=32, queueSize=10_000) for i in range(size)]
        register_many(platform.base_url, specs)
        hot = min(size, ctx.config.dispatch_hot)
        paths_file.write_text("".join(f"/v1/functions/{_name(i)}:invoke\n" for i in range(hot)))
        for i in range(hot):
            warm_up(f"{platform.base_url}/v1/functions/{_name(i)}:invoke", 2, parallel=1)
        log(f"f/dispatch: {size} registered, traffic over {hot}")

        def pids() -> dict[str, list[int]]:
            return {**platform.pids(), "endpoint-runtime": target.pids()["runtime"]}

        result = sweep(
            ctx,
            f"f/registered={size}",
            platform.base_url + "/",
            (ctx.config.dispatch_connections,),
            cpu_of=pids,
            script="round_robin",
            env={"BENCH_PATHS": str(paths_file)},
        )[0]
        if ctx.config.profile:
            _profile(ctx, size, pids(), platform.base_url + "/", paths_file)
    finally:
        platform.stop()
    return {"registered": size, "hot": hot, **result}


def _profile(ctx: Context, size: int, pids: dict[str, list[int]], url: str, paths_file: Path) -> None:
    """py-spy the gateway, the scheduler and the endpoint runtime during one extra run of the same load."""
    targets = {name: pids[name][0] for name in ("gateway", "scheduler", "endpoint-runtime")}
    duration = max(5, ctx.config.duration_s)
    with profiling(ctx, f"f{size}", targets, duration):
        run_wrk(
            url,
            ctx.config.dispatch_connections,
            duration,
            script="round_robin",
            env={"BENCH_PATHS": str(paths_file)},
        )
