"""The recorder against the SSE rules and the chunk dialects servers use, one read at a time.

End-to-end versions of these streams, through a real loopback server, client and store,
are in tests/dialects/; these pin the recorder's own rules exactly.
"""

from __future__ import annotations

import orjson
import pytest

from bench.records import CHUNK_KINDS
from bench.runner.recorder import StreamRecorder
from bench.runner.sse import StreamProtocolError, json_body_error


def ev(obj: object, eol: bytes = b"\n") -> bytes:
    return b"data: " + orjson.dumps(obj) + eol + eol


def delta(d: dict, index: int = 0, finish: str | None = None) -> dict:
    return {"choices": [{"index": index, "delta": d, "finish_reason": finish}]}


ROLE = delta({"role": "assistant", "content": None})
FINISH = delta({}, finish="stop")
USAGE = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
DONE = b"data: [DONE]\n\n"
STREAM = ev(ROLE) + ev(delta({"content": "a"})) + ev(delta({"content": "b"})) + ev(FINISH) + ev(USAGE) + DONE


def kinds(rec: StreamRecorder) -> list[str]:
    return [CHUNK_KINDS[k] for k in rec.chunks.kind]


def fed(*reads: bytes, n: int = 1, close: bool = True) -> StreamRecorder:
    """A recorder fed `reads` at t = 1, 2, 3, ... s; closed at the next second."""
    rec = StreamRecorder(0.0, n=n)
    for i, data in enumerate(reads, 1):
        rec.feed(float(i), data)
    if close:
        rec.close(float(len(reads) + 1))
    return rec


def summary(rec: StreamRecorder) -> tuple:
    return (kinds(rec), list(rec.chunks.choice), rec.done_seen, rec.finish_reason(), rec.usage_tokens())


# -- framing ---------------------------------------------------------------------------------


def test_every_split_point_gives_the_same_events():
    whole = summary(fed(STREAM))
    assert whole == (["role", "content", "content", "other", "usage"], [0] * 5, True, "stop", (3, 2))
    for cut in range(1, len(STREAM)):
        assert summary(fed(STREAM[:cut], STREAM[cut:])) == whole, cut


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_line_ends_cut_anywhere(eol: bytes):
    body = STREAM.replace(b"\n", eol)
    whole = fed(body)
    assert summary(whole) == summary(fed(STREAM))
    for cut in range(1, len(body)):
        assert summary(fed(body[:cut], body[cut:])) == summary(whole), cut


def test_cr_lf_cut_between_reads_is_one_line_end():
    # "data: x\r" | "\n" must not end the event early: its second data line belongs to it
    rec = fed(b'data: {"choices": [{"index": 0,\r', b'\ndata: "delta": {"content": "hi"}}]}\r\n\r\n')
    assert kinds(rec) == ["content"] and rec.chunks.t[0] == 2.0


def test_multi_line_data_is_joined_with_newlines():
    rec = fed(b'data: {"choices":\ndata: [{"index": 0, "delta": {"content": "x"}}]}\n\n')
    assert kinds(rec) == ["content"]


@pytest.mark.parametrize("reads", [
    [b"\xef\xbb\xbf" + STREAM],
    [b"\xef", b"\xbb\xbf" + STREAM],
    [b"\xef\xbb", b"\xbf", STREAM],
])
def test_leading_bom_is_dropped(reads: list[bytes]):
    assert summary(fed(*reads)) == summary(fed(STREAM))


@pytest.mark.parametrize("keepalive", [b"data:\n\n", b"data: \n\n", b"data:  \n\n", b"data\n\n",
                                       b": ping\n\n", b"event: ping\n\n", b"id: 7\nretry: 3000\n\n"])
def test_empty_events_and_comments_are_not_chunks(keepalive: bytes):
    rec = fed(ev(delta({"content": "a"})), keepalive, ev(delta({"content": "b"})), keepalive + ev(FINISH) + DONE)
    assert kinds(rec) == ["content", "content", "other"] and list(rec.chunks.t) == [1.0, 3.0, 4.0]
    assert rec.incomplete() is None


def test_unknown_fields_and_named_events_are_tolerated():
    rec = fed(b"event: message\nid: 1\nfoo: bar\nbaz\n" + ev(delta({"content": "a"})) + DONE)
    assert kinds(rec) == ["content"] and rec.done_seen


def test_payload_json_accepts_lone_surrogates_and_nan():
    body = b'data: {"choices": [{"index": 0, "delta": {"content": "\\ud83d"}}], "x": NaN}\n\n'
    rec = fed(body + DONE)
    assert kinds(rec) == ["content"] and rec.output_chars == 1
    rec.keep_text = True
    assert isinstance(rec.text(), str)


def test_invalid_json_is_still_malformed():
    with pytest.raises(StreamProtocolError) as info:
        fed(b"data: {not json\n\n")
    assert info.value.kind == "malformed_chunk"


# -- errors in a 200 stream -------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'error: {"code": 400, "message": "the request exceeds the available context size"}\n\n' + DONE,
    b'event: error\ndata: {"message": "the request exceeds the available context size", "code": 400}\n\n',
    ev({"error": {"message": "the request exceeds the available context size", "code": 400}}),
    ev({"choices": [{"index": 0, "delta": {}}],
        "error": {"message": "the request exceeds the available context size"}}),
    ev({"error": "the request exceeds the available context size", "error_type": "validation"}),
])
def test_error_in_a_200_stream_fails_with_the_servers_message(body: bytes):
    for reads in ([body], [ev(ROLE), ev(delta({"content": "a"})), body], [STREAM.replace(DONE, b""), body]):
        with pytest.raises(StreamProtocolError) as info:
            fed(*reads)
        assert info.value.kind == "server_error_event"
        assert "the request exceeds the available context size" in str(info.value)


def test_error_field_without_blank_line_at_end_of_body_still_fails():
    with pytest.raises(StreamProtocolError) as info:
        fed(ev(delta({"content": "a"})), b'error: {"message": "overloaded"}')
    assert info.value.kind == "server_error_event" and "overloaded" in str(info.value)


@pytest.mark.parametrize("value", [None, False, ""])
def test_a_null_error_key_is_no_error(value: object):
    rec = fed(ev({"choices": [{"index": 0, "delta": {"content": "a"}}], "error": value}) + DONE)
    assert kinds(rec) == ["content"]


def test_json_error_body():
    assert json_body_error(b'{"error": {"message": "model not loaded", "code": 503}}') == \
        "model not loaded (code 503)"
    assert json_body_error(b'{"error": "busy"}') == "busy"
    assert json_body_error(b'{"object": "chat.completion", "choices": []}') is None
    assert json_body_error(b"<html>") is None
    with pytest.raises(StreamProtocolError) as info:  # the same body under text/event-stream
        fed(b'{"error": {"message": "model not loaded"}}\n')
    assert info.value.kind == "server_error_body" and "model not loaded" in str(info.value)


# -- output kinds -------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "kind"), [
    ({"content": "x"}, "content"),
    ({"content": [{"type": "text", "text": "x"}]}, "content"),
    ({"reasoning_content": "x"}, "reasoning"),
    ({"reasoning": "x"}, "reasoning"),
    ({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
     "tool_call"),
    ({"tool_calls": [{"index": 0, "function": {"arguments": "{\""}}]}, "tool_call"),
    ({"function_call": {"name": "f", "arguments": ""}}, "function_call"),
    ({"refusal": "I can't help with that."}, "refusal"),
    ({"role": "assistant", "content": ""}, "role"),
    ({"content": ""}, "other"),
    ({"content": None, "tool_calls": []}, "other"),
    ({}, "other"),
])
def test_delta_kinds(d: dict, kind: str):
    rec = fed(ev(delta(d)) + DONE)
    assert kinds(rec) == [kind]
    assert (rec.first_token_t is not None) == (kind in ("content", "reasoning", "tool_call", "function_call",
                                                       "refusal"))


def test_content_wins_over_other_kinds_in_one_chunk():
    rec = fed(ev(delta({"content": "x", "reasoning_content": "y", "role": "assistant"})))
    assert kinds(rec) == ["content"]


def test_tool_call_stream_first_token_and_tokens():
    rec = fed(ev(ROLE), ev(delta({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]})),
              *[ev(delta({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]})) for _ in range(4)],
              ev(delta({}, finish="tool_calls")) + ev({"choices": [], "usage": {"completion_tokens": 20}}) + DONE)
    assert kinds(rec) == ["role"] + ["tool_call"] * 5 + ["other", "usage"]
    assert rec.first_token_t == 2.0 and rec.usage_tokens() == (None, 20) and rec.incomplete() is None


# -- choices, finish reasons, end of stream --------------------------------------------------


def test_n1_chunks_with_changing_index_are_one_choice():
    reads = [ev(delta({"content": "x"}, index=i)) for i in range(5)]
    rec = fed(*reads[:-1], ev(delta({"content": "x"}, index=4, finish="stop")) + DONE)
    assert list(rec.chunks.choice) == [0] * 5 and rec.finish_reasons == {0: "stop"}


def test_n2_keeps_choice_indexes():
    rec = fed(ev(delta({"content": "x"}, 0)), ev(delta({"content": "y"}, 1)), n=2)
    assert list(rec.chunks.choice) == [0, 1]


@pytest.mark.parametrize("reason", ["abort", "Abort", "error", "cancelled", "canceled", "aborted"])
def test_cut_off_finish_reasons_are_server_abort(reason: str):
    rec = fed(ev(delta({"content": "x"})), ev(delta({}, finish=reason)) + ev(USAGE) + DONE)
    kind, message = rec.incomplete()
    assert kind == "server_abort" and reason in message and rec.finish_reason() == reason


def test_finish_reason_object_is_read_by_its_type():
    reason = {"type": "abort", "message": "the prefill instance went away"}
    rec = fed(ev(delta({"content": "x"})), ev(delta({}, finish=reason)) + DONE)
    kind, message = rec.incomplete()
    assert kind == "server_abort" and "the prefill instance went away" in message
    assert rec.finish_reason() == "abort"
    assert fed(ev(delta({"content": "x"}, finish={"type": "stop", "matched": 2})) + DONE).incomplete() is None


def test_missing_done_is_fine_when_every_choice_finished():
    rec = fed(ev(delta({"content": "x"})), ev(delta({}, finish="stop")) + ev(USAGE))
    assert not rec.done_seen and rec.incomplete() is None
    two = fed(ev(delta({"content": "x"}, 0, "stop")), ev(delta({"content": "y"}, 1, "length")), n=2)
    assert two.incomplete() is None and two.finish_reason() == "stop,length"


def test_body_ending_before_every_choice_finished_is_dropped():
    assert fed(ev(delta({"content": "x"}))).incomplete()[0] == "stream_dropped"
    half = fed(ev(delta({"content": "x"}, 0, "stop")), ev(delta({"content": "y"}, 1)), n=2)
    kind, message = half.incomplete()
    assert kind == "stream_dropped" and "1 of 2" in message
    # [DONE] is the server saying it is complete, finish_reason or not
    assert fed(ev(delta({"content": "x"})) + DONE).incomplete() is None


def test_unknown_finish_reasons_are_reported_raw():
    rec = fed(ev(delta({"content": "x"}, finish="eos_reached")) + DONE)
    assert rec.incomplete() is None and rec.unknown_finish_reasons() == {"eos_reached"}
    assert fed(ev(delta({"content": "x"}, finish="length")) + DONE).unknown_finish_reasons() == set()


def test_keep_events_lists_every_dispatched_event():
    rec = StreamRecorder(0.0)
    rec.keep_events = True
    rec.feed(1.0, b"event: message\n" + ev(ROLE) + b": ping\n\n" + ev(USAGE) + DONE)
    assert [(t, kind) for t, kind, _ in rec.events] == [(1.0, "message"), (1.0, None), (1.0, None)]
    assert rec.events[0][2] == ROLE and rec.events[-1][2] == "[DONE]"


def test_event_error_with_plain_text_data():
    with pytest.raises(StreamProtocolError) as info:
        fed(ev(delta({"content": "a"})), b"event: error\ndata: CUDA error: out of memory\n\n")
    assert info.value.kind == "server_error_event" and str(info.value) == "CUDA error: out of memory"


def test_one_event_with_both_choices_is_a_row_per_choice():
    both = {"choices": [{"index": 0, "delta": {"content": "x"}}, {"index": 1, "delta": {"content": "y"}}]}
    rec = fed(ev(both), ev(both), n=2)
    assert list(rec.chunks.choice) == [0, 1, 0, 1] and list(rec.chunks.t) == [1.0, 1.0, 2.0, 2.0]
    assert kinds(rec) == ["content"] * 4
    # with a running usage count, the event's new tokens are counted once
    counted = {**both, "usage": {"completion_tokens": 2}}
    rec = fed(ev(counted), ev({**both, "usage": {"completion_tokens": 4}}), n=2)
    assert list(rec.chunks.tokens) == [2, 0, 2, 0]
    # n=1 never splits an event
    assert len(fed(ev(both)).chunks) == 1


def test_nothing_after_done_is_read():
    rec = fed(ev(delta({"content": "a"})) + DONE + b": keepalive\n\n" + ev(delta({"content": "late"})),
              b'error: {"message": "late"}\n\n', b"data: {broken")
    assert kinds(rec) == ["content"] and rec.done_seen and rec.incomplete() is None
