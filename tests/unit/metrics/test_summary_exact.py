"""The run summary's every number on a hand-built run with stages, variants, a warmup
request, failures with and without a kind, a missing prompt count and SLO limits; and the
summary of a run with nothing measured.

Written against mutants of bench/analysis/summary.py that survived test_metrics.py
(benchmarks/mutation.py); the survivors that cannot change any result are listed with their
reason in docs/mutation.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from unit.metrics.frames import chunk_frame, raw_frame

from bench.analysis import summary as aggregate
from bench.metrics import derive
from bench.metrics.catalogue import ITL, LATENCY_TABLE, SUMMARISED, TTFT


def run(variants: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Variants only where a test needs them: they cost a paired bootstrap per summary."""
    raw = raw_frame([
        dict(request_id=0, phase="warmup", variant="a", sent_s=0.0, end_s=0.5, usage_completion_tokens=2),
        dict(request_id=1, variant="a", sent_s=1.0, end_s=2.0, usage_completion_tokens=3, usage_prompt_tokens=10),
        dict(request_id=2, variant="b", sent_s=1.5, end_s=2.5, usage_completion_tokens=2),
        dict(request_id=3, stage=1, variant="a", sent_s=3.0, end_s=4.0, usage_prompt_tokens=5),
        dict(request_id=4, stage=1, variant="b", sent_s=3.5, end_s=5.0, status="error"),
        dict(request_id=5, stage=1, variant="b", sent_s=4.0, end_s=4.5, status="error", error_kind="http_500"),
    ], schedule_at_send=True)
    chunks = chunk_frame([
        (0, 0.1, "content", None, 0), (0, 0.3, "content", None, 0),
        (1, 1.1, "content", None, 0), (1, 1.3, "content", None, 0), (1, 1.6, "content", None, 0),
        (2, 1.7, "content", None, 0), (2, 2.1, "content", None, 0),
        (3, 3.3, "content", 2, 0), (3, 3.4, "content", 2, 0),
    ])
    requests = derive.per_request(raw, chunks)
    return (requests if variants else requests.assign(variant="")), chunks


def test_the_whole_run():
    requests, chunks = run()
    s = aggregate.summarize(requests, chunks, 2.0, {"ttft_ms": 300})
    assert s.requests.to_json() == {"total": 5, "ok": 3, "errors": {"http_500": 1, "unknown": 1}}
    assert set(s.distributions) == {m.summary_key for m in SUMMARISED}
    assert s.metric(TTFT).count == 3 and s.metric(TTFT).p50 == pytest.approx(200.0)
    itl = s.metric(ITL)
    assert itl.count == 4 and itl.max == pytest.approx(400.0) and itl.mean == pytest.approx(250.0)
    t = s.throughput
    assert t.window_s == pytest.approx(4.0) and t.requests_per_s == pytest.approx(0.75)
    assert t.output_tokens_per_s == pytest.approx(9 / 4) and t.total_tokens_per_s == pytest.approx((9 + 15) / 4)
    assert s.rate.offered == 2.0 and s.rate.achieved == pytest.approx(4 / 3)
    assert s.concurrency.peak == 2


def test_the_slo_section():
    requests, chunks = run()
    slo = aggregate.summarize(requests, chunks, 2.0, {"ttft_ms": 300}).slo
    assert slo is not None
    assert slo.limits == {"ttft_ms": 300.0} and slo.percentile == 99.0  # the default percentile
    assert slo.value_at_percentile == {"ttft_ms": pytest.approx(298.0)}
    assert slo.share_meeting_all == pytest.approx(3 / 5) and slo.share_meeting == {"ttft_ms": pytest.approx(3 / 5)}
    assert slo.met is True
    assert slo.goodput_requests_per_s == pytest.approx(3 / 4) and slo.goodput_output_tokens_per_s == pytest.approx(9 / 4)
    worst = float(requests["ttft_ms"].max())  # 300 ms, give or take the float sums
    at_limit = aggregate.summarize(requests, chunks, 2.0, {"ttft_ms": worst, "percentile": 100}).slo
    assert at_limit is not None and at_limit.value_at_percentile == {"ttft_ms": worst} and at_limit.met is True
    assert aggregate.summarize(requests, chunks, 2.0, None).slo is None


def test_each_stage_and_variant():
    requests, chunks = run(variants=True)
    s = aggregate.summarize(requests, chunks, 2.0, {"ttft_ms": 300})
    assert sorted(s.stages) == ["0", "1"] and sorted(s.variants) == ["a", "b"]
    first, second = s.stages["0"], s.stages["1"]
    assert first.requests.to_json() == {"total": 2, "ok": 2, "errors": {}}
    assert second.requests.to_json() == {"total": 3, "ok": 1, "errors": {"http_500": 1, "unknown": 1}}
    assert first.metric(ITL).count == 3 and first.metric(ITL).max == pytest.approx(400.0)
    assert second.metric(ITL).count == 1 and second.metric(ITL).max == pytest.approx(100.0)
    assert first.throughput.window_s == pytest.approx(1.5) and second.throughput.window_s == pytest.approx(2.0)
    assert first.rate.offered is None and first.slo is not None and first.slo.share_meeting_all == 1.0
    a, b = s.variants["a"], s.variants["b"]
    assert a.metric(ITL).count == 3 and a.metric(TTFT).count == 2 and a.metric(TTFT).max == pytest.approx(300.0)
    assert b.metric(ITL).count == 1 and b.requests.to_json() == {"total": 3, "ok": 1,
                                                                  "errors": {"http_500": 1, "unknown": 1}}
    assert b.slo is not None and b.slo.share_meeting_all == pytest.approx(1 / 3)
    assert s.paired is not None and s.paired.baseline == "a"


def test_one_stage_no_variants_has_no_breakdown():
    requests, chunks = run()
    s = aggregate.summarize(requests.assign(stage=0), chunks, None)
    assert s.stages == {} and s.variants == {} and s.paired is None and s.rate.offered is None


def test_a_variant_holding_every_counted_request_leaves_the_gaps_for_the_run():
    requests, chunks = run(variants=True)
    one = requests.assign(variant=np.where(requests["status"] == "ok", "a", "b"))
    s = aggregate.summarize(one, chunks, None)
    assert s.variants["a"].metric(ITL).count == 4 and s.metric(ITL).count == 4


def test_nothing_measured_and_a_zero_window():
    requests, chunks = run()
    warm = requests.assign(phase="warmup")
    s = aggregate.summarize(warm, chunks, 1.0, {"ttft_ms": 100})
    assert s.requests.to_json() == {"total": 0, "ok": 0, "errors": {}}
    assert s.throughput.window_s is None and s.throughput.requests_per_s is None
    assert s.slo is not None and s.slo.share_meeting_all is None and s.slo.share_meeting == {"ttft_ms": None}
    assert s.slo.value_at_percentile == {"ttft_ms": None} and s.slo.met is False
    instant = requests[requests["request_id"] == 1].assign(end_s=1.0, sent_s=1.0)
    assert aggregate.summarize(instant, chunks, None).throughput.window_s is None
    short = requests[requests["request_id"] == 2].assign(end_s=2.0)
    assert aggregate.summarize(short, chunks, None).throughput.window_s == pytest.approx(0.5)


def test_summary_table_has_one_row_per_latency_metric():
    requests, chunks = run()
    s = aggregate.summarize(requests, chunks, None)
    table = aggregate.summary_table(s)
    keys = [m.summary_key for m in LATENCY_TABLE if m.summary_key in s.distributions]
    assert list(table.index) == keys and len(keys) >= 4
    assert table.loc[TTFT.summary_key, "p50"] == pytest.approx(200.0)
    assert table.loc[ITL.summary_key, "count"] == 4
