"""report.json, report.md and the PNG plots of one bench run."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from bench.goals import judge, status
from bench.scenarios import autoscaling, kubernetes
from bench.stats import fmt_spread as _f

SYNC_TARGETS = (("a", "platform (gateway->scheduler->runtime)"), ("b", "runtime floor (no platform)"))


def sync_series(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Label -> per-connection rows for every target measured with the same wrk load."""
    s = report["scenarios"]
    series: dict[str, list[dict[str, Any]]] = {}
    for key, label in SYNC_TARGETS:
        if "results" in s.get(key, {}):
            series[label] = s[key]["results"]
    for name, peer in s.get("c", {}).items():
        if isinstance(peer, dict) and "results" in peer:
            series[f"{name} (no platform)"] = peer["results"]
    return series


def _sync_table(series: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| target | conns | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req (all procs) | non-2xx | sock err |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in series.items():
        for row in rows:
            cpu = row["cpu_us_per_request"].get("total", {})
            lines.append(
                f"| {label} | {row['connections']} | {_f(row['rps'], 0)} | {_f(row['p50_ms'])} | "
                f"{_f(row['p90_ms'])} | {_f(row['p99_ms'])} | {_f(cpu, 0)} | {row['non2xx']} | "
                f"{row['socket_errors']} |"
            )
    return lines


def _cpu_table(rows: list[dict[str, Any]]) -> list[str]:
    names = sorted({n for row in rows for n in row["cpu_us_per_request"]} - {"total"})
    lines = ["| conns | " + " | ".join(names) + " | total |", "|---:|" + "---:|" * (len(names) + 1)]
    for row in rows:
        cpu = row["cpu_us_per_request"]
        cells = [_f(cpu.get(n, {}), 0) for n in [*names, "total"]]
        lines.append(f"| {row['connections']} | " + " | ".join(cells) + " |")
    return lines


def _tracing_section(h: dict[str, Any]) -> list[str]:
    out = ["## h: tracing on vs off", ""]
    if "on" not in h:
        return [*out, str(h.get("error") or h.get("skipped") or "not run"), ""]
    out += [
        f"Warm no-op through the platform, {h['exporter']}; "
        f"{h['spans_received']:,} spans arrived at the sink."
        + (f" Order: {h['order']}." if h.get("order") else ""),
        "",
        *_sync_table({"tracing off": h["off"], "tracing on": h["on"], "tracing 5 %": h.get("sampled", [])}),
        "",
        "CPU µs per invocation per process group, tracing off, on, then 5 % sampled:",
        "",
        *_cpu_table(h["off"]),
        "",
        *_cpu_table(h["on"]),
        "",
        *([*_cpu_table(h["sampled"]), ""] if h.get("sampled") else []),
    ]
    for case, by_conns in h.get("throughput_cost", {}).items():
        cells = ", ".join(
            f"{conns} conns {cost:.1%} (+{h['cpu_added_us'][case].get(conns, 0.0):,.0f} µs CPU)"
            for conns, cost in by_conns.items()
        )
        out += [f"Throughput cost at {case}: {cells}.", ""]
    return out


def render_markdown(report: dict[str, Any]) -> str:
    s, env = report["scenarios"], report["environment"]
    out = [f"# nanofaas bench report — {report['started']}", ""]
    out += [
        f"- machine: {env['nproc']} CPUs, {env['cpu_model']}, {env['mem_total']}",
        f"- python {env['python']}; wrk: {env['wrk']}",
        f"- commit: {env.get('commit', 'unknown')}; load average at start: {env.get('loadavg_at_start')}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in env['packages'].items())}",
        f"- config: {json.dumps(report['config'])}",
        f"- wall time: {report['elapsed_s']:.0f} s",
        "",
        "Figures are `median (min-max)` over the repeated runs.",
        "",
    ]
    if "ceiling" in s and "post" in s["ceiling"]:
        out += ["## Load generator ceiling (wrk -> trivial raw-ASGI server)", "", s["ceiling"]["server"], ""]
        out += _sync_table({"wrk post": s["ceiling"]["post"], "wrk collect ids": s["ceiling"]["collect_ids"]})
        out += [""]
    series = sync_series(report)
    if series:
        out += ["## a/b/c warm sync invoke, the floor and peers (no-op handler)", ""]
        out += [*_sync_table(series), ""]
    if "results" in s.get("a", {}):
        out += [
            "### a: CPU µs per invocation per process group",
            "",
            f"Replicas in the warm pool: {s['a']['replicas']}.",
            "",
        ]
        out += [*_cpu_table(s["a"]["results"]), ""]
    if s.get("overhead"):
        out += [
            "### platform overhead = (a) - (b), medians",
            "",
            "| conns | p50 ms | p90 ms | p99 ms | throughput a/b | CPU µs/inv |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for row in s["overhead"]:
            out.append(
                f"| {row['connections']} | {row['p50_ms_overhead_ms']:.2f} | "
                f"{row['p90_ms_overhead_ms']:.2f} | {row['p99_ms_overhead_ms']:.2f} | "
                f"{row['rps_ratio']:.2f} | {row['cpu_us_overhead']:.0f} |"
            )
        out += [""]
    if "sequential" in s.get("d", {}):
        out += [
            "## d: JOB mode (fresh process per invocation), and a STDIO command",
            "",
            "| load | p50 ms | p99 ms | spawn-to-result p50 ms | spawn-to-result p99 ms | inv/s | failures |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, row in s["d"].items():
            out.append(
                f"| {label} | {_f(row['p50_ms'], 1)} | {_f(row['p99_ms'], 1)} | "
                f"{_f(row['spawn_to_result_p50_ms'], 1)} | {_f(row['spawn_to_result_p99_ms'], 1)} | "
                f"{_f(row['rps'], 1)} | {row['failures']} |"
            )
        out += [
            "",
            "spawn-to-result = the execution's startedAt -> finishedAt (process start, handler, result).",
            "",
        ]
    if "accepted_per_s" in s.get("e", {}):
        e = s["e"]
        out += [
            "## e: async enqueue then drain",
            "",
            f"wrk at {e['connections']} connections for the run duration, then every accepted id polled.",
            "",
            "| accepted/s | enqueue p50 ms | enqueue p99 ms | drain s | completed/s | accepted | lost "
            "| not success | non-2xx |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {_f(e['accepted_per_s'], 0)} | {_f(e['enqueue_p50_ms'])} | {_f(e['enqueue_p99_ms'])} | "
            f"{_f(e['drain_s'], 1)} | {_f(e['completed_per_s'], 0)} | {e['accepted']:,} | {e['lost']} | "
            f"{e['not_success']} | {e['rejected_non2xx']} |",
            "",
        ]
    if "cases" in s.get("f", {}):
        out += [
            "## f: dispatch cost vs registered functions",
            "",
            "ENDPOINT functions sharing one warm runtime process; round-robin over the hot set.",
            "",
            "| registered | hot | req/s | p50 ms | p99 ms | CPU µs/req (gw+sched+reg) | non-2xx |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in s["f"]["cases"]:
            cpu = row["cpu_us_per_request"]
            plane = sum(cpu.get(n, {}).get("median", 0.0) for n in ("gateway", "scheduler", "registry"))
            out.append(
                f"| {row['registered']:,} | {row['hot']} | {_f(row['rps'], 0)} | {_f(row['p50_ms'])} | "
                f"{_f(row['p99_ms'])} | {plane:.0f} | {row['non2xx']} |"
            )
        out += [""]
    if "rss_idle_bytes" in s.get("g", {}):
        g = s["g"]
        out += [
            "## g: RSS per service",
            "",
            "| service | idle MiB | after MiB | bytes / execution |",
            "|---|---:|---:|---:|",
        ]
        for name, idle in g["rss_idle_bytes"].items():
            out.append(
                f"| {name} | {idle / 2**20:.1f} | {g['rss_after_bytes'][name] / 2**20:.1f} | "
                f"{g['bytes_per_execution'][name]:,.0f} |"
            )
        out += [
            f"| total | {g['idle_total_mib']:.1f} | {g['after_total_mib']:.1f} | "
            f"{g['bytes_per_execution_total']:,.0f} |",
            "",
            f"after {g['executions']:,} completed async executions in {g['seconds']:.0f} s "
            f"(per-execution growth measured from after the warm-up).",
            "",
        ]
    out += _tracing_section(s.get("h", {}))
    if "i" in s:
        out += autoscaling.render(s["i"])
    if "j" in s:
        out += kubernetes.render(s["j"])
    errors = {k: v["error"] for k, v in s.items() if isinstance(v, dict) and "error" in v}
    if errors:
        out += ["## Scenario errors", ""] + [f"- {k}: {v}" for k, v in errors.items()] + [""]
    out += ["## Plots", "", "![throughput](throughput_vs_concurrency.png)", "", "![cdf](latency_cdf.png)", ""]
    out += [*goals_table(report), ""]
    return "\n".join(out)


def _load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "n/a"


def goals_table(report: dict[str, Any]) -> list[str]:
    """The goals of issue #16 and the load average through the run (a noisy run shows here)."""
    load = report.get("loadavg") or {}
    per_scenario = ", ".join(f"{k} {_load(v)}" for k, v in (load.get("scenarios") or {}).items())
    out = [
        "## Goals (issue #16)",
        "",
        f"Load average (1 / 5 / 15 min) at the start {_load(load.get('start'))}, at the end "
        f"{_load(load.get('end'))}; at the start of each scenario: {per_scenario or 'n/a'}.",
        "",
        "| goal | status | measured |",
        "|---|---|---|",
    ]
    out += [f"| {g['goal']} | {status(g)} | {g['measured']} |" for g in report.get("goals") or judge(report)]
    return out


def plot(report: dict[str, Any], out_dir: Path) -> list[str]:
    """Throughput vs concurrency and latency CDFs; matplotlib only in the bench environment."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    series = sync_series(report)
    written: list[str] = autoscaling.plot(report, out_dir, plt)
    if not series:
        return written
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, rows in series.items():
        xs = [row["connections"] for row in rows]
        med = [row["rps"]["median"] for row in rows]
        err = [
            [m - row["rps"]["min"] for m, row in zip(med, rows, strict=True)],
            [row["rps"]["max"] - m for m, row in zip(med, rows, strict=True)],
        ]
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("connections")
    ax.set_ylabel("requests/s (median, min-max bars)")
    ax.set_title("no-op invoke throughput vs concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "throughput_vs_concurrency.png", dpi=110)
    plt.close(fig)
    written.append("throughput_vs_concurrency.png")
    conns = sorted({row["connections"] for rows in series.values() for row in rows})
    fig, axes = plt.subplots(1, len(conns), figsize=(4.5 * len(conns), 4.2), squeeze=False)
    for ax, conn in zip(axes[0], conns, strict=True):
        for label, rows in series.items():
            row = next((r for r in rows if r["connections"] == conn), None)
            if row:
                ax.plot([ms for _, ms in row["cdf_ms"]], [p for p, _ in row["cdf_ms"]], label=label)
        ax.set_xscale("log")
        ax.set_title(f"{conn} connection(s)")
        ax.set_xlabel("latency ms (median run)")
        ax.set_ylabel("percentile")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "latency_cdf.png", dpi=100)
    plt.close(fig)
    written.append("latency_cdf.png")
    return written


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    report["goals"] = judge(report)
    try:
        report["plots"] = plot(report, out_dir)
    except Exception as exc:  # a plot failure must not lose the measurements
        report["plots"] = []
        report["plot_error"] = repr(exc)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "report.md").write_text(render_markdown(report))
