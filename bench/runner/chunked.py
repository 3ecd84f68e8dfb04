"""HTTP/1.1 chunked transfer decoding of a response body, one network read at a time.

`ChunkedBody.feed(data)` takes the body's next bytes as they came off the socket (after the
response head) and returns the payload bytes they carry, the framing removed. Framing
follows RFC 9112 section 7.1: `chunk-size [chunk-ext] CRLF chunk-data CRLF`, repeated, then a
last chunk of size 0 (extensions allowed), a trailer section (header lines, ignored) and an
empty line. Any break of that grammar raises `ChunkedError`; so does a line longer than
`MAX_LINE` or a trailer section of more than `MAX_TRAILERS` lines. Once `done`, the body is
complete and `rest` holds any bytes that came after it (none from a well-behaved server).

Whole chunks at the start of a read (a server writing each token on its own, or several
that queued up) take a short path without the state machine; the rest of the read goes
through it, so a CRLF, a size line or a chunk cut anywhere between two reads decodes the same.
`whole_chunk(data)` says, without decoding, where the data of a read that is exactly one
whole chunk lies: a reader can take such a read (one token's event, as a real server writes
it) in one step, and feeds the decoder only what it does not take.
"""

from __future__ import annotations

import re

__all__ = ["MAX_LINE", "MAX_TRAILERS", "ChunkedBody", "ChunkedError"]

MAX_LINE = 64 * 1024  # a chunk-size line with its extensions, or one trailer line
MAX_TRAILERS = 128
_HEX = b"0123456789abcdefABCDEF"
_MAX_HEX_DIGITS = 16  # 2**64 - 1: a larger size is a broken or hostile server
_SIZE_LINE = re.compile(rb"([0-9a-fA-F]{1,%d})\r\n" % _MAX_HEX_DIGITS).match  # no extensions: the plain case

_COMMON_SIZE_LINES: dict[int, bytes] = {}  # by read length: see `_common_size_line`
_COMMON_LENGTHS = 1 << 16  # longer reads are not looked up (64 KiB is a stamped read's most)


def _common_size_line(n: int) -> bytes:
    """The size line (lower-case hex, no leading zero, CRLF) of an `n`-byte read that is one
    whole chunk with data, b"" when there is none; kept for the next read of that length."""
    line = b""
    for digits in range(1, 6):
        size = n - digits - 4  # the size line's CRLF and the one after the data
        if size > 0 and len(b"%x" % size) == digits:
            line = b"%x\r\n" % size
            break
    if n <= _COMMON_LENGTHS:
        _COMMON_SIZE_LINES[n] = line
    return line


# states
_SIZE = 0  # expecting a chunk-size line
_DATA = 1  # inside chunk data
_DATA_END = 2  # expecting the CRLF that closes chunk data
_TRAILER = 3  # after the last chunk: trailer lines until an empty one
_DONE = 4


class ChunkedError(Exception):
    """The body broke the chunked framing; the message says where."""


class ChunkedBody:
    """The decoder of one chunked body; `done` once its last chunk and trailers came."""

    __slots__ = ("_crlf", "_left", "_line", "_state", "_trailers", "done", "rest")

    def __init__(self) -> None:
        self._state = _SIZE
        self._left = 0  # chunk-data bytes still due (state _DATA)
        self._line = b""  # a size or trailer line not yet ended
        self._crlf = b""  # what came of the CRLF after chunk data (state _DATA_END)
        self._trailers = 0
        self.rest = b""
        self.done = False  # the last chunk and the trailers came (an attribute: read after every read)

    def whole_chunk(self, data: bytes) -> int:
        """When the decoder is between chunks and `data` is exactly one whole chunk with data
        (a size line without extensions, the data, CRLF): where its data begins (it ends 2
        bytes before `data` does). Else 0. Nothing changes: a caller that takes the data
        leaves the decoder between chunks, as feeding the read would; one that does not
        feeds it."""
        if self._state != _SIZE or self._line:
            return 0
        # The size line such a read has when written the common way (lower-case hex, no
        # leading zero) follows from its length: a lookup and two compares, where the
        # match and int() below take twice as long.
        n = len(data)
        line = _COMMON_SIZE_LINES.get(n)
        if line is None:
            line = _common_size_line(n)
        if line and data.startswith(line) and data.endswith(b"\r\n"):
            return len(line)
        size = _SIZE_LINE(data)
        if size is None:
            return 0
        start = size.end()
        length = int(size[1], 16)
        if not length or length != len(data) - start - 2 or not data.endswith(b"\r\n"):  # (0: the last chunk)
            return 0
        return start

    def feed(self, data: bytes) -> bytes:
        """The payload in `data`, the body's next bytes; raises ChunkedError."""
        if self._state != _SIZE or self._line:
            return self._feed(data, 0, [])
        # Whole chunks, one after another from the start of the read (a server writing each
        # token on its own, or several that queued up): no state machine.
        out: list[bytes] = []
        pos, n = 0, len(data)
        while True:
            i = data.find(b"\r\n", pos, pos + _MAX_HEX_DIGITS + 2)
            if i <= pos or data[pos:i].lstrip(_HEX):
                break
            start = i + 2
            end = start + int(data[pos:i], 16)
            if end == start or data[end:end + 2] != b"\r\n":  # the last chunk, or one not whole here
                break
            if not pos and end + 2 == n:
                return data[start:end]
            out.append(data[start:end])
            pos = end + 2
            if pos == n:
                return b"".join(out)
        return self._feed(data, pos, out)

    def _feed(self, data: bytes, pos: int, out: list[bytes]) -> bytes:
        n = len(data)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._left, n - pos)
                out.append(data[pos:pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                crlf = self._crlf + data[pos:pos + 2 - len(self._crlf)]
                pos += len(crlf) - len(self._crlf)
                if not b"\r\n".startswith(crlf):
                    raise ChunkedError(f"chunk data not followed by CRLF: {crlf!r}")
                self._crlf = b"" if len(crlf) == 2 else crlf
                if len(crlf) == 2:
                    self._state = _SIZE
            elif state == _DONE:
                self.rest = data[pos:]
                break
            else:
                pos = self._line_at(data, pos)
        return out[0] if len(out) == 1 else b"".join(out)

    def _line_at(self, data: bytes, pos: int) -> int:
        """Take the size or trailer line at `pos` (or what of it came); the position after it."""
        end = data.find(b"\n", pos)
        piece = data[pos:] if end < 0 else data[pos:end + 1]
        if len(self._line) + len(piece) > MAX_LINE + 2:
            raise ChunkedError(f"a chunk-size or trailer line longer than {MAX_LINE} bytes")
        if end < 0:
            self._line += piece
            return len(data)
        line, self._line = self._line + piece, b""
        if not line.endswith(b"\r\n"):
            raise ChunkedError(f"line not ended by CRLF: {line[:80]!r}")
        if self._state == _SIZE:
            self._size_line(line[:-2])
        elif line == b"\r\n":
            self._state = _DONE
            self.done = True
        else:
            self._trailers += 1
            if self._trailers > MAX_TRAILERS or b":" not in line:
                raise ChunkedError(f"bad trailer section at {line[:80]!r}")
        return end + 1

    def _size_line(self, line: bytes) -> None:
        digits = line.rstrip(b" \t") if b";" not in line else line[:line.index(b";")].rstrip(b" \t")
        if not digits or len(digits) > _MAX_HEX_DIGITS or digits.lstrip(_HEX):
            raise ChunkedError(f"bad chunk-size line: {line[:80]!r}")
        size = int(digits, 16)
        if size:
            self._state, self._left = _DATA, size
        else:
            self._state = _TRAILER
