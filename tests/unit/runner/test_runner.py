"""The runner against an in-process stream source (tests/fakestreams.py): no sockets.

Every piece is stamped with its scripted time, so chunk times, TTFT and ITL read back
exactly; only what depends on the event loop (how late a send or a deadline fires) gets a
tolerance, and that tolerance is generous because the machine is shared.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from typing import Any

import numpy as np
import orjson
import pytest
from fakestreams import DONE, FakeStreams, Script, delta, healthy, sse

from bench.records import KIND_CONTENT, Progress, RequestRecord
from bench.runner.attempt import DONE_GRACE_S, Attempt
from bench.runner.runner import Runner
from bench.runner.sender import StageSender
from bench.runner.streamapi import ClientError
from bench.scenario.schema import Timeouts
from bench.workload.plan import RunPlan, StagePlan
from bench.workload.requests import RequestSpec

LATE_S = 0.05  # how late the loop may fire a timer on a busy 2-core machine
START_S = 0.05  # t0 this far ahead of the run's start


class Source:
    """Request i carries {"i": i, "do": behaviours[i % len]}: the script picks on "do"."""

    keep_text = False

    def __init__(self, behaviours: list[str] | None = None) -> None:
        self._behaviours = behaviours or ["ok"]
        self._next = 0

    def next_spec(self, item: int | None = None) -> RequestSpec:
        i = self._next
        self._next += 1
        body = orjson.dumps({"i": i, "do": self._behaviours[i % len(self._behaviours)]})
        return RequestSpec(prompt_index=i, body=body, max_tokens=8)

    def follow_up(self, spec: RequestSpec, reply: str) -> tuple[RequestSpec, float] | None:
        return None


class Sink:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def write(self, record: RequestRecord) -> None:
        self.records.append(record)

    def by_id(self) -> dict[int, RequestRecord]:
        return {r.request_id: r for r in self.records}


def _runner(streams: FakeStreams, source: Source, sink: Sink, timeouts: Timeouts | None = None,
            **plan: Any) -> Runner:
    run_plan = RunPlan("/chat/completions", timeouts or Timeouts(), **plan)
    return Runner(run_plan, source, streams, sink, time.perf_counter() + START_S, Progress())


def _open(*offsets: float, **kw: Any) -> StagePlan:
    return StagePlan(0, offsets=np.array(offsets, dtype=float), **kw)


def _content_times(record: RequestRecord) -> list[float]:
    return [t for t, k in zip(record.chunks.t, record.chunks.kind, strict=True) if k == KIND_CONTENT]


@pytest.fixture(params=[True, False], ids=["feeding", "reads"])
def feeding(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_a_runner_is_a_stage_sender():
    sender: StageSender = _runner(FakeStreams(lambda _: Script()), Source(), Sink())
    assert sender.t0 > time.perf_counter()


async def test_open_loop_sends_in_schedule_order_never_early(feeding):
    offsets = [0.0, 0.03, 0.06, 0.09, 0.12]
    streams = FakeStreams(lambda _: Script(healthy(3, 0.01, 0.005)), feeding)
    sink = Sink()
    runner = _runner(streams, Source(), sink)
    assert await runner.run([_open(*offsets)], asyncio.Event()) == "completed"
    assert [o.body["i"] for o in streams.opened] == [0, 1, 2, 3, 4]
    assert [o.not_before - runner.t0 for o in streams.opened] == pytest.approx(offsets, abs=1e-9)
    records = sink.by_id()
    assert sorted(records) == [0, 1, 2, 3, 4]
    for i, offset in enumerate(offsets):
        r = records[i]
        assert (r.status, r.error_kind, r.scheduled_s) == ("ok", None, pytest.approx(offset, abs=1e-9))
        assert offset <= r.sent_s < offset + LATE_S  # held until its time, then sent
        assert r.submitted_s <= r.sent_s
    assert runner.progress.done == 5 and runner.progress.errors == 0 and runner.progress.in_flight == 0
    assert streams.in_flight == 0 and streams.closed == 5


async def test_chunk_times_are_the_arrivals_exactly(feeding):
    streams = FakeStreams(lambda _: Script(healthy(5, 0.040, 0.010)), feeding)
    sink = Sink()
    await _runner(streams, Source(), sink).run([_open(0.0)], asyncio.Event())
    (r,) = sink.records
    times = _content_times(r)
    assert len(times) == 5 and r.done_seen and r.finish_reason == "stop"
    assert times[0] - r.sent_s == pytest.approx(0.040, abs=1e-9)  # TTFT
    assert np.diff(times) == pytest.approx([0.010] * 4, abs=1e-9)  # ITL
    assert (r.usage_prompt_tokens, r.usage_completion_tokens) == (5, 5)
    assert r.headers_s is not None and r.sent_s <= r.headers_s <= times[0]
    assert times[-1] <= r.end_s < times[-1] + LATE_S


def _faults(body: dict[str, Any]) -> Script:
    do = body["do"]
    first = [(0.01, delta(role=True) + delta("a")), (0.02, delta("b"))]
    return {
        "ok": Script(healthy(2, 0.01, 0.01)),
        "http_503": Script(error=ClientError("http_503", "Service Unavailable - overloaded", http_status=503,
                                             retry_after_s=7.0, server_request_id="req-9")),
        "refused": Script(error=ClientError("connect_refused", "ClientConnectorError: connect call failed")),
        "dropped": Script(first, end=ClientError("stream_dropped", "connection closed mid-body")),
        "eof": Script(first),  # a clean end with neither finish_reason nor [DONE]
        "silent": Script(headers_s=0.0, end="open"),  # headers, then nothing
        "stall": Script(first, end="open"),  # two tokens, then nothing
        "error_event": Script([(0.01, sse({"error": {"message": "CUDA out of memory"}}))]),
        "json_error": Script([(0.01, b'{"error": {"message": "model not loaded"}}')],
                             content_type="application/json"),
        "html": Script([(0.01, b"<html>hi</html>")], content_type="text/html"),
        "cut_off": Script([*first, (0.03, delta(finish="abort") + DONE)]),
    }[do]


FAULTS = {  # behaviour -> (error_kind, http_status, words of the message)
    "ok": (None, 200, None),
    "http_503": ("http_503", 503, "overloaded"),
    "refused": ("connect_refused", None, "connect call failed"),
    "dropped": ("stream_dropped", 200, "mid-body"),
    "eof": ("stream_dropped", 200, "without [DONE]"),
    "silent": ("ttft_timeout", 200, "no data"),
    "stall": ("idle_timeout", 200, "no data"),
    "error_event": ("server_error_event", 200, "CUDA out of memory"),
    "json_error": ("server_error_body", 200, "model not loaded"),
    "html": ("not_sse", 200, "not an SSE stream"),
    "cut_off": ("server_abort", 200, "abort"),
}


async def test_every_failure_is_one_error_record_with_its_kind(feeding):
    names = list(FAULTS)
    streams = FakeStreams(_faults, feeding)
    sink = Sink()
    timeouts = Timeouts(ttft_s=0.15, idle_s=0.15, total_s=2.0)
    runner = _runner(streams, Source(names), sink, timeouts)
    start = time.perf_counter()
    assert await runner.run([_open(*[0.0] * len(names))], asyncio.Event()) == "completed"
    assert time.perf_counter() - start < 1.0  # the deadlines, not the total, ended the silent ones
    records = sink.by_id()
    for i, name in enumerate(names):
        kind, status, words = FAULTS[name]
        r = records[i]
        assert (r.error_kind, r.http_status, r.status) == (kind, status, "error" if kind else "ok"), name
        if words is not None:
            assert r.error_message is not None and words in r.error_message, name
    assert (records[1].retry_after_s, records[1].server_request_id) == (7.0, "req-9")
    # A timeout fires at its deadline: TTFT from the hand-over to the client, idle from the
    # last event (read by the task, the deadline moves only when it would move by more than
    # 5 % of idle_s, so it may fire that much early).
    silent, stall = records[names.index("silent")], records[names.index("stall")]
    assert 0.15 <= silent.end_s - silent.submitted_s < 0.15 + LATE_S
    slack = 0.0 if feeding else 0.15 * 0.05
    assert 0.02 + 0.15 - slack <= stall.end_s - stall.sent_s < 0.02 + 0.15 + LATE_S
    assert len(_content_times(stall)) == 2  # what arrived before the stall is kept
    errors = {k for k, _, _ in FAULTS.values() if k}
    assert runner.progress.errors == len(names) - 1
    assert set(runner.progress.error_kinds) == errors
    assert runner.progress.error_kinds["stream_dropped"] == 2
    assert streams.in_flight == 0


async def test_the_first_token_hands_over_from_the_ttft_deadline_to_the_idle_one(feeding):
    """A stall after the first tokens ends at the idle deadline, long before the TTFT one:
    the first token must wake the wait, not the TTFT deadline passing."""
    streams = FakeStreams(lambda _: Script([(0.01, delta(role=True) + delta("a")), (0.02, delta("b"))], end="open"),
                          feeding)
    sink = Sink()
    await _runner(streams, Source(), sink, Timeouts(ttft_s=3.0, idle_s=0.15)).run([_open(0.0)], asyncio.Event())
    (r,) = sink.records
    assert r.error_kind == "idle_timeout" and len(_content_times(r)) == 2
    slack = 0.0 if feeding else 0.15 * 0.05
    assert 0.02 + 0.15 - slack <= r.end_s - r.sent_s < 0.02 + 0.15 + LATE_S


async def test_a_body_that_ends_without_done_ends_the_request_at_once(feeding):
    """No [DONE] (a valid ending for several servers): the body's end wakes the wait, not the
    idle deadline passing."""
    streams = FakeStreams(lambda _: Script([(0.01, delta(role=True) + delta("a")),
                                            (0.02, delta("b", finish="stop"))]), feeding)
    sink = Sink()
    await _runner(streams, Source(), sink, Timeouts(idle_s=5.0)).run([_open(0.0)], asyncio.Event())
    (r,) = sink.records
    assert (r.status, r.done_seen, len(_content_times(r))) == ("ok", False, 2)
    assert r.sent_s + 0.02 <= r.end_s < r.sent_s + 0.02 + LATE_S


async def test_heartbeats_after_done_do_not_hold_the_request(feeding):
    pings = [(0.02 + 0.05 * k, b": ping\n\n") for k in range(1, 40)]  # two more seconds of them
    streams = FakeStreams(lambda _: Script(healthy(2, 0.01, 0.01) + pings, end="open"), feeding)
    sink = Sink()
    await _runner(streams, Source(), sink, Timeouts(idle_s=5.0)).run([_open(0.0)], asyncio.Event())
    (r,) = sink.records
    done_at = r.sent_s + 0.02
    assert (r.status, r.done_seen) == ("ok", True)
    # Read from the socket callback, the body gets DONE_GRACE_S to end (so its connection can
    # go back to the pool); read by the task, the request ends at [DONE].
    grace = DONE_GRACE_S if feeding else 0.0
    assert done_at + grace - 0.001 <= r.end_s < done_at + grace + LATE_S


async def test_stop_cancels_in_flight_requests_and_records_each(feeding):
    long = Script(healthy(50, 0.01, 0.1))  # five seconds each
    streams = FakeStreams(lambda _: long, feeding)
    sink = Sink()
    runner = _runner(streams, Source(), sink)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(START_S + 0.2, stop.set)
    start = time.perf_counter()
    assert await runner.run([_open(0.0, 0.1, 1.0, 1.5)], stop) == "interrupted"
    assert time.perf_counter() - start < START_S + 0.2 + LATE_S * 2
    assert len(streams.opened) == 2  # the later two were never sent
    assert sorted((r.request_id, r.status, r.error_kind) for r in sink.records) == [
        (0, "cancelled", "cancelled"), (1, "cancelled", "cancelled")]
    assert all(0 < len(_content_times(r)) < 50 for r in sink.records)  # what arrived is kept
    assert streams.in_flight == 0 and runner.progress.in_flight == 0


async def test_max_concurrency_holds_sends_until_a_slot_frees():
    streams = FakeStreams(lambda _: Script(healthy(2, 0.05, 0.05)))  # 100 ms each
    sink = Sink()
    runner = _runner(streams, Source(), sink, max_concurrency=2)
    await runner.run([_open(*[0.0] * 6)], asyncio.Event())
    assert streams.peak_in_flight == 2 and runner.progress.peak_in_flight == 2
    records = sink.by_id()
    assert [records[i].status for i in range(6)] == ["ok"] * 6
    for i in range(2, 6):  # sent once one of the two before it ended: lag, never dropped
        assert records[i].sent_s >= min(records[i - 2].end_s, records[i - 1].end_s) - 1e-6
    assert records[5].sent_s - records[5].scheduled_s >= 0.2 - 1e-6  # two waves of 100 ms before it


async def test_closed_loop_keeps_its_slots_busy_up_to_max_requests():
    streams = FakeStreams(lambda _: Script(healthy(2, 0.02, 0.02)))  # 40 ms each
    sink = Sink()
    runner = _runner(streams, Source(), sink, max_requests=9)
    stage = StagePlan(0, concurrency=3)
    assert await runner.run([stage], asyncio.Event()) == "completed"
    assert len(sink.records) == 9 and streams.peak_in_flight == 3
    assert sorted(r.request_id for r in sink.records) == list(range(9))
    ends = sorted(r.end_s for r in sink.records)
    sends = sorted(r.sent_s for r in sink.records)
    for k in range(3, 9):  # each later request went out when an earlier one ended
        assert sends[k] >= ends[k - 3] - 1e-6
    assert sends[-1] - sends[0] < 3 * 0.04 + 3 * LATE_S  # three rounds back to back


async def test_worker_ids_interleave():
    streams = FakeStreams(lambda _: Script(healthy(1, 0.01, 0.01)))
    sink = Sink()
    plan = RunPlan("/chat/completions", Timeouts())
    runner = Runner(plan, Source(), streams, sink, time.perf_counter() + START_S, id_start=1, id_step=3)
    await runner.run([_open(0.0, 0.01, 0.02)], asyncio.Event())
    assert sorted(r.request_id for r in sink.records) == [1, 4, 7]


async def test_a_finished_attempt_is_freed_at_once_not_left_to_the_gc(feeding):
    """No reference cycle outlives a request: a thousand streams' attempts left to the GC made
    young-generation passes of 30-150 ms, a stall in which chunks coalesce into one read."""
    streams = FakeStreams(lambda _: Script(healthy(3, 0.01, 0.01)), feeding)
    gc.disable()
    try:
        attempt = Attempt(time.perf_counter(), Timeouts())
        await attempt.run(streams, "/chat/completions", b"{}")
        assert attempt.error_kind is None and list(attempt.recorder.chunks.kind).count(KIND_CONTENT) == 3
        alive = [weakref.ref(attempt), weakref.ref(attempt.recorder)]
        del attempt
        await asyncio.sleep(0)  # callbacks the request's end scheduled have run
        assert [ref() for ref in alive] == [None, None]
    finally:
        gc.enable()
