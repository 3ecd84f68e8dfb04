"""The Responses API's stream (`/v1/responses`, `stream: true`): typed events, no `[DONE]`.

Each SSE data object has a `type`. Output deltas are the tokens: `response.output_text.delta`
(content), `response.reasoning_text.delta` and `response.reasoning_summary_text.delta`
(reasoning), `response.function_call_arguments.delta` (a tool call), `response.refusal.delta`;
the first of them is the first token. The stream ends with `response.completed` or
`response.incomplete`, whose `response.usage` (`input_tokens`, `output_tokens`) is the
token truth; `response.failed` and `error` events fail the request with the server's message.
A body that ends before a terminal event is `stream_dropped`.

`finish_reason` keeps the server's own words: `completed`, or the reason of an incomplete
response (`max_output_tokens`, `content_filter`), `incomplete` when it gives none.
"""

from __future__ import annotations

from typing import Any

from bench.records import (
    KIND_CONTENT,
    KIND_OTHER,
    KIND_REASONING,
    KIND_REFUSAL,
    KIND_TOOL_CALL,
    KIND_USAGE,
    NO_TOKENS,
    ChunkColumns,
)
from bench.runner.sse import DEFAULT_MAX_LINE_BYTES, SseParser, StreamProtocolError, error_message

__all__ = ["DELTA_KINDS", "ResponsesRecorder"]

DELTA_KINDS = {
    "response.output_text.delta": KIND_CONTENT,
    "response.reasoning_text.delta": KIND_REASONING,
    "response.reasoning_summary_text.delta": KIND_REASONING,
    "response.function_call_arguments.delta": KIND_TOOL_CALL,
    "response.refusal.delta": KIND_REFUSAL,
}
_TERMINAL = ("response.completed", "response.incomplete")


class ResponsesRecorder(SseParser):
    """One Responses API stream as chunk columns, with the recorder interface of
    `bench.runner.recorder.StreamRecorder` (one choice: the API has no `n`)."""

    def __init__(self, t_origin: float, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        super().__init__(t_origin, max_line_bytes)
        self.chunks = ChunkColumns()
        self.first_token_t: float | None = None
        self.usage: dict[str, Any] | None = None
        self.server_timings: dict[str, Any] | None = None
        self.output_chars = 0
        self.text_parts: list[str] = []
        self.keep_text = False
        self.keep_output = False  # keep every output kind's text (the scenario counts tokens)
        self._outputs: list[str] = []
        self.status: str | None = None  # the terminal event's finish reason, once it came

    def on_event(self, t: float, event: dict[str, Any]) -> None:
        timings = event.get("timings")  # llama.cpp adds its own timings to the terminal event
        if isinstance(timings, dict):
            self.server_timings = timings
        kind_name = event.get("type")
        kind = DELTA_KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is not None:
            delta = event.get("delta")
            if not isinstance(delta, str) or not delta:
                kind = KIND_OTHER  # an empty delta carries no token
            else:
                if self.keep_output:
                    self._outputs.append(delta)
                if kind == KIND_CONTENT:
                    self.output_chars += len(delta)
                    if self.keep_text:
                        self.text_parts.append(delta)
            if kind != KIND_OTHER and self.first_token_t is None:
                self.first_token_t = t
        elif kind_name in _TERMINAL:
            self._terminal(event)
            kind = KIND_USAGE if self.usage is not None else KIND_OTHER
        elif kind_name == "response.failed":
            raise StreamProtocolError("response_failed", _failure_message(event))
        elif kind_name == "error" or (kind_name is None and event.get("error")):
            raise StreamProtocolError("server_error_event", error_message(event))
        else:
            kind = KIND_OTHER  # response.created, output_item.added, *.done, ...
        self.chunks.append(t, kind, NO_TOKENS, 0)

    def _terminal(self, event: dict[str, Any]) -> None:
        response = event.get("response")
        response = response if isinstance(response, dict) else {}
        usage = response.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        if event.get("type") == "response.completed":
            self.status = "completed"
            return
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        self.status = reason if isinstance(reason, str) and reason else "incomplete"

    # -- results (as StreamRecorder's) ---------------------------------------------------

    def finish_reason(self) -> str | None:
        return self.status

    def incomplete(self) -> tuple[str, str] | None:
        """(error_kind, message) when the body ended without a terminal event."""
        if self.status is not None:
            return None
        return "stream_dropped", "stream ended without response.completed or response.incomplete"

    def usage_tokens(self) -> tuple[int | None, int | None]:
        if not self.usage:
            return None, None
        prompt = self.usage.get("input_tokens")
        completion = self.usage.get("output_tokens")
        return (prompt if isinstance(prompt, int) else None,
                completion if isinstance(completion, int) else None)

    def reasoning_tokens(self) -> int | None:
        """`response.usage.output_tokens_details.reasoning_tokens`, None when not given."""
        details = self.usage.get("output_tokens_details") if self.usage else None
        count = details.get("reasoning_tokens") if isinstance(details, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    def cached_tokens(self) -> int | None:
        """`response.usage.input_tokens_details.cached_tokens`, None when not given."""
        details = self.usage.get("input_tokens_details") if self.usage else None
        count = details.get("cached_tokens") if isinstance(details, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    def text(self) -> str:
        return "".join(self.text_parts)

    def output_texts(self) -> tuple[str, ...] | None:
        """The generated text (every output kind; one choice) when `keep_output` was set, else None."""
        return ("".join(self._outputs),) if self.keep_output else None


def _failure_message(event: dict[str, Any]) -> str:
    """The server's words from a `response.failed` event: `response.error` {code, message}."""
    response = event.get("response")
    error = response.get("error") if isinstance(response, dict) else None
    if error:
        return error_message({"error": error})
    return "response.failed without an error object"
