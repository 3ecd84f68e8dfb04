"""Aggregation: the run summary (`Summary`, stored as summary.json) from per-request
metrics and ITL gaps.

Only the measure phase counts; warmup requests are stored and tagged but excluded. The
latencies count the counted requests (`catalogue.counted`: measured and ok).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import precision
from bench.analysis.paired import paired_variants
from bench.analysis.summary_model import Concurrency, Rate, RequestCounts, SloSummary, Summary, Throughput
from bench.metrics import catalogue, derive, scan
from bench.metrics.catalogue import (
    CACHED_TOKENS,
    ITL,
    OUTPUT_TOKENS,
    TOKEN_COUNT_DIFF,
    Scope,
    counted,
    counted_ids,
    measured,
)
from bench.metrics.distribution import Distribution, distribution

__all__ = ["model_names", "summarize", "summarize_gaps", "summary_table"]


def summarize(requests: pd.DataFrame, chunks: pd.DataFrame, offered_rate: float | None,
              slo: Mapping[str, Any] | None = None) -> Summary:
    """Summary of the measure phase from a chunk frame held in memory (see `summarize_gaps`)."""
    gaps = scan.scan_frame(chunks, counted_ids(requests)).gaps
    return summarize_gaps(requests, gaps, offered_rate, slo)


def summarize_gaps(requests: pd.DataFrame, gaps: scan.ItlGaps, offered_rate: float | None,
                   slo: Mapping[str, Any] | None = None) -> Summary:
    """Summary of the measure phase; one entry per stage / variant when the run has several.

    `gaps` holds at least the ITL gaps of `counted_ids(requests)`; it is consumed (its
    buffer reordered in place by the overall percentiles, computed last for that reason).
    `slo`: the scenario's `slo` section (limits by SLO metric key, `percentile`).
    """
    rows = measured(requests)
    stages: dict[str, Summary] = {}
    if requests["stage"].nunique() > 1:
        stages = {str(stage): _summarize_frame(rows[rows["stage"] == stage], gaps, None, slo)
                  for stage in sorted(requests["stage"].unique().tolist())}
    names = sorted(v for v in requests["variant"].dropna().unique().tolist() if v)
    variants = {name: _summarize_frame(rows[rows["variant"] == name], gaps, None, slo) for name in names}
    paired = paired_variants(requests) if names else None
    models = {name: _summarize_frame(rows[rows["model"] == name], gaps, None, slo) for name in model_names(requests)}
    whole = _summarize_frame(rows, gaps, offered_rate, slo, consume=True)
    return Summary(whole.distributions, whole.requests, whole.throughput, whole.rate, whole.concurrency,
                   whole.slo, stages=stages, variants=variants, paired=paired, models=models,
                   precision=whole.precision)


def model_names(requests: pd.DataFrame) -> list[str]:
    """The models a run's requests named, sorted, when there are several (target.models, or
    variants switching the model); [] with one (or none recorded: runs from before `model`)."""
    if "model" not in requests:
        return []
    names = sorted(str(v) for v in requests["model"].dropna().unique().tolist() if v)
    return names if len(names) > 1 else []


def _summarize_frame(rows: pd.DataFrame, gaps: scan.ItlGaps, offered_rate: float | None,
                     slo: Mapping[str, Any] | None = None, consume: bool = False) -> Summary:
    """`rows`: measured requests of one scope (the run, a stage, a variant)."""
    ok = counted(rows)
    window = _window(rows)
    out_tokens = float(ok[OUTPUT_TOKENS.key].fillna(0).sum())
    prompt_tokens = float(ok["prompt_tokens"].fillna(0).sum())
    distributions, intervals = _distributions(rows, gaps, consume)
    return Summary(
        distributions,
        requests=_counts(rows),
        throughput=Throughput(window, _per_s(len(ok), window), _known_per_s(ok[OUTPUT_TOKENS.key], out_tokens, window),
                              _per_s(out_tokens + prompt_tokens, window),
                              _known_per_s(ok["prompt_tokens"], prompt_tokens, window),
                              _inputs_per_s(ok, window), _cache_hit_share(ok), _disagreement_share(ok)),
        rate=Rate(offered_rate, derive.send_rate(rows["sent_s"])),
        concurrency=Concurrency(derive.peak_concurrency(rows)),
        slo=_slo(rows, slo, window) if slo else None,
        precision=intervals,
    )


def _distributions(rows: pd.DataFrame, gaps: scan.ItlGaps,
                   consume: bool) -> tuple[dict[str, Distribution], precision.Precision]:
    """Each summarised metric's distribution, by summary key, and their percentiles'
    intervals (and, for the per-request ones, the blocks holding each tail); ITL last,
    from the gaps of the counted requests (up to 1 GB, reordered in place once its
    intervals are computed)."""
    out: dict[str, Distribution] = {}
    intervals = {}
    tails = {}
    blocks = precision.RunBlocks.of(rows)
    for metric in catalogue.SUMMARISED:
        assert metric.summary_key is not None
        if metric.scope is Scope.GAPS:
            continue
        values = catalogue.request_values(metric, rows)
        dist = out[metric.summary_key] = distribution(values)
        value_blocks = precision.request_blocks(metric, rows, blocks)
        intervals[metric.summary_key] = precision.metric_intervals(metric, values, value_blocks)
        tails[metric.summary_key] = {s: precision.tail_blocks(values, value_blocks, float(at))
                                     for s in precision.PERCENTILES if (at := dist.stat(s)) is not None}
    assert ITL.summary_key is not None and ITL.scope is Scope.GAPS
    ids = counted_ids(rows)
    gap_blocks = blocks.of_gaps(gaps, ids)
    itl = gaps.take(ids, consume=consume)
    intervals[ITL.summary_key] = precision.metric_intervals(ITL, itl, gap_blocks)
    del gap_blocks
    out[ITL.summary_key] = distribution(itl, overwrite=True)
    return out, precision.assess(out, intervals, blocks.block_s, tails)


def _slo(rows: pd.DataFrame, slo: Mapping[str, Any], window: float | None) -> SloSummary:
    """Goodput (DistServe / vLLM): requests meeting every limit, per second of the window.

    A failed request meets no SLO: it counts in the denominator of every share.
    """
    limits = {m.key: float(slo[m.key]) for m in catalogue.SLO if slo.get(m.key) is not None}
    meets = derive.meets_slo(rows, limits)
    good = rows[meets]
    percentile = float(slo.get("percentile", 99.0))
    ok = counted(rows)
    at_percentile = {m: _quantile(ok[m], percentile) for m in limits}
    return SloSummary(
        limits=limits,
        percentile=percentile,
        share_meeting_all=float(meets.mean()) if len(meets) else None,
        share_meeting={m: float(derive.meets_slo(rows, {m: v}).mean()) if len(rows) else None
                       for m, v in limits.items()},
        value_at_percentile=at_percentile,
        met=all(v is not None and v <= limits[m] for m, v in at_percentile.items()),
        goodput_requests_per_s=_per_s(len(good), window),
        goodput_output_tokens_per_s=_per_s(float(good[OUTPUT_TOKENS.key].fillna(0).sum()), window),
    )


def _quantile(values: pd.Series, percentile: float) -> float | None:
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    arr = arr[np.isfinite(arr)]
    return float(np.percentile(arr, percentile)) if arr.size else None


def _counts(rows: pd.DataFrame) -> RequestCounts:
    ok = catalogue.counted_mask(rows)
    errors = rows.loc[~ok, "error_kind"].fillna("unknown")
    return RequestCounts(len(rows), int(ok.sum()),
                         {str(k): int(v) for k, v in errors.value_counts().sort_index().items()})


def _window(rows: pd.DataFrame) -> float | None:
    """From the first measured send to the last measured end."""
    if rows.empty:
        return None
    span = float(rows["end_s"].max() - rows["sent_s"].min())
    return span if span > 0 else None


def _per_s(amount: float, window: float | None) -> float | None:
    if window is None:
        return None
    return float(amount / window)


def _known_per_s(column: pd.Series, amount: float, window: float | None) -> float | None:
    """`amount` per second, None when every counted request lacks the value (embeddings have
    no output tokens; a server without usage gives no input tokens): absent, not zero."""
    if len(column) and column.isna().all():
        return None
    return _per_s(amount, window)


def _inputs_per_s(ok: pd.DataFrame, window: float | None) -> float | None:
    """Embeddings: inputs of the counted requests per second; None for other endpoints."""
    if "inputs" not in ok or not ok["inputs"].notna().any():
        return None
    return _per_s(float(ok["inputs"].sum()), window)


def _cache_hit_share(ok: pd.DataFrame) -> float | None:
    """Cached prompt tokens over prompt tokens of the counted requests the server counted;
    a request without `cached_tokens` counts 0 (servers leave the detail out when nothing
    was cached). None when no request had it: the server does not report its cache."""
    cached = ok[CACHED_TOKENS.key] if CACHED_TOKENS.key in ok else pd.Series(dtype="float64")
    if not cached.notna().any():
        return None
    prompt = ok["prompt_tokens"].astype("float64")
    known = prompt.notna().to_numpy(dtype=bool)
    total = float(prompt[known].sum())
    return float(cached[known].fillna(0).sum()) / total if total > 0 else None


def _disagreement_share(ok: pd.DataFrame) -> float | None:
    """Share of the counted requests with two token counts (`TOKEN_COUNT_DIFF` defined) whose
    counts differ; None when no request had two (the run counted tokens one way only)."""
    if TOKEN_COUNT_DIFF.key not in ok:
        return None
    diff = ok[TOKEN_COUNT_DIFF.key].to_numpy(dtype="float64", na_value=np.nan)
    compared = diff[np.isfinite(diff)]
    return float((compared != 0).mean()) if compared.size else None


def summary_table(summary: Summary) -> pd.DataFrame:
    """Latency distributions as a tidy frame: one row per metric (summary key), one column
    per statistic (used by notebooks/analysis.ipynb)."""
    rows = {m.summary_key: summary.distributions[m.summary_key].to_json()
            for m in catalogue.LATENCY_TABLE if m.summary_key in summary.distributions}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame.replace({None: np.nan})
