"""Every per-request column `derive.per_request` adds, exactly, with its dtype; n > 1, a
request without chunks, a frame without `submitted_s`, llama.cpp's server timings; the
run-level helpers' edges.

Written against mutants of bench/metrics/derive.py that survived test_metrics.py
(benchmarks/mutation.py); the survivors that cannot change any result are listed with their
reason in docs/mutation.md.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from unit.metrics.frames import chunk_frame, raw_frame

from bench.metrics import derive

TIMINGS = {"prompt_ms": 12.5, "predicted_ms": 40.0, "prompt_n": 11, "predicted_n": 6, "other": 1}


def three_requests() -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = raw_frame([
        # n = 2, usage 6 (3 per choice), server timings
        dict(request_id=0, scheduled_s=1.0, submitted_s=1.001, sent_s=1.004, end_s=1.9, n=2,
             usage_completion_tokens=6, usage_prompt_tokens=11, server_timings=json.dumps(TIMINGS)),
        # no usage: 3 chunks of unknown size count 1 each
        dict(request_id=1, scheduled_s=2.0, submitted_s=2.0, sent_s=2.010, end_s=2.5),
        # failed before any chunk
        dict(request_id=2, scheduled_s=3.0, submitted_s=3.0, sent_s=3.0, end_s=3.25, status="error",
             error_kind="timeout"),
    ], index=[10, 11, 12])
    raw["server_timings"] = raw["server_timings"].astype("string")
    chunks = chunk_frame([
        (0, 1.104, "content", None, 0), (0, 1.204, "content", None, 1), (0, 1.504, "content", None, 0),
        (0, 1.804, "content", None, 1),
        (1, 2.110, "content", None, 0), (1, 2.210, "content", None, 0), (1, 2.410, "content", None, 0),
    ])
    return raw, chunks


def test_every_derived_column_exactly():
    raw, chunks = three_requests()
    out = derive.per_request(raw, chunks)
    assert list(out.index) == [10, 11, 12]
    np.testing.assert_allclose(out["ttft_ms"], [100.0, 100.0, np.nan], rtol=1e-9)
    np.testing.assert_allclose(out["e2e_ms"], [800.0, 400.0, np.nan], rtol=1e-9)
    # per choice: 3 tokens over 2 decode steps; request 1: 3 tokens, 2 steps
    np.testing.assert_allclose(out["tpot_ms"], [350.0, 150.0, np.nan], rtol=1e-9)
    assert out["output_tokens"].tolist() == [6, 3, 0] and out["output_tokens"].dtype == "Int64"
    assert out["token_source"].tolist() == ["usage", "chunks", "chunks"]
    assert out["prompt_tokens"].tolist()[0] == 11 and out["prompt_tokens"].isna().tolist() == [False, True, True]
    assert out["prompt_tokens"].dtype == "Int64"
    np.testing.assert_allclose(out["schedule_lag_ms"], [4.0, 10.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(out["client_overhead_ms"], [3.0, 10.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(out["output_tokens_per_s"], [6 / 0.8, 3 / 0.4, np.nan], rtol=1e-9)
    np.testing.assert_allclose(out["duration_ms"], [896.0, 490.0, 250.0], rtol=1e-9)
    for column in ("ttft_ms", "e2e_ms", "tpot_ms", "output_tokens_per_s", "duration_ms", "client_overhead_ms"):
        assert out[column].dtype == np.float64, column


def test_server_timing_columns_of_the_rows_that_have_them():
    raw, chunks = three_requests()
    out = derive.per_request(raw, chunks)
    assert out["server_prompt_ms"].tolist()[0] == 12.5 and out["server_predicted_ms"].tolist()[0] == 40.0
    assert out["server_prompt_n"].tolist()[0] == 11 and out["server_predicted_n"].tolist()[0] == 6
    for column in ("server_prompt_ms", "server_predicted_ms", "server_prompt_n", "server_predicted_n"):
        assert out[column].dtype == np.float64 and out[column].isna().tolist() == [False, True, True]
    plain = derive.server_timing_columns(raw.drop(columns=["server_timings"]))
    assert list(plain.index) == [10, 11, 12] and plain.isna().all().all() and len(plain.columns) == 4


def test_a_frame_without_submitted_times_has_no_client_overhead():
    raw, chunks = three_requests()
    out = derive.per_request(raw.drop(columns=["submitted_s"]), chunks)
    assert out["client_overhead_ms"].isna().all()
    np.testing.assert_allclose(out["schedule_lag_ms"], [4.0, 10.0, 0.0], atol=1e-9)


def test_n_recorded_as_zero_counts_one_choice():
    raw, chunks = three_requests()
    raw["n"] = 0
    out = derive.per_request(raw, chunks)
    np.testing.assert_allclose(out["tpot_ms"], [700.0 / 5, 150.0, np.nan], rtol=1e-9)


def test_run_level_helpers_at_their_edges():
    empty = raw_frame([dict(request_id=0, sent_s=0.0, end_s=1.0)]).iloc[:0]
    assert derive.peak_concurrency(empty) == 0
    assert derive.send_rate(pd.Series([0.0, 0.5])) == pytest.approx(2.0)
    assert derive.send_rate(pd.Series([3, 1, 2])) == pytest.approx(1.0)
    assert derive.send_rate(pd.Series([1.0, 1.0, 1.0])) is None
    assert derive.send_rate(pd.Series([1.0])) is None


def test_a_server_timings_row_without_some_keys_gives_nan_there():
    raw, _ = three_requests()
    raw["server_timings"] = pd.array([json.dumps(TIMINGS), json.dumps({"prompt_ms": 3.0}), None], dtype="string")
    out = derive.server_timing_columns(raw)
    assert out["server_prompt_ms"].tolist()[:2] == [12.5, 3.0]
    assert out["server_predicted_n"].isna().tolist() == [False, True, True]


def test_in_flight_over_time_steps_with_ends_before_starts():
    requests = raw_frame([dict(request_id=0, sent_s=0.0, end_s=2.0), dict(request_id=1, sent_s=1.0, end_s=3.0),
                          dict(request_id=2, sent_s=2.0, end_s=2.5), dict(request_id=3, sent_s=None, end_s=None)])
    got = derive.in_flight_over_time(requests)
    assert list(got.columns) == ["t_s", "in_flight"] and got["in_flight"].dtype == np.int64
    assert got["t_s"].tolist() == [0.0, 1.0, 2.0, 2.0, 2.5, 3.0]
    assert got["in_flight"].tolist() == [1, 2, 1, 2, 1, 0]  # at 2.0 the end is counted before the start
    assert derive.peak_concurrency(requests.iloc[:3]) == 2


def test_meets_slo_at_the_limit_and_without_a_tpot():
    requests = pd.DataFrame({"status": ["ok", "ok", "ok", "error"], "ttft_ms": [100.0, 250.0, 50.0, 10.0],
                             "tpot_ms": [20.0, np.nan, 30.0, 5.0]})
    assert derive.meets_slo(requests, {"ttft_ms": 100.0}).tolist() == [True, False, True, False]
    # a one-token answer has no TPOT: it meets a TPOT limit; exactly the limit meets it
    assert derive.meets_slo(requests, {"tpot_ms": 30.0}).tolist() == [True, True, True, False]
    assert derive.meets_slo(requests, {"ttft_ms": 100.0, "tpot_ms": 25.0}).tolist() == [True, False, False, False]


def test_send_rate_with_a_repeated_first_send():
    assert derive.send_rate(pd.Series([1.0, 1.0, 2.0])) == pytest.approx(2.0)
