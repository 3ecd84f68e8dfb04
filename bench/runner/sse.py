"""SSE framing: turns stamped network reads of an event-stream body into JSON events.

Pure and synchronous: `feed(t, data)` takes one network read and the `perf_counter()` taken
when it arrived (before any parsing; events in one read share it). The caller owns I/O,
timeouts and cancellation. Lines are split by hand and parsed with orjson because the
SDK's typed chunk objects cost ~65 us each (see shared/FACTS.md).

Framing follows the WHATWG event-stream rules (html.spec.whatwg.org, "Parsing an event
stream"): `\\r\\n`, `\\n` and lone `\\r` line ends, a leading BOM, comments, the data / event /
id / retry fields, unknown fields ignored, a line without a colon is a field with an empty
value, multi-line data joined with `\\n`. One deliberate departure: an event whose data is
empty (`data:` then a blank line, as gateways send to keep a connection alive) carries no
chunk, so it is dropped rather than handed on as an empty message. The one field the
spec does not name that servers use is `error:` (llama.cpp, for a prompt over the context
size): it, or an `event: error`, fails the request. Each JSON object event goes to
`on_event`, which a subclass (`bench.runner.recorder.StreamRecorder`) gives its meaning.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["DEFAULT_MAX_LINE_BYTES", "SseParser", "StreamProtocolError", "error_message", "json_body_error"]

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class StreamProtocolError(Exception):
    """The body broke the SSE/JSON contract or reported an error; `kind` is the record's error_kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _StreamOver(Exception):
    """`[DONE]` came: whatever follows (heartbeats a proxy keeps sending) is not the answer."""


class SseParser:
    """One response body's SSE events; each JSON object event goes to `on_event(t, event)`.

    `t` is relative to `t_origin`, in s. `done_seen`: `[DONE]` came (nothing after it is
    read). Set `keep_events` before feeding to keep every dispatched event as (t, SSE event
    type or None, parsed JSON payload, or the raw text of `[DONE]` and other non-JSON
    payloads) in `events`.
    """

    def __init__(self, t_origin: float, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._t_origin = t_origin
        self._max_line = max_line_bytes
        self._pending: list[bytes] = []  # pieces of a line not yet ended, joined once it ends
        self._pending_len = 0
        self._head: bytes | None = b""  # the first bytes, until a BOM is ruled out; then None
        self._cr_end = False  # the last read ended in "\r": a "\n" opening the next one is its pair
        self._stray: bytes | None = None  # first non-SSE line seen before any event
        self._data_lines: list[bytes] = []
        self._error_lines: list[bytes] = []
        self._event_type: bytes | None = None
        self.done_seen = False
        self.saw_event = False
        self.keep_events = False
        self.events: list[tuple[float, str | None, Any]] = []
        self._lenient_json = False  # some payload needed Python's json (lone surrogates)

    def on_event(self, t: float, event: dict[str, Any]) -> None:
        """One JSON object event at `t` (s from t_origin); raise StreamProtocolError to fail."""
        raise NotImplementedError

    # -- input ---------------------------------------------------------------------------

    def feed(self, t_abs: float, data: bytes) -> None:
        """Consume one read stamped at absolute perf_counter time `t_abs`; after `[DONE]`
        nothing more is read (the OpenAI SDK stops there too)."""
        if self.done_seen:
            return
        if self._head is not None:
            data = self._strip_bom(data)
            if not data:
                return
        if self._cr_end or b"\r" in data:
            data = self._normalise_line_ends(data)
        t = t_abs - self._t_origin
        if self._pending:
            if b"\n" not in data:  # the line goes on: keep the piece (re-joining would be quadratic)
                self._hold(data)
                return
            buf = b"".join(self._pending) + data
            self._pending = []
            self._pending_len = 0
        elif data.endswith(b"\n\n") and data.startswith(b"data: ") and data.find(b"\n") == len(data) - 2:
            # One whole `data:` event in this read (a server writing each token on its own):
            # what `_line` and `_dispatch` do with its two lines, without the line loop.
            try:
                if self._data_lines or self._error_lines or self._event_type is not None:
                    self._data_lines.append(data[6:-2])
                    self._dispatch(t)
                else:
                    self._payload_event(t, None, data[6:-2])
            except _StreamOver:
                pass
            return
        else:
            buf = data
        lines = buf.split(b"\n")
        tail = lines.pop()  # what follows the last line end: a line not yet ended, or b""
        try:
            for line in lines:  # `_line`'s two common cases inline: a data line, an event's end
                if line.startswith(b"data: "):
                    self._data_lines.append(line[6:])
                elif line:
                    self._line(t, line)
                else:
                    self._dispatch(t)
        except _StreamOver:
            return
        if tail:
            self._hold(tail)

    def _strip_bom(self, data: bytes) -> bytes:
        head = (self._head or b"") + data
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head  # too short to tell: wait for the next read
            return b""
        self._head = None
        return head[len(_BOM):] if head.startswith(_BOM) else head

    def _normalise_line_ends(self, data: bytes) -> bytes:
        if self._cr_end and data.startswith(b"\n"):
            data = data[1:]  # the second half of a "\r\n" cut between two reads
        self._cr_end = data.endswith(b"\r")
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _hold(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._pending_len += len(piece)
        if self._pending_len > self._max_line:
            size = self._pending_len
            self._pending = []
            self._pending_len = 0
            raise StreamProtocolError(
                "chunk_too_large", f"an SSE line exceeded {self._max_line} bytes ({size} buffered)"
            )

    def close(self, t_abs: float) -> None:
        """End of body: flush a last event that had no trailing blank line."""
        t = t_abs - self._t_origin
        if self._head:  # a body of one or two bytes
            data, self._head = self._head, None
            self.feed(t_abs, data)
        if self.done_seen:
            return
        try:
            if self._pending:
                line = b"".join(self._pending)
                self._pending = []
                self._pending_len = 0
                self._line(t, line)
            self._dispatch(t)
        except _StreamOver:
            return
        if not self.saw_event and self._stray is not None:
            raise StreamProtocolError("not_sse", f"body is not an SSE stream: {self._stray!r}")

    # -- SSE framing ---------------------------------------------------------------------

    def _line(self, t: float, line: bytes) -> None:
        if line.startswith(b"data: "):  # nearly every line: the fast path
            self._data_lines.append(line[6:])
            return
        if not line:
            self._dispatch(t)
            return
        if line.startswith(b":"):
            return  # comment / keep-alive (": ping", ": OPENROUTER PROCESSING")
        colon = line.find(b":")
        name, value = (line, b"") if colon < 0 else (line[:colon], line[colon + 1:])
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data_lines.append(value)
        elif name == b"event":
            self._event_type = value
        elif name == b"error":
            self._error_lines.append(value)
        elif name in (b"id", b"retry"):
            return  # bench never reconnects, so neither the last id nor the delay matters
        elif not self.saw_event:
            self._stray_line(line)

    def _stray_line(self, line: bytes) -> None:
        """A line that is no SSE field before any event: a JSON, HTML or text body."""
        stripped = line.lstrip()
        if stripped.startswith(b"{"):
            message = json_body_error(stripped)
            if message is not None:
                raise StreamProtocolError("server_error_body", message)
        if stripped.startswith((b"{", b"[", b"<")):
            raise StreamProtocolError("not_sse", f"body is not an SSE stream: {line[:80]!r}")
        if self._stray is None:  # legal SSE (an unknown field) unless no event ever comes
            self._stray = line[:80]

    def _dispatch(self, t: float) -> None:
        data_lines, event_type = self._data_lines, self._event_type
        self._event_type = None
        if self._error_lines:
            text = b"\n".join(self._error_lines)
            self._error_lines = []
            raise StreamProtocolError("server_error_event", error_message(_parse_lenient(text)))
        if not data_lines:
            return
        self._data_lines = []
        payload = data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)
        self._payload_event(t, None if event_type is None else event_type.decode("utf-8", "replace"), payload)

    def _payload_event(self, t: float, kind: str | None, payload: bytes) -> None:
        """An event's data (its `data:` lines joined), of SSE event type `kind`."""
        if not payload or payload.isspace():
            return  # an empty data event: a keep-alive, not a chunk
        self.saw_event = True
        if payload == b"[DONE]" or (len(payload) < 16 and payload.strip() == b"[DONE]"):
            self.done_seen = True
            self._pending = []
            self._pending_len = 0
            if self.keep_events:
                self.events.append((t, kind, "[DONE]"))
            raise _StreamOver
        if kind == "error":  # its data may be JSON or plain text ("CUDA error: out of memory")
            raise StreamProtocolError("server_error_event", error_message(_parse_lenient(payload)))
        event = self._parse(payload)
        if self.keep_events:
            self.events.append((t, kind, event))
        if not isinstance(event, dict):
            raise StreamProtocolError("malformed_chunk", f"chunk is not a JSON object: {payload[:80]!r}")
        self.on_event(t, event)

    def _parse(self, payload: bytes) -> Any:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
        try:  # what orjson refuses and json takes: lone UTF-16 surrogate escapes, NaN
            event = json.loads(payload)
        except (ValueError, RecursionError):
            raise StreamProtocolError("malformed_chunk", f"invalid JSON in chunk: {payload[:80]!r}") from None
        self._lenient_json = True
        return event


def _parse_lenient(payload: bytes) -> Any:
    """An error field's value: JSON when it is JSON, else its text."""
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return payload.decode("utf-8", "replace")


def json_body_error(body: bytes) -> str | None:
    """The server's message when `body` is a JSON error object ({"error": ...}), else None."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and obj.get("error") is not None:
        return error_message(obj)
    return None


def error_message(obj: Any) -> str:
    """The server's own words from an error payload: {"error": {"message", "code"}},
    {"error": "text"}, {"message": ...} or plain text; the code is kept after the message."""
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    if isinstance(err, dict):
        message = err.get("message") or err.get("msg") or err.get("detail")
        code = err.get("code") or err.get("type")
        text = str(message) if message else json.dumps(err, ensure_ascii=False, default=str)
        if code is not None and str(code) not in text:
            text = f"{text} (code {code})"
    else:
        text = str(err)
    return text[:500] or "an error event without a message"
