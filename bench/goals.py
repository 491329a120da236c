"""The goals of issue #16, judged from a report (reported by every run, never asserted in tests).

`judge` answers one row per goal, always in the same order: met (True), not met (False) or not
measured (None, with the reason: the scenario was not run, failed or lacks the figure). Ratios
are of run medians within the one report, so the machine's drift weighs on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Goal = dict[str, Any]
AT = 32  # the connection count the throughput and tail goals are judged at


class NotMeasured(Exception):
    """A figure the goal needs is not in the report; the message says which."""


def _scenario(s: Mapping[str, Any], key: str) -> dict[str, Any]:
    found = s.get(key)
    if not isinstance(found, dict):
        raise NotMeasured(f"scenario {key} not run")
    if "error" in found:
        raise NotMeasured(f"scenario {key} failed: {found['error']}")
    if "skipped" in found:
        raise NotMeasured(f"scenario {key} skipped: {found['skipped']}")
    return found


def _at(rows: Any, conns: int, what: str) -> dict[str, Any]:
    row = next((r for r in rows or () if r.get("connections") == conns), None)
    if row is None:
        raise NotMeasured(f"{what} not measured at {conns} connections")
    return dict(row)


def _sync_at(s: Mapping[str, Any], key: str, conns: int) -> dict[str, Any]:
    return _at(_scenario(s, key).get("results"), conns, f"scenario {key}")


def _peer_at(s: Mapping[str, Any], peer: str, conns: int) -> dict[str, Any]:
    found = _scenario(s, "c").get(peer)
    if not isinstance(found, dict) or "results" not in found:
        raise NotMeasured(f"{peer} (scenario c) not measured")
    return _at(found["results"], conns, peer)


def _by_conns(table: Any, conns: int, what: str) -> float:
    """`table[str(conns)]` (JSON keys are strings; a report built in memory may use ints)."""
    if not isinstance(table, Mapping):
        raise NotMeasured(f"{what} not in the report")
    value = table.get(str(conns), table.get(conns))
    if value is None:
        raise NotMeasured(f"{what} not measured at {conns} connections")
    return float(value)


def _throughput_vs_peer(s: Mapping[str, Any], peer: str, bound: float) -> tuple[bool, str]:
    ours = _sync_at(s, "a", AT)["rps"]["median"]
    theirs = _peer_at(s, peer, AT)["rps"]["median"]
    ratio = ours / theirs if theirs else 0.0
    return ratio >= bound, f"{ratio:.2f} ({ours:,.0f} / {theirs:,.0f} inv/s)"


def _throughput(s: Mapping[str, Any]) -> tuple[bool, str]:
    rps = _sync_at(s, "a", AT)["rps"]["median"]
    return rps >= 3000, f"{rps:,.0f} inv/s"


def _p99_at_32(s: Mapping[str, Any]) -> tuple[bool, str]:
    p99 = _sync_at(s, "a", AT)["p99_ms"]["median"]
    text = f"p99 {p99:.2f} ms end to end"
    with_floor = {row["connections"]: row for row in s.get("overhead") or ()}
    if AT in with_floor:
        text += f" (overhead over the floor {with_floor[AT]['p99_ms_overhead_ms']:.2f} ms)"
    return p99 <= 15.0, text


def _overhead_at_1(key: str, bound: float) -> Callable[[Mapping[str, Any]], tuple[bool, str]]:
    def check(s: Mapping[str, Any]) -> tuple[bool, str]:
        if not s.get("overhead"):
            raise NotMeasured("needs scenarios a and b")
        value = float(_at(s["overhead"], 1, "overhead")[key])
        return value <= bound, f"{value:.2f} ms"

    return check


def _job(label: str, bound: float) -> Callable[[Mapping[str, Any]], tuple[bool, str]]:
    def check(s: Mapping[str, Any]) -> tuple[bool, str]:
        row = _scenario(s, "d").get(label)
        if not row:
            raise NotMeasured(f"scenario d has no {label} figure")
        p50 = row["p50_ms"]["median"]
        return p50 <= bound, f"p50 {p50:.1f} ms"

    return check


def _async(s: Mapping[str, Any]) -> tuple[bool, str]:
    e = _scenario(s, "e")
    if "accepted_per_s" not in e:
        raise NotMeasured("scenario e has no accepted/s figure")
    rate = e["accepted_per_s"]["median"]
    return rate >= 4000 and e["lost"] == 0, f"{rate:,.0f} accepted/s, {e['lost']} lost of {e['accepted']:,}"


def _rss(s: Mapping[str, Any]) -> tuple[bool, str]:
    g = _scenario(s, "g")
    if "rss_idle_bytes" not in g:
        raise NotMeasured("scenario g has no idle RSS figure")
    idle_mb = sum(g["rss_idle_bytes"].values()) / 1e6
    return idle_mb <= 150, f"{idle_mb:.0f} MB"


def _tracing(case: str, bound: float) -> Callable[[Mapping[str, Any]], tuple[bool, str]]:
    """Cost = 1 - rps_on / rps_off, from (h)'s `throughput_cost`; judged at 32, 1 shown too."""

    def check(s: Mapping[str, Any]) -> tuple[bool, str]:
        costs = _scenario(s, "h").get("throughput_cost")
        if not isinstance(costs, Mapping) or case not in costs:
            raise NotMeasured(f"scenario h has no throughput cost for {case} sampling")
        cost = _by_conns(costs[case], AT, f"tracing cost at {case}")
        text = f"{cost:.1%} at {AT} conns"
        with_one = costs[case].get("1", costs[case].get(1))
        if with_one is not None:
            text += f" ({float(with_one):.1%} at 1)"
        return cost <= bound, text

    return check


def _kubernetes(s: Mapping[str, Any]) -> tuple[bool, str]:
    """Judged at every connection count (j) measured: the goal names no load."""
    ratios = _scenario(s, "j").get("cpu_ratio_k8s_local")
    if not isinstance(ratios, Mapping) or not ratios:
        raise NotMeasured("scenario j has no CPU ratio")
    values = {str(c): float(r) for c, r in ratios.items()}
    text = ", ".join(f"{r:.2f} at {c} conn{'s' if c != '1' else ''}" for c, r in values.items())
    within = all(abs(r - 1.0) <= 0.10 + 1e-9 for r in values.values())  # 1.10 itself is within
    return within, f"kubernetes / local {text}"


def _dispatch(s: Mapping[str, Any]) -> tuple[bool, str]:
    f = _scenario(s, "f")
    if "cases" not in f:
        raise NotMeasured("scenario f has no cases")
    change = f["rps_change"]
    return abs(change) <= 0.10 and abs(f["cpu_change"]) <= 0.10, (
        f"throughput {change:+.1%}, CPU/inv {f['cpu_change']:+.1%}, p50 {f['p50_change']:+.1%} "
        f"({f['cases'][0]['registered']:,} -> {f['cases'][-1]['registered']:,})"
    )


def _bytes_per_execution(s: Mapping[str, Any]) -> tuple[bool, str]:
    g = _scenario(s, "g")
    if "bytes_per_execution_total" not in g:
        raise NotMeasured("scenario g has no bytes/execution figure")
    per = g["bytes_per_execution_total"]
    return per <= 1024, f"{per:,.0f} B/execution over {g['executions']:,}"


GOALS: tuple[tuple[str, Callable[[Mapping[str, Any]], tuple[bool, str]]], ...] = (
    (
        "warm sync at 32 connections: platform / functions-framework direct >= 1.0",
        lambda s: _throughput_vs_peer(s, "functions-framework", 1.0),
    ),
    ("warm sync at 32 connections >= 3,000 inv/s", _throughput),
    (
        "stretch: warm sync at 32 connections: platform / Flask+waitress direct >= 0.75",
        lambda s: _throughput_vs_peer(s, "flask-waitress", 0.75),
    ),
    ("p99 at 32 connections <= 15 ms", _p99_at_32),
    ("platform overhead at 1 connection: p50 <= 1.0 ms", _overhead_at_1("p50_ms_overhead_ms", 1.0)),
    ("platform overhead at 1 connection: p99 <= 3 ms", _overhead_at_1("p99_ms_overhead_ms", 3.0)),
    ("JOB mode, fresh process per invocation, sequential: p50 <= 15 ms", _job("sequential", 15.0)),
    ("JOB mode, fresh process per invocation, 4 in flight: p50 <= 40 ms", _job("concurrency_4", 40.0)),
    ("async enqueue >= 4,000 accepted/s, 0 lost", _async),
    ("control plane RSS idle <= 150 MB (3 services)", _rss),
    ("tracing at 100 % sampling costs <= 30 % of throughput (at 32 connections)", _tracing("100%", 0.30)),
    (
        "tracing at 5 % parent-based sampling costs <= 5 % of throughput (at 32 connections)",
        _tracing("5%", 0.05),
    ),
    ("Kubernetes backend: platform CPU per warm invocation within 10 % of the local backend's", _kubernetes),
    ("dispatch cost flat from 1 to 10,000 functions (within 10%)", _dispatch),
    ("<= 1 KB extra per retained small execution", _bytes_per_execution),
)


def judge(report: Mapping[str, Any]) -> list[Goal]:
    """One row per goal: {"goal", "met": True | False | None, "measured": text}."""
    scenarios = report.get("scenarios") or {}
    goals: list[Goal] = []
    for goal, check in GOALS:
        try:
            met, measured = check(scenarios)
        except NotMeasured as missing:
            goals.append({"goal": goal, "met": None, "measured": f"not measured: {missing}"})
            continue
        goals.append({"goal": goal, "met": bool(met), "measured": measured})
    return goals


def status(goal: Goal) -> str:
    return "not measured" if goal["met"] is None else ("met" if goal["met"] else "**not met**")
