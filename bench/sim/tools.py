"""Tool-call answers: whether a chat request is answered by a tool call, and its stream deltas.

A request with `tools` (chat) is answered by one call of a function tool: always with
tool_choice "required" or naming a function, never with "none", and with the profile's
`tool_call_probability` under "auto" (the default), by a draw seeded like the output. The
tool is the named one, else one of the request's function tools drawn the same way.

Streamed as vLLM streams a parsed call: the first answer emission carries
`{"tool_calls": [{"index": 0, "id", "type": "function", "function": {"name"}}]}` (its token
is the name), every later one a fragment of `function.arguments`; the arguments of all
fragments are one JSON object (`{"text": "..."}` of the answer's words, `{}` with none), and
the finish reason is `tool_calls` (`length` when max_tokens cut it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.sim.api import ApiError
from bench.sim.faults import uniform

__all__ = ["ToolPlan", "ToolStream", "plan_tool_call"]

_DRAW, _PICK = 0x7001, 0x7002


@dataclass(frozen=True)
class ToolPlan:
    """The call a request is answered with: the function's name and the call id's stem."""

    name: str
    id: str

    def call_id(self, choice: int) -> str:
        return f"chatcmpl-tool-{self.id}{choice}"


def _function_names(tools: list[Any]) -> list[str]:
    names = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "function":
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else tool.get("name")
            if isinstance(name, str) and name:
                names.append(name)
    return names


def plan_tool_call(req: Any, probability: float, seed: int, key: int, rid: str) -> ToolPlan | None:
    """The tool call answering `req`, or None; ApiError 400 when tool_choice names a tool
    the request does not define."""
    tools = getattr(req, "tools", None)
    names = _function_names(tools) if isinstance(tools, list) else []
    choice = getattr(req, "tool_choice", None)
    if not names or choice == "none":
        return None
    if isinstance(choice, dict):
        function = choice.get("function")
        named = function.get("name") if isinstance(function, dict) else choice.get("name")
        if named not in names:
            raise ApiError(400, f"tool_choice names the function {named!r}, which is not in tools", "tool_choice")
        return ToolPlan(str(named), rid[-8:])
    if choice != "required" and uniform(seed, key, _DRAW) >= probability:
        return None
    return ToolPlan(names[int(uniform(seed, key, _PICK) * len(names))], rid[-8:])


@dataclass(eq=False)
class ToolStream:
    """Per-choice state of a tool-call answer while it is emitted; `arguments` collects each
    choice's arguments (the non-streamed message repeats them)."""

    plan: ToolPlan
    n: int
    started: list[bool] = field(default_factory=list)
    opened: list[bool] = field(default_factory=list)
    arguments: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = [False] * self.n
        self.opened = [False] * self.n
        self.arguments = [[] for _ in range(self.n)]

    def delta(self, c: int, pieces: list[str], final: bool) -> dict[str, Any] | None:
        """The delta of one emission of choice `c`: `pieces` are its answer tokens' words
        (none: a reasoning-only emission, no delta unless it ends the answer)."""
        if not pieces and not (final and self.started[c]):
            return None
        call: dict[str, Any] = {"index": 0}
        function: dict[str, Any] = {}
        if not self.started[c]:
            self.started[c] = True
            call.update(id=self.plan.call_id(c), type="function")
            function["name"] = self.plan.name
            pieces = pieces[1:]
        args = ""
        if pieces:
            if not self.opened[c]:
                args, self.opened[c] = '{"text": "', True
            args += json.dumps("".join(pieces))[1:-1]
        if final:
            args += '"}' if self.opened[c] else "{}"
        if args or "name" not in function:
            function["arguments"] = args
        self.arguments[c].append(args)
        call["function"] = function
        return {"tool_calls": [call]}

    def message_calls(self, c: int) -> list[dict[str, Any]]:
        """A non-streamed message's `tool_calls` for choice `c`."""
        return [{"id": self.plan.call_id(c), "type": "function",
                 "function": {"name": self.plan.name, "arguments": "".join(self.arguments[c])}}]
