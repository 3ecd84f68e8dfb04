"""The SSE parser's exact edges: the line limit, the end of the body, stray lines, [DONE],
error fields and the messages each failure carries, on hand-built bodies.

Written against mutants of bench/runner/sse.py that survived tests/unit/runner/test_sse.py and
the recorder tests (benchmarks/mutation.py); the survivors that cannot change any result are
listed with their reason in docs/mutation.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.runner.sse import SseParser, StreamProtocolError, error_message


class Collect(SseParser):
    def __init__(self, t_origin: float = 0.0, max_line_bytes: int = 1 << 20) -> None:
        super().__init__(t_origin, max_line_bytes)
        self.got: list[tuple[float, dict[str, Any]]] = []

    def on_event(self, t: float, event: dict[str, Any]) -> None:
        self.got.append((t, event))


def parsed(*reads: bytes, keep_events: bool = False) -> Collect:
    parser = Collect(t_origin=10.0)
    parser.keep_events = keep_events
    for i, data in enumerate(reads, start=1):
        parser.feed(10.0 + i, data)
    parser.close(10.0 + len(reads) + 1)
    return parser


def failure(*reads: bytes) -> StreamProtocolError:
    with pytest.raises(StreamProtocolError) as info:
        parsed(*reads)
    return info.value


# -- the line limit --------------------------------------------------------------------------


def test_the_line_limit_counts_every_held_piece_and_says_how_much():
    parser = Collect(max_line_bytes=64)
    with pytest.raises(StreamProtocolError) as info:
        for _ in range(10):
            parser.feed(1.0, b"x" * 10)  # a 100-byte line in ten reads
    assert info.value.kind == "chunk_too_large"
    assert str(info.value) == "an SSE line exceeded 64 bytes (70 buffered)"


def test_a_line_of_exactly_the_limit_is_fine():
    line = b'data: {"a": "' + b"x" * 49 + b'"}'
    assert len(line) == 64
    parser = Collect(max_line_bytes=64)
    parser.feed(1.0, line)
    parser.feed(2.0, b"\n\n")
    assert [e for _, e in parser.got] == [{"a": "x" * 49}]


# -- the end of the body ---------------------------------------------------------------------


def test_a_last_event_without_blank_line_is_flushed_at_close_time():
    parser = parsed(b'data: {"a"', b': 1}')  # the line itself is never ended either
    assert parser.got == [(pytest.approx(3.0), {"a": 1})]


def test_an_empty_body_or_only_comments_is_no_error_and_no_event():
    for body in (b"", b": ping\n\n", b"\n\n"):
        parser = parsed(body)
        assert parser.got == [] and not parser.saw_event


@pytest.mark.parametrize("body", [b"\xef", b"\xef\xbb"])
def test_a_body_of_only_a_bom_prefix_is_not_sse(body):
    exc = failure(body)
    assert exc.kind == "not_sse" and str(exc) == f"body is not an SSE stream: {body!r}"


def test_a_text_body_is_not_sse_at_its_end():
    exc = failure(b"hello world\n", b"second line\n")
    assert exc.kind == "not_sse" and str(exc) == "body is not an SSE stream: b'hello world'"
    long = failure(b"y" * 100 + b"\n")
    assert str(long) == f"body is not an SSE stream: {b'y' * 80!r}"


def test_an_unknown_field_before_events_is_legal_sse():
    parser = parsed(b"hello world\n", b'data: {"a": 1}\n\n')
    assert [e for _, e in parser.got] == [{"a": 1}]


# -- stray lines -----------------------------------------------------------------------------


@pytest.mark.parametrize("first", [b"<html>", b"[1, 2]", b"  <p>bad gateway</p>", b"\t[]"])
def test_a_markup_or_json_line_fails_at_once_even_if_events_follow(first):
    exc = failure(first + b'\ndata: {"a": 1}\n\n')
    assert exc.kind == "not_sse" and str(exc) == f"body is not an SSE stream: {first!r}"


def test_the_not_sse_message_shows_80_bytes_of_the_line():
    line = b"<" + b"p" * 120
    assert str(failure(line + b"\n")) == f"body is not an SSE stream: {line[:80]!r}"


def test_an_indented_json_error_body_gives_the_servers_message():
    exc = failure(b'   {"error": {"message": "model not found", "code": 404}}\n')
    assert exc.kind == "server_error_body" and str(exc) == "model not found (code 404)"


# -- [DONE] ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"[DONE]", b" [DONE]", b"[DONE]  ", b"  [DONE]       "])
def test_done_with_padding_under_16_bytes_ends_the_stream(payload):
    assert len(payload) < 16
    parser = parsed(b'data: {"a": 1}\n\ndata:' + payload + b'\n\ndata: {"b": 2}\n\n', keep_events=True)
    assert parser.done_seen and [e for _, e in parser.got] == [{"a": 1}]
    assert parser.events[-1][2] == "[DONE]"


def test_done_padded_to_16_bytes_is_not_the_marker():
    payload = b"[DONE]" + b" " * 10
    exc = failure(b"data:" + payload + b"\n\n")
    assert exc.kind == "malformed_chunk"


# -- event types, error fields and messages --------------------------------------------------


def test_an_event_type_that_is_not_utf8_is_kept_with_a_replacement_character():
    parser = parsed(b'event: a\xffb\ndata: {"a": 1}\n\n', keep_events=True)
    assert parser.events == [(pytest.approx(1.0), "a\ufffdb", {"a": 1})]


def test_error_field_lines_are_joined_with_newlines():
    exc = failure(b"error: first line\nerror: second line\n\n")
    assert exc.kind == "server_error_event" and str(exc) == "first line\nsecond line"


def test_an_error_field_that_is_not_utf8_keeps_a_replacement_character():
    assert str(failure(b"error: out \xff of memory\n\n")) == "out \ufffd of memory"


def test_a_chunk_that_is_not_an_object_says_what_it_was():
    assert str(failure(b"data: [1, 2]\n\n")) == "chunk is not a JSON object: b'[1, 2]'"
    payload = b"[" + b"1, " * 40 + b"1]"
    assert str(failure(b"data: " + payload + b"\n\n")) == f"chunk is not a JSON object: {payload[:80]!r}"


def test_invalid_json_says_what_it_was():
    assert str(failure(b"data: {oops\n\n")) == "invalid JSON in chunk: b'{oops'"
    payload = b"{" + b"x" * 100
    assert str(failure(b"data: " + payload + b"\n\n")) == f"invalid JSON in chunk: {payload[:80]!r}"


@pytest.mark.parametrize(("obj", "text"), [
    ({"error": {"msg": "bad input"}}, "bad input"),
    ({"error": {"detail": "no such model"}}, "no such model"),
    ({"error": {"message": "m", "type": "invalid_request_error"}}, "m (code invalid_request_error)"),
    ({"error": {"message": "too long"}}, "too long"),
    ({"error": {"message": "error 400: too long", "code": 400}}, "error 400: too long"),
    ({"error": {"code": 500}}, '{"code": 500}'),
    ({"error": {"code": 7, "info": "débordement"}}, '{"code": 7, "info": "débordement"}'),
    ("", "an error event without a message"),
    ({"error": ""}, "an error event without a message"),
])
def test_error_message_exactly(obj, text):
    assert error_message(obj) == text


def test_error_message_is_cut_at_500_characters():
    assert error_message({"error": {"message": "e" * 600}}) == "e" * 500
    assert error_message("f" * 600) == "f" * 500


# -- fields, the BOM and the parser's initial state --------------------------------------------


def test_a_fresh_parser_has_seen_nothing_and_keeps_no_events():
    parser = Collect()
    assert parser.saw_event is False and parser.done_seen is False
    parser.feed(1.0, b'data: {"a": 1}\n\n')
    parser.close(2.0)
    assert parser.done_seen is False and parser.events == [] and parser.got == [(1.0, {"a": 1})]


def test_id_and_retry_alone_are_legal_sse():
    parser = parsed(b"id: 7\nretry: 3000\n\n")
    assert parser.got == [] and not parser.saw_event


def test_a_field_name_without_colon_has_an_empty_value():
    # "data" alone is a data field with an empty value: a keep-alive here, not a stray line
    parser = parsed(b"data\n\n")
    assert parser.got == [] and not parser.saw_event


def test_a_body_of_only_a_bom_is_empty():
    parser = parsed(b"\xef\xbb\xbf")
    assert parser.got == [] and not parser.saw_event


def test_bom_bytes_after_the_first_read_are_data():
    parser = parsed(b'data: {"a": "', b'\xef\xbb\xbfx"}\n\n')
    assert [e for _, e in parser.got] == [{"a": "\ufeffx"}]


def test_the_line_limit_starts_afresh_after_a_held_line_ends():
    line = b'data: {"a": "' + b"x" * 49 + b'"}'  # 64 bytes: exactly the limit
    parser = Collect(max_line_bytes=64)
    parser.feed(1.0, b'data: {"b"')
    parser.feed(2.0, b": 2}\n\n" + line)
    parser.feed(3.0, b"\n\n")
    assert [e for _, e in parser.got] == [{"b": 2}, {"a": "x" * 49}]
