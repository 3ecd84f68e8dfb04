"""Token truth from hand-built records and counts: each request's output tokens come from the
first count it has (usage, the server's /tokenize, a local tokenizer, chunks), its difference
from the next independent count is exact, and the summary, the console, the report table and
the validity check read them from the catalogue."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.analysis.summary import summarize
from bench.analysis.token_truth import check_token_counts
from bench.metrics import derive
from bench.metrics.catalogue import OUTPUT_TOKENS, TOKEN_COUNT_DIFF, TOKEN_COUNT_REL_DIFF, TPOT
from bench.records import CHUNK_KINDS
from bench.report.console import summary_lines
from bench.report.tables import token_truth_table
from bench.store import REQUEST_DTYPES

# request: (usage completion tokens, server /tokenize count, tokenizer count, content chunks)
CASES = {
    0: (10, 12, 11, 10),  # usage first, checked against the server: -2
    1: (None, 7, 9, 7),  # no usage: the server's count, checked against the tokenizer: -2
    2: (None, None, 5, 3),  # the tokenizer alone: nothing independent to check it with (chunks count events)
    3: (4, None, None, 4),  # usage alone
    4: (None, None, None, 3),  # chunks alone
    5: (8, "failed", 8, 8),  # the server failed to count it: checked against the tokenizer, 0
}


def _raw() -> pd.DataFrame:
    base = {k: None for k in REQUEST_DTYPES}
    base.update(stage=0, phase="measure", variant="", block=0, conversation=-1, turn=0, prompt_index=0,
                submitted_s=0.0, n=1, done_seen=True, reconnected=False, output_chars=0, status="ok")
    rows = [{**base, "request_id": i, "scheduled_s": i * 0.1, "sent_s": i * 0.1, "end_s": i * 0.1 + 1.0,
             "usage_completion_tokens": usage} for i, (usage, *_) in CASES.items()]
    return pd.DataFrame(rows).astype(REQUEST_DTYPES)


def _chunks() -> pd.DataFrame:
    """Request i's chunks one per 20 ms from 0.1 s after its send."""
    rows = [(i, i * 0.1 + 0.1 + 0.02 * k, "content", None, 0) for i, case in CASES.items() for k in range(case[3])]
    frame = pd.DataFrame(rows, columns=["request_id", "t_s", "kind", "tokens", "choice"])
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(CHUNK_KINDS)))
    frame["tokens"] = frame["tokens"].astype("Int32")
    return frame


def _counts() -> pd.DataFrame:
    rows = []
    for i, (_, server, tokenizer, _) in CASES.items():
        if server is not None:
            rows.append((i, "server_tokenize", None if server == "failed" else server))
        if tokenizer is not None:
            rows.append((i, "tokenizer", tokenizer))
    return pd.DataFrame(rows, columns=["request_id", "source", "count"]).astype(
        {"request_id": "int64", "source": "string", "count": "Int64"})


def test_each_request_takes_the_first_count_and_is_checked_against_the_next():
    requests = derive.per_request(_raw(), _chunks(), _counts())
    assert requests[OUTPUT_TOKENS.key].tolist() == [10, 7, 5, 4, 3, 8]
    assert requests["token_source"].tolist() == ["usage", "server_tokenize", "tokenizer", "usage", "chunks", "usage"]
    assert requests["token_check_source"].tolist() == ["server_tokenize", "tokenizer", pd.NA, pd.NA, pd.NA,
                                                        "tokenizer"]
    diff = requests[TOKEN_COUNT_DIFF.key].tolist()
    assert diff[:2] == [-2.0, -2.0] and diff[5] == 0.0 and all(math.isnan(d) for d in diff[2:5])
    rel = requests[TOKEN_COUNT_REL_DIFF.key].to_numpy()
    assert rel[0] == pytest.approx(2 / 12) and rel[1] == pytest.approx(2 / 9) and rel[5] == 0.0
    assert np.isnan(rel[2:5]).all()
    assert requests["output_tokens_server_tokenize"].tolist() == [12, 7, pd.NA, pd.NA, pd.NA, pd.NA]
    assert requests["output_tokens_tokenizer"].tolist() == [11, 9, 5, pd.NA, pd.NA, 8]
    assert requests["output_tokens_chunks"].tolist() == [10, 7, 3, 4, 3, 8]
    # TPOT divides by the count the request uses: request 1 (7 tokens, last at 0.1 + 0.12 s after the first)
    assert requests[TPOT.key][1] == pytest.approx(120 / 6)
    assert requests[TPOT.key][2] == pytest.approx(40 / 4)  # 3 chunks over 40 ms, but 5 tokens by the tokenizer


def test_without_counts_the_usage_or_the_chunks_and_no_difference():
    requests = derive.per_request(_raw(), _chunks())
    assert requests["token_source"].tolist() == ["usage", "chunks", "chunks", "usage", "chunks", "usage"]
    assert requests[OUTPUT_TOKENS.key].tolist() == [10, 7, 3, 4, 3, 8]
    assert requests[TOKEN_COUNT_DIFF.key].isna().all() and requests["token_check_source"].isna().all()
    summary = summarize(requests, _chunks(), None)
    assert summary.throughput.token_disagreement_share is None
    assert "token_disagreement_share" not in summary.throughput.to_json()
    assert token_truth_table(summary) is None
    assert not any(line.startswith("token counts") for line in summary_lines(summary))


def test_the_summary_counts_the_share_that_disagree_and_the_differences():
    requests = derive.per_request(_raw(), _chunks(), _counts())
    summary = summarize(requests, _chunks(), None)
    assert summary.throughput.token_disagreement_share == pytest.approx(2 / 3)  # requests 0, 1 of 0, 1, 5
    diff = summary.metric(TOKEN_COUNT_DIFF)
    assert diff.count == 3 and diff.p50 == -2.0 and diff.max == 0.0 and diff.mean == pytest.approx(-4 / 3)
    assert summary.metric(TOKEN_COUNT_REL_DIFF).max == pytest.approx(2 / 9)
    assert "token counts: 66.7% of 3 requests with two counts disagree; token count difference p50 -2.00, " \
           "p99 -0.04 tokens" in summary_lines(summary)
    table = token_truth_table(summary)
    assert table is not None and "token-count disagreement share 0.67" in table.title
    assert [row[0] for row in table.rows] == [TOKEN_COUNT_DIFF.heading, TOKEN_COUNT_REL_DIFF.heading]
    assert table.rows[0][1] == "3"  # count


def _with_differences(diffs: list[float], check: float = 20.0) -> pd.DataFrame:
    n = len(diffs)
    return pd.DataFrame({"status": ["ok"] * n, "phase": ["measure"] * n, "token_source": ["usage"] * n,
                         "token_check_source": ["server_tokenize"] * n, TOKEN_COUNT_DIFF.key: diffs,
                         TOKEN_COUNT_REL_DIFF.key: [abs(d) / check for d in diffs]})


def test_a_median_past_one_token_and_five_percent_is_a_warning():
    warnings = check_token_counts(_with_differences([-2.0, -2.0, -3.0, 0.0, -2.0]))  # median 2 of 20: 10 %
    assert [w.code for w in warnings] == ["token_counts"]
    assert "usage count is 2 tokens (10.0%) off its server_tokenize count" in warnings[0].message
    assert "median difference -2" in warnings[0].message and "5 requests with both" in warnings[0].message
    assert check_token_counts(_with_differences([1.0] * 5, check=4.0)) == []  # the EOS token: 1 token
    assert check_token_counts(_with_differences([-2.0] * 5, check=100.0)) == []  # 2 %: under 5 %
    assert check_token_counts(_with_differences([float("nan")] * 5)) == []
