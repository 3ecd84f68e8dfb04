"""Steady state: the window of a run between its warm-up and its cool-down, and the figures
inside it beside the whole run's.

The edges come from MSER-5 (White, 1997; White, Cobb and Spratt, 2000: the Marginal
Standard Error Rule on batch means of 5 samples), applied to two series sampled on one
grid of `bins` bins over the measured span: requests in flight and output tokens per
second. The warm-up ends at the later of the two truncation points; the cool-down starts
at the earlier of the two truncation points of the reversed series (a run's tail drains,
so read backwards it is a warm-up too). MSER picks the truncation d (in batches, at most
half the series) that minimises sum((x_i - mean)^2) / (n - d)^2 over the batches left.

Inside the window: requests sent in it that ended ok and were measured; their TTFT, TPOT
and E2E percentiles (catalogue metrics), requests/s (those requests over the window) and
output tokens/s (the token-rate bins inside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench.analysis.steady_grid import BINS, MIN_REQUESTS, steady_bin_s
from bench.analysis.steady_grid import grid as window_grid
from bench.metrics import derive
from bench.metrics.catalogue import E2E, TPOT, TTFT, Metric

if TYPE_CHECKING:
    from bench.analysis.results import Run

__all__ = ["BATCH", "BINS", "MIN_BATCHES", "MIN_REQUESTS", "STEADY_METRICS", "SteadyState", "mser_truncation", "steady_bin_s",
           "steady_state"]

BATCH = 5  # MSER-5
MIN_BATCHES = 8  # fewer batch means than this: too short to tell a warm-up from noise
STEADY_METRICS: tuple[Metric, ...] = (TTFT, TPOT, E2E)


@dataclass(frozen=True)
class SteadyState:
    """The steady window [start_s, end_s) in run seconds, and the figures inside it.

    `percentiles`: metric key -> (p50, p99) of the requests sent in the window (None when
    none); `requests_per_s`, `output_tokens_per_s` over the window."""

    start_s: float
    end_s: float
    run_start_s: float
    run_end_s: float
    requests: int
    requests_per_s: float
    output_tokens_per_s: float
    percentiles: dict[str, tuple[float | None, float | None]]

    @property
    def warmup_s(self) -> float:
        return self.start_s - self.run_start_s

    @property
    def cooldown_s(self) -> float:
        return self.run_end_s - self.end_s


def mser_truncation(series: np.ndarray, batch: int = BATCH) -> int:
    """The samples MSER-`batch` cuts from the start of `series` (a multiple of `batch`)."""
    n = len(series) // batch
    if n < MIN_BATCHES:
        return 0
    means = np.asarray(series[: n * batch], dtype="float64").reshape(n, batch).mean(axis=1)
    best, best_d = np.inf, 0
    for d in range(n // 2 + 1):
        tail = means[d:]
        score = float(((tail - tail.mean()) ** 2).sum()) / len(tail) ** 2
        if d == 0 or score < best * (1 - 1e-12):  # the earliest of equal minima
            best, best_d = score, d
    return best_d * batch


def steady_state(run: Run, bins: int = BINS) -> SteadyState | None:
    """The run's steady window and figures; None for a run too short to tell (bins under
    10 ms, or a window of less than a batch) or with fewer than MIN_REQUESTS counted requests.
    Computed once per loaded run (`Run.memo`): the console, the report's table and its
    timeline all show it."""
    return run.memo(("steady_state", bins), lambda: _steady_state(run, bins))


def _steady_state(run: Run, bins: int) -> SteadyState | None:
    grid_of = window_grid(run.requests, bins)
    if grid_of is None:
        return None
    requests, ok, start, end, bin_s = grid_of
    grid = start + bin_s * np.arange(bins)
    flight = _in_flight_at(requests, grid)
    rate = _rate_on(run, grid, bin_s)
    cut = max(mser_truncation(flight), mser_truncation(rate))
    tail = max(mser_truncation(flight[::-1]), mser_truncation(rate[::-1]))
    if cut + tail >= bins - BATCH:
        return None
    w0, w1 = start + cut * bin_s, end - tail * bin_s
    inside = ok[(ok["sent_s"] >= w0) & (ok["sent_s"] < w1)]
    window = w1 - w0
    return SteadyState(w0, w1, start, end, len(inside), len(inside) / window,
                       float(rate[cut:bins - tail].mean()), {m.key: _p50_p99(inside, m) for m in STEADY_METRICS})


def _in_flight_at(requests: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    steps = derive.in_flight_over_time(requests)
    if steps.empty:
        return np.zeros(len(grid))
    index = np.searchsorted(steps["t_s"].to_numpy(), grid, side="right") - 1
    counts = steps["in_flight"].to_numpy(dtype="float64")
    return np.where(index >= 0, counts[np.clip(index, 0, None)], 0.0)


def _rate_on(run: Run, grid: np.ndarray, bin_s: float) -> np.ndarray:
    """Output tokens per second in each grid bin (from the run's token-rate bins of bin_s)."""
    rate = run.token_rate(bin_s)
    if rate.empty:
        return np.zeros(len(grid))
    values = rate["tokens_per_s"].to_numpy(dtype="float64")
    index = np.floor(grid / bin_s).astype("int64")
    return np.where((index >= 0) & (index < len(values)), values[np.clip(index, 0, len(values) - 1)], 0.0)


def _p50_p99(rows: pd.DataFrame, metric: Metric) -> tuple[float | None, float | None]:
    values = rows[metric.key].to_numpy(dtype="float64") if metric.key in rows else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))
