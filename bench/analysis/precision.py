"""Precision of a summary: a confidence interval for every percentile of every summarised
metric (summary.json `precision`), and the percentiles too imprecise to read much into.

The intervals are the block bootstrap over run time of `bench compare`
(`bench.analysis.percentile_ci`): requests are grouped by send time in blocks of
`stats.BLOCK_S` (longer blocks in long runs, at most `percentile_ci.MAX_BLOCKS` of them),
ITL gaps with their request. A percentile is flagged imprecise when its interval is wider
than MAX_RELATIVE_WIDTH of its value, when the sample is too small for it to have one
(`stats.min_samples`: a p99 of fewer than 100 values is the maximum), or, for the
per-request metrics, when the values at or above it come from fewer than MIN_TAIL_BLOCKS
blocks of run time: a p99 set by a few bursts (a dozen requests sent together, all slow)
rests on a few events, not on 1 % of the requests, and the bootstrap, which can only redraw
the bursts it saw, then understates how much another run can differ. Measured on 20 runs of
a 64-stream simulator (tests/e2e/test_precision_acceptance.py's profile): the p99 TTFT's
re-run range held another run's p99 in 67 % of 380 pairs with 4 s of each run (2-7 blocks
in the tail), 89 % with 16 s, 95 % with 64 s (runs joined: about 14 blocks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import percentile_ci, stats
from bench.metrics import catalogue, scan
from bench.metrics.catalogue import Metric, Scope
from bench.metrics.distribution import Distribution

__all__ = ["MAX_RELATIVE_WIDTH", "MIN_TAIL_BLOCKS", "PERCENTILES", "Precision", "RunBlocks", "assess",
           "metric_intervals", "request_blocks", "tail_blocks"]

PERCENTILES = ("p50", "p90", "p95", "p99", "p99.9")  # the percentiles of a distribution (summary.json)
MAX_RELATIVE_WIDTH = 0.10  # an interval wider than this share of its percentile is flagged
MIN_TAIL_BLOCKS = 10  # a percentile whose tail lies in fewer blocks than this is flagged

Interval = tuple[float, float]
Intervals = dict[str, tuple[Interval, Interval] | None]  # percentile -> (CI, re-run offsets)


@dataclass(frozen=True)
class Precision:
    """`intervals`: summary key -> percentile -> (low, high) in the metric's unit, None when
    the sample is too small for one; `imprecise`: summary key -> the flagged percentiles;
    `reruns`: like `intervals`, the range another run like this one should give the
    percentile in (`percentile_ci.block_percentile_intervals`; empty in files from before it);
    `tail_blocks`: per-request metric's key -> percentile -> the number of blocks holding
    its values at or above the percentile (`tail_blocks`; empty in files from before it)."""

    confidence: float
    block_s: float
    resamples: int
    max_relative_width: float
    intervals: dict[str, dict[str, Interval | None]]
    imprecise: dict[str, list[str]]
    reruns: dict[str, dict[str, Interval | None]] = field(default_factory=dict)
    tail_blocks: dict[str, dict[str, int]] = field(default_factory=dict)

    def interval(self, metric: Metric, statistic: str) -> Interval | None:
        """The metric's interval of `statistic` ("p99"); None when there is none."""
        return self.intervals.get(metric.summary_key or "", {}).get(statistic)

    def rerun(self, metric: Metric, statistic: str) -> Interval | None:
        """The range another run's `statistic` should fall in; None when there is none."""
        return self.reruns.get(metric.summary_key or "", {}).get(statistic)

    def flagged(self, metric: Metric, statistic: str) -> bool:
        return statistic in self.imprecise.get(metric.summary_key or "", [])

    def to_json(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "block_s": self.block_s, "resamples": self.resamples,
                "max_relative_width": self.max_relative_width,
                "intervals": _intervals_json(self.intervals),
                "imprecise": {key: list(stats_) for key, stats_ in self.imprecise.items()},
                "reruns": _intervals_json(self.reruns), "tail_blocks": self.tail_blocks}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Precision:
        return cls(data["confidence"], data["block_s"], data["resamples"], data["max_relative_width"],
                   _intervals_from(data["intervals"]), {key: list(v) for key, v in data["imprecise"].items()},
                   _intervals_from(data.get("reruns") or {}),
                   {key: {st: int(n) for st, n in by_stat.items()} for key, by_stat in (data.get("tail_blocks") or {}).items()})


@dataclass(frozen=True)
class RunBlocks:
    """The block of run time of each measured request of one scope (a run, stage or variant)."""

    block_s: float
    request_ids: np.ndarray  # int64, ascending
    blocks: np.ndarray  # int32, the block of each request: send time since the scope's first send

    @classmethod
    def of(cls, rows: pd.DataFrame) -> RunBlocks:
        """`rows`: the scope's measured requests (`request_id`, `sent_s`)."""
        rows = rows.sort_values("request_id")
        sent = rows["sent_s"].to_numpy(dtype="float64", na_value=np.nan)
        finite = sent[np.isfinite(sent)]
        start, span = (float(finite.min()), float(finite.max() - finite.min())) if finite.size else (0.0, 0.0)
        block_s = max(stats.BLOCK_S, span / percentile_ci.MAX_BLOCKS)
        with np.errstate(invalid="ignore"):
            blocks = np.nan_to_num(np.floor((sent - start) / block_s), nan=0.0)
        blocks = np.clip(blocks, 0, percentile_ci.MAX_BLOCKS).astype(np.int32)
        return cls(block_s, rows["request_id"].to_numpy(dtype=np.int64), blocks)

    def of_requests(self, request_ids: np.ndarray) -> np.ndarray:
        """The block of each given request (all among this scope's)."""
        return self.blocks[np.searchsorted(self.request_ids, np.asarray(request_ids, dtype=np.int64))]

    def of_gaps(self, gaps: scan.ItlGaps, request_ids: np.ndarray) -> np.ndarray:
        """The block of each gap `gaps.take(request_ids)` gives, in its order: its request's."""
        selected = np.isin(gaps.request_ids, np.asarray(request_ids, dtype=np.int64))
        per_run = self.of_requests(gaps.request_ids[selected]).astype(np.int16)  # <= MAX_BLOCKS: 2 bytes a gap
        return np.repeat(per_run, gaps.counts[selected])


def metric_intervals(metric: Metric, values: np.ndarray, blocks: np.ndarray) -> Intervals:
    """The metric's percentile intervals and re-run offsets; its place in the catalogue
    seeds the resampling."""
    return percentile_ci.block_percentile_intervals(values, blocks, PERCENTILES,
                                                    seed=catalogue.METRICS.index(metric), confidence=stats.CONFIDENCE)


def request_blocks(metric: Metric, rows: pd.DataFrame, blocks: RunBlocks) -> np.ndarray:
    """The block of each of `catalogue.request_values(metric, rows)`, in its order."""
    scoped = catalogue.counted(rows) if metric.scope is Scope.COUNTED else catalogue.measured(rows)
    return blocks.of_requests(scoped["request_id"].to_numpy(dtype=np.int64))


def tail_blocks(values: np.ndarray, blocks: np.ndarray, at: float) -> int:
    """The number of distinct `blocks` (per value, small non-negative ints as
    `request_blocks` gives) holding the finite `values` at or above `at`."""
    arr = np.asarray(values, dtype="float64")
    tail = np.asarray(blocks)[np.isfinite(arr) & (arr >= at)].astype(np.int64)
    return int(np.count_nonzero(np.bincount(tail))) if tail.size else 0


def assess(distributions: Mapping[str, Distribution], intervals: Mapping[str, Intervals],
           block_s: float, tails: Mapping[str, Mapping[str, int]] | None = None) -> Precision:
    """The summary's Precision: the intervals of the metrics with samples, their re-run
    ranges (the percentile plus its re-run offsets), and the flags. `tails`: per metric key
    and percentile, its `tail_blocks` (metrics without: not judged on them)."""
    kept = {key: by_stat for key, by_stat in intervals.items() if distributions[key].count}
    cis = {key: {s: None if pair is None else pair[0] for s, pair in by_stat.items()} for key, by_stat in kept.items()}
    reruns = {key: {s: _shifted(distributions[key].stat(s), pair) for s, pair in by_stat.items()}
              for key, by_stat in kept.items()}
    kept_tails = {key: dict(by_stat) for key, by_stat in (tails or {}).items() if key in kept}
    imprecise = {}
    for key, by_stat in cis.items():
        few = kept_tails.get(key, {})
        flagged = [s for s, ci in by_stat.items()
                   if _too_wide(distributions[key].stat(s), ci) or few.get(s, MIN_TAIL_BLOCKS) < MIN_TAIL_BLOCKS]
        if flagged:
            imprecise[key] = flagged
    return Precision(stats.CONFIDENCE, block_s, percentile_ci.N_RESAMPLES, MAX_RELATIVE_WIDTH, cis, imprecise,
                     reruns, kept_tails)


def _shifted(value: float | int | None, pair: tuple[Interval, Interval] | None) -> Interval | None:
    if pair is None or value is None:
        return None
    low, high = pair[1]
    return float(value) + low, float(value) + high


def _intervals_json(intervals: Mapping[str, Mapping[str, Interval | None]]) -> dict[str, Any]:
    return {key: {s: list(ci) if ci is not None else None for s, ci in by_stat.items()}
            for key, by_stat in intervals.items()}


def _intervals_from(data: Mapping[str, Any]) -> dict[str, dict[str, Interval | None]]:
    return {key: {s: (float(ci[0]), float(ci[1])) if ci is not None else None for s, ci in by_stat.items()}
            for key, by_stat in data.items()}


def _too_wide(value: float | int | None, ci: Interval | None) -> bool:
    if ci is None or value is None:
        return True
    return bool(ci[1] - ci[0] > MAX_RELATIVE_WIDTH * abs(value))
