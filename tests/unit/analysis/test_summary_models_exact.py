"""The summary's newer numbers, exactly, on a hand-built run of two models mixing chat and
embeddings answers with cached prompt tokens and a failure: input tokens and inputs per
second, the prefix-cache hit share at its edges (no known prompt tokens, one prompt token),
goodput's output tokens when an embeddings answer meets the SLO, one summary per model, and
the gap buffer handed over by the whole run's percentiles.

Written against mutants of bench/analysis/summary.py that survived test_summary_exact.py
(benchmarks/mutation.py); the survivors that cannot change any result are listed with their
reason in docs/mutation.md.
"""

from __future__ import annotations

import functools

import pandas as pd
import pytest
from unit.metrics.frames import chunk_frame, raw_frame

from bench.analysis import summary as aggregate
from bench.metrics import derive, scan
from bench.metrics.catalogue import ITL, counted_ids

# Requests scheduled and submitted when they were sent, unless a row says otherwise.
_raw = functools.partial(raw_frame, schedule_at_send=True)

def _chunks(rows: list[tuple[int, float]]) -> pd.DataFrame:
    """Content chunks of unknown token count, choice 0, from (request_id, t_s) pairs."""
    return chunk_frame([(i, t, "content", None, 0) for i, t in rows])


# Window 0.0 .. 3.0 s. Counted: 0, 1, 2; output tokens 4 + 2 (the embeddings answer has none);
# prompt tokens 10 + 20 + 6; 5 cached; 3 embedded inputs. E2E: 700, 600, 500 ms.
RAW = _raw([
    dict(request_id=0, model="m1", sent_s=0.0, end_s=1.0, usage_completion_tokens=4, usage_prompt_tokens=10,
         usage_cached_tokens=5),
    dict(request_id=1, model="m2", sent_s=0.5, end_s=2.0, usage_completion_tokens=2, usage_prompt_tokens=20),
    dict(request_id=2, model="m2", sent_s=1.0, body_s=1.5, end_s=1.5, inputs=3, usage_prompt_tokens=6),
    dict(request_id=3, model="m1", sent_s=1.5, end_s=3.0, status="error", error_kind="timeout"),
])
CHUNKS = _chunks([(0, 0.1), (0, 0.2), (0, 0.4), (0, 0.7), (1, 0.6), (1, 1.1)])
SLO = {"e2e_ms": 650.0}  # met by requests 1 and 2


def _summary():
    return aggregate.summarize(derive.per_request(RAW, CHUNKS), CHUNKS, 4.0, SLO)


def test_throughput_of_a_run_mixing_chat_and_embeddings():
    t = _summary().throughput
    assert t.window_s == 3.0 and t.requests_per_s == 1.0
    assert t.output_tokens_per_s == 2.0  # 6 tokens: the embeddings answer adds none
    assert t.total_tokens_per_s == 14.0  # (6 + 36) / 3
    assert t.input_tokens_per_s == 12.0
    assert t.inputs_per_s == 1.0
    assert t.prefix_cache_hit_share == pytest.approx(5 / 36)


def test_goodput_counts_no_output_tokens_for_an_embeddings_answer():
    slo = _summary().slo
    assert slo is not None and slo.share_meeting_all == 0.5
    assert slo.goodput_requests_per_s == pytest.approx(2 / 3)
    assert slo.goodput_output_tokens_per_s == pytest.approx(2 / 3)  # request 1's 2 tokens over 3 s


def test_one_summary_per_model():
    s = _summary()
    assert aggregate.model_names(derive.per_request(RAW, CHUNKS)) == ["m1", "m2"]
    assert sorted(s.models) == ["m1", "m2"]
    m1, m2 = s.models["m1"], s.models["m2"]
    assert m1.requests.to_json() == {"total": 2, "ok": 1, "errors": {"timeout": 1}}
    assert m2.requests.to_json() == {"total": 2, "ok": 2, "errors": {}}
    assert m1.metric(ITL).count == 3 and m1.metric(ITL).max == pytest.approx(300.0)
    assert m2.metric(ITL).count == 1 and m2.metric(ITL).max == pytest.approx(500.0)
    assert m1.throughput.window_s == 3.0 and m2.throughput.window_s == 1.5
    assert m1.throughput.inputs_per_s is None and m2.throughput.inputs_per_s == 2.0
    assert m1.throughput.input_tokens_per_s == pytest.approx(10 / 3)
    assert m1.rate.offered is None and m2.rate.offered is None
    assert m1.slo is not None and m1.slo.share_meeting_all == 0.0
    assert m2.slo is not None and m2.slo.share_meeting_all == 1.0 and m2.slo.limits == SLO


def test_model_names_only_when_there_are_several():
    requests = derive.per_request(RAW, CHUNKS)
    assert aggregate.model_names(requests.assign(model="m1")) == []
    assert aggregate.model_names(requests.drop(columns=["model"])) == []
    three = requests.assign(model=["c", "a", "b", None])
    assert aggregate.model_names(three) == ["a", "b", "c"]
    assert aggregate.summarize(requests.assign(model="m1"), CHUNKS, None).models == {}


def _cached_run(prompt: list[int | None], cached: list[int | None]) -> pd.DataFrame:
    pairs = enumerate(zip(prompt, cached, strict=True))
    raw = _raw([dict(request_id=i, sent_s=float(i), end_s=i + 0.5, usage_completion_tokens=1,
                     usage_prompt_tokens=p, usage_cached_tokens=c) for i, (p, c) in pairs])
    return derive.per_request(raw, _chunks([(i, i + 0.2) for i in range(len(prompt))]))


def test_the_cache_hit_share_at_its_edges():
    def share(prompt: list[int | None], cached: list[int | None]) -> float | None:
        requests = _cached_run(prompt, cached)
        return aggregate.summarize(requests, _chunks([]), None).throughput.prefix_cache_hit_share

    assert share([1], [1]) == 1.0  # one prompt token, cached
    assert share([None, None], [4, None]) is None  # no request with a known prompt count
    assert share([0], [0]) is None  # no prompt token to share
    assert share([8, None], [2, 4]) == 0.25  # the request without a prompt count is left out


def test_the_whole_runs_percentiles_take_the_gap_buffer():
    requests = derive.per_request(RAW, CHUNKS)
    gaps = scan.scan_frame(CHUNKS, counted_ids(requests)).gaps
    assert gaps.values is not None and gaps.values.size == 4
    s = aggregate.summarize_gaps(requests, gaps, None)
    assert s.metric(ITL).count == 4 and s.models["m1"].metric(ITL).count == 3
    assert gaps.values is None  # handed over (no copy), as `summarize_gaps` says
