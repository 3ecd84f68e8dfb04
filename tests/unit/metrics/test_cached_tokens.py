"""Prefix cache from hand-built streams and records: the recorder keeps the server's
`cached_tokens`, the summary's hit share counts them over the prompt tokens, and a run whose
first requests (sent before any prompt of the run was processed) hit the cache is warned about."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from bench.analysis.summary import summarize
from bench.analysis.warm_cache import check_warm_cache
from bench.metrics import derive
from bench.metrics.catalogue import CACHED_TOKENS
from bench.records import CHUNK_KINDS
from bench.report.console import summary_lines
from bench.runner.recorder import StreamRecorder
from bench.store import REQUEST_DTYPES


def _event(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def test_the_recorder_keeps_the_servers_cached_tokens():
    rec = StreamRecorder(t_origin=0.0)
    rec.feed(0.1, _event({"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}))
    rec.feed(0.2, _event({"choices": [], "usage": {"prompt_tokens": 300, "completion_tokens": 1,
                                                   "prompt_tokens_details": {"cached_tokens": 256}}}))
    rec.close(0.3)
    assert rec.cached_tokens() == 256
    plain = StreamRecorder(t_origin=0.0)
    plain.feed(0.1, _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                                     "prompt_tokens_details": None}}))
    assert plain.cached_tokens() is None


def _raw(rows: list[dict]) -> pd.DataFrame:
    base = {k: None for k in REQUEST_DTYPES}
    base.update(stage=0, phase="measure", variant="", block=0, conversation=-1, turn=0, prompt_index=0,
                submitted_s=0.0, n=1, done_seen=True, reconnected=False, output_chars=0, status="ok",
                usage_completion_tokens=1)
    return pd.DataFrame([{**base, "scheduled_s": r["sent_s"], **r} for r in rows]).astype(REQUEST_DTYPES)


def _chunks(first_tokens: list[float]) -> pd.DataFrame:
    frame = pd.DataFrame([(i, t, "content", None, 0) for i, t in enumerate(first_tokens)],
                         columns=["request_id", "t_s", "kind", "tokens", "choice"])
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(CHUNK_KINDS)))
    frame["tokens"] = frame["tokens"].astype("Int32")
    return frame


# Requests 0 and 1 go out together (before any first token, at 0.05 s); 2 and 3 after.
SENT = [0.0, 0.01, 0.1, 0.2]
FIRST = [0.05, 0.06, 0.12, 0.22]


def _requests(cached: list[int | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = _raw([dict(request_id=i, sent_s=SENT[i], end_s=FIRST[i] + 0.01, usage_prompt_tokens=100,
                     usage_cached_tokens=cached[i]) for i in range(4)])
    chunks = _chunks(FIRST)
    return derive.per_request(raw, chunks), chunks


def test_the_hit_share_is_cached_over_prompt_tokens():
    requests, chunks = _requests([None, None, 64, 96])  # a server leaves the detail out when none was cached
    assert requests[CACHED_TOKENS.key].tolist()[2:] == [64.0, 96.0]
    summary = summarize(requests, chunks, None)
    assert summary.throughput.prefix_cache_hit_share == pytest.approx(160 / 400)
    assert summary.metric(CACHED_TOKENS).count == 2 and summary.metric(CACHED_TOKENS).max == 96.0
    assert "prefix cache: 40.0% of the prompt tokens were cached" in summary_lines(summary)
    assert check_warm_cache(requests) == []  # only requests sent after the first token hit
    silent = summarize(*_requests([None] * 4), None)
    assert silent.throughput.prefix_cache_hit_share is None and "prefix_cache_hit_share" not in (
        silent.throughput.to_json())


def test_a_hit_before_the_runs_first_token_is_a_warm_cache():
    requests, _ = _requests([None, 32, 64, 96])  # request 1, sent at 0.01 s, hit: nothing of this run was cached yet
    warnings = check_warm_cache(requests)
    assert [w.code for w in warnings] == ["warm_cache"]
    assert "1 of the 2 requests sent before the run's first token" in warnings[0].message
    assert "up to 32" in warnings[0].message
