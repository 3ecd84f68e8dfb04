import orjson
import pytest

from bench.records import CHUNK_KINDS
from bench.runner.recorder import StreamRecorder
from bench.runner.sse import StreamProtocolError


def _event(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


ROLE = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}
TOKEN = {"choices": [{"index": 0, "delta": {"content": " word"}}]}
FINISH = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
USAGE = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}


def kinds(rec):
    return [CHUNK_KINDS[k] for k in rec.chunks.kind]


def test_role_only_chunk_is_not_the_first_token():
    rec = StreamRecorder(t_origin=100.0)
    rec.feed(100.5, _event(ROLE))
    rec.feed(101.0, _event(TOKEN))
    rec.feed(101.5, _event(TOKEN) + _event(FINISH) + _event(USAGE) + b"data: [DONE]\n\n")
    rec.close(102.0)
    assert kinds(rec) == ["role", "content", "content", "other", "usage"]
    assert rec.first_token_t == pytest.approx(1.0)
    assert list(rec.chunks.t) == pytest.approx([0.5, 1.0, 1.5, 1.5, 1.5])  # one stamp per read
    assert rec.done_seen and rec.finish_reason() == "stop"
    assert rec.usage_tokens() == (7, 2)


def test_event_split_across_reads_and_crlf_and_no_space_after_colon():
    payload = b"data:" + orjson.dumps(TOKEN) + b"\r\n\r\n"
    rec = StreamRecorder(0.0)
    rec.feed(1.0, payload[:7])
    rec.feed(2.0, payload[7:20])
    assert len(rec.chunks) == 0
    rec.feed(3.0, payload[20:])
    assert kinds(rec) == ["content"]
    assert rec.chunks.t[0] == 3.0  # stamped when the event completed


def test_comments_and_keepalives_are_ignored():
    rec = StreamRecorder(0.0)
    rec.feed(1.0, b": ping\n\n" + _event(TOKEN) + b": keep-alive\n\nevent: message\n" + _event(TOKEN))
    assert kinds(rec) == ["content", "content"]


def test_malformed_json_raises_with_kind():
    rec = StreamRecorder(0.0)
    with pytest.raises(StreamProtocolError) as info:
        rec.feed(1.0, b"data: {not json\n\n")
    assert info.value.kind == "malformed_chunk"


def test_oversized_line_is_cut_off():
    rec = StreamRecorder(0.0, max_line_bytes=1000)
    with pytest.raises(StreamProtocolError) as info:
        rec.feed(1.0, b"data: " + b"x" * 5000)
    assert info.value.kind == "chunk_too_large"


def test_json_body_instead_of_sse():
    rec = StreamRecorder(0.0)
    with pytest.raises(StreamProtocolError) as info:
        rec.feed(1.0, b'{"id": "x", "choices": []}\n')
    assert info.value.kind == "not_sse"


def test_reasoning_then_content_and_continuous_usage_token_counts():
    rec = StreamRecorder(0.0)
    first = {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}], "usage": {"completion_tokens": 1}}
    second = {"choices": [{"index": 0, "delta": {"content": " a b"}}], "usage": {"completion_tokens": 3}}
    rec.feed(1.0, _event(first))
    rec.feed(2.0, _event(second))
    assert kinds(rec) == ["reasoning", "content"]
    assert list(rec.chunks.tokens) == [1, 2]
    assert rec.first_token_t == 1.0


def test_completions_text_chunks_and_choices_index():
    rec = StreamRecorder(0.0, n=2)
    rec.feed(1.0, _event({"choices": [{"index": 1, "text": " hi"}]}))
    assert kinds(rec) == ["content"]
    assert rec.chunks.choice[0] == 1


def test_error_event_in_stream():
    rec = StreamRecorder(0.0)
    with pytest.raises(StreamProtocolError) as info:
        rec.feed(1.0, _event({"error": {"message": "boom"}}))
    assert info.value.kind == "server_error_event"


def test_one_usage_chunk_per_choice_is_summed():
    # llama.cpp with n=2: each choice ends with its own usage chunk counting its own tokens
    rec = StreamRecorder(0.0)
    usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    rec.feed(1.0, _event(usage) + _event(usage) + b"data: [DONE]\n\n")
    assert rec.usage_tokens() == (5, 6)
    single = StreamRecorder(0.0)
    single.feed(1.0, _event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}}))
    assert single.usage_tokens() == (5, 6)
