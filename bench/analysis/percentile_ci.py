"""Confidence intervals of one run's percentiles: the block bootstrap over run time of
`bench compare` (`stats`, `resample`), for the summary (`analysis.precision`).

Values are resampled in whole blocks of run time (`stats.BLOCK_S`; longer runs get longer
blocks, at most MAX_BLOCKS): concurrent requests share the server's batch, so their
latencies move together. The interval is the percentile-bootstrap interval of the
inverted-CDF percentile. Nothing is subsampled (a summary's interval must be the run's own):
up to EXACT_SAMPLES values each is resampled itself; above, block summaries are resampled
instead: per block, the counts of values at or below each edge of a window of values around
the percentile, so that a resample costs blocks x edges whatever the run's size. Two passes:
the first window spans the ranks a resample can reach even when every block's values move
together, on every k-th value of a large sample; the second spans only the values the first
pass's resamples reached (plus a margin), counted exactly, one value an edge up to GRID.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.analysis.resample import batches, boot_stats, multinomial, prepare, weighted_stats
from bench.analysis.stats import CONFIDENCE, check_statistic, min_samples

__all__ = ["EXACT_SAMPLES", "GRID", "MAX_BLOCKS", "N_RESAMPLES", "Interval", "block_percentile_cis",
           "block_percentile_intervals"]

Interval = tuple[float, float]

N_RESAMPLES = 1000
MAX_BLOCKS = 512  # longer runs get longer blocks: a resample costs per block
EXACT_SAMPLES = 4096  # up to this many values, each is resampled itself (no binning)
GRID = 128  # edges of a percentile's window above EXACT_SAMPLES
_WINDOW_SD = 6.0  # first window: this many worst-case standard deviations of the rank either side
_ESTIMATE = 1_000_000  # first-window edges are quantiles of a subsample of this many values
_SLICE = 1 << 22  # values binned at a time (bounds the temporary arrays)
_FEW_EDGES = 32  # up to this many edges, values are compared with each (see _buckets)
_THIN = 1 << 21  # the first pass sees every k-th value of larger samples


def block_percentile_cis(values: np.ndarray, blocks: np.ndarray, percentiles: Sequence[str], *,
                         n_resamples: int = N_RESAMPLES, seed: int = 0,
                         confidence: float = CONFIDENCE) -> dict[str, tuple[float, float] | None]:
    """Per percentile ("p50" ... "p99.9") of one sample: its bootstrap interval (low, high),
    resampling whole blocks; None when the sample has fewer than `min_samples` finite values.

    `blocks`: per value, a small non-negative int (its block of run time, < ~MAX_BLOCKS + 1);
    NaN/inf values are dropped. Same units as `values`.
    """
    both = block_percentile_intervals(values, blocks, percentiles, n_resamples=n_resamples, seed=seed,
                                      confidence=confidence)
    return {name: None if pair is None else pair[0] for name, pair in both.items()}


def block_percentile_intervals(values: np.ndarray, blocks: np.ndarray, percentiles: Sequence[str], *,
                               n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
                               ) -> dict[str, tuple[Interval, Interval] | None]:
    """Per percentile: (its confidence interval, the re-run offsets), from the same resamples
    as `block_percentile_cis`; None as there.

    The re-run offsets (low, high) bound the difference between this percentile and the same
    percentile of another run like this one, at `confidence`: a re-run's estimate differs
    from this one by the difference of two independent estimates, whose distribution is
    that of the difference of two independent resamples (about sqrt(2) times the spread of
    one). This estimate plus the offsets is the range another run's percentile should fall
    in: what a confidence interval for the server's value cannot promise (both runs vary, so
    an exact 95 % interval holds another run's estimate only ~83 % of the time).
    """
    for name in percentiles:
        check_statistic(name)
    arr = np.asarray(values, dtype="float64").ravel()
    codes = np.asarray(blocks).ravel()
    if codes.shape != arr.shape:
        raise ValueError(f"blocks must match the sample's length ({codes.size} != {arr.size})")
    keep = np.isfinite(arr)
    if not keep.all():
        arr, codes = arr[keep], codes[keep]
    out: dict[str, tuple[Interval, Interval] | None] = {name: None for name in percentiles}
    wanted = [name for name in percentiles if arr.size >= min_samples(name)]
    if not wanted:
        return out
    rng = np.random.default_rng(seed)
    if arr.size <= EXACT_SAMPLES:
        sorted_vals, dense = prepare(arr, codes, arr.size, rng)
        boots = boot_stats(sorted_vals, dense, wanted, n_resamples, rng)
    else:
        boots = _binnedboot_stats(arr, codes, wanted, n_resamples, rng)
    for name in wanted:
        boot = boots[name][np.isfinite(boots[name])]
        ci = _interval(boot, confidence)
        # draws are independent and in random order: neighbours pair two independent resamples
        rerun = _interval(boot - np.roll(boot, 1), confidence) if boot.size > 1 else None
        out[name] = None if ci is None or rerun is None else (ci, rerun)
    return out


def _interval(boot: np.ndarray, confidence: float) -> tuple[float, float] | None:
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(boot, [tail, 100.0 - tail])
    return float(low), float(high)


def _binnedboot_stats(arr: np.ndarray, codes: np.ndarray, statistics: Sequence[str], n_resamples: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Resampled percentiles from per-block counts (see the module docstring). The first
    pass bins (every k-th of) the values on every percentile's first window, to find the
    second windows; the second pass counts exactly on those, keeping the values inside."""
    sizes = _block_hist(arr, codes, int(codes.max()) + 1, np.empty(0))[0][:, 0]  # values per block
    filled = np.flatnonzero(sizes)
    weights = np.zeros((n_resamples, sizes.size))
    start = 0
    for size in batches(n_resamples):
        weights[start:start + size, filled] = multinomial(filled.size, size, rng)
        start += size
    windows = _first_windows(arr, statistics, arr.size / filled.size, rng)
    step = -(-arr.size // _THIN)
    margin = 1 if step == 1 else 3  # every k-th value places a resample only to within a few edges
    edges = np.unique(np.concatenate(windows))
    thin = _block_hist(arr[::step], codes[::step], sizes.size, edges)[0]
    below = np.cumsum(thin, axis=1)[:, :-1] * float(step)  # per block: values <= each edge (estimated)
    thin_sizes = thin.sum(axis=1) * float(step)
    seconds: list[tuple[float, float] | None] = []
    for name, window in zip(statistics, windows, strict=True):
        first = _edge_stat(weights, thin_sizes, below[:, np.searchsorted(edges, window)], window, name)
        reached = first[np.isfinite(first)]
        if reached.size == 0:
            seconds.append(None)
            continue
        # A resample placed on an edge lies above the edge before it: the second window starts there.
        low = max(int(np.searchsorted(window, reached.min())) - margin, 0)
        high = min(int(np.searchsorted(window, reached.max())) + margin - 1, window.size - 1)
        seconds.append((float(window[low]), float(window[high])))
    return _second_pass(arr, codes, sizes, weights, statistics, seconds)


def _second_pass(arr: np.ndarray, codes: np.ndarray, sizes: np.ndarray, weights: np.ndarray,
                 statistics: Sequence[str], windows: list[tuple[float, float] | None]) -> dict[str, np.ndarray]:
    """Each percentile's resamples, counted exactly in its window (lo_excl, hi]."""
    bounds = np.unique([b for w in windows if w is not None for b in w])
    hist, vals, val_codes = _block_hist(arr, codes, sizes.size, bounds, keep=_covered(bounds, windows))
    below = np.cumsum(hist, axis=1)[:, :-1]
    out = {}
    for name, window in zip(statistics, windows, strict=True):
        if window is None:
            out[name] = np.full(weights.shape[0], np.nan)
            continue
        lo_excl, hi = window
        inside = (vals > lo_excl) & (vals <= hi)
        fine = _exact_edges(vals[inside], lo_excl)
        at_lo = below[:, [int(np.searchsorted(bounds, lo_excl))]]
        fine_below = at_lo + np.cumsum(_block_hist(vals[inside], val_codes[inside], sizes.size, fine)[0][:, 1:-1], axis=1)
        out[name] = _edge_stat(weights, sizes, np.concatenate([at_lo, fine_below], axis=1), fine, name)
    return out


def _covered(bounds: np.ndarray, windows: list[tuple[float, float] | None]) -> np.ndarray:
    """Per bucket of `bounds` (`_block_hist` columns): inside some window."""
    covered = np.zeros(bounds.size + 1, dtype=bool)
    for window in windows:
        if window is not None:
            lo, hi = np.searchsorted(bounds, window)
            covered[lo + 1:hi + 1] = True
    return covered


def _first_windows(arr: np.ndarray, statistics: Sequence[str], per_block: float,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Per percentile, GRID + 1 ascending edges spanning the ranks a resample's percentile can
    reach, even when each block's values all move together (`per_block` values a block)."""
    n = arr.size
    sample = arr if n <= _ESTIMATE else arr[rng.integers(0, n, _ESTIMATE)]
    fractions = []
    for name in statistics:
        q = float(name[1:]) / 100.0
        spread = _WINDOW_SD * np.sqrt(q * (1.0 - q) * per_block / n) + 4.0 * np.sqrt(q * (1.0 - q) / sample.size)
        fractions.append(np.linspace(max(q - spread, 0.0), min(q + spread, 1.0), GRID + 1))
    edges = np.quantile(sample, np.concatenate(fractions)).reshape(len(statistics), GRID + 1)
    return [np.unique(row) for row in edges]


def _block_hist(arr: np.ndarray, codes: np.ndarray, n_blocks: int, edges: np.ndarray,
                keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_blocks, edges + 1) counts: column 0 values <= edges[0], j in (edges[j-1], edges[j]],
    the last above edges[-1]; and the values (and their codes) of the columns `keep` marks."""
    k = edges.size + 1
    hist = np.zeros(n_blocks * k, dtype=np.int64)
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, arr.size, _SLICE):
        part = slice(start, start + _SLICE)
        if edges.size == 0:  # only the values per block
            hist += np.bincount(codes[part].astype(np.int64), minlength=n_blocks)
            continue
        bucket = _buckets(arr[part], edges)
        hist += np.bincount(codes[part].astype(np.int64) * k + bucket, minlength=n_blocks * k)
        if keep is not None:
            mask = keep[bucket]
            kept.append((arr[part][mask], codes[part][mask]))
    vals = np.concatenate([v for v, _ in kept]) if kept else np.empty(0)
    val_codes = np.concatenate([c for _, c in kept]) if kept else np.empty(0, dtype=np.int64)
    return hist.reshape(n_blocks, k), vals, val_codes


def _buckets(vals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per value, the number of edges below it (`searchsorted(edges, vals)`); a few edges are
    compared one by one, five times faster than a binary search per value."""
    if edges.size > _FEW_EDGES:
        return np.searchsorted(edges, vals, side="left")
    bucket = np.zeros(vals.size, dtype=np.uint8)
    for edge in edges:
        bucket += vals > edge
    return bucket


def _exact_edges(vals: np.ndarray, lo_excl: float) -> np.ndarray:
    """lo_excl, then the largest value of each of up to GRID equal-count bins of `vals` (all above lo_excl)."""
    vals = np.sort(vals)
    bins = min(GRID, vals.size)
    ends = (np.arange(1, bins + 1) * vals.size) // max(bins, 1) - 1
    return np.unique(np.concatenate([[lo_excl], vals[ends]]))


def _edge_stat(weights: np.ndarray, sizes: np.ndarray, below: np.ndarray, edges: np.ndarray, name: str) -> np.ndarray:
    """Each resample's percentile from the counts per block at or below each edge (`below`,
    n_blocks x edges). A bucket (edges[j-1], edges[j]] stands for its upper edge; values at
    or below edges[0] for edges[0], above edges[-1] for edges[-1] (clamped to the window)."""
    counts = np.diff(below, axis=1, prepend=0, append=sizes[:, None]).astype("float64")
    points = np.concatenate([edges, edges[-1:]])
    return weighted_stats(points, weights @ counts, [name])[name]
