"""Templated content chunks (bench.runner.recorder's module doc): a later chunk that is the
learnt one with another text is recorded without a parse, and anything else is parsed, so
the record is what the texts written into the stream say, and a broken chunk still fails."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.records import KIND_CONTENT, KIND_OTHER, KIND_ROLE, KIND_USAGE, NO_TOKENS
from bench.runner.chunked import ChunkedBody
from bench.runner.recorder import StreamRecorder
from bench.runner.sse import StreamProtocolError

VLLM = (b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]}')


class Counting(StreamRecorder):
    """Counts the events parsed in full (the templated ones never reach on_event) and the
    tries to learn a template."""

    def __init__(self, n: int = 1) -> None:
        super().__init__(0.0, n=n)
        self.parsed = 0
        self.payloads = 0
        self.learnt = 0
        self.keep_text = True

    def on_event(self, t: float, event: dict[str, Any]) -> None:
        self.parsed += 1
        super().on_event(t, event)

    def _payload_event(self, t: float, kind: str | None, payload: bytes) -> None:
        self.payloads += 1  # events that went through the SSE parse
        super()._payload_event(t, kind, payload)

    def _learn(self, choice: dict[str, Any]) -> None:
        self.learnt += 1
        super()._learn(choice)


def _sse(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def _content(text: str) -> bytes:
    return _sse(VLLM % orjson.dumps(text))


def _feed(rec: StreamRecorder, reads: list[bytes]) -> StreamRecorder:
    for i, data in enumerate(reads, start=1):
        rec.feed(float(i), data)
    return rec


def test_after_the_second_content_chunk_the_rest_are_not_parsed_and_read_the_same():
    texts = [" The", " caf\u00e9", " \u4e16\u754c", " 42", "!"]
    rec = _feed(Counting(), [_content(t) for t in texts])
    assert rec.parsed == 2  # the first, and the second, which the template was learnt from
    assert rec.payloads == 2  # each later read, one whole event, skipped the SSE parse too
    assert rec.text_parts == texts and rec.output_chars == sum(len(t) for t in texts)
    assert list(rec.chunks.kind) == [KIND_CONTENT] * 5 and list(rec.chunks.t) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(rec.chunks.choice) == [0] * 5 and rec.first_token_t == 1.0


def test_texts_the_template_cannot_hold_are_parsed_and_decoded():
    # a quote, a backslash, an escaped newline and tab: JSON escapes, so the full parse decodes them
    texts = [" a", 'say "hi"', "back\\slash", "line\nend", "tab\there", " b"]
    rec = _feed(Counting(), [_content(t) for t in texts])
    assert rec.parsed == 5  # all but the last, which the template took
    assert rec.text_parts == texts and rec.output_chars == sum(len(t) for t in texts)


@pytest.mark.parametrize("keep_text", [True, False])
@pytest.mark.parametrize("middle", [b"raw\x01control", b"bad \xff utf-8", b"cr\rinside"])
def test_a_chunk_that_is_not_json_fails_even_when_it_fits_the_template(middle, keep_text):
    rec = Counting()
    rec.keep_text = keep_text  # the text made (`text_in`), or only counted (`chars_in`)
    _feed(rec, [_content(" ok"), _content(" ok")])
    with pytest.raises(StreamProtocolError) as err:
        rec.feed(3.0, _sse(VLLM % (b'"' + middle + b'"')))
    assert err.value.kind == "malformed_chunk"
    assert len(rec.chunks.t) == 2


@pytest.mark.parametrize("open_state", [b"data: x", b'data: {"a":1}\n', b"event: delta\n", b"error: boom\n"])
def test_a_whole_templated_event_after_an_open_line_or_event_belongs_to_it(open_state):
    """A read that looks like a templated event continues what an earlier read left open:
    a line (the joined line is no JSON), an event's data lines (joined, no JSON), its type
    (`event: delta` makes it a typed event, parsed in full) or an error field."""
    rec = _feed(Counting(), [_content(" ok"), open_state])
    if open_state == b"event: delta\n":
        rec.feed(3.0, _content(" b"))
        assert rec.text_parts == [" ok", " b"] and rec.parsed == 2
        return
    with pytest.raises(StreamProtocolError) as err:
        rec.feed(3.0, _content(" b"))
    assert err.value.kind == ("server_error_event" if open_state.startswith(b"error") else "malformed_chunk")
    assert rec.text_parts == [" ok"]


def test_an_empty_text_in_the_template_is_no_content():
    rec = _feed(Counting(), [_content(" a"), _content(" b"), _content(""), _content(" c")])
    assert list(rec.chunks.kind) == [KIND_CONTENT, KIND_CONTENT, KIND_OTHER, KIND_CONTENT]
    assert rec.text_parts == [" a", " b", " c"]


def test_a_running_usage_is_counted_on_every_chunk_even_when_it_repeats():
    # a server that repeats the same running count: the first chunk carries 2 tokens, the rest none
    chunk = b'{"choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}],"usage":{"completion_tokens":2}}'
    rec = _feed(Counting(), [_sse(chunk % orjson.dumps(t)) for t in [" a", " b", " c"]])
    assert list(rec.chunks.tokens) == [2, 0, 0] and rec.parsed == 3


def test_only_content_chunks_are_learnt_from_and_a_stream_that_never_fits_stops_trying():
    reasoning = b'{"choices":[{"index":0,"delta":{"reasoning_content":%s},"finish_reason":null}]}'
    rec = _feed(Counting(), [_sse(reasoning % orjson.dumps(f" r{i}")) for i in range(10)]
                + [_content(t) for t in [" a", " b", " c"]])
    assert rec.parsed == 11 and rec.learnt == 1 and rec.text_parts == [" a", " b", " c"]
    # a server that escapes every non-ASCII text (\u00e9) as orjson does not: no template fits
    escaped = [_sse(VLLM % b'"\\u%04x"' % (0xe0 + i)) for i in range(20)]
    rec = _feed(Counting(), escaped)
    assert rec.text_parts == [chr(0xe0 + i) for i in range(20)] and rec.parsed == 20 and rec.learnt == 8


def test_a_one_token_answer_learns_nothing():
    usage = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}'
    rec = _feed(Counting(), [_content(" a"), _sse(usage), b"data: [DONE]\n\n"])
    assert rec.learnt == 0 and rec.text_parts == [" a"] and rec.usage_tokens() == (3, 1)


def test_a_lone_surrogate_text_is_parsed_and_learnt_from_no_further():
    lone = _sse(VLLM % b'"\\ud800"')  # orjson refuses it; Python's json reads it
    rec = _feed(Counting(), [_content(" a"), lone, _content(" b"), _content(" c")])
    assert rec.text_parts == [" a", "\ud800", " b", " c"] and rec.parsed == 3 and rec.learnt == 2


def test_every_output_text_is_kept_when_asked():
    rec = Counting()
    rec.keep_output = True
    _feed(rec, [_content(t) for t in [" a", " b", " c"]])
    assert rec.output_texts() == (" a b c",) and rec.parsed == 2


def test_nothing_after_done_is_recorded():
    rec = _feed(Counting(), [_content(" a"), b"data: [DONE]\n\n", _content(" late")])
    assert rec.text_parts == [" a"] and len(rec.chunks.t) == 1


def test_a_chunk_whose_end_differs_in_a_value_of_the_same_length_is_parsed():
    # `"finish_reason":true` is as long as `...:null`: the end must match, not only the length
    odd = VLLM.replace(b'"finish_reason":null', b'"finish_reason":true') % b'" b"'
    rec = _feed(Counting(), [_content(" a"), _content(" a"), _sse(odd)])
    assert rec.text_parts == [" a", " a", " b"] and rec.finish_reason() == "True"


def test_a_quote_in_the_middle_is_parsed_as_the_json_it_makes():
    # the learnt parts around `x","role":"y` make valid JSON with another structure
    rec = _feed(Counting(), [_content(" ok"), _sse(VLLM % b'"x","role":"y"')])
    assert rec.text_parts == [" ok", "x"] and rec.parsed == 2


def test_a_finish_reason_usage_or_error_changes_the_bytes_and_is_parsed():
    finish = VLLM.replace(b'"finish_reason":null', b'"finish_reason":"length"') % b'" end"'
    usage = b'{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}'
    rec = _feed(Counting(), [_content(" a"), _content(" b"), _sse(finish), _sse(usage), b"data: [DONE]\n\n"])
    assert rec.finish_reason() == "length" and rec.usage_tokens() == (3, 3) and rec.done_seen
    assert list(rec.chunks.kind) == [KIND_CONTENT, KIND_CONTENT, KIND_CONTENT, KIND_USAGE]
    assert rec.text_parts == [" a", " b", " end"]
    error = VLLM.replace(b'"model":"m",', b'"model":"m","error":{"message":"boom"},') % b'" c"'
    rec = _feed(Counting(), [_content(" a"), _content(" b")])
    with pytest.raises(StreamProtocolError) as err:
        rec.feed(3.0, _sse(error))
    assert err.value.kind == "server_error_event" and "boom" in str(err.value)


def test_an_equal_string_before_the_text_is_not_taken_for_it():
    chunk = b'{"tag":" a","choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}]}'
    moved_tag = b'{"tag":" z","choices":[{"index":0,"delta":{"content":" a"},"finish_reason":null}]}'
    # learnt from the second: " a" is first found as the tag, which the probe rules out
    rec = _feed(Counting(), [_sse(chunk % b'" a"'), _sse(chunk % b'" a"'), _sse(moved_tag), _sse(chunk % b'" b"')])
    assert rec.text_parts == [" a", " a", " a", " b"]


def test_a_text_found_elsewhere_in_the_chunk_is_not_taken_for_the_template():
    # The server escapes the text (\u00e9), and the model's name is that very text unescaped:
    # "é" is found once in the chunk, but not where the text is; the probe finds that out.
    chunk = b'{"model":"\xc3\xa9","choices":[{"index":0,"delta":{"content":"\\u00e9"},"finish_reason":null}]}'
    other_model = chunk.replace(b'"model":"\xc3\xa9"', b'"model":"x"')
    rec = _feed(Counting(), [_sse(chunk), _sse(chunk), _sse(other_model)])
    assert rec.text_parts == ["\u00e9"] * 3


def test_a_constant_field_that_moves_makes_a_new_template():
    later = VLLM.replace(b'"created":1', b'"created":2')
    rec = _feed(Counting(), [_content(" a"), _content(" b"), _sse(later % b'" c"'), _sse(later % b'" d"')])
    assert rec.text_parts == [" a", " b", " c", " d"] and rec.parsed == 3


def test_completions_text_chunks_take_the_template_too():
    chunk = b'{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":%s,"finish_reason":null}]}'
    rec = _feed(Counting(), [_sse(chunk % orjson.dumps(t)) for t in [" x", " y", " z"]])
    assert rec.text_parts == [" x", " y", " z"] and rec.parsed == 2


def test_no_template_with_several_choices_or_when_events_are_kept():
    two = Counting(n=2)
    _feed(two, [_content(" a"), _content(" b"), _content(" c")])
    assert two.parsed == 3
    kept = Counting()
    kept.keep_events = True
    _feed(kept, [_content(" a"), _content(" b")])
    assert kept.parsed == 2 and [e[2]["choices"][0]["delta"]["content"] for e in kept.events] == [" a", " b"]


def test_a_read_that_ends_inside_an_event_is_not_mistaken_for_a_whole_one():
    # the second read opens an event that the third ends: no template match on a part
    whole = _content(" b")
    rec = _feed(Counting(), [_content(" a"), whole[:-1], whole[-1:] + _content(" c")])
    assert rec.text_parts == [" a", " b", " c"] and list(rec.chunks.t) == [1.0, 3.0, 3.0]


CHARS = st.characters(blacklist_categories=("Cs",))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(CHARS, min_size=1, max_size=8), st.integers(1, 3)), min_size=1, max_size=12),
       st.sets(st.integers(1, 400), max_size=12), st.booleans())
def test_any_texts_any_moves_any_cuts_record_exactly_the_texts_written(pieces, cuts, keep_text):
    """Independent truth: the texts the stream was built from, whatever they hold, whatever
    constant field moves between chunks, however the body is cut into reads."""
    role = b'{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}'
    body = _sse(role)
    for text, created in pieces:
        body += _sse(VLLM.replace(b'"created":1', b'"created":%d' % created) % orjson.dumps(text))
    body += b"data: [DONE]\n\n"
    at = sorted(c for c in cuts if c < len(body))
    reads = [body[i:j] for i, j in zip([0, *at], [*at, len(body)], strict=True)]
    rec = Counting()
    rec.keep_text = keep_text  # without it, a templated text is only counted (`chars_in`)
    _feed(rec, reads)
    texts = [text for text, _ in pieces]
    assert rec.text_parts == (texts if keep_text else [])
    assert rec.output_chars == sum(len(t) for t in texts)
    assert list(rec.chunks.kind) == [KIND_ROLE] + [KIND_CONTENT] * len(texts)
    assert rec.done_seen and rec.incomplete() is None
    assert KIND_OTHER not in list(rec.chunks.kind)


# -- reads that are one whole HTTP chunk (`StreamRecorder.take`, as the connection offers them)


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _read_framed(rec: StreamRecorder, reads: list[bytes]) -> int:
    """What the connection does with each read of a chunked body: a read that is one whole
    chunk is offered to `take`, anything it does not take is decoded and fed. Returns
    how many reads `take` took."""
    body, taken = ChunkedBody(), 0
    for i, data in enumerate(reads, start=1):
        start = body.whole_chunk(data)
        if start and rec.take(float(i), data, start, len(data) - 2):
            taken += 1
            continue
        rec.feed(float(i), body.feed(data))
    return taken


@pytest.mark.parametrize("keep_text", [True, False])
def test_a_whole_chunk_read_is_recorded_as_its_decoded_data_would_be(keep_text):
    texts = [" The", " caf\u00e9", 'say "hi"', " \u4e16\u754c", "back\\slash", " 42", "!"]
    events = [_sse(b'{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}')]
    events += [_content(t) for t in texts]
    events.append(_sse(b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
                       b'"usage":{"prompt_tokens":3,"completion_tokens":7}}'))
    events.append(b"data: [DONE]\n\n")
    framed, plain = Counting(), Counting()
    framed.keep_text = plain.keep_text = keep_text
    taken = _read_framed(framed, [_frame(e) for e in events])
    _feed(plain, events)
    # parsed: the role, " The", " café" (learnt from), the two escaped texts and the finish
    assert taken == 3 and framed.parsed == plain.parsed == 6
    for column in ("t", "kind", "tokens", "choice"):
        assert list(getattr(framed.chunks, column)) == list(getattr(plain.chunks, column)), column
    assert list(framed.chunks.kind) == [KIND_ROLE] + [KIND_CONTENT] * 7 + [KIND_OTHER]
    assert list(framed.chunks.t) == [float(i) for i in range(1, 10)]
    assert framed.output_chars == sum(len(t) for t in texts)
    assert framed.text_parts == (texts if keep_text else [])
    assert framed.finish_reason() == "stop" and framed.done_seen and framed.usage_tokens() == (3, 7)


@pytest.mark.parametrize("open_state", [b"data: x", b'data: {"a":1}\n', b"event: delta\n", b"error: boom\n",
                                        b"data: [DONE]\n\n"])
def test_a_whole_chunk_is_not_taken_while_an_event_is_open_or_after_done(open_state):
    rec = _feed(Counting(), [_content(" a"), _content(" b"), open_state])
    before = len(rec.chunks)
    frame = _frame(_content(" c"))
    assert not rec.take(4.0, frame, frame.index(b"\r\n") + 2, len(frame) - 2)
    assert len(rec.chunks) == before and rec.text_parts == [" a", " b"]


def test_a_whole_chunk_is_not_taken_before_a_template_or_when_its_data_is_not_one_event():
    rec = _feed(Counting(), [_content(" a")])
    frame = _frame(_content(" b"))
    assert not rec.take(2.0, frame, frame.index(b"\r\n") + 2, len(frame) - 2)  # nothing learnt yet
    rec.feed(2.0, _content(" b"))
    for data in (_content(" c") + _content(" d"), _content(" c")[:-1], b"\n" + _content(" c"),
                 _content('"q"'), _content(" c").replace(b'"index":0', b'"index":1')):
        frame = _frame(data)
        assert not rec.take(3.0, frame, frame.index(b"\r\n") + 2, len(frame) - 2), data
    assert rec.text_parts == [" a", " b"] and len(rec.chunks) == 2


def test_every_column_is_as_long_as_the_others_whenever_read():
    rec = Counting()
    rec.keep_text = False
    reads = [_frame(_content(t)) for t in [" a", " b", " c", " d"]]
    _read_framed(rec, reads)
    chunks = rec.chunks
    assert [len(chunks.t), len(chunks.kind), len(chunks.tokens), len(chunks.choice)] == [4] * 4
    assert list(chunks.tokens) == [NO_TOKENS] * 4 and list(chunks.choice) == [0] * 4
    rec.feed(5.0, _sse(b'{"choices":[],"usage":{"completion_tokens":4}}'))
    assert list(rec.chunks.kind) == [KIND_CONTENT] * 4 + [KIND_USAGE] and list(rec.chunks.t) == [1.0, 2.0, 3.0, 4.0, 5.0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(CHARS, min_size=1, max_size=8), min_size=1, max_size=12),
       st.lists(st.integers(0, 3), min_size=1, max_size=12), st.sets(st.integers(1, 600), max_size=6),
       st.booleans())
def test_any_texts_framed_and_cut_any_way_record_exactly_the_texts_written(texts, splits, cuts, keep_text):
    """Independent truth: the texts the stream was built from. Each event is framed as one
    chunk, or split across two (`splits`: where, none when 0); the body is read a chunk per
    read, except that `cuts` cut it elsewhere too."""
    role = b'{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}'
    events = [_sse(role)] + [_content(t) for t in texts] + [b"data: [DONE]\n\n"]
    frames = []
    for i, event in enumerate(events):
        at = splits[i % len(splits)] * len(event) // 4
        frames += [_frame(event[:at]), _frame(event[at:])] if at else [_frame(event)]
    body = b"".join(frames) + b"0\r\n\r\n"
    ends = set(itertools.accumulate(len(f) for f in frames)) | {c for c in cuts if c < len(body)}
    at = sorted(ends | {len(body)})
    reads = [body[i:j] for i, j in zip([0, *at[:-1]], at, strict=True)]
    rec = Counting()
    rec.keep_text = keep_text
    _read_framed(rec, reads)
    assert rec.output_chars == sum(len(t) for t in texts)
    assert rec.text_parts == (texts if keep_text else [])
    assert list(rec.chunks.kind) == [KIND_ROLE] + [KIND_CONTENT] * len(texts)
    assert rec.done_seen and rec.incomplete() is None
