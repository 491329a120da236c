"""report.md from a fabricated report: scenario j's table and the goals table at the end."""

from __future__ import annotations

from typing import Any

from bench.goals import judge
from bench.report import render_markdown


def _spread(median: float) -> dict[str, float]:
    return {"min": median * 0.9, "median": median, "max": median * 1.1}


def _row(conns: int, platform: float, fakekube: float | None) -> dict[str, Any]:
    cpu = {"gateway": _spread(300.0), "scheduler": _spread(300.0), "registry": _spread(0.0)}
    cpu |= {"functions": _spread(platform - 600.0), "platform": _spread(platform)}
    if fakekube is not None:
        cpu["fakekube"] = _spread(fakekube)
    return {
        "connections": conns,
        "rps": _spread(2000.0),
        "p50_ms": _spread(1.0),
        "p99_ms": _spread(9.0),
        "cpu_us_per_request": cpu,
        "replicas_before_runs": [{"desired": 8, "current": 8, "ready": 8}],
        "non2xx": 0,
    }


def _report(j: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "started": "2026-12-01T14:00:00+00:00",
        "elapsed_s": 60.0,
        "config": {},
        "environment": {
            "nproc": 2,
            "cpu_model": "x",
            "mem_total": "1 GiB RAM",
            "python": "3.11",
            "wrk": "wrk 4.1.0",
            "packages": {},
        },
        "loadavg": {"start": [1.0, 1.0, 1.0], "scenarios": {"j": [1.5, 1.0, 1.0]}, "end": [2.0, 1.0, 1.0]},
        "scenarios": {"j": j},
    }
    report["goals"] = judge(report)
    return report


def test_j_table_and_goals_at_the_end() -> None:
    j = {
        "local": [_row(1, 1000.0, None), _row(32, 800.0, None)],
        "kubernetes": [_row(1, 1100.0, 50.0), _row(32, 840.0, 40.0)],
        "cpu_ratio_k8s_local": {"1": 1.1, "32": 1.05},
        "cpu_ratio_per_repeat": {"1": [1.08, 1.12], "32": [1.04, 1.06]},
        "idle_cpu_ms_per_s": {
            "local": {"gateway": 1.0, "scheduler": 2.0, "registry": 0.0, "functions": 0.5},
            "kubernetes": {
                "gateway": 1.0,
                "scheduler": 12.5,
                "registry": 0.0,
                "functions": 4.0,
                "fakekube": 9.0,
            },
        },
    }
    text = render_markdown(_report(j))
    assert "1 conns **1.10** (per repeat: 1.08, 1.12), 32 conns **1.05** (per repeat: 1.04, 1.06)" in text
    k8s_32 = next(line for line in text.splitlines() if line.startswith("| kubernetes | 32 |"))
    assert "| 840 (756-924) | 40 (36-44) | ready [8] | 0 |" in k8s_32
    local_1 = next(line for line in text.splitlines() if line.startswith("| local | 1 |"))
    assert "| 1,000 (900-1,100) | n/a |" in local_1  # no fake cluster on the local backend
    assert "| local | 1.0 | 2.0 | 0.0 | 0.5 | n/a |" in text
    assert "| kubernetes | 1.0 | 12.5 | 0.0 | 4.0 | 9.0 |" in text
    # The goals table is the report's last section, after the plots.
    tail = text[text.index("## Plots") :]
    assert "## Goals (issue #16)" in tail
    assert "within 10 % of the local backend's | met | kubernetes / local 1.10 at 1 conn" in tail


def test_failed_j_is_said_in_its_section() -> None:
    text = render_markdown(_report({"error": "RuntimeError: boom"}))
    section = text[text.index("## j:") :]
    assert section.splitlines()[2] == "RuntimeError: boom"
