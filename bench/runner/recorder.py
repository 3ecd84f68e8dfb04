"""Stream recorder: turns stamped network reads of an SSE body into chunk columns.

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
size): it, an `event: error`, or a data object with a non-null `error` fails the request.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from bench.records import (
    KIND_CONTENT,
    KIND_FUNCTION_CALL,
    KIND_OTHER,
    KIND_REASONING,
    KIND_REFUSAL,
    KIND_ROLE,
    KIND_TOOL_CALL,
    KIND_USAGE,
    NO_TOKENS,
    OUTPUT_KIND_CODES,
    ChunkColumns,
)

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"

# finish_reason values by which servers say they cut the request off rather than finished it
# (vLLM and SGLang: "abort"; TGI and gateways: "error"). Compared lower-cased.
CUT_OFF_REASONS = frozenset({"abort", "aborted", "cancelled", "canceled", "error"})
# finish_reason values that mean a complete answer; any other value is kept raw and noted.
KNOWN_REASONS = frozenset({"stop", "length", "tool_calls", "function_call", "content_filter", "eos",
                           "eos_token", "stop_sequence", "end_turn", "max_tokens", "tool_use"})

# A chunk's kind when it carries several: the first of these it has (lower rank wins).
_RANK = {KIND_CONTENT: 0, KIND_REASONING: 1, KIND_TOOL_CALL: 2, KIND_FUNCTION_CALL: 3, KIND_REFUSAL: 4,
         KIND_ROLE: 5, KIND_USAGE: 6, KIND_OTHER: 7}


class StreamProtocolError(Exception):
    """The body broke the SSE/JSON contract or reported an error; `kind` is the record's error_kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _StreamOver(Exception):
    """`[DONE]` came: whatever follows (heartbeats a proxy keeps sending) is not the answer."""


class StreamRecorder:
    """One response body's events, as chunk columns and what the stream said of itself.

    `n`: choices requested. With n=1 every chunk belongs to choice 0 whatever its `index`
    (a local runtime numbers its chunks 0, 1, 2, ...). Set `keep_events` before feeding to
    keep every dispatched event as (t relative to t_origin in s, SSE event type or None,
    parsed JSON payload, or the raw text of `[DONE]` and other non-JSON payloads).
    """

    def __init__(self, t_origin: float, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, n: int = 1) -> None:
        self._t_origin = t_origin
        self._max_line = max_line_bytes
        self._n = n
        self._pending: list[bytes] = []  # pieces of a line not yet ended, joined once it ends
        self._pending_len = 0
        self._head: bytes | None = b""  # the first bytes, until a BOM is ruled out; then None
        self._cr_end = False  # the last read ended in "\r": a "\n" opening the next one is its pair
        self._stray: bytes | None = None  # first non-SSE line seen before any event
        self._data_lines: list[bytes] = []
        self._error_lines: list[bytes] = []
        self._event_type: bytes | None = None
        self.chunks = ChunkColumns()
        self.done_seen = False
        self.saw_event = False
        self.first_token_t: float | None = None
        self.finish_reasons: dict[int, str] = {}
        self.finish_messages: list[str] = []  # what a finish_reason object said besides its type
        self.usage: dict[str, Any] | None = None
        self._final_usages: list[dict[str, Any]] = []  # usage-only chunks (choices == [])
        self.server_timings: dict[str, Any] | None = None
        self.output_chars = 0
        self.text_parts: list[str] = []
        self.keep_text = False
        self.keep_events = False
        self.events: list[tuple[float, str | None, Any]] = []
        self._completion_tokens_seen = 0
        self._lenient_json = False  # some payload needed Python's json (lone surrogates)

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
        else:
            buf = data
        start = 0
        try:
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                self._line(t, buf[start:nl])
                start = nl + 1
        except _StreamOver:
            return
        if start < len(buf):
            self._hold(buf[start:])

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
            raise StreamProtocolError("server_error_event", _error_message(_parse_lenient(text)))
        if not data_lines:
            return
        self._data_lines = []
        payload = data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)
        if not payload or payload.isspace():
            return  # an empty data event: a keep-alive, not a chunk
        self.saw_event = True
        kind = None if event_type is None else event_type.decode("utf-8", "replace")
        if payload == b"[DONE]" or (len(payload) < 16 and payload.strip() == b"[DONE]"):
            self.done_seen = True
            self._pending = []
            self._pending_len = 0
            if self.keep_events:
                self.events.append((t, kind, "[DONE]"))
            raise _StreamOver
        if kind == "error":  # its data may be JSON or plain text ("CUDA error: out of memory")
            raise StreamProtocolError("server_error_event", _error_message(_parse_lenient(payload)))
        event = self._parse(payload)
        if self.keep_events:
            self.events.append((t, kind, event))
        if not isinstance(event, dict):
            raise StreamProtocolError("malformed_chunk", f"chunk is not a JSON object: {payload[:80]!r}")
        self._event(t, event)

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

    # -- OpenAI chunk semantics ----------------------------------------------------------

    def _event(self, t: float, event: dict[str, Any]) -> None:
        error = event.get("error")
        if error is not None and error is not False and error != "":  # with or without choices
            raise StreamProtocolError("server_error_event", _error_message(event))
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        timings = event.get("timings")
        if isinstance(timings, dict):
            self.server_timings = timings
        choices = event.get("choices") or []
        if type(choices) is not list:
            choices = []
        elif self._n > 1 and len(choices) > 1:
            self._choices_apart(t, choices, usage)
            return
        kind, choice_index = self._classify(choices)
        if kind == KIND_OTHER and not choices and usage:
            self._final_usages.append(usage)
            kind = KIND_USAGE
        output = kind in OUTPUT_KIND_CODES
        tokens = self._tokens(usage) if output else NO_TOKENS
        if output and self.first_token_t is None:
            self.first_token_t = t
        chunks = self.chunks
        chunks.t.append(t)
        chunks.kind.append(kind)
        chunks.tokens.append(tokens)
        chunks.choice.append(choice_index)

    def _choices_apart(self, t: float, choices: list[Any], usage: Any) -> None:
        """An event carrying several choices' deltas (a gateway merging candidates): one row
        per choice with output, all at the event's time, so each choice keeps its own ITL."""
        rows = [self._classify([choice]) for choice in choices]
        output = [(kind, index) for kind, index in rows if kind in OUTPUT_KIND_CODES]
        if not output:
            kind, index = min(rows, key=lambda row: _RANK[row[0]])
            self._append(t, kind, NO_TOKENS, index)
            return
        if self.first_token_t is None:
            self.first_token_t = t
        tokens = self._tokens(usage)  # a running count is the event's: the first row carries it
        for i, (kind, index) in enumerate(output):
            self._append(t, kind, tokens if i == 0 or tokens == NO_TOKENS else 0, index)

    def _append(self, t: float, kind: int, tokens: int, choice: int) -> None:
        chunks = self.chunks
        chunks.t.append(t)
        chunks.kind.append(kind)
        chunks.tokens.append(tokens)
        chunks.choice.append(choice)

    def _classify(self, choices: list[Any]) -> tuple[int, int]:
        kind = KIND_OTHER
        index = 0
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if self._n > 1:
                raw = choice.get("index", 0)
                index = raw if isinstance(raw, int) else 0
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reasons[index] = reason if type(reason) is str else self._reason_text(reason)
            delta = choice.get("delta")
            if type(delta) is not dict:  # /v1/completions streams `text`
                this = self._text(choice.get("text"), index)
            else:
                text = delta.get("content")
                if type(text) is str and text:  # the common case, without a call
                    self.output_chars += len(text)
                    if self.keep_text and index == 0:
                        self.text_parts.append(text)
                    this = KIND_CONTENT
                else:
                    this = self._delta_kind(delta, text, index)
            if this != kind and _RANK[this] < _RANK[kind]:
                kind = this
        return kind, index

    def _reason_text(self, reason: Any) -> str:
        """A finish_reason given as an object (SGLang's native {"type": "abort", "message": ...})."""
        if isinstance(reason, dict) and isinstance(reason.get("type"), str):
            if reason.get("message"):
                self.finish_messages.append(str(reason["message"])[:300])
            return reason["type"]
        return str(reason)

    def _delta_kind(self, delta: dict[str, Any], text: Any, index: int) -> int:
        """The kind of a chat delta whose content is not a plain non-empty string."""
        if text and self._text(text, index) == KIND_CONTENT:
            return KIND_CONTENT
        if delta.get("reasoning_content") or delta.get("reasoning"):
            return KIND_REASONING
        if delta.get("tool_calls"):
            return KIND_TOOL_CALL
        if delta.get("function_call"):
            return KIND_FUNCTION_CALL
        if delta.get("refusal"):
            return KIND_REFUSAL
        return KIND_ROLE if delta.get("role") else KIND_OTHER

    def _text(self, text: Any, index: int) -> int:
        if isinstance(text, list):  # content parts ([{"type": "text", "text": ...}])
            text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
        if not text or not isinstance(text, str):
            return KIND_OTHER
        self.output_chars += len(text)
        if self.keep_text and index == 0:
            self.text_parts.append(text)
        return KIND_CONTENT

    def _tokens(self, usage: Any) -> int:
        # With continuous_usage_stats every chunk carries the running completion count.
        if isinstance(usage, dict):
            total = usage.get("completion_tokens")
            if isinstance(total, int):
                delta = total - self._completion_tokens_seen
                self._completion_tokens_seen = total
                return delta
        return NO_TOKENS

    # -- results -------------------------------------------------------------------------

    def finish_reason(self) -> str | None:
        if not self.finish_reasons:
            return None
        reasons = [self.finish_reasons[k] for k in sorted(self.finish_reasons)]
        return reasons[0] if len(set(reasons)) == 1 else ",".join(reasons)

    def incomplete(self) -> tuple[str, str] | None:
        """(error_kind, message) when the body, which ended cleanly, is not a complete answer.

        A finish_reason that means the server cut the request off is `server_abort`. A body
        that ended before every choice had a finish_reason and without `[DONE]` is
        `stream_dropped`; with every choice finished a missing `[DONE]` is fine (several
        llama.cpp forks and proxies never send it; `done_seen` keeps the fact).
        """
        cut = sorted({r for r in self.finish_reasons.values() if r.lower() in CUT_OFF_REASONS})
        if cut:
            said = f": {self.finish_messages[0]}" if self.finish_messages else ""
            return "server_abort", f"the server cut the answer off (finish_reason {', '.join(cut)}){said}"
        if self.done_seen:
            return None
        finished = sum(1 for i in range(self._n) if i in self.finish_reasons)
        if finished == self._n:
            return None
        return "stream_dropped", (f"stream ended without [DONE] with {finished} of {self._n} "
                                  "choices finished")

    def unknown_finish_reasons(self) -> set[str]:
        """Raw finish_reason values bench does not know: recorded, counted ok, noted in the run."""
        return {r for r in self.finish_reasons.values()
                if r.lower() not in KNOWN_REASONS and r.lower() not in CUT_OFF_REASONS}

    def usage_tokens(self) -> tuple[int | None, int | None]:
        if len(self._final_usages) > 1:
            # llama.cpp with n > 1 sends one usage chunk per choice, each counting only its
            # own completion; vLLM sends one for all. Sum completions, keep the prompt once.
            completions = [u.get("completion_tokens") for u in self._final_usages]
            prompt = self._final_usages[-1].get("prompt_tokens")
            if all(isinstance(c, int) for c in completions):
                return (prompt if isinstance(prompt, int) else None, sum(completions))
        if not self.usage:
            return None, None
        prompt = self.usage.get("prompt_tokens")
        completion = self.usage.get("completion_tokens")
        return (prompt if isinstance(prompt, int) else None,
                completion if isinstance(completion, int) else None)

    def text(self) -> str:
        text = "".join(self.text_parts)
        if self._lenient_json:  # lone surrogates cannot be sent back as JSON in a follow-up turn
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text


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
        return _error_message(obj)
    return None


def _error_message(obj: Any) -> str:
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
