"""goals.judge on small fabricated reports: each goal met, not met, and not measured."""

from __future__ import annotations

from typing import Any

import pytest

from bench.goals import GOALS, judge, status
from bench.report import goals_table


def _spread(median: float) -> dict[str, float]:
    return {"min": median, "median": median, "max": median}


def _sync(conns_rps_p99: list[tuple[int, float, float]]) -> dict[str, Any]:
    return {
        "results": [
            {"connections": c, "rps": _spread(rps), "p99_ms": _spread(p99)} for c, rps, p99 in conns_rps_p99
        ]
    }


def _report(rps: float, p99: float, *, ff: float, flask: float, k8s: dict[str, float]) -> dict[str, Any]:
    """Every scenario the goals read, with the figures that matter set from the arguments."""
    return {
        "scenarios": {
            "a": _sync([(1, 900.0, 2.0), (32, rps, p99)]),
            "c": {
                "functions-framework": _sync([(32, ff, 30.0)]),
                "flask-waitress": _sync([(32, flask, 10.0)]),
            },
            "overhead": [
                {"connections": 1, "p50_ms_overhead_ms": 0.7, "p99_ms_overhead_ms": 1.0},
                {"connections": 32, "p50_ms_overhead_ms": 5.0, "p99_ms_overhead_ms": p99 - 2.0},
            ],
            "d": {"sequential": {"p50_ms": _spread(10.0)}, "concurrency_4": {"p50_ms": _spread(45.0)}},
            "e": {"accepted_per_s": _spread(4100.0), "lost": 1, "accepted": 50_000},
            "f": {
                "rps_change": -0.05,
                "cpu_change": 0.01,
                "p50_change": 0.02,
                "cases": [{"registered": 1}, {"registered": 10_000}],
            },
            "g": {
                "rss_idle_bytes": {"gateway": 60e6, "scheduler": 50e6, "registry": 30e6},
                "bytes_per_execution_total": 900.0,
                "executions": 100_000,
                "idle_total_mib": 133.5,
            },
            "h": {"throughput_cost": {"100%": {"1": 0.40, "32": 0.25}, "5%": {"1": 0.02, "32": 0.08}}},
            "j": {"cpu_ratio_k8s_local": k8s},
        }
    }


def _by_goal(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = judge(report)
    assert [row["goal"] for row in rows] == [goal for goal, _ in GOALS]  # one row per goal, in order
    return {row["goal"]: row for row in rows}


def _find(rows: dict[str, dict[str, Any]], words: str) -> dict[str, Any]:
    (row,) = (row for goal, row in rows.items() if words in goal)
    return row


def test_goals_met_and_not_met_from_the_figures() -> None:
    rows = _by_goal(_report(3200.0, 14.0, ff=3100.0, flask=5000.0, k8s={"1": 1.08, "32": 0.95}))
    assert _find(rows, "functions-framework direct")["met"] is True
    assert _find(rows, "functions-framework direct")["measured"].startswith("1.03 (3,200 / 3,100")
    assert _find(rows, ">= 3,000 inv/s")["met"] is True
    assert _find(rows, "Flask+waitress")["met"] is False  # 0.64 < 0.75
    assert _find(rows, "p99 at 32")["met"] is True
    assert _find(rows, "overhead at 1 connection: p50")["met"] is True
    assert _find(rows, "sequential")["met"] is True
    assert _find(rows, "4 in flight")["met"] is False
    assert _find(rows, "async enqueue")["met"] is False  # one lost
    assert _find(rows, "RSS idle")["met"] is True
    # Judged at 32 connections, with 1 shown: 100 % costs 25 % at 32 (40 % at 1).
    tracing_full = _find(rows, "100 % sampling")
    assert tracing_full["met"] is True
    assert tracing_full["measured"] == "25.0% at 32 conns (40.0% at 1)"
    assert _find(rows, "5 % parent-based")["met"] is False
    assert _find(rows, "Kubernetes backend")["met"] is True
    assert _find(rows, "dispatch cost flat")["met"] is True
    assert _find(rows, "1 KB extra")["met"] is True


def test_goals_not_met_on_the_other_side_of_each_bound() -> None:
    rows = _by_goal(_report(2900.0, 16.0, ff=3000.0, flask=3800.0, k8s={"1": 1.0, "32": 1.11}))
    assert _find(rows, "functions-framework direct")["met"] is False
    assert _find(rows, ">= 3,000 inv/s")["met"] is False
    assert _find(rows, "Flask+waitress")["met"] is True  # 0.76
    assert _find(rows, "p99 at 32")["met"] is False
    assert "overhead over the floor 14.00 ms" in _find(rows, "p99 at 32")["measured"]
    # Every connection count j measured must be within 10 %.
    k8s = _find(rows, "Kubernetes backend")
    assert k8s["met"] is False
    assert k8s["measured"] == "kubernetes / local 1.00 at 1 conn, 1.11 at 32 conns"


def test_missing_scenarios_are_not_measured_with_the_reason() -> None:
    rows = judge({"scenarios": {}})
    assert {row["met"] for row in rows} == {None}
    assert all(row["measured"].startswith("not measured: ") for row in rows)
    assert {status(row) for row in rows} == {"not measured"}
    by = {row["goal"]: row for row in rows}
    assert _find(by, "Kubernetes backend")["measured"] == "not measured: scenario j not run"
    assert _find(by, "overhead at 1 connection: p99")["measured"] == "not measured: needs scenarios a and b"


def test_failed_scenario_or_missing_figure_is_not_measured() -> None:
    report = _report(3200.0, 14.0, ff=3100.0, flask=5000.0, k8s={"1": 1.0, "32": 1.0})
    report["scenarios"]["j"] = {"error": "RuntimeError: the fake cluster did not serve within 60 s"}
    report["scenarios"]["h"] = {"off": [], "on": []}  # an (h) from before the cost was computed
    del report["scenarios"]["c"]["flask-waitress"]
    by = _by_goal(report)
    assert _find(by, "Kubernetes backend")["measured"] == (
        "not measured: scenario j failed: RuntimeError: the fake cluster did not serve within 60 s"
    )
    assert _find(by, "100 % sampling")["met"] is None
    assert _find(by, "Flask+waitress")["measured"] == "not measured: flask-waitress (scenario c) not measured"
    assert _find(by, "sequential")["met"] is True  # the rest is still judged
    report["scenarios"]["a"]["results"] = report["scenarios"]["a"]["results"][:1]  # 1 connection only
    by = _by_goal(report)
    missing = "not measured: scenario a not measured at 32 connections"
    assert _find(by, ">= 3,000 inv/s")["measured"] == missing


@pytest.mark.parametrize("keys", [str, int])
def test_costs_keyed_by_string_or_int_connections(keys: type) -> None:
    report = _report(3200.0, 14.0, ff=3100.0, flask=5000.0, k8s={"32": 1.0})
    report["scenarios"]["h"]["throughput_cost"] = {"100%": {keys(32): 0.31}, "5%": {keys(32): 0.01}}
    by = _by_goal(report)
    assert _find(by, "100 % sampling")["met"] is False
    assert _find(by, "100 % sampling")["measured"] == "31.0% at 32 conns"
    assert _find(by, "5 % parent-based")["met"] is True


def test_goals_table_shows_the_load_average_through_the_run() -> None:
    report = {
        "scenarios": {},
        "loadavg": {"start": [1.5, 1.0, 0.5], "scenarios": {"a": [2.0, 1.2, 0.6]}, "end": [3.0, 2.0, 1.0]},
    }
    lines = goals_table(report)
    assert "at the start 1.50 / 1.00 / 0.50, at the end 3.00 / 2.00 / 1.00" in lines[2]
    assert "a 2.00 / 1.20 / 0.60" in lines[2]
    assert len([line for line in lines if line.startswith("| ") and "not measured" in line]) == len(GOALS)
