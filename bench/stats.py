"""Every figure is reported as min / median / max over the repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def spread(values: Iterable[float]) -> dict[str, float]:
    data = sorted(values)
    if not data:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {"min": data[0], "median": statistics.median(data), "max": data[-1]}


def percentile(values: list[float], point: float) -> float:
    """Nearest-rank percentile of an unsorted sample (0 < point <= 100)."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = max(1, min(len(data), math.ceil(point / 100 * len(data))))
    return data[rank - 1]


def fmt_spread(value: dict[str, float] | None, digits: int = 2) -> str:
    """'median (min-max)' for one figure of the report; 'n/a' when it was not measured."""
    if not value or any(math.isnan(value[k]) for k in ("min", "median", "max")):
        return "n/a"
    fmt = f"{{:,.{digits}f}}"
    return f"{fmt.format(value['median'])} ({fmt.format(value['min'])}-{fmt.format(value['max'])})"
