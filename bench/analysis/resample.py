"""The resampling machinery of every bootstrap in bench (`stats`, `percentile_ci`).

Resamples are drawn as multinomial weights (how often each item is drawn), so a statistic
of a resample is a weighted statistic over the sorted sample: this vectorises over
resamples, and gives the cluster bootstrap for free (weights drawn per group, e.g. per block
of run time, and given to each of the group's values).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BATCH", "batches", "boot_stats", "multinomial", "prepare", "weighted_stats"]

BATCH = 200  # resamples per batch: bounds memory at BATCH x sample size floats


def prepare(values: np.ndarray, groups: np.ndarray | None, max_samples: int,
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
    if not keep.all():  # (no 1 GB copies of 125M finite gaps)
        arr, codes = arr[keep], codes[keep]
    if arr.size > max_samples:
        pick = rng.choice(arr.size, size=max_samples, replace=False)
        arr, codes = arr[pick], codes[pick]
    order = np.argsort(arr, kind="stable")
    _, dense = np.unique(codes[order], return_inverse=True)
    return arr[order], dense.ravel()


def boot_stats(sorted_vals: np.ndarray, codes: np.ndarray, statistics: Sequence[str], n_resamples: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    if sorted_vals.size == 0:
        return {name: np.full(n_resamples, np.nan) for name in statistics}
    n_groups = int(codes.max()) + 1
    parts: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for size in batches(n_resamples):
        group_weights = multinomial(n_groups, size, rng)
        weights = group_weights[:, codes]  # each value weighs as often as its group was drawn
        for name, arr in weighted_stats(sorted_vals, weights, statistics).items():
            parts[name].append(arr)
    return {name: np.concatenate(parts[name]) for name in statistics}


def batches(total: int) -> list[int]:
    full, rest = divmod(total, BATCH)
    return [BATCH] * full + ([rest] if rest else [])


def multinomial(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` rows of bootstrap counts: how often each of n items is drawn in n draws."""
    draws = rng.integers(0, n, size=(size, n))
    offsets = (np.arange(size) * n)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=size * n).reshape(size, n).astype("float64")


def weighted_stats(sorted_vals: np.ndarray, weights: np.ndarray, statistics: Sequence[str]) -> dict[str, np.ndarray]:
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
