"""Seeded bootstrap confidence intervals of the difference of a statistic between two samples.

Two forms:
- `bootstrap_diff(a, b, ...)`: unpaired (two runs); a and b are resampled independently.
- `paired_bootstrap_diff(a, b, ...)`: paired (a[i] and b[i] belong together, e.g. the same
  prompt sent under two sampling variants); pairs are resampled jointly.

The difference is always `stat(b) - stat(a)`. The interval is the percentile bootstrap
interval; a difference whose interval contains 0 is "not significant".

Resamples are drawn as multinomial weights (`bench.analysis.resample`), so a statistic is a
weighted statistic over the sorted sample: this vectorises over resamples and also gives the
cluster bootstrap for free (`groups`: all values of one group, e.g. the ITL gaps of one request, are drawn together,
because gaps of one request are correlated and an i.i.d. bootstrap would be overconfident).

Samples larger than `max_samples` are subsampled (seeded) before resampling, for speed. A
smaller sample only widens the interval, so the cap can hide a small real difference but
never invents one. Point estimates always use the full samples. (The one-sample intervals
of a summary's percentiles, which never subsample: `bench.analysis.percentile_ci`.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.analysis.resample import batches, boot_stats, multinomial, prepare, weighted_stats
from bench.metrics.order import finite, percentiles

__all__ = [
    "BLOCK_S",
    "CONFIDENCE",
    "MAX_SAMPLES",
    "N_RESAMPLES",
    "DiffCI",
    "Estimates",
    "bootstrap_diff",
    "check_statistic",
    "estimates",
    "finite_or_none",
    "min_samples",
    "paired_bootstrap_diff",
    "point",
]

CONFIDENCE = 0.95
N_RESAMPLES = 1000
MAX_SAMPLES = 5000
# Blocks of run time resampled together (requests by send time, ITL gaps by arrival time):
# concurrent requests share the server's batch and the client's CPU, so one slow step or
# one scheduling hiccup moves many samples at once.
BLOCK_S = 0.25
_STAT = re.compile(r"^(mean|p(\d+(?:\.\d+)?))$")


@dataclass(frozen=True)
class DiffCI:
    """stat(b) - stat(a), its confidence interval and whether the interval excludes 0."""

    statistic: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    confidence: float
    n_a: int
    n_b: int

    @property
    def significant(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high) and (self.low > 0 or self.high < 0))

    @property
    def ratio(self) -> float:
        return self.b / self.a if np.isfinite(self.a) and self.a != 0 else float("nan")

    @property
    def verdict(self) -> str:
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return "n/a"
        if not self.significant:
            return "not significant"
        return "higher" if self.low > 0 else "lower"


def check_statistic(name: str) -> None:
    """Raise ValueError unless `name` is `mean` or `pNN` (0 < NN < 100)."""
    match = _STAT.match(name)
    if match is None or (match.group(2) is not None and not 0 < float(match.group(2)) < 100):
        raise ValueError(f"unknown statistic {name!r}: use mean or pNN, e.g. p50, p99.9")


def min_samples(statistic: str) -> int:
    """Samples a statistic needs: pNN needs 1/(1-p) (p99: 100), else it is the maximum."""
    if statistic == "mean":
        return 2
    return int(np.ceil(1.0 / (1.0 - float(statistic[1:]) / 100.0) - 1e-9))


def point(values: np.ndarray, statistic: str) -> float:
    """The statistic of a plain sample (linear-interpolated percentiles, like metrics.distribution)."""
    check_statistic(statistic)
    arr = finite(values)
    if arr.size == 0:
        return float("nan")
    if statistic == "mean":
        return float(arr.mean())
    return float(percentiles(arr, [float(statistic[1:])])[0])  # np.percentile's, by selection when large


@dataclass(frozen=True)
class Estimates:
    """A sample's point estimates (`point`) of some statistics, and its finite values' count."""

    count: int
    values: dict[str, float]


def estimates(values: np.ndarray, statistics: Sequence[str]) -> Estimates:
    """`point` of each statistic, the percentiles found together in one pass over the sample."""
    for name in statistics:
        check_statistic(name)
    arr = finite(values)
    if arr.size == 0:
        return Estimates(0, {name: float("nan") for name in statistics})
    named = [name for name in statistics if name != "mean"]
    found = percentiles(arr, [float(name[1:]) for name in named]) if named else np.empty(0)
    out = {name: float(value) for name, value in zip(named, found, strict=True)}
    if "mean" in statistics:
        out["mean"] = float(arr.mean())
    return Estimates(int(arr.size), {name: out[name] for name in statistics})


def bootstrap_diff(a: np.ndarray, b: np.ndarray, statistics: Sequence[str] = ("p50", "p90", "p99", "mean"), *,
                   groups_a: np.ndarray | None = None, groups_b: np.ndarray | None = None,
                   n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
                   max_samples: int = MAX_SAMPLES, known: tuple[Estimates, Estimates] | None = None
                   ) -> dict[str, DiffCI]:
    """Unpaired bootstrap CI of stat(b) - stat(a) for each statistic.

    `groups_a`/`groups_b` (same length as a/b) turn on the cluster bootstrap: whole groups
    are resampled. NaN/inf values are dropped first. `known`: `estimates(a, ...)` and
    `estimates(b, ...)` when the caller has them (of at least these statistics).
    """
    for name in statistics:
        check_statistic(name)
    rng = np.random.default_rng(seed)
    a_vals, a_groups = prepare(a, groups_a, max_samples, rng)
    b_vals, b_groups = prepare(b, groups_b, max_samples, rng)
    boot_a = boot_stats(a_vals, a_groups, statistics, n_resamples, rng)
    boot_b = boot_stats(b_vals, b_groups, statistics, n_resamples, rng)
    points = known if known is not None else (estimates(a, statistics), estimates(b, statistics))
    return {name: _result(name, points, boot_b[name] - boot_a[name], confidence) for name in statistics}


def paired_bootstrap_diff(a: np.ndarray, b: np.ndarray, statistics: Sequence[str] = ("p50", "p90", "p99", "mean"),
                          *, n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
                          max_samples: int = MAX_SAMPLES) -> dict[str, DiffCI]:
    """Paired bootstrap CI of stat(b) - stat(a): pair i is (a[i], b[i]); pairs are drawn together.

    Pairs with a non-finite member are dropped.
    """
    for name in statistics:
        check_statistic(name)
    a_arr = np.asarray(a, dtype="float64")
    b_arr = np.asarray(b, dtype="float64")
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError(f"paired samples must be 1-d and of equal length, got {a_arr.shape} and {b_arr.shape}")
    keep = np.isfinite(a_arr) & np.isfinite(b_arr)
    full_a, full_b = a_arr[keep], b_arr[keep]
    a_arr, b_arr = full_a, full_b
    rng = np.random.default_rng(seed)
    if a_arr.size > max_samples:
        pick = rng.choice(a_arr.size, size=max_samples, replace=False)
        a_arr, b_arr = a_arr[pick], b_arr[pick]
    n = a_arr.size
    diffs = {name: np.empty(0) for name in statistics}
    if n > 0:
        order_a, order_b = np.argsort(a_arr, kind="stable"), np.argsort(b_arr, kind="stable")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
        for size in batches(n_resamples):
            weights = multinomial(n, size, rng)
            stats_a = weighted_stats(a_arr[order_a], weights[:, order_a], statistics)
            stats_b = weighted_stats(b_arr[order_b], weights[:, order_b], statistics)
            for name in statistics:
                parts[name].append(stats_b[name] - stats_a[name])
        diffs = {name: np.concatenate(parts[name]) for name in statistics}
    points = (estimates(full_a, statistics), estimates(full_b, statistics))
    return {name: _result(name, points, diffs[name], confidence) for name in statistics}


def _result(name: str, points: tuple[Estimates, Estimates], diffs: np.ndarray, confidence: float) -> DiffCI:
    diffs = diffs[np.isfinite(diffs)]
    tail = (1.0 - confidence) / 2.0 * 100.0
    if diffs.size:
        low, high = (float(x) for x in np.percentile(diffs, [tail, 100.0 - tail]))
    else:
        low = high = float("nan")
    pa, pb = points[0].values[name], points[1].values[name]
    return DiffCI(statistic=name, a=pa, b=pb, diff=pb - pa, low=low, high=high, confidence=confidence,
                  n_a=points[0].count, n_b=points[1].count)


def finite_or_none(value: float) -> float | None:
    """`value` as a float, or None for NaN and infinities (JSON has no such numbers)."""
    return float(value) if np.isfinite(value) else None
