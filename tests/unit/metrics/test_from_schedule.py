"""Open-loop latency from the scheduled send (coordinated-omission-corrected), from
hand-built records with known times: exact per-request values, the summary, the report
table, and the validity note when the client sent late exactly when the server was slow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis import validity
from bench.analysis.results import is_open_loop
from bench.analysis.summary import summarize
from bench.metrics import derive
from bench.metrics.catalogue import E2E, E2E_SCHEDULED, FROM_SCHEDULE, LATENCY_TABLE, SCHEDULE_LAG, TTFT, TTFT_SCHEDULED
from bench.records import CHUNK_KINDS
from bench.report.console import summary_lines
from bench.report.tables import schedule_table
from bench.store import REQUEST_DTYPES, Manifest


def _raw(rows: list[dict]) -> pd.DataFrame:
    base = {k: None for k in REQUEST_DTYPES}
    base.update(stage=0, phase="measure", variant="", block=0, conversation=-1, turn=0, prompt_index=0,
                submitted_s=0.0, n=1, done_seen=True, reconnected=False, output_chars=0, status="ok")
    return pd.DataFrame([{**base, **r} for r in rows]).astype(REQUEST_DTYPES)


def _chunks(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["request_id", "t_s", "kind", "tokens", "choice"])
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(list(CHUNK_KINDS)))
    frame["tokens"] = frame["tokens"].astype("Int32")
    return frame


# Request 0 went out on time; request 1 was 500 ms late (every slot busy); request 2 was
# sent 0.25 ms late and answered in one chunk.
RAW = _raw([
    dict(request_id=0, scheduled_s=1.0, sent_s=1.0, end_s=1.26, usage_completion_tokens=3),
    dict(request_id=1, scheduled_s=2.0, sent_s=2.5, end_s=2.91, usage_completion_tokens=2),
    dict(request_id=2, scheduled_s=3.0, sent_s=3.00025, end_s=3.1, usage_completion_tokens=1),
])
CHUNKS = _chunks([
    (0, 1.01, "role", None, 0), (0, 1.05, "content", None, 0), (0, 1.15, "content", None, 0),
    (0, 1.25, "content", None, 0), (0, 1.255, "usage", None, 0),
    (1, 2.6, "content", None, 0), (1, 2.9, "content", None, 0), (1, 2.905, "usage", None, 0),
    (2, 3.05025, "content", None, 0), (2, 3.06, "usage", None, 0),
])


def test_ttft_and_e2e_from_the_schedule_are_the_hand_computed_ones():
    req = derive.per_request(RAW, CHUNKS).set_index("request_id")
    assert req[TTFT.key].tolist() == pytest.approx([50.0, 100.0, 50.0])
    assert req[TTFT_SCHEDULED.key].tolist() == pytest.approx([50.0, 600.0, 50.25])
    assert req[E2E.key].tolist() == pytest.approx([250.0, 400.0, 50.0])
    assert req[E2E_SCHEDULED.key].tolist() == pytest.approx([250.0, 900.0, 50.25])
    # each exceeds its metric from the real send by the request's schedule lag
    for sent, scheduled in ((TTFT, TTFT_SCHEDULED), (E2E, E2E_SCHEDULED)):
        assert (req[scheduled.key] - req[sent.key]).tolist() == pytest.approx(req[SCHEDULE_LAG.key].tolist())
    summary = summarize(derive.per_request(RAW, CHUNKS), CHUNKS, 1.0)
    assert summary.metric(TTFT_SCHEDULED).max == pytest.approx(600.0)
    assert summary.metric(E2E_SCHEDULED).p50 == pytest.approx(250.0)


def test_the_catalogue_keeps_them_out_of_the_latency_table():
    assert FROM_SCHEDULE == (TTFT_SCHEDULED, E2E_SCHEDULED)
    assert not set(FROM_SCHEDULE) & set(LATENCY_TABLE)


def _manifest(load: dict, stages: list[dict] | None = None) -> Manifest:
    return Manifest(schema_version=5, bench_version="t", name="s", scenario={"load": load}, target={}, model="m",
                    seed=0, t0_perf_counter=0.0, started_at="now", ended="completed", python="3", platform="t",
                    host="t", stages=stages or [])


def test_open_loop_is_a_rate_a_trace_or_an_open_stage():
    assert is_open_loop(_manifest({"rate": 5.0}))
    assert is_open_loop(_manifest({"trace": {"path": "t.jsonl"}}))
    assert is_open_loop(_manifest({}, [{"kind": "closed"}, {"kind": "constant", "rate": 2.0}]))
    assert not is_open_loop(_manifest({"concurrency": 8}, [{"kind": "closed", "rate": None}]))


def _lagging(n: int, slow_lag_ms: float) -> pd.DataFrame:
    """n requests 100 ms apart, TTFT 40 ms and E2E 200 ms; every 20th is slow (TTFT 400 ms,
    E2E 800 ms) and was sent `slow_lag_ms` late; the others 0.5 ms late."""
    slow = np.arange(n) % 20 == 0
    scheduled = np.arange(n) * 0.1
    lag = np.where(slow, slow_lag_ms, 0.5) / 1e3
    ttft, e2e = np.where(slow, 400.0, 40.0), np.where(slow, 800.0, 200.0)
    raw = _raw([dict(request_id=i, scheduled_s=scheduled[i], sent_s=scheduled[i] + lag[i],
                     end_s=scheduled[i] + lag[i] + e2e[i] / 1e3 + 0.001, usage_completion_tokens=2)
                for i in range(n)])
    chunks = _chunks([row for i in range(n) for row in (
        (i, scheduled[i] + lag[i] + ttft[i] / 1e3, "content", None, 0),
        (i, scheduled[i] + lag[i] + e2e[i] / 1e3, "content", None, 0))])
    return derive.per_request(raw, chunks), chunks


def test_a_note_when_the_client_was_late_exactly_when_the_server_was_slow():
    requests, chunks = _lagging(400, slow_lag_ms=300.0)
    summary = summarize(requests, chunks, 10.0)
    assert summary.metric(TTFT).p99 == pytest.approx(400.0)
    assert summary.metric(TTFT_SCHEDULED).p99 == pytest.approx(700.0)
    assert summary.metric(SCHEDULE_LAG).p50 == pytest.approx(0.5)
    warnings = validity.check_from_schedule(summary)
    assert [w.code for w in warnings] == ["from_schedule", "from_schedule"]  # TTFT and E2E, at p99
    assert "TTFT p99 from the scheduled send is 700.0 ms, 300.0 ms above" in warnings[0].message
    assert "E2E p99" in warnings[1].message
    table = schedule_table(summary, open_loop=True)
    assert table is not None and [row[0] for row in table.rows] == [
        TTFT.heading, TTFT_SCHEDULED.heading, E2E.heading, E2E_SCHEDULED.heading]
    assert schedule_table(summary, open_loop=False) is None
    assert any(line.startswith("from the scheduled send (open loop): TTFT sched p50 40.50 p99 700.00 ms, E2E sched p50 200.50 p99 1,100 ms")
               for line in summary_lines(summary))


def test_no_note_when_the_lag_is_the_same_for_every_request():
    requests, chunks = _lagging(400, slow_lag_ms=0.5)
    summary = summarize(requests, chunks, 10.0)
    assert summary.metric(TTFT_SCHEDULED).p99 == pytest.approx(400.5)
    assert validity.check_from_schedule(summary) == []
