"""The Responses API's shapes (`/v1/responses`): typed stream events and the response object.

A streamed response opens with `response.created` and `response.in_progress`, then one
`response.reasoning_text.delta` and/or `response.output_text.delta` per engine emission,
and ends with `response.completed` (or `response.incomplete` when the output limit cut it,
`incomplete_details.reason: max_output_tokens`) carrying the usage; there is no `[DONE]`.
Each event is written as `event: TYPE` and `data: JSON` lines, numbered by `sequence_number`.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from bench.sim.sequence import Truth

__all__ = ["ResponseContext", "delta_events", "response_object", "terminal_event"]


class ResponseContext(Protocol):
    """What of a request's chunk context (bench.sim.emitter.ChunkContext) the shapes need."""

    @property
    def id(self) -> str: ...

    @property
    def created(self) -> int: ...

    @property
    def model(self) -> str: ...

    @property
    def reasoning_tokens(self) -> int: ...


def _event(kind: str, sequence: int, fields: dict[str, Any]) -> bytes:
    data = orjson.dumps({"type": kind, "sequence_number": sequence, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def _ids(ctx: ResponseContext) -> tuple[str, str]:
    return f"rs_{ctx.id}", f"msg_{ctx.id}"


def response_object(ctx: ResponseContext, truth: Truth | None, text: str = "", reasoning: str = "") -> dict[str, Any]:
    """The response object: `in_progress` before the end (truth None), else final with usage."""
    out: dict[str, Any] = {"id": ctx.id, "object": "response", "created_at": ctx.created, "model": ctx.model,
                           "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    if truth is None:
        return out
    cut = bool(truth.finish_reasons) and truth.finish_reasons[0] == "length"
    out["status"] = "incomplete" if cut else "completed"
    if cut:
        out["incomplete_details"] = {"reason": "max_output_tokens"}
    rs_id, msg_id = _ids(ctx)
    if ctx.reasoning_tokens:
        out["output"].append({"type": "reasoning", "id": rs_id, "summary": [],
                              "content": [{"type": "reasoning_text", "text": reasoning}]})
    out["output"].append({"type": "message", "id": msg_id, "role": "assistant", "status": out["status"],
                          "content": [{"type": "output_text", "text": text, "annotations": []}]})
    reasoning_tokens = min(ctx.reasoning_tokens, truth.output_tokens)
    out["usage"] = {"input_tokens": truth.prompt_tokens,
                    "input_tokens_details": {"cached_tokens": truth.cached_tokens},
                    "output_tokens": truth.output_tokens,
                    "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                    "total_tokens": truth.prompt_tokens + truth.output_tokens}
    return out


def delta_events(ctx: ResponseContext, sequence: int, pos: int, reason_text: str, content: str) -> tuple[bytes, int]:
    """The events of one emission (the opening events first on the first one) and the next
    sequence number."""
    out = b""
    if pos == 0:
        opening = response_object(ctx, None)
        out += _event("response.created", sequence, {"response": opening})
        out += _event("response.in_progress", sequence + 1, {"response": opening})
        sequence += 2
    rs_id, msg_id = _ids(ctx)
    if reason_text:
        out += _event("response.reasoning_text.delta", sequence,
                      {"item_id": rs_id, "output_index": 0, "content_index": 0, "delta": reason_text})
        sequence += 1
    if content:
        out += _event("response.output_text.delta", sequence,
                      {"item_id": msg_id, "output_index": 1 if ctx.reasoning_tokens else 0, "content_index": 0,
                       "delta": content, "logprobs": []})
        sequence += 1
    return out, sequence


def terminal_event(ctx: ResponseContext, truth: Truth, sequence: int, text: str, reasoning: str) -> bytes:
    """`response.completed`, or `response.incomplete` when the output limit cut the answer."""
    final = response_object(ctx, truth, text, reasoning)
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    return _event(kind, sequence, {"response": final})
