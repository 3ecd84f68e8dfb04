"""Stream recorder: turns stamped network reads of an SSE body into chunk columns.

Pure and synchronous: `feed(t, data)` takes one network read and the `perf_counter()` taken
when it arrived (before any parsing; events in one read share it). The caller owns I/O,
timeouts and cancellation. Lines are split by hand and parsed with orjson because the
SDK's typed chunk objects cost ~65 us each (see shared/FACTS.md).
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.records import (
    KIND_CONTENT,
    KIND_OTHER,
    KIND_REASONING,
    KIND_ROLE,
    KIND_USAGE,
    NO_TOKENS,
    ChunkColumns,
)

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024


class StreamProtocolError(Exception):
    """The body broke the SSE/JSON contract; `kind` is the record's error_kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class StreamRecorder:
    def __init__(self, t_origin: float, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._t_origin = t_origin
        self._max_line = max_line_bytes
        self._pending: list[bytes] = []  # pieces of a line not yet ended, joined once it ends
        self._pending_len = 0
        self._stray: bytes | None = None  # first non-SSE line seen before any event
        self._data_lines: list[bytes] = []
        self.chunks = ChunkColumns()
        self.done_seen = False
        self.saw_event = False
        self.first_token_t: float | None = None
        self.finish_reasons: dict[int, str] = {}
        self.usage: dict[str, Any] | None = None
        self._final_usages: list[dict[str, Any]] = []  # usage-only chunks (choices == [])
        self.server_timings: dict[str, Any] | None = None
        self.output_chars = 0
        self.text_parts: list[str] = []
        self.keep_text = False
        self._completion_tokens_seen = 0

    # -- input ---------------------------------------------------------------------------

    def feed(self, t_abs: float, data: bytes) -> None:
        """Consume one read stamped at absolute perf_counter time `t_abs`."""
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
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self._line(t, buf[start:nl])
            start = nl + 1
        if start < len(buf):
            self._hold(buf[start:])

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
        if self._pending:
            line = b"".join(self._pending)
            self._pending = []
            self._pending_len = 0
            self._line(t, line)
        if self._data_lines:
            self._dispatch(t)
        if not self.saw_event and self._stray is not None:
            raise StreamProtocolError("not_sse", f"body is not an SSE stream: {self._stray!r}")

    # -- SSE framing ---------------------------------------------------------------------

    def _line(self, t: float, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data_lines:
                self._dispatch(t)
            return
        if line.startswith(b"data:"):
            payload = line[5:]
            self._data_lines.append(payload[1:] if payload.startswith(b" ") else payload)
        elif line.startswith(b":"):
            return  # comment / keep-alive (": ping")
        elif line.startswith((b"event:", b"id:", b"retry:")):
            return
        elif not self.saw_event:
            if line.lstrip().startswith((b"{", b"[", b"<")):
                raise StreamProtocolError("not_sse", f"body is not an SSE stream: {line[:80]!r}")
            if self._stray is None:  # legal SSE (an unknown field) unless no event ever comes
                self._stray = line[:80]

    def _dispatch(self, t: float) -> None:
        payload = self._data_lines[0] if len(self._data_lines) == 1 else b"\n".join(self._data_lines)
        self._data_lines = []
        self.saw_event = True
        if payload == b"[DONE]":
            self.done_seen = True
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise StreamProtocolError("malformed_chunk", f"invalid JSON in chunk: {payload[:80]!r}") from None
        if not isinstance(event, dict):
            raise StreamProtocolError("malformed_chunk", f"chunk is not a JSON object: {payload[:80]!r}")
        self._event(t, event)

    # -- OpenAI chunk semantics ----------------------------------------------------------

    def _event(self, t: float, event: dict[str, Any]) -> None:
        if "error" in event and "choices" not in event:
            err = event["error"]
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            raise StreamProtocolError("server_error_event", f"error event in stream: {message}")
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        timings = event.get("timings")
        if isinstance(timings, dict):
            self.server_timings = timings
        choices = event.get("choices") or []
        kind, choice_index = self._classify(choices)
        if kind == KIND_OTHER and not choices and usage:
            self._final_usages.append(usage)
            kind = KIND_USAGE
        tokens = self._tokens(kind, usage)
        if self.first_token_t is None and kind in (KIND_CONTENT, KIND_REASONING):
            self.first_token_t = t
        chunks = self.chunks
        chunks.t.append(t)
        chunks.kind.append(kind)
        chunks.tokens.append(tokens)
        chunks.choice.append(choice_index)

    def _classify(self, choices: list[Any]) -> tuple[int, int]:
        kind = KIND_OTHER
        index = 0
        for choice in choices:
            index = choice.get("index", 0)
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reasons[index] = reason
            delta = choice.get("delta")
            if delta is None:  # /v1/completions streams `text`
                text = choice.get("text")
                role = None
                reasoning = None
            else:
                text = delta.get("content")
                role = delta.get("role")
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if text:
                self.output_chars += len(text)
                if self.keep_text and index == 0:
                    self.text_parts.append(text)
                kind = KIND_CONTENT
            elif reasoning and kind != KIND_CONTENT:
                kind = KIND_REASONING
            elif role and kind == KIND_OTHER:
                kind = KIND_ROLE
        return kind, index

    def _tokens(self, kind: int, usage: Any) -> int:
        # With continuous_usage_stats every chunk carries the running completion count.
        if kind in (KIND_CONTENT, KIND_REASONING) and isinstance(usage, dict):
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
        return "".join(self.text_parts)
