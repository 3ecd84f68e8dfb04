"""precision.tail_blocks and its flag: a percentile whose tail lies in fewer than
MIN_TAIL_BLOCKS blocks of run time is imprecise, however narrow its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis import precision
from bench.analysis.summary import summarize_gaps
from bench.metrics import scan
from bench.metrics.catalogue import E2E, TTFT


def test_tail_blocks_counts_distinct_blocks_at_or_above_the_value_ignoring_nan():
    values = np.array([1.0, 5.0, 5.0, np.nan, 7.0, 4.999, 9.0])
    blocks = np.array([0, 1, 1, 2, 3, 4, 3], dtype=np.int32)
    assert precision.tail_blocks(values, blocks, 5.0) == 2  # blocks 1 and 3; 4.999 (block 4) is below
    assert precision.tail_blocks(values, blocks, 4.999) == 3
    assert precision.tail_blocks(values, blocks, 0.0) == 4  # the NaN's block 2 never counts
    assert precision.tail_blocks(values, blocks, 9.5) == 0


def _requests(ttft: np.ndarray) -> pd.DataFrame:
    n = ttft.size
    sent = np.arange(n) * 0.01  # 25 requests a 0.25 s block
    return pd.DataFrame({
        "request_id": np.arange(n), "stage": 0, "phase": "measure", "variant": None, "status": "ok",
        "error_kind": None, "sent_s": sent, "end_s": sent + 0.5, "schedule_lag_ms": 0.0,
        TTFT.key: ttft, E2E.key: np.full(n, 500.0), "tpot_ms": np.nan, "output_tokens": 10.0,
        "prompt_tokens": 5.0, "output_tokens_per_s": np.nan})


@pytest.mark.parametrize("bursts", [precision.MIN_TAIL_BLOCKS - 1, precision.MIN_TAIL_BLOCKS])
def test_a_p99_set_by_a_few_bursts_is_flagged_though_its_interval_is_exact(bursts):
    """2,000 requests over 20 s (80 blocks); TTFT 40-60 ms except `bursts` whole blocks at
    100 ms (225 or 250 values): the p99 is 100 in every resample (a zero-width interval),
    and its tail is exactly the burst blocks."""
    n = 2000
    ttft = np.random.default_rng(5).uniform(40.0, 60.0, n)
    burst_blocks = np.arange(bursts) * 8 + 3
    ttft[np.isin(np.arange(n) // 25, burst_blocks)] = 100.0
    gaps = scan.ItlGaps(np.full(n, 5.0), np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64))
    summary = summarize_gaps(_requests(ttft), gaps, None)
    prec = summary.precision
    assert prec is not None and summary.metric(TTFT).p99 == 100.0
    assert prec.interval(TTFT, "p99") == (100.0, 100.0)
    assert prec.tail_blocks[TTFT.summary_key]["p99"] == bursts
    assert prec.tail_blocks[TTFT.summary_key]["p50"] > 40
    assert prec.flagged(TTFT, "p99") is (bursts < precision.MIN_TAIL_BLOCKS)
    assert not prec.flagged(TTFT, "p50")
    assert prec.tail_blocks[E2E.summary_key]["p99"] == 80 and not prec.flagged(E2E, "p99")
    assert type(summary).from_json(summary.to_json()) == summary
