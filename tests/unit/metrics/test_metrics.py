import numpy as np
import oracle
import pandas as pd
import pytest

from bench.analysis import summary as aggregate
from bench.metrics import derive as metrics
from bench.metrics import scan
from bench.metrics.catalogue import ITL, TTFT
from bench.metrics.distribution import distribution
from bench.records import CHUNK_KINDS
from bench.store import REQUEST_DTYPES, frame_batch


def _raw(rows):
    base = {k: None for k in REQUEST_DTYPES}
    base.update(stage=0, phase="measure", variant="", block=0, conversation=-1, turn=0, prompt_index=0, submitted_s=0.0, n=1, done_seen=True, reconnected=False,
                output_chars=0, status="ok")
    frame = pd.DataFrame([{**base, **r} for r in rows])
    return frame.astype(REQUEST_DTYPES)


def _chunks(rows):
    frame = pd.DataFrame(rows, columns=["request_id", "t_s", "kind", "tokens", "choice"])
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(CHUNK_KINDS)))
    frame["tokens"] = frame["tokens"].astype("Int32")
    return frame


def test_ttft_e2e_tpot_itl_from_chunks():
    raw = _raw([
        dict(request_id=0, scheduled_s=1.0, sent_s=1.002, end_s=1.6, usage_completion_tokens=4),
        dict(request_id=1, scheduled_s=2.0, sent_s=2.0, end_s=2.5, usage_completion_tokens=None),
    ])
    chunks = _chunks([
        (0, 1.05, "role", None, 0),  # role-only: never the first token
        (0, 1.10, "content", None, 0), (0, 1.20, "content", None, 0),
        (0, 1.25, "content", None, 0), (0, 1.40, "content", None, 0),
        (0, 1.41, "usage", None, 0),  # excluded from E2E
        (1, 2.10, "content", 2, 0), (1, 2.30, "content", 3, 0),
    ])
    out = metrics.per_request(raw, chunks).set_index("request_id")
    assert out.loc[0, "ttft_ms"] == pytest.approx(98.0)
    assert out.loc[0, "e2e_ms"] == pytest.approx(398.0)
    assert out.loc[0, "tpot_ms"] == pytest.approx(300.0 / 3)
    assert out.loc[0, "schedule_lag_ms"] == pytest.approx(2.0)
    assert out.loc[0, "token_source"] == "usage"
    assert out.loc[1, "output_tokens"] == 5  # chunk token counts, not chunk count
    assert out.loc[1, "token_source"] == "chunks"
    assert out.loc[1, "tpot_ms"] == pytest.approx(200.0 / 4)
    gaps = scan.scan_frame(chunks, [0, 1], times=True).gaps.frame()
    np.testing.assert_allclose(sorted(gaps["itl_ms"]), sorted([100, 50, 150, 200]))
    pd.testing.assert_frame_equal(gaps, oracle.itl_gaps(chunks), check_dtype=False)
    pd.testing.assert_frame_equal(out, oracle.per_request(raw, chunks).set_index("request_id"))
    assert raw["request_id"].tolist() == [0, 1]  # inputs untouched
    assert "ttft_ms" not in raw


def test_single_token_request_has_no_tpot_and_failed_request_has_no_ttft():
    raw = _raw([
        dict(request_id=0, scheduled_s=0.0, sent_s=0.0, end_s=0.2, usage_completion_tokens=1),
        dict(request_id=1, scheduled_s=0.0, sent_s=0.0, end_s=0.1, status="error", error_kind="http_500"),
    ])
    chunks = _chunks([(0, 0.1, "content", None, 0)])
    out = metrics.per_request(raw, chunks).set_index("request_id")
    assert np.isnan(out.loc[0, "tpot_ms"])
    assert np.isnan(out.loc[1, "ttft_ms"])


def test_itl_does_not_join_choices_or_requests():
    chunks = _chunks([
        (0, 0.0, "content", None, 0), (0, 0.01, "content", None, 1),
        (0, 0.02, "content", None, 0), (0, 0.03, "content", None, 1),
        (1, 5.0, "content", None, 0),
    ])
    gaps = scan.scan_frame(chunks, [0, 1]).gaps.take([0, 1])
    assert sorted(gaps.round(6)) == [20.0, 20.0]
    assert sorted(oracle.itl_gaps(chunks)["itl_ms"].round(6)) == [20.0, 20.0]


def test_distribution_and_peak_concurrency():
    d = distribution(np.arange(1, 101, dtype=float))
    assert d.count == 100 and d.p50 == pytest.approx(50.5) and d.max == 100 and d.stat("p99.9") == d.p99_9
    empty = distribution([])
    assert empty.count == 0 and empty.p99 is None
    frame = pd.DataFrame({"sent_s": [0, 1, 2, 10], "end_s": [3, 4, 2.5, 11]})
    assert metrics.peak_concurrency(frame) == 3
    assert metrics.send_rate(pd.Series([0.0, 0.5, 1.0])) == pytest.approx(2.0)


def test_summary_excludes_warmup_and_counts_errors():
    raw = _raw([
        dict(request_id=0, phase="warmup", scheduled_s=0, sent_s=0, end_s=1, usage_completion_tokens=2),
        dict(request_id=1, scheduled_s=1, sent_s=1, end_s=2, usage_completion_tokens=2),
        dict(request_id=2, scheduled_s=2, sent_s=2, end_s=3, status="error", error_kind="http_429"),
    ])
    chunks = _chunks([(0, 0.5, "content", None, 0), (0, 0.9, "content", None, 0),
                      (1, 1.5, "content", None, 0), (1, 1.7, "content", None, 0)])
    summary = aggregate.summarize(metrics.per_request(raw, chunks), chunks, offered_rate=1.0)
    assert summary.requests.to_json() == {"total": 2, "ok": 1, "errors": {"http_429": 1}}
    assert summary.metric(TTFT).count == 1 and summary.metric(TTFT).p50 == pytest.approx(500)
    assert summary.metric(ITL).count == 1 and summary.metric(ITL).max == pytest.approx(200)
    assert summary.throughput.window_s == pytest.approx(2.0)
    assert summary.throughput.output_tokens_per_s == pytest.approx(1.0)


def test_goodput_counts_requests_meeting_every_limit():
    raw = _raw([
        dict(request_id=i, scheduled_s=float(i), sent_s=float(i), end_s=i + 1.0, usage_completion_tokens=2)
        for i in range(4)
    ] + [dict(request_id=4, scheduled_s=4.0, sent_s=4.0, end_s=5.0, status="error", error_kind="http_500")])
    # TTFTs 100, 200, 300, 400 ms; the one gap after the first token is 100 ms for everyone
    chunks = _chunks([row for i in range(4) for row in
                      [(i, i + 0.1 * (i + 1), "content", None, 0), (i, i + 0.1 * (i + 2), "content", None, 0)]])
    req = metrics.per_request(raw, chunks)
    summary = aggregate.summarize(req, chunks, None, {"ttft_ms": 250, "tpot_ms": 150, "percentile": 50})
    slo = summary.slo
    assert slo is not None
    assert slo.share_meeting_all == pytest.approx(2 / 5)
    assert slo.share_meeting["tpot_ms"] == pytest.approx(4 / 5)
    assert slo.goodput_requests_per_s == pytest.approx(2 / 5.0)
    assert slo.value_at_percentile["ttft_ms"] == pytest.approx(250)
    assert slo.met is True
    strict = aggregate.summarize(req, chunks, None, {"ttft_ms": 150, "percentile": 99}).slo
    assert strict is not None and strict.met is False and strict.share_meeting_all == pytest.approx(1 / 5)


def test_token_rate_counts_tokens_per_bin_and_the_last_bin_up_to_the_last_token():
    chunks = _chunks([
        (0, 0.10, "role", None, 0),  # not a token
        (0, 0.20, "content", 3, 0), (0, 0.50, "content", None, 0),  # unknown: one token
        (1, 0.90, "reasoning", 2, 0), (1, 1.20, "content", 2, 0),
        (1, 1.25, "usage", None, 0),
    ])
    rate = scan.token_rate([frame_batch(chunks)], bin_s=1.0)
    assert rate["t_s"].tolist() == [0.0, 1.0]
    # bin 0: 3 + 1 + 2 tokens over 1 s; bin 1: 2 tokens over the 0.2 s up to the last token
    assert rate["tokens_per_s"].tolist() == pytest.approx([6.0, 10.0])
    pd.testing.assert_frame_equal(rate, oracle.token_rate(chunks, bin_s=1.0))
    assert scan.token_rate([frame_batch(chunks[chunks["kind"] == "role"])]).empty
    with pytest.raises(ValueError):
        scan.token_rate([frame_batch(chunks)], bin_s=0.0)
