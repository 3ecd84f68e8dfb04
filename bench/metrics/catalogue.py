"""The metric catalogue, and the one filter of the requests that metrics count.

Every metric is declared once, in `bench.metric_catalogue` (pure data, at the bottom of the
layers so the scenario's SLO section can name its keys); this module re-exports it for the
analysis and the reports, and adds the pandas side: which requests count (measured and
ok, `counted`), and each metric's samples from a run's per-request frame. Tables, plots,
SLOs and comparisons name metrics only through these entries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metric_catalogue import (
    ANSWER_TPOT,
    CACHED_TOKENS,
    COMPARED,
    COMPARED_RUN,
    E2E,
    E2E_SCHEDULED,
    FROM_SCHEDULE,
    INPUT_TOKENS_PER_S,
    INPUTS_PER_S,
    ITL,
    LATENCY_TABLE,
    METRICS,
    OUTPUT_TOKENS,
    OUTPUT_TOKENS_PER_S,
    PAIRED,
    PLOTTED,
    PREFIX_CACHE_HIT_SHARE,
    REASONING,
    REASONING_TIME,
    REASONING_TOKENS,
    REQUEST_OUTPUT_TOKENS_PER_S,
    REQUESTS_PER_S,
    SCHEDULE_LAG,
    SLO,
    SLO_KEYS,
    SUMMARISED,
    THROUGHPUT,
    TOKEN_COUNT_DIFF,
    TOKEN_COUNT_REL_DIFF,
    TOKEN_DISAGREEMENT_SHARE,
    TOKEN_TRUTH,
    TOTAL_TOKENS_PER_S,
    TPOT,
    TTFT,
    TTFT_ANSWER,
    TTFT_REASONING,
    TTFT_SCHEDULED,
    Better,
    Metric,
    Scope,
    by_key,
    compared_metrics,
)

__all__ = [
    "ANSWER_TPOT",
    "CACHED_TOKENS",
    "COMPARED",
    "COMPARED_RUN",
    "E2E",
    "E2E_SCHEDULED",
    "FROM_SCHEDULE",
    "INPUTS_PER_S",
    "INPUT_TOKENS_PER_S",
    "ITL",
    "LATENCY_TABLE",
    "METRICS",
    "OUTPUT_TOKENS",
    "OUTPUT_TOKENS_PER_S",
    "PAIRED",
    "PHASE_MEASURE",
    "PLOTTED",
    "PREFIX_CACHE_HIT_SHARE",
    "REASONING",
    "REASONING_TIME",
    "REASONING_TOKENS",
    "REQUESTS_PER_S",
    "REQUEST_OUTPUT_TOKENS_PER_S",
    "SCHEDULE_LAG",
    "SLO",
    "SLO_KEYS",
    "STATUS_OK",
    "SUMMARISED",
    "THROUGHPUT",
    "TOKEN_COUNT_DIFF",
    "TOKEN_COUNT_REL_DIFF",
    "TOKEN_DISAGREEMENT_SHARE",
    "TOKEN_TRUTH",
    "TOTAL_TOKENS_PER_S",
    "TPOT",
    "TTFT",
    "TTFT_ANSWER",
    "TTFT_REASONING",
    "TTFT_SCHEDULED",
    "Better",
    "Metric",
    "Scope",
    "by_key",
    "compared_metrics",
    "counted",
    "counted_ids",
    "counted_mask",
    "measured",
    "request_values",
]

PHASE_MEASURE = "measure"  # warmup requests are stored and tagged, never counted
STATUS_OK = "ok"


def measured(requests: pd.DataFrame) -> pd.DataFrame:
    """The measure phase's requests, failed ones included (a frame without `phase`: all)."""
    if "phase" not in requests:
        return requests
    return requests[requests["phase"] == PHASE_MEASURE]


def counted_mask(requests: pd.DataFrame) -> pd.Series:
    """Per request: counted by the metrics, i.e. measured (not warmup) and ok."""
    mask = requests["status"] == STATUS_OK
    if "phase" in requests:
        mask &= requests["phase"] == PHASE_MEASURE
    return mask


def counted(requests: pd.DataFrame) -> pd.DataFrame:
    """The requests every latency metric counts: measured and ok."""
    return requests[counted_mask(requests)]


def counted_ids(requests: pd.DataFrame) -> np.ndarray:
    """`request_id` of the counted requests (int64): those whose ITL gaps are kept."""
    return requests.loc[counted_mask(requests), "request_id"].to_numpy(dtype=np.int64)


def request_values(metric: Metric, requests: pd.DataFrame) -> np.ndarray:
    """A per-request metric's samples (float64, NaN where undefined) from the requests of
    its scope: the counted ones, or every measured one. ValueError for ITL (gaps come from
    `Run.itl` / the scan) and run-level metrics."""
    if metric.scope is Scope.COUNTED:
        rows = counted(requests)
    elif metric.scope is Scope.MEASURED:
        rows = measured(requests)
    else:
        raise ValueError(f"{metric.label} has no per-request values (scope {metric.scope.value})")
    if metric.key not in rows:  # a run derived before the metric existed: no values
        return np.full(len(rows), np.nan)
    return rows[metric.key].to_numpy(dtype="float64", na_value=np.nan)
