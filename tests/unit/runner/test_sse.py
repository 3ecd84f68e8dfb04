"""The SSE framing on its own (`SseParser`): what reaches `on_event`, when, and what fails.
The OpenAI chunk semantics on top of it are tests/unit/runner/test_recorder*.py."""

from typing import Any

import pytest

from bench.runner.sse import SseParser, StreamProtocolError, error_message


class Collect(SseParser):
    def __init__(self, t_origin: float = 0.0, max_line_bytes: int = 1 << 20) -> None:
        super().__init__(t_origin, max_line_bytes)
        self.got: list[tuple[float, dict[str, Any]]] = []

    def on_event(self, t: float, event: dict[str, Any]) -> None:
        self.got.append((t, event))


def test_events_reach_on_event_with_the_time_of_the_read_that_completed_them():
    body = b'\xef\xbb\xbf: ping\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: x\nid: 7\ndata: {"b": 2}\n\n'
    parser = Collect(t_origin=10.0)
    parser.feed(10.5, body[:4])  # the BOM and one byte: nothing complete yet
    parser.feed(11.0, body[4:30])
    parser.feed(12.0, body[30:])
    parser.close(13.0)
    assert parser.got == [(pytest.approx(2.0), {"a": 1}), (pytest.approx(2.0), {"b": 2})]
    assert parser.saw_event and not parser.done_seen


def test_done_ends_the_stream_and_keeps_events_when_asked():
    parser = Collect()
    parser.keep_events = True
    parser.feed(1.0, b'data: {"a": 1}\n\ndata: [DONE]\n\ndata: {"late": true}\n\n')
    parser.feed(2.0, b'data: {"later": true}\n\n')
    parser.close(3.0)
    assert [e for _, e in parser.got] == [{"a": 1}]
    assert parser.done_seen
    assert parser.events == [(1.0, None, {"a": 1}), (1.0, None, "[DONE]")]


def test_an_empty_data_event_is_a_keepalive_not_an_event():
    parser = Collect()
    parser.feed(1.0, b'data:\n\ndata: \n\ndata: {"a": 1}\n\n')
    assert [e for _, e in parser.got] == [{"a": 1}]


@pytest.mark.parametrize("body, kind", [
    (b'error: {"error": {"message": "too long", "code": 400}}\n\n', "server_error_event"),
    (b"event: error\ndata: CUDA error: out of memory\n\n", "server_error_event"),
    (b"data: {not json\n\n", "malformed_chunk"),
    (b"data: [1, 2]\n\n", "malformed_chunk"),
    (b"<html>bad gateway</html>\n", "not_sse"),
])
def test_failures_raise_with_their_kind(body, kind):
    parser = Collect()
    with pytest.raises(StreamProtocolError) as info:
        parser.feed(1.0, body)
        parser.close(2.0)
    assert info.value.kind == kind
    assert parser.got == []


def test_a_line_over_the_limit_is_chunk_too_large():
    parser = Collect(max_line_bytes=64)
    with pytest.raises(StreamProtocolError) as info:
        parser.feed(1.0, b"data: " + b"x" * 100)
    assert info.value.kind == "chunk_too_large"


def test_error_message_keeps_the_servers_words_and_code():
    assert error_message({"error": {"message": "too long", "code": 400}}) == "too long (code 400)"
    assert error_message({"error": "busy"}) == "busy"
    assert error_message("CUDA error: out of memory") == "CUDA error: out of memory"
