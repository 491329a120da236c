"""(h) tracing on vs off: the same warm load with and without an OTLP exporter configured."""

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


def _measure(ctx: Context, label: str, platform: Platform) -> list[dict[str, Any]]:
    cfg = ctx.config
    spec = noop_spec("noop-traced", concurrency=cfg.warm_concurrency, queueSize=10_000)
    register(platform.base_url, spec)
    url = f"{platform.base_url}/v1/functions/noop-traced:invoke"
    warm_up(url, 50 * cfg.warm_concurrency, parallel=2 * cfg.warm_concurrency)
    connections = tuple(c for c in cfg.connections if c in (1, 32)) or cfg.connections[:1]
    return sweep(ctx, f"h/{label}", url, connections, cpu_of=platform.pids)


def run_tracing(ctx: Context) -> dict[str, Any]:
    off_platform = start_platform(ctx.log_dir / "platform-h-off")
    try:
        off = _measure(ctx, "off", off_platform)
    finally:
        off_platform.stop()
    port, count_file = free_port(), ctx.out_dir / "h-spans.txt"
    sink = spawn(
        "otlp-sink", [sys.executable, str(SINK), str(port), str(count_file)], os.environ, ctx.log_dir
    )
    try:
        wait_port(port, [sink])
        on_platform = start_platform(
            ctx.log_dir / "platform-h-on",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_EXPORTER_OTLP_INSECURE="true",
        )
        try:
            on = _measure(ctx, "on", on_platform)
        finally:
            on_platform.stop()  # flushes the exporters
        spans = int(count_file.read_text()) if count_file.exists() else 0
    finally:
        sink.stop(grace_s=5)
    log(f"h: {spans:,} spans received by the OTLP sink")
    return {"off": off, "on": on, "spans_received": spans, "exporter": "OTLP/gRPC to a local sink"}
