"""Exact percentiles of large samples, equal bit for bit to numpy's linear-interpolated
ones (`np.percentile` / `np.quantile`, method "linear": Hyndman and Fan's type 7), without
partitioning the whole sample for every call.

`np.percentile` copies and partitions its input on every call: at 125M ITL gaps each call
took longer than sorting them, and a report and a comparison ask for the same sample's
percentiles several times. Two ways instead:
- `SortedSample`: a sample's finite values sorted once (its count, mean and max kept from
  the unsorted values, so they equal numpy's too); any percentile is then two lookups.
- `percentiles`: a few percentiles of an unsorted sample by selection: the ranks they need
  are bracketed on a sorted random subsample, one pass counts the values below each bracket
  and keeps those inside, and only those are sorted. Exact whatever the subsample: a rank
  the brackets miss (improbable: they span 6 standard deviations of the subsample's rank
  error) falls back to a partition of the whole sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SELECT_FROM", "SortedSample", "finite", "percentiles", "positions", "quantiles_of_sorted"]

SELECT_FROM = 1 << 22  # samples at least this large are selected from; smaller ones partitioned
_SUBSAMPLE = 1 << 18  # values the brackets are estimated on
_SLICE = 1 << 16  # values compared at a time: 512 KB, in the CPU's cache
_MARGIN_SD = 6.0  # bracket half-width: this many standard deviations of the subsample's rank error


def finite(values: np.ndarray) -> np.ndarray:
    """The finite values of `values` as float64, in their order (the array itself, not a
    copy, when it is float64 and all its values are finite)."""
    arr = np.asarray(values, dtype="float64").ravel()
    keep = np.isfinite(arr)
    return arr if keep.all() else arr[keep]


def positions(n: int, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's linear method on n sorted values: per fraction (0..1), the ranks below and above
    the virtual index (n - 1) * q and the interpolation weight, computed as numpy computes them."""
    virtual = (n - 1) * np.asarray(fractions, dtype="float64")
    below = np.floor(virtual)
    above = below + 1
    last = virtual >= n - 1
    below[last] = -1
    above[last] = -1
    first = virtual < 0
    below[first] = 0
    above[first] = 0
    below_i, above_i = below.astype(np.intp), above.astype(np.intp)
    gamma = virtual - below_i
    return np.where(below_i < 0, n + below_i, below_i), np.where(above_i < 0, n + above_i, above_i), gamma


def _lerp(a: np.ndarray, b: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Linear interpolation as numpy's quantile does it (from the upper end when gamma >= 0.5)."""
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def quantiles_of_sorted(sorted_values: np.ndarray, fractions: Sequence[float] | np.ndarray) -> np.ndarray:
    """`np.quantile(values, fractions)` of finite values already sorted ascending (non-empty)."""
    below, above, gamma = positions(sorted_values.size, np.asarray(fractions, dtype="float64"))
    return _lerp(sorted_values[below], sorted_values[above], gamma)


def percentiles(values: np.ndarray, pcts: Sequence[float] | np.ndarray, overwrite: bool = False) -> np.ndarray:
    """`np.percentile(values, pcts)` of a non-empty float64 array of finite values, bit for bit;
    by selection above SELECT_FROM values. `overwrite`: the array may be reordered (a smaller
    sample is then partitioned in place, as numpy's `overwrite_input`)."""
    arr = np.asarray(values, dtype="float64").ravel()
    fractions = np.true_divide(np.asarray(pcts, dtype="float64"), 100)
    below, above, gamma = positions(arr.size, fractions)
    ranks = np.unique(np.concatenate([below, above]))
    at = _order_statistics(arr, ranks, overwrite)
    return _lerp(at[np.searchsorted(ranks, below)], at[np.searchsorted(ranks, above)], gamma)


def _order_statistics(arr: np.ndarray, ranks: np.ndarray, overwrite: bool) -> np.ndarray:
    """The values of the given ascending ranks in the sorted order of `arr`."""
    if arr.size >= SELECT_FROM:
        found = _select(arr, ranks)
        if found is not None:
            return found
    work = arr if overwrite else arr.copy()
    work.partition(ranks)
    return work[ranks]


def _select(arr: np.ndarray, ranks: np.ndarray) -> np.ndarray | None:
    """The ranks' values by brackets (see the module docstring); None when a bracket missed."""
    n = arr.size
    rng = np.random.default_rng(0)  # the result is exact whatever is drawn: only the speed depends on it
    sample = np.sort(arr[rng.integers(0, n, _SUBSAMPLE)])
    m = sample.size
    p = ranks / max(n - 1, 1)
    margin = _MARGIN_SD * np.sqrt(m * p * (1 - p)) + 8
    lo_i = np.floor(p * (m - 1) - margin).astype(np.int64)
    hi_i = np.ceil(p * (m - 1) + margin).astype(np.int64)
    lows = np.where(lo_i < 0, -np.inf, sample[np.clip(lo_i, 0, m - 1)])
    highs = np.where(hi_i >= m, np.inf, sample[np.clip(hi_i, 0, m - 1)])
    brackets = _merge(lows, highs)
    below, held, inside = _bucket(arr, brackets)
    offsets = np.concatenate([[0], np.cumsum(held)[:-1]])
    which = np.searchsorted(below, ranks, side="right") - 1
    safe = np.maximum(which, 0)
    if not ((which >= 0) & (ranks - below[safe] < held[safe])).all():
        return None
    return inside[offsets[which] + ranks - below[which]]


def _merge(lows: np.ndarray, highs: np.ndarray) -> list[tuple[float, float]]:
    """Overlapping [low, high] brackets (ascending lows) merged into disjoint ascending ones."""
    out: list[tuple[float, float]] = []
    for low, high in zip(lows.tolist(), highs.tolist(), strict=True):
        if out and low <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _bucket(arr: np.ndarray, brackets: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bracket (disjoint, ascending): the values below its low edge and the values
    inside it; and all the values inside the brackets, sorted. Slices small enough to stay
    in the CPU's cache are compared with every edge (a binary search per value was slower)."""
    below = np.zeros(len(brackets), dtype=np.int64)
    held = np.zeros(len(brackets), dtype=np.int64)
    kept = []
    for start in range(0, arr.size, _SLICE):
        part = arr[start:start + _SLICE]
        keep = np.zeros(part.size, dtype=bool)
        for j, (low, high) in enumerate(brackets):
            under = part < low
            inside = (part <= high) ^ under
            below[j] += np.count_nonzero(under)
            held[j] += np.count_nonzero(inside)
            keep |= inside
        kept.append(part[keep])
    return below, held, np.sort(np.concatenate(kept))


@dataclass(frozen=True)
class SortedSample:
    """A sample's finite values sorted ascending, with the count and mean numpy gives on the
    unsorted values (a sum in another order can differ in its last bits). `values` holds
    them all (`of`), or a seeded random draw of them for a curve (`drawn`: `exact` False)."""

    values: np.ndarray
    count: int
    mean: float | None

    @classmethod
    def of(cls, values: np.ndarray) -> SortedSample:
        arr = finite(values)
        return cls(np.sort(arr), int(arr.size), float(arr.mean()) if arr.size else None)

    @classmethod
    def drawn(cls, values: np.ndarray, limit: int, seed: int = 0) -> SortedSample:
        """`of`, but from `limit` of the finite values drawn at random (seeded, with
        replacement) when there are more: a curve of a few hundred points looks the same,
        and 125M values take seconds to sort. Count and mean are still the whole sample's."""
        arr = finite(values)
        if arr.size <= limit:
            return cls.of(arr)
        picked = arr[np.random.default_rng(seed).integers(0, arr.size, limit)]
        return cls(np.sort(picked), int(arr.size), float(arr.mean()))

    @property
    def exact(self) -> bool:
        """Whether `values` holds every finite value (else its percentiles are estimates)."""
        return self.values.size == self.count

    @property
    def max(self) -> float | None:
        return float(self.values[-1]) if self.values.size and self.exact else None

    def percentiles(self, pcts: Sequence[float] | np.ndarray) -> np.ndarray:
        """`np.percentile` of the finite values (NaN each when there are none)."""
        pcts = np.asarray(pcts, dtype="float64")
        if self.values.size == 0:
            return np.full(pcts.shape, np.nan)
        return quantiles_of_sorted(self.values, np.true_divide(pcts, 100))

    def quantiles(self, fractions: Sequence[float] | np.ndarray) -> np.ndarray:
        """`np.quantile` of the finite values (NaN each when there are none)."""
        fractions = np.asarray(fractions, dtype="float64")
        if self.values.size == 0:
            return np.full(fractions.shape, np.nan)
        return quantiles_of_sorted(self.values, fractions)
