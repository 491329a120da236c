"""The Grafana dashboard only queries metrics the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "nanofaas-dashboard.json"
EXPORTED = {
    "function_queue_depth", "function_inflight", "function_warm_pool_size", "function_enqueue_total",
    "function_dispatch_total", "function_success_total", "function_error_total", "function_timeout_total",
    "function_retry_total", "function_rejected_total", "function_latency_seconds",
    "function_queue_wait_seconds", "function_cold_start_seconds", "function_execution_seconds",
    "gateway_requests_total", "function_replicas_desired", "function_replicas_current",
}  # fmt: skip
_SUFFIXES = ("_bucket", "_count", "_sum")


def test_dashboard_queries_known_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 10
    for expression in expressions:
        names = set(re.findall(r"\b((?:function|gateway)_[a-z_]+)\b", expression))
        assert names, expression
        for name in names:
            base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
            assert base in EXPORTED, f"{name} in {expression!r} is not exported"
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("queue depth", "latency", "error", "cold start", "reject", "replicas"):
        assert topic in titles
