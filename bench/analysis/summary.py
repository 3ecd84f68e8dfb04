"""Aggregation: the run summary (summary.json) from per-request metrics and ITL gaps.

Only the measure phase counts; warmup requests are stored and tagged but excluded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.metrics import scan as chunkscan

from bench.metrics import frames as metrics
from bench.analysis.paired import paired_variants

LATENCY_METRICS = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "schedule_lag_ms")


SLO_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")


def summarize(requests: pd.DataFrame, chunks: pd.DataFrame, offered_rate: float | None,
              slo: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summary of the measure phase from a chunk frame held in memory (see `summarize_gaps`)."""
    gaps = chunkscan.scan_frame(chunks, counted_ids(requests)).gaps
    return summarize_gaps(requests, gaps, offered_rate, slo)


def counted_ids(requests: pd.DataFrame) -> np.ndarray:
    """The requests whose ITL gaps summaries count: measured and successful."""
    counted = (requests["phase"] == "measure") & (requests["status"] == "ok")
    return requests.loc[counted, "request_id"].to_numpy(dtype=np.int64)


def summarize_gaps(requests: pd.DataFrame, gaps: chunkscan.ItlGaps, offered_rate: float | None,
                   slo: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summary of the measure phase; one entry per stage / variant when the run has several.

    `gaps` holds at least the ITL gaps of `counted_ids(requests)`; it is consumed (its
    buffer reordered in place by the overall percentiles, computed last for that reason).
    """
    measured = requests[requests["phase"] == "measure"]
    parts: dict[str, Any] = {}
    stages = sorted(requests["stage"].unique().tolist()) if not requests.empty else []
    if len(stages) > 1:
        parts["stages"] = {
            str(stage): _summarize_frame(measured[measured["stage"] == stage], gaps, None, slo)
            for stage in stages
        }
    variants = sorted(v for v in requests["variant"].dropna().unique().tolist() if v)
    if variants:
        parts["variants"] = {
            name: _summarize_frame(measured[measured["variant"] == name], gaps, None, slo) for name in variants
        }
        paired = paired_variants(requests)
        if paired is not None:
            parts["paired"] = paired
    summary = _summarize_frame(measured, gaps, offered_rate, slo, consume=True)
    summary.update(parts)
    return summary


def _summarize_frame(measured: pd.DataFrame, gaps: chunkscan.ItlGaps, offered_rate: float | None,
                     slo: dict[str, Any] | None = None, consume: bool = False) -> dict[str, Any]:
    ok = measured[measured["status"] == "ok"]
    itl = gaps.take(ok["request_id"].to_numpy(dtype=np.int64), consume=consume)
    window = _window(measured)
    out_tokens = float(ok["output_tokens"].fillna(0).sum())
    prompt_tokens = float(ok["prompt_tokens"].fillna(0).sum())
    summary: dict[str, Any] = {
        "ttft_ms": metrics.distribution(ok["ttft_ms"]),
        "itl_ms": metrics.distribution(itl, overwrite=True),
        "tpot_ms": metrics.distribution(ok["tpot_ms"]),
        "e2e_ms": metrics.distribution(ok["e2e_ms"]),
        "schedule_lag_ms": metrics.distribution(measured["schedule_lag_ms"]),
        "output_tokens_per_request": metrics.distribution(ok["output_tokens"].astype("float64")),
        "requests": _counts(measured),
        "throughput": {
            "window_s": window,
            "requests_per_s": _per_s(len(ok), window),
            "output_tokens_per_s": _per_s(out_tokens, window),
            "total_tokens_per_s": _per_s(out_tokens + prompt_tokens, window),
        },
        "rate": {"offered": offered_rate, "achieved": metrics.send_rate(measured["sent_s"])},
        "concurrency": {"peak": metrics.peak_concurrency(measured)},
    }
    del itl  # up to 1 GB: freed before the SLO part
    if slo:
        summary["slo"] = _slo(measured, slo, window)
    return summary


def _slo(measured: pd.DataFrame, slo: dict[str, Any], window: float | None) -> dict[str, Any]:
    """Goodput (DistServe / vLLM): requests meeting every limit, per second of the window.

    A failed request meets no SLO: it counts in the denominator of every share.
    """
    limits = {m: float(slo[m]) for m in SLO_METRICS if slo.get(m) is not None}
    meets = metrics.meets_slo(measured, limits)
    good = measured[meets]
    percentile = float(slo.get("percentile", 99.0))
    ok = measured[measured["status"] == "ok"]
    at_percentile = {m: _quantile(ok[m], percentile) for m in limits}
    return {
        "limits": limits,
        "percentile": percentile,
        "share_meeting_all": float(meets.mean()) if len(meets) else None,
        "share_meeting": {m: float(metrics.meets_slo(measured, {m: v}).mean()) if len(measured) else None
                          for m, v in limits.items()},
        "value_at_percentile": at_percentile,
        "met": all(v is not None and v <= limits[m] for m, v in at_percentile.items()),
        "goodput_requests_per_s": _per_s(len(good), window),
        "goodput_output_tokens_per_s": _per_s(float(good["output_tokens"].fillna(0).sum()), window),
    }


def _quantile(values: pd.Series, percentile: float) -> float | None:
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    arr = arr[np.isfinite(arr)]
    return float(np.percentile(arr, percentile)) if arr.size else None


def _counts(measured: pd.DataFrame) -> dict[str, Any]:
    errors = measured.loc[measured["status"] != "ok", "error_kind"].fillna("unknown")
    return {
        "total": int(len(measured)),
        "ok": int((measured["status"] == "ok").sum()),
        "errors": {str(k): int(v) for k, v in errors.value_counts().sort_index().items()},
    }


def _window(measured: pd.DataFrame) -> float | None:
    """From the first measured send to the last measured end."""
    if measured.empty:
        return None
    span = float(measured["end_s"].max() - measured["sent_s"].min())
    return span if span > 0 else None


def _per_s(amount: float, window: float | None) -> float | None:
    if window is None:
        return None
    return float(amount / window)


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Latency distributions as a tidy frame: one row per metric, one column per statistic
    (used by notebooks/analysis.ipynb)."""
    rows = {name: summary[name] for name in LATENCY_METRICS if name in summary}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame.replace({None: np.nan})
