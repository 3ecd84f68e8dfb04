"""The readers of the Responses API's event stream and of the embeddings API's JSON answer,
on hand-built bodies with known arrival times: alone, and inside an `Attempt` (its record)."""

from __future__ import annotations

import asyncio
import math

import orjson
import pandas as pd
import pytest
from fakestreams import FakeStreams, Script

from bench.metrics.derive import per_request
from bench.records import CHUNK_KINDS
from bench.runner.attempt import Attempt
from bench.runner.responses import ResponsesRecorder
from bench.runner.sse import StreamProtocolError
from bench.runner.unary import EmbeddingsReader
from bench.scenario.schema import Timeouts
from bench.store import SCHEMA_VERSION, Manifest, RunWriter, read_chunks, read_raw_requests
from bench.workload.requests import RequestSpec


def ev(kind: str, typed: bool = True, **fields) -> bytes:
    """One Responses API event: `event:` and `data:` lines (`typed=False`: the data line only)."""
    data = b"data: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"
    return (b"event: " + kind.encode() + b"\n" + data) if typed else data


def terminal(input_tokens: int, output_tokens: int, reason: str | None = None) -> bytes:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens,
             "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": input_tokens + output_tokens}
    if reason is None:
        return ev("response.completed", response={"id": "r", "status": "completed", "usage": usage})
    return ev("response.incomplete", response={"id": "r", "status": "incomplete", "usage": usage,
                                               "incomplete_details": {"reason": reason}})


CREATED = ev("response.created", response={"id": "r", "status": "in_progress"})


def reasoning(text: str) -> bytes:
    return ev("response.reasoning_text.delta", item_id="rs", output_index=0, content_index=0, delta=text)


def text(piece: str) -> bytes:
    return ev("response.output_text.delta", item_id="msg", output_index=1, content_index=0, delta=piece)


def kinds(rec) -> list[str]:
    return [CHUNK_KINDS[k] for k in rec.chunks.kind]


def test_reasoning_then_text_first_token_is_the_first_reasoning_delta_and_usage_is_the_completed_events():
    rec = ResponsesRecorder(t_origin=10.0)
    rec.keep_text = True
    rec.feed(10.1, CREATED)
    rec.feed(10.2, reasoning(" think"))
    rec.feed(10.3, reasoning(" more"))
    rec.feed(10.4, text(" Hello"))
    rec.feed(10.5, text(" world") + terminal(11, 4))
    rec.close(10.6)
    assert kinds(rec) == ["other", "reasoning", "reasoning", "content", "content", "usage"]
    assert list(rec.chunks.t) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5])
    assert rec.first_token_t == pytest.approx(0.2)
    assert rec.usage_tokens() == (11, 4)
    assert rec.finish_reason() == "completed" and rec.incomplete() is None
    assert rec.text() == " Hello world" and rec.output_chars == len(" Hello world")
    assert not rec.done_seen  # the API sends no [DONE]: the terminal event ends the answer


def test_text_only_answer_starts_at_its_first_text_delta_and_an_empty_delta_is_no_token():
    rec = ResponsesRecorder(0.0)
    rec.feed(1.0, CREATED + text(""))
    rec.feed(2.0, text(" a"))
    rec.feed(3.0, terminal(3, 1))
    rec.close(3.0)
    assert kinds(rec) == ["other", "other", "content", "usage"]
    assert rec.first_token_t == 2.0


def test_an_incomplete_response_is_a_complete_answer_with_its_reason_and_usage():
    rec = ResponsesRecorder(0.0)
    rec.feed(1.0, CREATED + text(" a") + terminal(5, 1, reason="max_output_tokens"))
    rec.close(1.0)
    assert rec.finish_reason() == "max_output_tokens" and rec.incomplete() is None
    assert rec.usage_tokens() == (5, 1)


def test_llama_cpp_timings_on_the_completed_event_are_kept():
    rec = ResponsesRecorder(0.0)
    done = ev("response.completed", response={"status": "completed", "usage": {"input_tokens": 2, "output_tokens": 1}},
              timings={"prompt_ms": 3.5, "predicted_ms": 9.0})
    rec.feed(1.0, CREATED + text(" a") + done)
    assert rec.server_timings == {"prompt_ms": 3.5, "predicted_ms": 9.0} and rec.usage_tokens() == (2, 1)


def test_a_body_that_ends_before_a_terminal_event_is_a_dropped_stream():
    rec = ResponsesRecorder(0.0)
    rec.feed(1.0, CREATED + text(" a"))
    rec.close(2.0)
    kind, message = rec.incomplete()
    assert kind == "stream_dropped" and "response.completed" in message
    assert rec.usage_tokens() == (None, None)


@pytest.mark.parametrize("typed", [True, False])
def test_an_error_event_fails_with_the_servers_message(typed):
    rec = ResponsesRecorder(0.0)
    rec.feed(1.0, CREATED + text(" a"))
    with pytest.raises(StreamProtocolError) as info:
        rec.feed(2.0, ev("error", typed=typed, code="server_error", message="The engine died mid-answer"))
    assert info.value.kind == "server_error_event"
    assert "The engine died mid-answer" in str(info.value) and "server_error" in str(info.value)


def test_a_failed_response_fails_with_the_servers_message():
    rec = ResponsesRecorder(0.0)
    failed = ev("response.failed", response={"id": "r", "status": "failed",
                                             "error": {"code": "rate_limit_exceeded", "message": "Slow down"}})
    with pytest.raises(StreamProtocolError) as info:
        rec.feed(1.0, CREATED + text(" a") + failed)
    assert info.value.kind == "response_failed"
    assert str(info.value) == "Slow down (code rate_limit_exceeded)"


# -- inside an attempt -----------------------------------------------------------------------


def _record(endpoint: str, script: Script, inputs: int | None = None, timeouts: Timeouts | None = None):
    streams = FakeStreams(lambda _: script)
    spec = RequestSpec(0, b"{}", None, inputs=inputs)

    async def go():
        limits = timeouts or Timeouts(ttft_s=5, idle_s=5, total_s=10)
        attempt = Attempt(100.0, limits, endpoint=endpoint, inputs=inputs)
        await attempt.run(streams, f"/{endpoint}", spec.body)
        return attempt.record(request_id=0, stage=0, phase="measure", spec=spec, scheduled_s=0.0)

    return asyncio.run(go())


def test_a_responses_attempt_records_exact_times_and_the_completed_usage():
    record = _record("responses", Script([(0.010, CREATED), (0.030, reasoning(" r")), (0.050, text(" t")),
                                          (0.070, text(" u") + terminal(9, 3))]))
    assert record.status == "ok" and record.error_kind is None
    assert (record.usage_prompt_tokens, record.usage_completion_tokens) == (9, 3)
    assert record.finish_reason == "completed" and record.inputs is None and record.body_s is None
    token_times = [t - record.sent_s for t, k in zip(record.chunks.t, record.chunks.kind, strict=True)
                   if CHUNK_KINDS[k] in ("reasoning", "content")]
    assert token_times == pytest.approx([0.030, 0.050, 0.070], abs=1e-9)


def test_a_failed_response_is_an_error_record_never_a_success():
    failed = ev("response.failed", response={"status": "failed", "error": {"code": "x", "message": "no GPU left"}})
    record = _record("responses", Script([(0.01, CREATED + text(" a")), (0.02, failed)]))
    assert record.status == "error" and record.error_kind == "response_failed"
    assert record.error_message == "no GPU left (code x)"


def test_a_responses_stream_cut_before_its_terminal_event_is_an_error():
    record = _record("responses", Script([(0.01, CREATED + text(" a"))]))
    assert record.status == "error" and record.error_kind == "stream_dropped"


def _embeddings(count: int, prompt_tokens: int = 12) -> bytes:
    return orjson.dumps({"object": "list", "model": "m", "usage": {"prompt_tokens": prompt_tokens,
                                                                    "total_tokens": prompt_tokens},
                         "data": [{"object": "embedding", "index": i, "embedding": [0.5, -0.5]} for i in range(count)]})


def test_an_embeddings_answer_ends_at_its_last_byte_and_has_no_tokens(tmp_path):
    body = _embeddings(3)
    record = _record("embeddings", Script([(0.020, body[:10]), (0.035, body[10:])],
                                          content_type="application/json"), inputs=3)
    assert record.status == "ok" and record.inputs == 3 and len(record.chunks) == 0
    assert record.body_s - record.sent_s == pytest.approx(0.035, abs=1e-9)
    assert (record.usage_prompt_tokens, record.usage_completion_tokens) == (12, None)
    assert record.finish_reason is None
    # as stored and derived: E2E from the body's end; TTFT, TPOT and output tokens absent, not zero
    raw = _stored_frame(tmp_path / "run", record)
    derived = per_request(raw, read_chunks(tmp_path / "run"))
    row = derived.iloc[0]
    assert row["e2e_ms"] == pytest.approx(35.0, abs=1e-6)
    assert math.isnan(row["ttft_ms"]) and math.isnan(row["tpot_ms"])
    assert pd.isna(row["output_tokens"])
    assert row["token_source"] == "none" and row["inputs"] == 3


@pytest.mark.parametrize(("body", "kind", "words"), [
    (_embeddings(2), "incomplete_answer", "2 embeddings for 3 inputs"),
    (b'{"error": {"message": "input too long", "code": 400}}', "server_error_body", "input too long"),
    (b'{"object": "list", "data": [', "malformed_body", "not JSON"),
])
def test_an_embeddings_answer_that_is_not_complete_is_an_error(body, kind, words):
    record = _record("embeddings", Script([(0.01, body)], content_type="application/json"), inputs=3)
    assert record.status == "error" and record.error_kind == kind and words in record.error_message


def test_an_embeddings_answer_is_due_whole_within_ttft_s():
    body = _embeddings(1)
    script = Script([(0.02, body[:5]), (0.30, body[5:])], content_type="application/json")
    record = _record("embeddings", script, inputs=1, timeouts=Timeouts(ttft_s=0.1, idle_s=5, total_s=10))
    assert record.status == "error" and record.error_kind == "response_timeout" and record.body_s is not None
    assert record.body_s - record.sent_s == pytest.approx(0.02, abs=1e-9)  # the part that came


def test_the_reader_alone_counts_embeddings_and_input_tokens():
    reader = EmbeddingsReader(0.0, inputs=2)
    reader.feed(1.0, _embeddings(2, prompt_tokens=7))
    reader.close(1.5)
    assert reader.embeddings == 2 and reader.body_t == 1.0 and reader.usage_tokens() == (7, None)


def _stored_frame(directory, record):
    """The record written by the store's writer and read back (the journal and parquet path)."""
    manifest = Manifest(schema_version=SCHEMA_VERSION, bench_version="test", name="e", scenario={}, target={},
                        model="m", seed=0, t0_perf_counter=0.0, started_at="now", ended="completed", python="3",
                        platform="test", host="test")
    writer = RunWriter(directory, manifest)
    writer.write(record)
    writer.close()
    return read_raw_requests(directory)
