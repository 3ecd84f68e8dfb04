"""The per-request columns added with token truth, reasoning phases and cached tokens, exactly:
a non-streamed answer (embeddings) next to streamed ones, a frame from a store written before
those columns existed, a frame whose index is not 0..n-1, a check count of 0 or 1, reasoning
with n = 2 and n recorded as 0, and the reasoning columns when no phases were computed.

Written against mutants of bench/metrics/derive.py that survived test_derive_exact.py and
test_token_truth_exact.py (benchmarks/mutation.py); the survivors that cannot change any
result are listed with their reason in docs/mutation.md.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from unit.metrics.frames import chunk_frame, raw_frame

from bench.metrics import derive, scan
from bench.metrics.catalogue import (
    ANSWER_TPOT,
    CACHED_TOKENS,
    E2E,
    E2E_SCHEDULED,
    OUTPUT_TOKENS,
    REASONING_TIME,
    REASONING_TOKENS,
    TOKEN_COUNT_DIFF,
    TOKEN_COUNT_REL_DIFF,
    TTFT,
    TTFT_ANSWER,
    TTFT_REASONING,
)

# Requests scheduled and submitted when they were sent, unless a row says otherwise.
_raw = functools.partial(raw_frame, schedule_at_send=True)

# Columns a store written before token truth, reasoning phases, cached tokens and
# non-streamed answers did not have.
NEWER_COLUMNS = ["body_s", "usage_cached_tokens", "usage_reasoning_tokens", "output_texts"]
PHASE_METRICS = (TTFT_REASONING, TTFT_ANSWER, REASONING_TIME, REASONING_TOKENS, ANSWER_TPOT)


def _counts(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["request_id", "source", "count"]).astype(
        {"request_id": "int64", "source": "string", "count": "Int64"})


def _mixed() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Index 7, 3, 9: an embeddings answer (body at +250 ms), then two streamed answers whose
    server /tokenize counts are 1 and 0 (their usage says 3 and 2)."""
    raw = _raw([
        dict(request_id=0, scheduled_s=0.9, sent_s=1.0, body_s=1.25, end_s=1.3, usage_prompt_tokens=5),
        dict(request_id=1, sent_s=2.0, end_s=2.5, usage_completion_tokens=3),
        dict(request_id=2, sent_s=3.0, end_s=3.5, usage_completion_tokens=2),
    ], index=[7, 3, 9])
    chunks = chunk_frame([(1, 2.1, "content", None, 0), (1, 2.2, "content", None, 0), (1, 2.4, "content", None, 0),
                      (2, 3.1, "content", None, 0), (2, 3.3, "content", None, 0)])
    counts = _counts([(1, "server_tokenize", 1), (2, "server_tokenize", 0)])
    return raw, chunks, counts


def test_a_non_streamed_answer_has_no_tokens_and_ends_with_its_body():
    raw, chunks, counts = _mixed()
    out = derive.per_request(raw, chunks, counts)
    assert list(out.index) == [7, 3, 9]
    assert out["token_source"].tolist() == ["none", "usage", "usage"]
    assert out[OUTPUT_TOKENS.key].tolist() == [pd.NA, 3, 2]
    np.testing.assert_allclose(out[E2E.key], [250.0, 400.0, 300.0], rtol=1e-9)
    np.testing.assert_allclose(out[E2E_SCHEDULED.key], [350.0, 400.0, 300.0], rtol=1e-9)
    assert out[TTFT.key].isna().tolist() == [True, False, False]


def test_the_source_columns_keep_a_frames_own_index():
    raw, chunks, counts = _mixed()
    out = derive.per_request(raw, chunks, counts)
    assert out["output_tokens_server_tokenize"].tolist() == [pd.NA, 1, 0]
    assert out["output_tokens_tokenizer"].isna().all()
    assert out["output_tokens_chunks"].tolist() == [0, 3, 2] and out["output_tokens_chunks"].dtype == np.int64
    assert out["token_check_source"].tolist() == [pd.NA, "server_tokenize", "server_tokenize"]
    assert out[TOKEN_COUNT_DIFF.key].tolist()[1:] == [2.0, 2.0]


def test_a_check_count_under_one_token_divides_by_one():
    raw, chunks, counts = _mixed()
    rel = derive.per_request(raw, chunks, counts)[TOKEN_COUNT_REL_DIFF.key].to_numpy()
    assert np.isnan(rel[0]) and rel[1:].tolist() == [2.0, 2.0]  # |3 - 1| / 1 and |2 - 0| / max(0, 1)


def _reasoning_stream(request_id: int, t0: float) -> list[tuple]:
    """Two reasoning chunks (at +10, +30 ms), then three answer chunks (at +50, +80, +110 ms)."""
    return [(request_id, t0 + 0.01, "reasoning", None, 0), (request_id, t0 + 0.03, "reasoning", None, 0),
            (request_id, t0 + 0.05, "content", None, 0), (request_id, t0 + 0.08, "content", None, 0),
            (request_id, t0 + 0.11, "content", None, 0)]


def test_a_frame_stored_before_the_newer_columns():
    raw = _raw([dict(request_id=0, sent_s=1.0, end_s=1.2, usage_completion_tokens=5),
                dict(request_id=1, sent_s=2.0, end_s=2.3, usage_completion_tokens=2)], index=[5, 6])
    chunks = chunk_frame([*_reasoning_stream(0, 1.0), (1, 2.1, "content", None, 0), (1, 2.2, "content", None, 0)])
    old = raw.drop(columns=NEWER_COLUMNS)
    out = derive.per_request(old, chunks)
    assert list(out.index) == [5, 6]
    assert set(out.columns) == set(derive.per_request(raw, chunks).columns) - set(NEWER_COLUMNS)
    np.testing.assert_allclose(out[E2E.key], [110.0, 200.0], rtol=1e-9)
    assert out[E2E.key].dtype == np.float64 and out["token_source"].tolist() == ["usage", "usage"]
    assert out[CACHED_TOKENS.key].dtype == np.float64 and out[CACHED_TOKENS.key].isna().all()
    # no usage detail: reasoning tokens from the 2 reasoning chunks, the answer's from its 3
    assert out[REASONING_TOKENS.key].tolist() == [2.0, 0.0]
    np.testing.assert_allclose(out[TTFT_REASONING.key], [10.0, np.nan], rtol=1e-9)
    np.testing.assert_allclose(out[ANSWER_TPOT.key], [30.0, 100.0], rtol=1e-9)


def test_the_kept_answer_texts_are_left_out():
    raw = _raw([dict(request_id=0, sent_s=1.0, end_s=1.2, usage_completion_tokens=1)], index=[4])
    raw["output_texts"] = pd.Series([["a b"]], index=[4], dtype=object)
    out = derive.per_request(raw, chunk_frame([(0, 1.1, "content", None, 0)]))
    assert "output_texts" not in out.columns and "output_texts" in raw.columns
    assert out[OUTPUT_TOKENS.key].tolist() == [1]


def test_without_phase_statistics_the_reasoning_columns_are_nan():
    raw = _raw([dict(request_id=0, sent_s=1.0, end_s=1.2, usage_completion_tokens=5)], index=[2])
    chunks = chunk_frame(_reasoning_stream(0, 1.0))
    out = derive.per_request_from_stats(raw, scan.scan_frame(chunks, []).stats)
    for metric in PHASE_METRICS:
        assert out[metric.key].dtype == np.float64 and out[metric.key].isna().all(), metric.key
    assert derive.per_request(raw, chunks)[TTFT_REASONING.key].tolist() == [pytest.approx(10.0)]


def test_answer_tpot_divides_by_the_choices():
    # usage: 10 tokens, 4 of them reasoning: 6 answer tokens; over n = 2 choices 3 each, 2 steps
    # of the 60 ms answer; with n recorded as 0 one choice: 6 tokens, 5 steps
    raw = _raw([dict(request_id=0, sent_s=1.0, end_s=1.2, n=2, usage_completion_tokens=10, usage_reasoning_tokens=4),
                dict(request_id=1, sent_s=2.0, end_s=2.2, n=0, usage_completion_tokens=10, usage_reasoning_tokens=4)],
               index=[0, 1])
    out = derive.per_request(raw, chunk_frame([*_reasoning_stream(0, 1.0), *_reasoning_stream(1, 2.0)]))
    np.testing.assert_allclose(out[ANSWER_TPOT.key], [30.0, 12.0], rtol=1e-9)
    assert out[REASONING_TOKENS.key].tolist() == [4.0, 4.0]
