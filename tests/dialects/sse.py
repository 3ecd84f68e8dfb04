"""Builders for scripted SSE bodies: OpenAI-style chunk objects and their byte framing.

Kept small and explicit: a case states the JSON each server sends; these only save typing.
"""

from __future__ import annotations

import json
from typing import Any

from dialects.case import Write

DONE = b"data: [DONE]\n\n"
_NOT_GIVEN: Any = object()


def dumps(obj: Any, *, ascii_only: bool = True) -> str:
    # Compact; ASCII-escaped by default. Python's json writes lone surrogates as \udXXX
    # escapes and non-finite floats as NaN/Infinity, which cases use.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only)


def data(obj: Any, *, space: bool = True, eol: str = "\n") -> bytes:
    """One `data:` event: the field line, then the blank line."""
    payload = obj if isinstance(obj, str) else dumps(obj)
    return f"data:{' ' if space else ''}{payload}{eol}{eol}".encode()


def chunk(delta: dict[str, Any] | None = None, *, finish: str | None = None, index: int = 0,
          usage: Any = _NOT_GIVEN, cid: str = "chatcmpl-1", choice: dict[str, Any] | None = None,
          **top: Any) -> dict[str, Any]:
    """A chat.completion.chunk with one choice (`choice` adds fields to it, `top` to the chunk)."""
    entry: dict[str, Any] = {"index": index, "delta": delta or {}, "finish_reason": finish}
    entry.update(choice or {})
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": 1700000000,
                           "model": "m", "choices": [entry]}
    if usage is not _NOT_GIVEN:
        out["usage"] = usage
    out.update(top)
    return out


def role(**kw: Any) -> dict[str, Any]:
    return chunk({"role": "assistant", "content": ""}, **kw)


def tok(text: str, **kw: Any) -> dict[str, Any]:
    return chunk({"content": text}, **kw)


def fin(reason: str = "stop", **kw: Any) -> dict[str, Any]:
    return chunk({}, finish=reason, **kw)


def usage(completion: int, prompt: int = 7) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def usage_chunk(completion: int, prompt: int = 7, **top: Any) -> dict[str, Any]:
    """The include_usage chunk: no choices, the whole request's usage."""
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
            "choices": [], "usage": usage(completion, prompt), **top}


def text(piece: str, *, finish: str | None = None, index: int = 0, **top: Any) -> dict[str, Any]:
    """A /v1/completions stream chunk."""
    return {"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "m",
            "choices": [{"index": index, "text": piece, "logprobs": None, "finish_reason": finish}], **top}


def error(message: str, **fields: Any) -> dict[str, Any]:
    return {"error": {"message": message, **fields}}


def script(*items: tuple[float, Any]) -> tuple[Write, ...]:
    """(time, event) pairs: a dict/str becomes a `data:` event, bytes are written as given."""
    return tuple((at, item if isinstance(item, bytes) else data(item)) for at, item in items)


def tokens_at(times: list[float], *, prefix: str = "t", **kw: Any) -> list[tuple[float, dict[str, Any]]]:
    """One content chunk at each time."""
    return [(at, tok(f" {prefix}{i}", **kw)) for i, at in enumerate(times)]


def plain_stream(times: list[float], *, done: bool = True, end: float | None = None,
                 reason: str = "stop") -> tuple[Write, ...]:
    """role at 0, one content chunk at each time, finish + usage right after the last, [DONE]."""
    last = end if end is not None else times[-1] + 0.005
    items: list[tuple[float, Any]] = [(0.0, role()), *tokens_at(times), (last, fin(reason)),
                                      (last, usage_chunk(len(times)))]
    if done:
        items.append((last, DONE))
    return script(*items)
