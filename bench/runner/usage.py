"""What a streamed answer's `usage` objects say of its tokens.

`last` is the last usage the stream carried (None when it carried none); `finals` are its
usage-only chunks (`choices == []`): llama.cpp with n > 1 sends one per choice, each counting
only its own completion, where vLLM sends one for all.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cached_tokens", "reasoning_tokens", "usage_tokens"]


def usage_tokens(last: dict[str, Any] | None, finals: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """(prompt tokens, completion tokens), each None when not given as an int. With several
    usage-only chunks: their completions summed, the prompt counted once."""
    if len(finals) > 1:
        completions = [u.get("completion_tokens") for u in finals]
        prompt = finals[-1].get("prompt_tokens")
        counted = [c for c in completions if isinstance(c, int)]
        if len(counted) == len(completions):
            return (prompt if isinstance(prompt, int) else None, sum(counted))
    if not last:
        return None, None
    prompt = last.get("prompt_tokens")
    completion = last.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else None,
            completion if isinstance(completion, int) else None)


def reasoning_tokens(last: dict[str, Any] | None, finals: list[dict[str, Any]]) -> int | None:
    """`usage.completion_tokens_details.reasoning_tokens` (summed over per-choice usage
    chunks), None when the server did not give it."""
    usages = finals if len(finals) > 1 else [last] if last else []
    counts = [_count(u.get("completion_tokens_details"), "reasoning_tokens") for u in usages]
    if not counts or any(c is None for c in counts):
        return None
    return sum(c for c in counts if c is not None)


def cached_tokens(last: dict[str, Any] | None) -> int | None:
    """`usage.prompt_tokens_details.cached_tokens`: prompt tokens served from the server's
    prefix cache, None when the server did not say (the last usage: with one usage chunk per
    choice, the prompt is shared)."""
    details = last.get("prompt_tokens_details") if last is not None else None
    return _count(details, "cached_tokens")


def _count(details: Any, key: str) -> int | None:
    count = details.get(key) if isinstance(details, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None
