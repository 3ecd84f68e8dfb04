"""A metric's distribution: count, mean, percentiles and max (summary.json's metric entries)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.metrics.order import percentiles

__all__ = ["PERCENTILES", "STATISTICS", "Distribution", "distribution"]

PERCENTILES = (50, 90, 95, 99, 99.9)


def _pname(p: float) -> str:
    return f"p{p:g}"


# The statistics of a distribution, in summary.json's order.
STATISTICS = ("count", "mean", *(_pname(p) for p in PERCENTILES), "max")


@dataclass(frozen=True)
class Distribution:
    """count, mean, percentiles and max of a metric's finite samples; every statistic but
    `count` is None when there are none. Units: the metric's (`Metric.unit`)."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = None
    max: float | None = None

    def stat(self, name: str) -> float | int | None:
        """A statistic by its summary.json name ("count", "mean", "p50" ... "p99.9", "max")."""
        if name not in STATISTICS:
            raise KeyError(f"no statistic {name!r} in a distribution")
        value: float | int | None = getattr(self, name.replace(".", "_"))
        return value

    def to_json(self) -> dict[str, float | int | None]:
        return {name: self.stat(name) for name in STATISTICS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Distribution:
        """From summary.json's entry; a statistic it lacks is None. ValueError on other keys."""
        unknown = set(data) - set(STATISTICS)
        if unknown:
            raise ValueError(f"unknown statistics {sorted(unknown)} in a distribution")
        stats = [data.get(name) for name in STATISTICS[1:]]
        return cls(int(data.get("count") or 0), *stats)



def distribution(values: pd.Series | np.ndarray, overwrite: bool = False) -> Distribution:
    """count, mean, percentiles and max of the finite values (None when there are none).

    `overwrite=True` lets the percentiles reorder a float64 array in place instead of
    copying it; the caller must not need its order afterwards. (Large samples are not
    reordered: their percentiles are selected, `bench.metrics.order`.)
    """
    arr = np.asarray(values, dtype="float64")
    finite = np.isfinite(arr)
    if not finite.all():
        arr, overwrite = arr[finite], True  # a copy of our own
    del finite
    if arr.size == 0:
        return Distribution()
    mean, top = float(arr.mean()), float(arr.max())  # before the percentiles reorder the array
    qs = percentiles(arr, PERCENTILES, overwrite=overwrite)  # np.percentile's, by selection when large
    p50, p90, p95, p99, p99_9 = (float(q) for q in qs)
    return Distribution(int(arr.size), mean, p50, p90, p95, p99, p99_9, top)
