"""A non-streamed answer: the embeddings API (`/v1/embeddings`), one JSON body.

The body is read whole, each read stamped; the arrival of its last byte is the answer's end
(`body_t`, the record's `body_s`, from which E2E is taken). There is no token stream, so no
chunks: TTFT, ITL and TPOT are absent for such requests, never zero. The answer is complete
when `data` holds one embedding per input sent; `usage.prompt_tokens` is the server's count
of input tokens. The reader has the recorder interface the attempt uses
(`bench.runner.recorder.StreamRecorder`).
"""

from __future__ import annotations

import json
from typing import Any

from bench.records import ChunkColumns
from bench.runner.sse import StreamProtocolError, error_message

__all__ = ["EmbeddingsReader"]

_MAX_BODY = 256 << 20  # 4,096 inputs of 4,096 float dimensions as JSON text is ~200 MB


class EmbeddingsReader:
    """One embeddings answer. `inputs`: the inputs the request carried."""

    def __init__(self, t_origin: float, inputs: int) -> None:
        self._t_origin = t_origin
        self._inputs = inputs
        self._parts: list[bytes] = []
        self._size = 0
        self.chunks = ChunkColumns()  # none: nothing is streamed
        self.first_token_t: float | None = None
        self.done_seen = False
        self.usage: dict[str, Any] | None = None
        self.server_timings: dict[str, Any] | None = None
        self.output_chars = 0
        self.keep_text = False
        self.keep_output = False  # nothing generated to keep: embeddings
        self.body_t: float | None = None  # s from t_origin: the last byte of the body
        self.embeddings = 0

    def feed(self, t_abs: float, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._size > _MAX_BODY:
            raise StreamProtocolError("body_too_large", f"the answer exceeded {_MAX_BODY} bytes")
        self._parts.append(data)
        self.body_t = t_abs - self._t_origin

    def close(self, t_abs: float) -> None:
        """End of body: parse it; StreamProtocolError when it is not a complete answer."""
        body = b"".join(self._parts)
        self._parts = []
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            raise StreamProtocolError("malformed_body", f"the answer is not JSON: {body[:80]!r}") from None
        if not isinstance(answer, dict):
            raise StreamProtocolError("malformed_body", f"the answer is not a JSON object: {body[:80]!r}")
        if answer.get("error") is not None:
            raise StreamProtocolError("server_error_body", error_message(answer))
        usage = answer.get("usage")
        self.usage = usage if isinstance(usage, dict) else None
        data = answer.get("data")
        self.embeddings = len(data) if isinstance(data, list) else 0
        if self.embeddings != self._inputs:
            raise StreamProtocolError("incomplete_answer", f"{self.embeddings} embeddings for {self._inputs} inputs")

    def finish_reason(self) -> str | None:
        return None

    def incomplete(self) -> tuple[str, str] | None:
        return None  # checked when the body closed

    def usage_tokens(self) -> tuple[int | None, int | None]:
        prompt = self.usage.get("prompt_tokens") if self.usage else None
        return (prompt if isinstance(prompt, int) else None), None

    def reasoning_tokens(self) -> int | None:
        return None  # an embedding has no output, reasoning or otherwise

    def cached_tokens(self) -> int | None:
        return None  # embeddings servers do not report a prefix cache

    def output_texts(self) -> tuple[str, ...] | None:
        return None

    def text(self) -> str:
        return ""
