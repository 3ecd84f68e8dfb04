"""Seeded bootstrap confidence intervals of the difference of a statistic between two samples.

Two forms:
- `bootstrap_diff(a, b, ...)`: unpaired (two runs); a and b are resampled independently.
- `paired_bootstrap_diff(a, b, ...)`: paired (a[i] and b[i] belong together, e.g. the same
  prompt sent under two sampling variants); pairs are resampled jointly.

The difference is always `stat(b) - stat(a)`. The interval is the percentile bootstrap
interval; a difference whose interval contains 0 is "not significant".

Resamples are drawn as multinomial weights, so a statistic is a weighted statistic over the
sorted sample: this vectorises over resamples and also gives the cluster bootstrap for free
(`groups`: all values of one group, e.g. the ITL gaps of one request, are drawn together,
because gaps of one request are correlated and an i.i.d. bootstrap would be overconfident).

Samples larger than `max_samples` are subsampled (seeded) before resampling, for speed. A
smaller sample only widens the interval, so the cap can hide a small real difference but
never invents one. Point estimates always use the full samples.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CONFIDENCE",
    "MAX_SAMPLES",
    "N_RESAMPLES",
    "DiffCI",
    "bootstrap_diff",
    "check_statistic",
    "finite_or_none",
    "paired_bootstrap_diff",
    "point",
]

CONFIDENCE = 0.95
N_RESAMPLES = 1000
MAX_SAMPLES = 5000
_BATCH = 200  # resamples per batch: bounds memory at _BATCH x MAX_SAMPLES floats
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


def point(values: np.ndarray, statistic: str) -> float:
    """The statistic of a plain sample (linear-interpolated percentiles, like metrics.distribution)."""
    check_statistic(statistic)
    arr = _finite(values)
    if arr.size == 0:
        return float("nan")
    if statistic == "mean":
        return float(arr.mean())
    return float(np.percentile(arr, float(statistic[1:])))


def bootstrap_diff(a: np.ndarray, b: np.ndarray, statistics: Sequence[str] = ("p50", "p90", "p99", "mean"), *,
                   groups_a: np.ndarray | None = None, groups_b: np.ndarray | None = None,
                   n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
                   max_samples: int = MAX_SAMPLES) -> dict[str, DiffCI]:
    """Unpaired bootstrap CI of stat(b) - stat(a) for each statistic.

    `groups_a`/`groups_b` (same length as a/b) turn on the cluster bootstrap: whole groups
    are resampled. NaN/inf values are dropped first.
    """
    for name in statistics:
        check_statistic(name)
    rng = np.random.default_rng(seed)
    a_vals, a_groups = _prepare(a, groups_a, max_samples, rng)
    b_vals, b_groups = _prepare(b, groups_b, max_samples, rng)
    boot_a = _boot_stats(a_vals, a_groups, statistics, n_resamples, rng)
    boot_b = _boot_stats(b_vals, b_groups, statistics, n_resamples, rng)
    return {name: _result(name, a, b, boot_b[name] - boot_a[name], confidence) for name in statistics}


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
        for size in _batches(n_resamples):
            weights = _multinomial(n, size, rng)
            stats_a = _weighted_stats(a_arr[order_a], weights[:, order_a], statistics)
            stats_b = _weighted_stats(b_arr[order_b], weights[:, order_b], statistics)
            for name in statistics:
                parts[name].append(stats_b[name] - stats_a[name])
        diffs = {name: np.concatenate(parts[name]) for name in statistics}
    return {name: _result(name, full_a, full_b, diffs[name], confidence) for name in statistics}


def _finite(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype="float64").ravel()
    return arr[np.isfinite(arr)]


def _prepare(values: np.ndarray, groups: np.ndarray | None, max_samples: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Finite values sorted ascending, with dense group codes (each value its own group if none)."""
    arr = np.asarray(values, dtype="float64").ravel()
    if groups is None:
        codes = np.arange(arr.size)
    else:
        groups = np.asarray(groups).ravel()
        if groups.shape != arr.shape:
            raise ValueError(f"groups must match the sample's length ({groups.size} != {arr.size})")
        codes = groups
    keep = np.isfinite(arr)
    arr, codes = arr[keep], codes[keep]
    if arr.size > max_samples:
        pick = rng.choice(arr.size, size=max_samples, replace=False)
        arr, codes = arr[pick], codes[pick]
    order = np.argsort(arr, kind="stable")
    _, dense = np.unique(codes[order], return_inverse=True)
    return arr[order], dense.ravel()


def _boot_stats(sorted_vals: np.ndarray, codes: np.ndarray, statistics: Sequence[str], n_resamples: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    if sorted_vals.size == 0:
        return {name: np.full(n_resamples, np.nan) for name in statistics}
    n_groups = int(codes.max()) + 1
    parts: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for size in _batches(n_resamples):
        group_weights = _multinomial(n_groups, size, rng)
        weights = group_weights[:, codes]  # each value weighs as often as its group was drawn
        for name, arr in _weighted_stats(sorted_vals, weights, statistics).items():
            parts[name].append(arr)
    return {name: np.concatenate(parts[name]) for name in statistics}


def _batches(total: int) -> list[int]:
    full, rest = divmod(total, _BATCH)
    return [_BATCH] * full + ([rest] if rest else [])


def _multinomial(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` rows of bootstrap counts: how often each of n items is drawn in n draws."""
    draws = rng.integers(0, n, size=(size, n))
    offsets = (np.arange(size) * n)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=size * n).reshape(size, n).astype("float64")


def _weighted_stats(sorted_vals: np.ndarray, weights: np.ndarray, statistics: Sequence[str]) -> dict[str, np.ndarray]:
    """Per row of weights: the weighted mean or the weighted (inverted-CDF) percentile."""
    cum = np.cumsum(weights, axis=1)
    total = cum[:, -1]
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in statistics:
            if name == "mean":
                out[name] = (weights @ sorted_vals) / total
                continue
            target = float(name[1:]) / 100.0 * total
            idx = (cum < target[:, None]).sum(axis=1)
            out[name] = sorted_vals[np.minimum(idx, sorted_vals.size - 1)]
    return out


def _result(name: str, a: np.ndarray, b: np.ndarray, diffs: np.ndarray, confidence: float) -> DiffCI:
    a_arr, b_arr = _finite(a), _finite(b)
    diffs = diffs[np.isfinite(diffs)]
    tail = (1.0 - confidence) / 2.0 * 100.0
    if diffs.size:
        low, high = (float(x) for x in np.percentile(diffs, [tail, 100.0 - tail]))
    else:
        low = high = float("nan")
    pa, pb = point(a_arr, name), point(b_arr, name)
    return DiffCI(statistic=name, a=pa, b=pb, diff=pb - pa, low=low, high=high, confidence=confidence,
                  n_a=int(a_arr.size), n_b=int(b_arr.size))


def finite_or_none(value: float) -> float | None:
    """`value` as a float, or None for NaN and infinities (JSON has no such numbers)."""
    return float(value) if np.isfinite(value) else None
