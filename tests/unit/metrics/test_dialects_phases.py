"""Metric dialects and reasoning phases on hand-built streams with known chunk times.

Every expected number below was worked out by hand from the chunk times (ms after the
send), following each tool's definition as written in `bench.metrics.dialects`:
- request 0: a role-only first chunk, 3 one-token content chunks, a finish-only chunk, usage;
- request 1: a reasoning stream (role, 2 reasoning chunks, 2 content chunks), usage with
  `completion_tokens_details.reasoning_tokens`;
- request 2: a one-token answer;
- request 3: multi-token chunks (2 then 3 tokens, the server's running count).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pandas as pd
import pytest

from bench.metrics import derive, dialects
from bench.metrics.catalogue import ANSWER_TPOT, REASONING_TIME, REASONING_TOKENS, TTFT, TTFT_ANSWER, TTFT_REASONING
from bench.metrics.distribution import Distribution, distribution
from bench.records import CHUNK_KINDS
from bench.runner.recorder import StreamRecorder
from bench.store import REQUEST_DTYPES, frame_batch

WINDOW_S = 3.060  # first send (0) to last end (3.060)
TOKENS = 3 + 4 + 1 + 5  # usage completion tokens of the four requests


def _raw(rows: list[dict]) -> pd.DataFrame:
    base = {k: None for k in REQUEST_DTYPES}
    base.update(stage=0, phase="measure", variant="", block=0, conversation=-1, turn=0, prompt_index=0,
                submitted_s=0.0, n=1, done_seen=True, reconnected=False, output_chars=0, status="ok")
    frame = pd.DataFrame([{**base, "scheduled_s": r["sent_s"], **r} for r in rows])
    return frame.astype(REQUEST_DTYPES)


def _chunks(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["request_id", "t_s", "kind", "tokens", "choice"])
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(CHUNK_KINDS)))
    frame["tokens"] = frame["tokens"].astype("Int32")
    return frame


RAW = _raw([
    dict(request_id=0, sent_s=0.0, end_s=0.120, usage_completion_tokens=3),
    dict(request_id=1, sent_s=1.0, end_s=1.100, usage_completion_tokens=4, usage_reasoning_tokens=2),
    dict(request_id=2, sent_s=2.0, end_s=2.040, usage_completion_tokens=1),
    dict(request_id=3, sent_s=3.0, end_s=3.060, usage_completion_tokens=5),
])
CHUNKS = _chunks([
    (0, 0.010, "role", None, 0), (0, 0.050, "content", None, 0), (0, 0.070, "content", None, 0),
    (0, 0.100, "content", None, 0), (0, 0.105, "other", None, 0), (0, 0.110, "usage", None, 0),
    (1, 1.010, "role", None, 0), (1, 1.020, "reasoning", None, 0), (1, 1.040, "reasoning", None, 0),
    (1, 1.060, "content", None, 0), (1, 1.090, "content", None, 0), (1, 1.095, "usage", None, 0),
    (2, 2.030, "content", None, 0), (2, 2.031, "usage", None, 0),
    (3, 3.020, "content", 2, 0), (3, 3.050, "content", 3, 0), (3, 3.055, "usage", None, 0),
])

# dialect -> (TTFT, ITL, TPOT or None, E2E) samples in ms, by hand
EXPECTED = {
    "bench": ([50, 20, 30, 20], [20, 30, 20, 20, 30, 30], [25, 70 / 3, 7.5], [100, 90, 30, 50]),
    "vllm": ([10, 10, 30, 20], [40, 20, 30, 5, 10, 20, 20, 30, 30], [50, 85 / 3, 8.75], [110, 95, 31, 55]),
    "sglang": ([50, 60, 30, 20], [20, 30, 30, 30], [30, 35 / 3, 8.75], [110, 95, 31, 55]),
    "guidellm": ([50, 60, 30, 20], [25, 10, 7.5], [100 / 3, 22.5, 30, 10], [120, 100, 40, 60]),
    "aiperf": ([50, 20, 30, 20], [25, 70 / 3, 7.5], None, [100, 90, 30, 50]),
    "inference-perf": ([50, 20, 30, 20], [20, 30, 20, 20, 30, 30, 0, 0, 0], [25, 70 / 3, 7.5], [120, 100, 40, 60]),
    "llmperf": ([50, 60, 30, 20], [100 / 3, 22.5, 30, 10], None, [120, 100, 40, 60]),
}


def _same(got: Distribution | None, values: list[float] | None) -> None:
    if values is None:
        assert got is None
        return
    assert got is not None
    want = distribution(np.array(values, dtype="float64"))
    for field in dataclasses.fields(Distribution):
        assert getattr(got, field.name) == pytest.approx(getattr(want, field.name), abs=1e-9), field.name


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_dialect_gives_the_hand_computed_values(name):
    requests = derive.per_request(RAW, CHUNKS)
    batch = frame_batch(CHUNKS)
    (figures,) = dialects.dialect_figures(requests, lambda: [batch], [dialects.by_name(name)])
    ttft, itl, tpot, e2e = EXPECTED[name]
    _same(figures.ttft, ttft)
    _same(figures.itl, itl)
    _same(figures.tpot, tpot)
    _same(figures.e2e, e2e)
    assert figures.output_tokens_per_s == pytest.approx(TOKENS / WINDOW_S)
    assert figures.requests == 4


@pytest.mark.parametrize("per_request", [False, True])
def test_all_dialects_from_one_read_give_each_its_own_values(per_request):
    """One read for every dialect, kind sets that select the same chunks sharing a scan. Cut
    per request, the first batch holds no reasoning: the sets it cannot tell apart (bench's
    output kinds and `content`) are told apart by the second batch, and scanned on their own."""
    requests = derive.per_request(RAW, CHUNKS)
    parts = [CHUNKS[CHUNKS["request_id"] == i] for i in range(4)] if per_request else [CHUNKS]
    batches = [frame_batch(part.reset_index(drop=True)) for part in parts]
    reads = []

    def source():
        reads.append(1)
        return iter(batches)

    every = dialects.dialect_figures(requests, source)
    for figures in every:
        ttft, itl, tpot, e2e = EXPECTED[figures.dialect.name]
        _same(figures.ttft, ttft)
        _same(figures.itl, itl)
        _same(figures.tpot, tpot)
        _same(figures.e2e, e2e)
    # whole: one read; cut: one more for the kind sets whose share broke up
    assert len(reads) == (2 if per_request else 1)


def test_every_dialect_is_covered_and_named():
    assert set(EXPECTED) == set(dialects.names())
    with pytest.raises(KeyError, match="one of bench, vllm"):
        dialects.by_name("genai-perf")


def test_the_bench_dialect_is_benchs_own_summary():
    requests = derive.per_request(RAW, CHUNKS).set_index("request_id")
    assert requests[TTFT.key].tolist() == pytest.approx(EXPECTED["bench"][0])


def test_without_usage_the_tools_text_chunks_are_counted():
    raw = RAW.assign(usage_completion_tokens=pd.array([None] * 4, dtype="Int64"),
                     usage_reasoning_tokens=pd.array([None] * 4, dtype="Int64"))
    requests = derive.per_request(raw, CHUNKS)
    batch = frame_batch(CHUNKS)
    sglang, vllm = dialects.dialect_figures(requests, lambda: [batch], [dialects.by_name("sglang"),
                                                                           dialects.by_name("vllm")])
    # SGLang counts content only: request 1 has 2 answer tokens, request 3 has 5
    _same(sglang.tpot, [30, 35, 8.75])
    assert sglang.output_tokens_per_s == pytest.approx((3 + 2 + 1 + 5) / WINDOW_S)
    # vLLM counts content and reasoning text (not the role or finish chunks)
    _same(vllm.tpot, [50, 85 / 3, 8.75])
    assert vllm.output_tokens_per_s == pytest.approx((3 + 4 + 1 + 5) / WINDOW_S)


PHASES = {  # request -> (TTF reasoning, TTF answer, reasoning time, reasoning tokens, answer TPOT)
    0: (np.nan, 50, np.nan, 0, 25),
    1: (20, 60, 40, 2, 30),
    2: (np.nan, 30, np.nan, 0, np.nan),
    3: (np.nan, 20, np.nan, 0, 7.5),
}
PHASE_METRICS = (TTFT_REASONING, TTFT_ANSWER, REASONING_TIME, REASONING_TOKENS, ANSWER_TPOT)


def _phase_table(requests: pd.DataFrame) -> dict[int, tuple]:
    rows = requests.set_index("request_id")
    return {int(i): tuple(float(rows.loc[i, m.key]) for m in PHASE_METRICS) for i in rows.index}


def test_reasoning_phases_from_hand_built_streams():
    got = _phase_table(derive.per_request(RAW, CHUNKS))
    for request, want in PHASES.items():
        assert got[request] == pytest.approx(want, nan_ok=True), request


def test_reasoning_tokens_from_chunks_when_usage_lacks_the_detail():
    extra_raw = _raw([dict(request_id=4, sent_s=4.0, end_s=4.090, usage_completion_tokens=7)])
    extra = _chunks([
        (4, 4.005, "role", None, 0), (4, 4.010, "reasoning", None, 0), (4, 4.030, "reasoning", 2, 0),
        (4, 4.050, "content", None, 0), (4, 4.080, "content", 3, 0),  # a reasoning+content chunk is content
    ])
    got = _phase_table(derive.per_request(extra_raw, extra))[4]
    # reasoning: 1 + 2 chunk tokens; answer: 1 + 3; answer TPOT = 30 ms / (4 - 1)
    assert got == pytest.approx((10, 50, 40, 3, 10))


def test_usage_reasoning_tokens_split_the_answer():
    raw = RAW.assign(usage_reasoning_tokens=pd.array([None, 3, None, None], dtype="Int64"))
    got = _phase_table(derive.per_request(raw, CHUNKS))[1]
    assert got == pytest.approx((20, 60, 40, 3, np.nan), nan_ok=True)  # 4 - 3 = one answer token: no TPOT


def test_the_recorder_keeps_the_servers_reasoning_tokens():
    def event(obj) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    rec = StreamRecorder(t_origin=0.0)
    rec.feed(0.1, event({"choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}))
    rec.feed(0.2, event({"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}))
    rec.feed(0.3, event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                                  "completion_tokens_details": {"reasoning_tokens": 1}}}))
    rec.close(0.4)
    assert rec.reasoning_tokens() == 1
    plain = StreamRecorder(t_origin=0.0)
    plain.feed(0.1, event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}))
    assert plain.reasoning_tokens() is None


def test_reasoning_table_and_console_line_only_when_the_run_reasoned():
    from bench.analysis.summary import summarize
    from bench.report.console import summary_lines
    from bench.report.tables import reasoning_table

    requests = derive.per_request(RAW, CHUNKS)
    with_reasoning = summarize(requests, CHUNKS, None)
    table = reasoning_table(with_reasoning)
    assert table is not None and [row[0] for row in table.rows] == [m.heading for m in PHASE_METRICS]
    assert any(line.startswith("reasoning p50: ") for line in summary_lines(with_reasoning))
    plain = requests[requests["request_id"] != 1]
    without = summarize(plain, CHUNKS[CHUNKS["request_id"] != 1], None)
    assert reasoning_table(without) is None
    assert not any(line.startswith("reasoning") for line in summary_lines(without))
    assert without.metric(TTFT_ANSWER).p50 == pytest.approx(without.metric(TTFT).p50)  # no reasoning: TTFT
