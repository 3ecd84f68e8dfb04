"""Per-prompt choices of a multi-model run and the tool-result turns of a multi-turn chat.

- `ModelPicker`: the model of each drawn prompt under `target.models`: a seeded draw by
  weight (its own generator, so adding models changes no other draw of the workload), or
  round-robin for a list.
- `tool_turn`: the history after an answer that called tools: the assistant message with
  its `tool_calls`, then one `tool` message per call (`tool_call_id`, the canned result),
  as the OpenAI chat API expects before the model may continue.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.scenario.routing import ModelSplit

__all__ = ["ModelPicker", "tool_turn"]


class ModelPicker:
    """The model of each drawn prompt, in draw order; None when the run has one model."""

    def __init__(self, split: ModelSplit | None, seed: int) -> None:
        self._split = split
        self._rng = np.random.default_rng([seed, 0x30DE1])
        self._count = 0
        self._cumulative = np.cumsum(split.weights) if split is not None and split.weights else None

    def pick(self) -> str | None:
        split = self._split
        if split is None:
            return None
        self._count += 1
        if self._cumulative is None:
            return split.names[(self._count - 1) % len(split.names)]
        # one uniform draw per prompt, mapped through the cumulative shares
        index = int(np.searchsorted(self._cumulative, self._rng.random() * self._cumulative[-1], side="right"))
        return split.names[min(index, len(split.names) - 1)]


def tool_turn(history: tuple[dict[str, Any], ...], reply: str, tool_calls: tuple[dict[str, Any], ...],
              result: str) -> tuple[dict[str, Any], ...]:
    """`history` + the assistant's answer with its tool calls + one `tool` message per call."""
    calls = [{"id": call.get("id") or f"call_{i}", "type": call.get("type") or "function",
              "function": {"name": (call.get("function") or {}).get("name", ""),
                           "arguments": (call.get("function") or {}).get("arguments", "")}}
             for i, call in enumerate(tool_calls)]
    assistant: dict[str, Any] = {"role": "assistant", "content": reply or None, "tool_calls": calls}
    answers = [{"role": "tool", "tool_call_id": call["id"], "content": result} for call in calls]
    return (*history, assistant, *answers)
