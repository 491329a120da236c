"""(h) tracing off, on at 100 %, and on at 5 % parent-based sampling: the same warm load.

Three platforms run side by side, each with (a)'s function and warm-up: "off" (no OTEL_*
setting), "on" and "sampled", the two traced ones exporting OTLP/gRPC each to a local sink of
its own that counts the spans it receives; "sampled" sets the standard
OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.05, so the gateway
decides once per trace and every other process follows the traceparent. At each connection
count every repeat measures all three, rotating which goes first (off, on, sampled; then on,
sampled, off; ...), so the machine's other load and its drift over the scenario hit the three
alike rather than the one measured last. Before every measured run the function gets the
warm-up burst again and the bench waits (bounded) for its pool to be steady, as (j) does: an
idle platform shrinks its pool while the others are measured.

The result's "throughput_cost" and "cpu_added_us" compare each traced case with "off" (run
medians), per connection count, for the goals table (issue #16).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.loadgen import WrkRun
from bench.platform import Platform, noop_spec, register, start_platform
from bench.procs import free_port, spawn, wait_port
from bench.scenarios import Context, log
from bench.scenarios.kubernetes import FUNCTION, Target, _warm
from bench.scenarios.sync_load import measure, summarise

SINK = Path(__file__).resolve().parent.parent / "handlers" / "otlp_sink.py"
SAMPLED_RATIO = "0.05"
SAMPLED_LABEL = "5%"
"""The key of the sampled case in "throughput_cost" / "cpu_added_us" (matches SAMPLED_RATIO)."""
CASES = ("off", "on", "sampled")
SAMPLER = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": SAMPLED_RATIO}


def rotation(repeat: int, cases: tuple[str, ...] = CASES) -> tuple[str, ...]:
    """The order of the cases in repeat `repeat` (0-based): each starts in turn."""
    shift = repeat % len(cases)
    return cases[shift:] + cases[:shift]


@contextmanager
def _platform(log_dir: Path, **env: str) -> Iterator[Platform]:
    platform = start_platform(log_dir, **env)
    try:
        yield platform
    finally:
        platform.stop()  # flushes the exporters


def _traced(ctx: Context, stack: ExitStack, label: str, count_file: Path, **sampler: str) -> Platform:
    """A platform exporting to a fresh sink of its own (the sink outlives it: stopped after it)."""
    port = free_port()
    count_file.unlink(missing_ok=True)
    sink = spawn(
        f"otlp-sink-{label}", [sys.executable, str(SINK), str(port), str(count_file)], os.environ, ctx.log_dir
    )
    stack.callback(sink.stop, grace_s=5)
    wait_port(port, [sink])
    return stack.enter_context(
        _platform(
            ctx.log_dir / f"platform-h-{label}",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_EXPORTER_OTLP_INSECURE="true",
            **sampler,
        )
    )


def _interleaved(ctx: Context, targets: dict[str, Target]) -> dict[str, list[dict[str, Any]]]:
    cfg = ctx.config
    connections = tuple(c for c in cfg.connections if c in (1, 32)) or cfg.connections[:1]
    rows: dict[str, list[dict[str, Any]]] = {case: [] for case in targets}
    for conns in connections:
        runs: dict[str, list[WrkRun]] = {case: [] for case in targets}
        for repeat in range(cfg.repeats):
            for case in rotation(repeat, tuple(targets)):
                target = targets[case]
                _warm(ctx, target)
                label = f"h/{case} c={conns} #{repeat + 1}"
                runs[case].append(measure(ctx, label, target.url, conns, cpu_of=target.pids))
        for case, case_runs in runs.items():
            rows[case].append(summarise(case_runs))
    return rows


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
    spec = noop_spec(FUNCTION, concurrency=ctx.config.warm_concurrency, queueSize=10_000)
    count_files = {case: ctx.out_dir / f"h-spans-{case}.txt" for case in ("on", "sampled")}
    with ExitStack() as stack:
        platforms = {
            "off": stack.enter_context(_platform(ctx.log_dir / "platform-h-off")),
            "on": _traced(ctx, stack, "on", count_files["on"]),
            "sampled": _traced(ctx, stack, "sampled", count_files["sampled"], **SAMPLER),
        }
        targets = {case: Target(case, platforms[case]) for case in CASES}
        for target in targets.values():
            register(target.platform.base_url, spec)
            _warm(ctx, target)
        rows = _interleaved(ctx, targets)
    # The platforms have stopped (and flushed) before their sinks, so the counts are final.
    spans = {case: int(f.read_text()) if f.exists() else 0 for case, f in count_files.items()}
    for case, count in spans.items():
        log(f"h/{case}: {count:,} spans received by the OTLP sink")
    return {
        "off": rows["off"],
        "on": rows["on"],
        "sampled": rows["sampled"],
        "order": "interleaved: each repeat runs off, on and sampled, rotating which goes first",
        "spans_received": spans["on"],
        "sampled_spans_received": spans["sampled"],
        "sampler": {"sampled": f"parentbased_traceidratio {SAMPLED_RATIO}"},
        "exporter": "OTLP/gRPC to a local sink",
        **costs(rows["off"], {"100%": rows["on"], SAMPLED_LABEL: rows["sampled"]}),
    }
