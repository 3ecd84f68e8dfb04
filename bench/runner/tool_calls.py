"""Streamed tool calls assembled into the calls a chat history carries (a multi-turn chat
answers them): the first delta of a call gives its id, type and function name, later ones
fragments of its arguments."""

from __future__ import annotations

from typing import Any

__all__ = ["ToolCalls"]


class ToolCalls:
    """One choice's tool calls, by call index, from its `delta.tool_calls` lists."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: Any) -> None:
        """One chunk's `delta.tool_calls` (anything else is passed over)."""
        for delta in deltas if isinstance(deltas, list) else ():
            if not isinstance(delta, dict):
                continue
            raw = delta.get("index", len(self._calls))
            call = self._calls.setdefault(raw if isinstance(raw, int) else 0,
                                          {"id": None, "type": "function", "name": "", "arguments": ""})
            if isinstance(delta.get("id"), str):
                call["id"] = delta["id"]
            if isinstance(delta.get("type"), str):
                call["type"] = delta["type"]
            function = delta.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str) and not call["name"]:
                    call["name"] = function["name"]
                if isinstance(function.get("arguments"), str):
                    call["arguments"] += function["arguments"]

    def calls(self) -> tuple[dict[str, Any], ...]:
        """The calls as the chat API writes them in a history: {id, type, function: {name, arguments}}."""
        return tuple({"id": c["id"], "type": c["type"], "function": {"name": c["name"], "arguments": c["arguments"]}}
                     for _, c in sorted(self._calls.items()))
