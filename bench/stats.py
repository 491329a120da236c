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
