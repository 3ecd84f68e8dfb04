"""Stream recorder: the chunk columns of one streamed OpenAI answer, and what it said of itself.

The SSE framing is `bench.runner.sse.SseParser`'s; this subclass reads each JSON event as an
OpenAI chunk: its kind (content, reasoning, tool call, role, usage, ...), its choice, the
tokens a running usage says it carries, finish reasons, usage and server timings. A data
object with a non-null `error` fails the request.

Content chunks after the first are mostly recorded without a parse: see
`bench.runner.chunk_template`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any

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
from bench.runner.chunk_template import ChunkTemplate, chunk_text, learn
from bench.runner.sse import DEFAULT_MAX_LINE_BYTES, SseParser, StreamProtocolError, error_message
from bench.runner.tool_calls import ToolCalls
from bench.runner.usage import cached_tokens, reasoning_tokens, usage_tokens

__all__ = ["CUT_OFF_REASONS", "KNOWN_REASONS", "StreamRecorder"]

_BOM = b"\xef\xbb\xbf"

# finish_reason values by which servers say they cut the request off rather than finished it
# (vLLM and SGLang: "abort"; TGI and gateways: "error"). Compared lower-cased.
CUT_OFF_REASONS = frozenset({"abort", "aborted", "cancelled", "canceled", "error"})
# finish_reason values that mean a complete answer; any other value is kept raw and noted.
KNOWN_REASONS = frozenset({"stop", "length", "tool_calls", "function_call", "content_filter", "eos",
                           "eos_token", "stop_sequence", "end_turn", "max_tokens", "tool_use",
                           # the Responses API's (bench.runner.responses): its status, or why it is incomplete
                           "completed", "incomplete", "max_output_tokens"})

_LEARN_TRIES = 8  # per stream: a template is (re)learnt from at most this many chunks

# A chunk's kind when it carries several: the first of these it has (lower rank wins).
_RANK = {KIND_CONTENT: 0, KIND_REASONING: 1, KIND_TOOL_CALL: 2, KIND_FUNCTION_CALL: 3, KIND_REFUSAL: 4,
         KIND_ROLE: 5, KIND_USAGE: 6, KIND_OTHER: 7}


class StreamRecorder(SseParser):
    """One response body's events, as chunk columns and what the stream said of itself.

    `n`: choices requested. With n=1 every chunk belongs to choice 0 whatever its `index`
    (a local runtime numbers its chunks 0, 1, 2, ...). Set `keep_events` before feeding to
    keep every dispatched event as (t relative to t_origin in s, SSE event type or None,
    parsed JSON payload, or the raw text of `[DONE]` and other non-JSON payloads).
    """

    def __init__(self, t_origin: float, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, n: int = 1) -> None:
        super().__init__(t_origin, max_line_bytes)
        self._n = n
        # A templated content chunk appends only its time here; `chunks` appends the kind,
        # tokens and choice of such rows when read (one append a chunk, not four).
        self._chunks = ChunkColumns()
        self.first_token_t: float | None = None
        self.finish_reasons: dict[int, str] = {}
        self.finish_messages: list[str] = []  # what a finish_reason object said besides its type
        self.usage: dict[str, Any] | None = None
        self._final_usages: list[dict[str, Any]] = []  # usage-only chunks (choices == [])
        self.server_timings: dict[str, Any] | None = None
        self.output_chars = 0
        self.text_parts: list[str] = []
        self.keep_text = False
        # Every choice's generated text, every output kind (the scenario counts tokens: `tokens:`)
        self.keep_output = False
        self._outputs: dict[int, list[str]] = {}
        self._tool_calls = ToolCalls()  # choice 0's, when keeping text
        self._completion_tokens_seen = 0
        # the template of a plain content chunk (module doc): its bytes before and after the text
        self._template: ChunkTemplate | None = None
        self._event_template: ChunkTemplate | None = None  # the same as one whole SSE event
        self._taking: ChunkTemplate | None = None  # `_event_template` while reads may be taken whole
        self._payload = b""  # the payload being parsed, while on_event reads it
        self._learn_tries = _LEARN_TRIES
        # Called with the read's perf_counter time when the first output is recorded and when
        # `[DONE]` comes, so a reader can take `feed` as its callback without a check per read.
        self.watch: Callable[[float], None] | None = None

    @property
    def chunks(self) -> ChunkColumns:
        """The chunk columns so far (every column as long as the others)."""
        chunks = self._chunks
        rows = len(chunks.t) - len(chunks.kind)  # templated content rows with only their time
        if rows:
            chunks.kind.extend(repeat(KIND_CONTENT, rows))
            chunks.tokens.extend(repeat(NO_TOKENS, rows))
            chunks.choice.extend(repeat(0, rows))
        return self._chunks

    # -- templated content chunks ---------------------------------------------------------

    def feed(self, t_abs: float, data: bytes) -> None:
        """`SseParser.feed`, with a read that is one templated content event (`data: `, the
        template's parts around a plain text, a blank line) taken without the SSE parse."""
        if not self.take(t_abs, data, 0, len(data)):
            SseParser.feed(self, t_abs, data)
            self._taking = self._takeable()

    def _takeable(self) -> ChunkTemplate | None:
        """The event template when the next read may be taken whole (`take`): the
        reads so far left no line, event or error field open, and no `[DONE]`. Worked out
        after each read the parser took, so a read taken whole checks one attribute. (A
        template is learnt only after an event with output: the BOM check is over and the
        first output recorded. A CR that ended the last read ended its line, and a templated
        event, which starts with `data: `, begins a new one.)"""
        if self._pending or self._data_lines or self._error_lines or self._event_type is not None or self.done_seen:
            return None
        return self._event_template

    def take(self, t_abs: float, data: bytes, start: int, stop: int) -> bool:
        """Record `data[start:stop]`, read at `t_abs`, when it is one templated content event
        and the parser has nothing open (`_taking`); True when recorded, False (nothing
        recorded) otherwise. The span is a whole read (`feed`), or the data of a read that is
        one whole HTTP chunk, as the connection offers it (a `ChunkFeed`)."""
        event = self._taking
        return event is not None and self._plain_content(event, t_abs - self._t_origin, data, start, stop)

    def _payload_event(self, t: float, kind: str | None, payload: bytes) -> None:
        template = self._template
        if (template is not None and kind is None and payload.startswith(template.before)
                and self._plain_content(template, t, payload, 0, len(payload))):
            return
        self._payload = payload
        try:
            SseParser._payload_event(self, t, kind, payload)
        finally:
            if self.done_seen and self.watch is not None:  # (nothing after `[DONE]` is read: once)
                self.watch(t + self._t_origin)

    def _first_output(self, t: float) -> None:
        self.first_token_t = t
        if self.watch is not None:
            self.watch(t + self._t_origin)

    def _plain_content(self, template: ChunkTemplate, t: float, data: bytes, start: int, stop: int) -> bool:
        """Record `data[start:stop]` at `t` (s from t_origin) as what `on_event` records of a
        plain content chunk of choice 0 (n = 1) when it is `template` around a plain text;
        True when recorded. (A template is learnt after the first output: no first token
        here.)"""
        if self.keep_text or self.keep_output:
            text = template.text_in(data, start, stop)
            if text is None:
                return False
            self._content_text(0, text)
        else:  # only the text's length is recorded: no str is made of an ASCII text
            chars = template.chars_in(data, start, stop)
            if chars < 0:
                return False
            self.output_chars += chars
        self._chunks.t.append(t)
        return True

    def _learn(self, choice: dict[str, Any]) -> None:
        """Make the payload being parsed, a plain content chunk (its one `choice`), the template."""
        self._learn_tries -= 1
        template = learn(self._payload, chunk_text(choice))
        if template is not None:
            self._template, self._event_template = template, template.as_event()

    def on_event(self, t: float, event: dict[str, Any]) -> None:
        error = event.get("error")
        if error is not None and error is not False and error != "":  # with or without choices
            raise StreamProtocolError("server_error_event", error_message(event))
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
        if kind == KIND_OTHER and not choices and usage and isinstance(usage, dict):
            self._final_usages.append(usage)
            kind = KIND_USAGE
        output = kind in OUTPUT_KIND_CODES
        # Learnt from the second output chunk on: a one-token answer does not pay for it.
        if (kind == KIND_CONTENT and self.first_token_t is not None and self._learn_tries and self._n == 1
                and len(choices) == 1 and usage is None and not self.keep_events and type(choices[0]) is dict):
            self._learn(choices[0])
        tokens = self._tokens(usage) if output and usage is not None else NO_TOKENS
        if output and self.first_token_t is None:
            self._first_output(t)
        self.chunks.append(t, kind, tokens, choice_index)

    def _choices_apart(self, t: float, choices: list[Any], usage: Any) -> None:
        """An event carrying several choices' deltas (a gateway merging candidates): one row
        per choice with output, all at the event's time, so each choice keeps its own ITL."""
        rows = [self._classify([choice]) for choice in choices]
        output = [(kind, index) for kind, index in rows if kind in OUTPUT_KIND_CODES]
        if not output:
            kind, index = min(rows, key=lambda row: _RANK[row[0]])
            self.chunks.append(t, kind, NO_TOKENS, index)
            return
        if self.first_token_t is None:
            self._first_output(t)
        tokens = self._tokens(usage)  # a running count is the event's: the first row carries it
        for i, (kind, index) in enumerate(output):
            self.chunks.append(t, kind, tokens if i == 0 or tokens == NO_TOKENS else 0, index)

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
                if type(text) is str and text:  # the common case
                    self._content_text(index, text)
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
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            self._keep_output(index, reasoning)
            return KIND_REASONING
        if delta.get("tool_calls"):
            if self.keep_text and index == 0:
                self._tool_calls.add(delta["tool_calls"])
            if self.keep_output:
                self._keep_call_text(index, delta["tool_calls"])
            return KIND_TOOL_CALL
        if delta.get("function_call"):
            if self.keep_output:
                self._keep_call_text(index, [{"function": delta["function_call"]}])
            return KIND_FUNCTION_CALL
        if delta.get("refusal"):
            self._keep_output(index, delta["refusal"])
            return KIND_REFUSAL
        return KIND_ROLE if delta.get("role") else KIND_OTHER

    def _text(self, text: Any, index: int) -> int:
        if isinstance(text, list):  # content parts ([{"type": "text", "text": ...}])
            text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
        if not text or not isinstance(text, str):
            return KIND_OTHER
        self._content_text(index, text)
        return KIND_CONTENT

    def _content_text(self, index: int, text: str) -> None:
        """A content text of choice `index`: counted, and kept when asked."""
        self.output_chars += len(text)
        if self.keep_text and index == 0:
            self.text_parts.append(text)
        if self.keep_output:
            self._outputs.setdefault(index, []).append(text)

    def _keep_output(self, index: int, text: Any) -> None:
        if self.keep_output and isinstance(text, str):
            self._outputs.setdefault(index, []).append(text)

    def _keep_call_text(self, index: int, deltas: Any) -> None:
        """A tool call's generated text: its function name and argument fragments."""
        for delta in deltas if isinstance(deltas, list) else ():
            function = delta.get("function") if isinstance(delta, dict) else None
            if isinstance(function, dict):
                for part in (function.get("name"), function.get("arguments")):
                    self._keep_output(index, part)

    def output_texts(self) -> tuple[str, ...] | None:
        """Each choice's generated text (index order, every output kind as it streamed) when
        `keep_output` was set, else None."""
        if not self.keep_output:
            return None
        last = max(self._outputs, default=-1)
        return tuple("".join(self._outputs.get(i, ())) for i in range(max(last + 1, self._n)))

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
        """(prompt, completion) tokens the usage said (`bench.runner.usage`)."""
        return usage_tokens(self.usage, self._final_usages)

    def reasoning_tokens(self) -> int | None:
        return reasoning_tokens(self.usage, self._final_usages)

    def cached_tokens(self) -> int | None:
        return cached_tokens(self.usage)

    def tool_calls(self) -> tuple[dict[str, Any], ...]:
        """Choice 0's tool calls as the chat API writes them in a history ({id, type,
        function: {name, arguments}}), when `keep_text` was set; () otherwise."""
        return self._tool_calls.calls()

    def text(self) -> str:
        text = "".join(self.text_parts)
        if self._lenient_json:  # lone surrogates cannot be sent back as JSON in a follow-up turn
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text

