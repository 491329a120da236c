"""`python -m bench`: start what each scenario needs, measure, and write the report.

Every process the bench starts is stopped in a `finally`, so Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bench.config import BenchConfig, parse_config
from bench.environment import describe, loadavg
from bench.loadgen import require_wrk
from bench.report import goals_table, write_report
from bench.scenarios import Context, log
from bench.scenarios.async_enqueue import run_async
from bench.scenarios.autoscaling import run_autoscaling
from bench.scenarios.dispatch import run_dispatch
from bench.scenarios.job import run_job
from bench.scenarios.kubernetes import run_kubernetes
from bench.scenarios.memory import run_memory
from bench.scenarios.sync_load import overhead, run_ceiling, run_floor, run_peers, run_platform_warm
from bench.scenarios.tracing import run_tracing

Scenario = Callable[[Context], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {
    "ceiling": run_ceiling,
    "b": run_floor,
    "c": run_peers,
    "a": run_platform_warm,
    "d": run_job,
    "e": run_async,
    "f": run_dispatch,
    "g": run_memory,
    "h": run_tracing,
    "i": run_autoscaling,
    "j": run_kubernetes,
}


def run(config: BenchConfig) -> int:
    require_wrk()
    started = datetime.now(UTC)
    out_dir = config.out_dir / started.strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(config, out_dir)
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "config": {k: str(v) if k == "out_dir" else v for k, v in asdict(config).items()},
        "environment": describe(),
        "scenarios": {},
        "loadavg": {"start": loadavg(), "scenarios": {}},
    }
    clock = time.monotonic()
    try:
        for key, scenario in SCENARIOS.items():
            if key not in config.scenarios:
                continue
            report["loadavg"]["scenarios"][key] = loadavg()
            log(f"scenario {key} ... (load average {report['loadavg']['scenarios'][key]})")
            try:
                report["scenarios"][key] = scenario(ctx)
            except Exception as exc:  # one broken scenario must not lose the others' numbers
                traceback.print_exc()
                report["scenarios"][key] = {"error": f"{type(exc).__name__}: {exc}"}
        a, b = report["scenarios"].get("a", {}), report["scenarios"].get("b", {})
        if "results" in a and "results" in b:
            report["scenarios"]["overhead"] = overhead(a["results"], b["results"])
    finally:
        report["elapsed_s"] = time.monotonic() - clock
        report["loadavg"]["end"] = loadavg()
        write_report(report, out_dir)
        print("\n".join(goals_table(report)), flush=True)
        log(f"report: {out_dir / 'report.md'}")
    failed = [k for k, v in report["scenarios"].items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


def main() -> int:
    try:
        return run(parse_config(sys.argv[1:]))
    except KeyboardInterrupt:
        log("interrupted; every started process has been stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
