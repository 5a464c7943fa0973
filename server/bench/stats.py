"""Figures the bench computes: a mergeable latency histogram, medians over runs, ratios. Pure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Relative width of a latency bucket: quantiles are exact to within 1 %.
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)


class LatencyHistogram:
    """Log-bucketed latencies in microseconds (1 % resolution); cheap to add to and to merge.

    Load processes each keep one and send ``to_json()``; the controller merges them.
    """

    __slots__ = ("buckets", "count", "max_us", "total_us")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max_us = 0.0
        self.total_us = 0.0

    def add(self, latency_us: float) -> None:
        value = latency_us if latency_us > 1.0 else 1.0
        index = int(math.log(value) / _LOG_GROWTH)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.total_us += value
        if value > self.max_us:
            self.max_us = value

    def merge(self, other: LatencyHistogram) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
        self.count += other.count
        self.total_us += other.total_us
        self.max_us = max(self.max_us, other.max_us)

    def quantile_us(self, q: float) -> float:
        """The latency below which a fraction ``q`` of the samples lie (upper edge of its bucket)."""
        if not self.count:
            return 0.0
        target = q * self.count
        running = 0
        for index in sorted(self.buckets):
            running += self.buckets[index]
            if running >= target:
                return min(_GROWTH ** (index + 1), self.max_us)
        return self.max_us

    def summary_ms(self) -> dict[str, float]:
        return {
            "p50_ms": round(self.quantile_us(0.50) / 1000, 3),
            "p95_ms": round(self.quantile_us(0.95) / 1000, 3),
            "p99_ms": round(self.quantile_us(0.99) / 1000, 3),
            "max_ms": round(self.max_us / 1000, 3),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "buckets": {str(k): v for k, v in self.buckets.items()},
            "count": self.count,
            "max_us": self.max_us,
            "total_us": self.total_us,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        histogram = cls()
        histogram.buckets = {int(k): int(v) for k, v in data.get("buckets", {}).items()}
        histogram.count = int(data.get("count", 0))
        histogram.max_us = float(data.get("max_us", 0.0))
        histogram.total_us = float(data.get("total_us", 0.0))
        return histogram


def median_rows(runs: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of several runs of one scenario merged into their medians, figure by figure.

    Rows are matched by position; text cells are taken from the first run. Numbers are
    the median of the runs (the middle run's value for 3 runs).
    """
    if not runs:
        return []
    merged: list[dict[str, Any]] = []
    for index, first in enumerate(runs[0]):
        row: dict[str, Any] = {}
        for key, value in first.items():
            values = [run[index].get(key) for run in runs if index < len(run)]
            numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if isinstance(value, int | float) and not isinstance(value, bool) and numbers:
                middle = statistics.median(numbers)
                row[key] = int(middle) if all(isinstance(v, int) for v in numbers) else float(middle)
            else:
                row[key] = value
        merged.append(row)
    return merged


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference`` rounded to 2 places, or None when either is missing or zero."""
    if value is None or reference is None or reference == 0:
        return None
    return round(value / reference, 2)


def percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def total(values: Iterable[float]) -> float:
    return float(sum(values))
