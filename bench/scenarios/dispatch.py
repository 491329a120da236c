"""(f) dispatch cost vs number of registered functions (1, 100, 10,000).

Every function is an ENDPOINT function pointing at one shared warm runtime process, so the
only thing that changes between cases is how many functions the control plane holds; traffic
is spread round-robin over the first `dispatch_hot` of them (all of them when fewer)."""

from __future__ import annotations

from typing import Any

from bench.platform import endpoint_spec, register_many, start_platform, warm_up
from bench.scenarios import Context, log
from bench.scenarios.sync_load import sweep
from bench.servers import running

TARGET_CONCURRENCY = 8


def _name(index: int) -> str:
    return f"fn-{index:05d}"


def run_dispatch(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    paths_file = ctx.out_dir / "dispatch-paths.txt"
    cases: list[dict[str, Any]] = []
    with running("runtime", ctx.log_dir, NANOFAAS_RUNTIME_CONCURRENCY=str(TARGET_CONCURRENCY)) as target:
        platform = start_platform(ctx.log_dir / "platform-f")
        try:
            registered = 0
            for size in sorted(cfg.dispatch_sizes):
                specs = [
                    endpoint_spec(_name(i), target.url, concurrency=32, queueSize=10_000)
                    for i in range(registered, size)
                ]
                register_many(platform.base_url, specs)
                registered = size
                hot = min(size, cfg.dispatch_hot)
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
                    (cfg.dispatch_connections,),
                    cpu_of=pids,
                    script="round_robin",
                    env={"BENCH_PATHS": str(paths_file)},
                )[0]
                cases.append({"registered": size, "hot": hot, **result})
        finally:
            platform.stop()
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
