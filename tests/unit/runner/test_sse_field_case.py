"""SSE field names are case-sensitive, and a read's extra blank lines do not reach the chunk.

Written against mutants of bench/runner/sse.py's fast paths that survived the 2026-11-30 run
(benchmarks/mutation.py): a `DATA:` line taken as data, and a one-read event followed by a
third line end giving its payload a trailing newline (seen in the malformed-chunk message).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.runner.sse import SseParser, StreamProtocolError


class Collect(SseParser):
    def __init__(self) -> None:
        super().__init__(0.0)
        self.got: list[dict[str, Any]] = []

    def on_event(self, t: float, event: dict[str, Any]) -> None:
        self.got.append(event)


def events(*reads: bytes) -> list[dict[str, Any]]:
    parser = Collect()
    for i, data in enumerate(reads, start=1):
        parser.feed(float(i), data)
    parser.close(float(len(reads) + 1))
    return parser.got


def test_an_upper_case_data_field_alone_in_a_read_is_no_event():
    assert events(b'DATA: {"x": 1}\n\n', b'data: {"y": 2}\n\n') == [{"y": 2}]


def test_an_upper_case_data_field_among_other_lines_is_no_event():
    # the comment first keeps the read off the one-event fast path: the line loop, then `_line`
    assert events(b': ping\nDATA: {"x": 1}\n\ndata: {"y": 2}\n\n') == [{"y": 2}]
    assert events(b'event: message\nDATA: {"x": 1}\n\ndata: {"y": 2}\n\n') == [{"y": 2}]


def test_a_third_line_end_in_the_same_read_is_not_part_of_the_payload():
    parser = Collect()
    with pytest.raises(StreamProtocolError) as info:
        parser.feed(1.0, b"data: {bad\n\n\n")
    assert info.value.kind == "malformed_chunk"
    assert str(info.value).endswith("invalid JSON in chunk: b'{bad'")
