"""`ChunkedBody`: hand-built chunked bodies, cut between reads at every position, decode to
the payload they frame; truncated ones never end; every break of the framing is an error."""

from __future__ import annotations

import pytest

from bench.runner.chunked import MAX_LINE, MAX_TRAILERS, ChunkedBody, ChunkedError

EVENT_1 = 'data: {"choices":[{"delta":{"content":"h\u00e9"}}]}\n\n'.encode()
EVENT_2 = 'data: {"choices":[{"delta":{"content":"\u20ac\U0001f600"}}]}\n\n'.encode()
PAYLOAD = EVENT_1 + EVENT_2 + b"data: [DONE]\n\n"


def _frame(piece: bytes, ext: bytes = b"") -> bytes:
    return b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)


# Chunk boundaries inside an SSE event, inside a multi-byte UTF-8 character (the e-acute's
# two bytes, the euro sign's three), with extensions, upper-case hex and leading zeros, a
# last chunk with an extension and a trailer section.
_CUT_1 = EVENT_1.index("\u00e9".encode()) + 1
_CUT_2 = len(EVENT_1) + EVENT_2.index("\u20ac".encode()) + 2
BODY = (_frame(PAYLOAD[:5]) + _frame(PAYLOAD[5:_CUT_1], b";name=value")
        + b"%X\r\n%s\r\n" % (_CUT_2 - _CUT_1, PAYLOAD[_CUT_1:_CUT_2])
        + b"000%x ; a=\"b;c\"\r\n%s\r\n" % (len(PAYLOAD) - _CUT_2, PAYLOAD[_CUT_2:])
        + b"0;last\r\nX-Trailer: 1\r\nX-Other: two words\r\n\r\n")


def _decode(reads: list[bytes]) -> tuple[bytes, ChunkedBody]:
    body = ChunkedBody()
    out = []
    for read in reads:
        assert not body.done
        out.append(body.feed(read))
    return b"".join(out), body


def test_whole_body_in_one_read():
    payload, body = _decode([BODY])
    assert payload == PAYLOAD and body.done and body.rest == b""
    assert payload.decode() == PAYLOAD.decode()


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_body_cut_in_two_at_every_position(cut):
    payload, body = _decode([BODY[:cut], BODY[cut:]])
    assert payload == PAYLOAD and body.done and body.rest == b""


def test_body_cut_in_three_at_every_pair_of_positions():
    for i in range(1, len(BODY) - 1, 3):
        for j in range(i + 1, len(BODY)):
            payload, body = _decode([BODY[:i], BODY[i:j], BODY[j:]])
            assert payload == PAYLOAD and body.done, (i, j)


def test_body_one_byte_per_read():
    payload, body = _decode([BODY[i:i + 1] for i in range(len(BODY))])
    assert payload == PAYLOAD and body.done


def test_one_chunk_per_read_each_read_gives_its_chunk():
    events = [b"data: %d\n\n" % i for i in range(20)]
    body = ChunkedBody()
    assert [body.feed(_frame(e)) for e in events] == events
    assert body.feed(b"0\r\n\r\n") == b"" and body.done


@pytest.mark.parametrize("cut", range(len(BODY)))
def test_truncated_body_never_ends(cut):
    payload, body = _decode([BODY[:cut]])
    assert not body.done
    assert PAYLOAD.startswith(payload)


@pytest.mark.parametrize("cut", range(1, len(BODY) + 1))
def test_bytes_after_the_end_are_kept_apart(cut):
    data = BODY + b"extra"
    payload, body = _decode([data[:cut], data[cut:]] if cut < len(BODY) else [data])
    assert payload == PAYLOAD and body.done and body.rest == b"extra"


def test_empty_body_last_chunk_only():
    payload, body = _decode([b"0\r\n", b"\r\n"])
    assert payload == b"" and body.done


@pytest.mark.parametrize("bad", [
    b"g\r\nxxxxxxxxxxxxxxxx\r\n",  # not hex
    b"0x5\r\nhello\r\n",  # int() would take it
    b"+5\r\nhello\r\n",
    b"-5\r\nhello\r\n",
    b" 5\r\nhello\r\n",
    b"5_0\r\nhello\r\n",
    b"\r\nhello\r\n",  # empty size
    b";ext\r\nhello\r\n",  # extension without a size
    b"5\nhello\r\n",  # bare LF after the size
    b"5\r\nhelloXY",  # no CRLF after the data
    b"5\r\nhello\n\r\n",
    b"5\r\nhello\r\r",
    b"11111111111111111\r\n",  # 17 hex digits
    b"0\r\nno colon here\r\n\r\n",  # a trailer that is no field
    b"0\r\n\n",  # bare LF ending the trailer section
])
def test_broken_framing_is_an_error_at_every_cut(bad):
    with pytest.raises(ChunkedError):
        _decode([bad])
    for cut in range(1, len(bad)):
        with pytest.raises(ChunkedError):
            _decode([bad[:cut], bad[cut:]])


def test_overlong_lines_and_trailer_sections_are_errors():
    with pytest.raises(ChunkedError):
        _decode([b"5;" + b"x" * MAX_LINE + b"\r\n"])
    with pytest.raises(ChunkedError):  # the line never ends: refused once it is too long
        _decode([b"5;"] + [b"x" * 1024] * (MAX_LINE // 1024 + 1))
    with pytest.raises(ChunkedError):
        _decode([b"0\r\n" + b"X-T: 1\r\n" * (MAX_TRAILERS + 1) + b"\r\n"])
    _, body = _decode([b"0\r\n" + b"X-T: 1\r\n" * MAX_TRAILERS + b"\r\n"])
    assert body.done


def test_large_chunk_over_many_reads():
    piece = bytes(range(256)) * 1000
    data = _frame(piece) + b"0\r\n\r\n"
    payload, body = _decode([data[i:i + 1000] for i in range(0, len(data), 1000)])
    assert payload == piece and body.done


PLAIN = b"".join(_frame(PAYLOAD[i:i + 9]) for i in range(0, len(PAYLOAD), 9)) + b"0\r\n\r\n"


@pytest.mark.parametrize("cut", range(1, len(PLAIN)))
def test_plain_chunks_several_per_read_cut_at_every_position(cut):
    for reads in ([PLAIN[:cut], PLAIN[cut:]], [PLAIN[:cut], PLAIN[cut:cut + 23], PLAIN[cut + 23:]]):
        payload, body = _decode([r for r in reads if r])
        assert payload == PAYLOAD and body.done and body.rest == b""


@pytest.mark.parametrize(("read", "start"), [
    (_frame(EVENT_1), 4),  # one whole chunk: its data begins after "2e\r\n"
    (b"%X\r\n%s\r\n" % (len(EVENT_1), EVENT_1), 4),  # upper-case hex
    (b"00%x\r\n%s\r\n" % (len(EVENT_1), EVENT_1), 6),  # leading zeros
    (_frame(EVENT_1, b";a=b"), 0),  # an extension: the decoder reads it
    (_frame(EVENT_1) + _frame(EVENT_2), 0),  # two chunks
    (_frame(EVENT_1)[:-1], 0),  # cut before its CRLF
    (_frame(EVENT_1)[:-2] + b"XY", 0),  # the right length, no CRLF after the data
    (b"%x\r\n%s\r\n" % (len(EVENT_1) - 1, EVENT_1), 0),  # the size one short of the data
    (b"%x\r\n%s\r\n" % (len(EVENT_1) + 1, EVENT_1), 0),  # or one more
    (b"0\r\n\r\n", 0),  # the last chunk
    (b"+%x\r\n%s\r\n" % (len(EVENT_1), EVENT_1), 0),  # what int() takes but chunk-size is not
    (b"0x%x\r\n%s\r\n" % (len(EVENT_1), EVENT_1), 0),
])
def test_whole_chunk_finds_the_data_of_a_read_that_is_exactly_one_chunk(read, start):
    body = ChunkedBody()
    assert body.whole_chunk(read) == start
    if start:  # the decoder did not move: feeding the read decodes it as before
        assert body.feed(read) == read[start:-2] and not body.done
        assert body.whole_chunk(read) == start


def test_whole_chunk_knows_every_size_from_the_read_length_and_no_wrong_one():
    """The size line of a read of a given length is looked up, not parsed (lower-case hex,
    no leading zero); a size line one off from the data, which has the same length as the
    right one, is no whole chunk."""
    body = ChunkedBody()
    for size in [*range(1, 300), *range(4090, 4100), *range(65530, 65540), 1 << 20]:
        data = b"x" * size
        line = b"%x\r\n" % size
        assert body.whole_chunk(line + data + b"\r\n") == len(line), size
        for wrong in (size - 1, size + 1):
            assert body.whole_chunk(b"%x\r\n" % wrong + data + b"\r\n") == 0, (size, wrong)


def test_whole_chunk_is_nothing_while_the_decoder_is_inside_a_chunk_or_a_size_line():
    whole = _frame(EVENT_1)
    for opening in (b"2", _frame(EVENT_2)[:6], _frame(EVENT_2)[:-1]):  # a size line, chunk data, its CRLF
        body = ChunkedBody()
        body.feed(opening)
        assert body.whole_chunk(whole) == 0
