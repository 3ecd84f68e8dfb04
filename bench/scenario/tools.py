"""Tool definitions in requests (`requests.tools`, `requests.tool_choice`), passed verbatim.

bench does not interpret a tool schema: it checks the shape every OpenAI-compatible server
needs (a `type`, and for a function tool its name, where chat or the Responses API puts it)
and sends it as written. `tool_choice` is "auto", "none", "required" or an object naming
a tool, also sent as written.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

__all__ = ["DEFAULT_TOOL_RESULT", "ToolChoice", "ToolSchema", "tool_name"]

# The canned content of the `tool` message answering a tool call in a multi-turn chat.
DEFAULT_TOOL_RESULT = '{"result": "ok"}'
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def tool_name(tool: dict[str, Any]) -> str | None:
    """A function tool's name: chat's {"type": "function", "function": {"name": ...}} or
    the Responses API's {"type": "function", "name": ...}; None for other tool types."""
    function = tool.get("function")
    if isinstance(function, dict):
        name = function.get("name")
        return name if isinstance(name, str) else None
    name = tool.get("name")
    return name if isinstance(name, str) else None


def _check_tool(tool: dict[str, Any]) -> dict[str, Any]:
    kind = tool.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError("a tool needs a `type` (e.g. function)")
    if kind == "function":
        name = tool_name(tool)
        if name is None or not _NAME.match(name):
            raise ValueError("a function tool needs a name of 1-64 letters, digits, _ . - "
                             "(function.name, or name for the Responses API)")
    return tool


def _check_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and not isinstance(choice.get("type"), str):
        raise ValueError("an object tool_choice needs a `type` (e.g. {type: function, function: {name: ...}})")
    return choice


ToolSchema = Annotated[dict[str, Any], AfterValidator(_check_tool)]
ToolChoice = Annotated[Literal["auto", "none", "required"] | dict[str, Any], AfterValidator(_check_choice)]
