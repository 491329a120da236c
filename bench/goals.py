"""The issue's goals, judged from a report (reported, never asserted in tests)."""

from __future__ import annotations

from typing import Any

Goal = dict[str, Any]


def _row(results: list[dict[str, Any]], conns: int) -> dict[str, Any] | None:
    return next((row for row in results if row["connections"] == conns), None)


def _best_rps(results: list[dict[str, Any]]) -> float:
    return max((row["rps"]["median"] for row in results), default=0.0)


def judge(report: dict[str, Any]) -> list[Goal]:
    s = report["scenarios"]
    goals: list[Goal] = []

    def add(goal: str, met: bool | None, measured: str) -> None:
        goals.append({"goal": goal, "met": met, "measured": measured})

    platform = s.get("a", {}).get("results")
    peers = s.get("c", {})
    if platform:
        best = _best_rps(platform)
        peer_best = {name: _best_rps(p["results"]) for name, p in peers.items() if "results" in p}
        beats = all(best > value for value in peer_best.values())
        peer_text = ", ".join(f"{n} {v:,.0f}" for n, v in peer_best.items())
        add(
            "warm sync throughput >= 3,000 inv/s and above functions-framework and Flask+waitress",
            best >= 3000 and beats,
            f"{best:,.0f} inv/s (best median); peers: {peer_text or 'n/a'}",
        )
    overhead = {row["connections"]: row for row in s.get("overhead", [])}
    if 1 in overhead:
        row = overhead[1]
        add(
            "platform overhead at 1 connection: p50 <= 1.0 ms",
            row["p50_ms_overhead_ms"] <= 1.0,
            f"{row['p50_ms_overhead_ms']:.2f} ms",
        )
        add(
            "platform overhead at 1 connection: p99 <= 3 ms",
            row["p99_ms_overhead_ms"] <= 3.0,
            f"{row['p99_ms_overhead_ms']:.2f} ms",
        )
    if 32 in overhead and platform and (row32 := _row(platform, 32)):
        value = overhead[32]["p99_ms_overhead_ms"]
        add(
            "at 32 connections p99 <= 15 ms",
            row32["p99_ms"]["median"] <= 15.0,
            f"p99 {row32['p99_ms']['median']:.2f} ms end to end (overhead over the floor {value:.2f} ms)",
        )
    job = s.get("d", {})
    for label, bound in (("sequential", 15.0), ("concurrency_4", 40.0)):
        if row := job.get(label):
            p50 = row["p50_ms"]["median"]
            shown = "sequential" if label == "sequential" else "4 in flight"
            add(
                f"JOB mode, fresh process per invocation, {shown}: p50 <= {bound:.0f} ms",
                p50 <= bound,
                f"p50 {p50:.1f} ms",
            )
    asy = s.get("e")
    if asy and "accepted_per_s" in asy:
        rate = asy["accepted_per_s"]["median"]
        add(
            "async enqueue >= 4,000 accepted/s, 0 lost",
            rate >= 4000 and asy["lost"] == 0,
            f"{rate:,.0f} accepted/s, {asy['lost']} lost of {asy['accepted']:,}",
        )
    disp = s.get("f")
    if disp and "cases" in disp:
        change = disp["rps_change"]
        add(
            "dispatch cost flat from 1 to 10,000 functions (within 10%)",
            abs(change) <= 0.10 and abs(disp["cpu_change"]) <= 0.10,
            f"throughput {change:+.1%}, CPU/inv {disp['cpu_change']:+.1%}, p50 {disp['p50_change']:+.1%} "
            f"({disp['cases'][0]['registered']:,} -> {disp['cases'][-1]['registered']:,})",
        )
    mem = s.get("g")
    if mem and "idle_total_mib" in mem:
        idle_mb = sum(mem["rss_idle_bytes"].values()) / 1e6
        add("control plane RSS idle <= 150 MB (3 services)", idle_mb <= 150, f"{idle_mb:.0f} MB")
        per = mem["bytes_per_execution_total"]
        add(
            "<= 1 KB extra per retained small execution",
            per <= 1024,
            f"{per:,.0f} B/execution over {mem['executions']:,}",
        )
    return goals
