"""(h) tracing off, on at 100 %, and on at 5 % parent-based sampling: the same warm load.

Each case gets a fresh platform. "on" and "sampled" export OTLP/gRPC to a local
sink that counts the spans it receives; "sampled" sets the standard
OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.05, so the
gateway decides once per trace and every other process follows the traceparent.
The result's "throughput_cost" and "cpu_added_us" compare each traced case with
"off" (run medians), per connection count, for the goals table (issue #16).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from bench.platform import Platform, noop_spec, register, start_platform, warm_up
from bench.procs import free_port, spawn, wait_port
from bench.scenarios import Context, log
from bench.scenarios.sync_load import sweep

SINK = Path(__file__).resolve().parent.parent / "handlers" / "otlp_sink.py"
SAMPLED_RATIO = "0.05"
SAMPLED_LABEL = "5%"
"""The key of the sampled case in "throughput_cost" / "cpu_added_us" (matches SAMPLED_RATIO)."""


def _measure(ctx: Context, label: str, platform: Platform) -> list[dict[str, Any]]:
    cfg = ctx.config
    spec = noop_spec("noop-traced", concurrency=cfg.warm_concurrency, queueSize=10_000)
    register(platform.base_url, spec)
    url = f"{platform.base_url}/v1/functions/noop-traced:invoke"
    warm_up(url, 50 * cfg.warm_concurrency, parallel=2 * cfg.warm_concurrency)
    connections = tuple(c for c in cfg.connections if c in (1, 32)) or cfg.connections[:1]
    return sweep(ctx, f"h/{label}", url, connections, cpu_of=platform.pids)


def _traced(ctx: Context, label: str, **sampler: str) -> tuple[list[dict[str, Any]], int]:
    """One traced platform against a fresh sink: its sweep and the spans the sink received."""
    port, count_file = free_port(), ctx.out_dir / f"h-spans-{label}.txt"
    count_file.unlink(missing_ok=True)
    sink = spawn(
        f"otlp-sink-{label}", [sys.executable, str(SINK), str(port), str(count_file)], os.environ, ctx.log_dir
    )
    try:
        wait_port(port, [sink])
        platform = start_platform(
            ctx.log_dir / f"platform-h-{label}",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_EXPORTER_OTLP_INSECURE="true",
            **sampler,
        )
        try:
            results = _measure(ctx, label, platform)
        finally:
            platform.stop()  # flushes the exporters
        spans = int(count_file.read_text()) if count_file.exists() else 0
    finally:
        sink.stop(grace_s=5)
    log(f"h/{label}: {spans:,} spans received by the OTLP sink")
    return results, spans


def _medians(results: list[dict[str, Any]], figure: str) -> dict[str, float]:
    """{"<conns>": median} of `rps`, or of the all-process CPU µs per request ("cpu")."""
    out: dict[str, float] = {}
    for row in results:
        value = row["rps"] if figure == "rps" else row["cpu_us_per_request"].get("total", {})
        out[str(row["connections"])] = float(value.get("median", float("nan")))
    return out


def costs(off: list[dict[str, Any]], traced: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """throughput_cost = 1 - rps/rps_off and cpu_added_us = cpu - cpu_off, per traced case and conns."""
    rps_off, cpu_off = _medians(off, "rps"), _medians(off, "cpu")
    throughput: dict[str, dict[str, float]] = {}
    cpu_added: dict[str, dict[str, float]] = {}
    for case, results in traced.items():
        rps, cpu = _medians(results, "rps"), _medians(results, "cpu")
        throughput[case] = {c: 1 - rps[c] / rps_off[c] for c in rps if rps_off.get(c)}
        cpu_added[case] = {c: cpu[c] - cpu_off[c] for c in cpu if c in cpu_off}
    return {"throughput_cost": throughput, "cpu_added_us": cpu_added}


def run_tracing(ctx: Context) -> dict[str, Any]:
    off_platform = start_platform(ctx.log_dir / "platform-h-off")
    try:
        off = _measure(ctx, "off", off_platform)
    finally:
        off_platform.stop()
    on, spans = _traced(ctx, "on")
    sampled, sampled_spans = _traced(
        ctx,
        "sampled",
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG=SAMPLED_RATIO,
    )
    return {
        "off": off,
        "on": on,
        "sampled": sampled,
        "spans_received": spans,
        "sampled_spans_received": sampled_spans,
        "sampler": {"sampled": f"parentbased_traceidratio {SAMPLED_RATIO}"},
        "exporter": "OTLP/gRPC to a local sink",
        **costs(off, {"100%": on, SAMPLED_LABEL: sampled}),
    }
