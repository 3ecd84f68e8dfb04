"""Ollama's OpenAI-compatible endpoint: role on every delta, "" finish reasons, whole tool calls."""

from __future__ import annotations

from typing import Any

from dialects.case import Case, Truth
from dialects.sse import DONE, chunk, script, usage_chunk


def _o(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return chunk({"role": "assistant", **delta}, finish=finish, cid="chatcmpl-693", system_fingerprint="fp_ollama")


_TOKENS = [(at, _o({"content": f" t{i}"})) for i, at in enumerate([0.05, 0.10, 0.15])]

CASES = (
    Case(
        name="ollama_role_on_every_delta",
        family="ollama", kinds=("output",),
        source="Ollama repeats role: assistant on every delta and sends no usage unless asked "
               "(ollama/ollama#4448, #5200)",
        writes=script(*_TOKENS, (0.155, _o({"content": ""}, "stop")), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("content", 3),)),
    ),
    Case(
        name="ollama_empty_string_finish_reason",
        family="ollama", kinds=("finish",),
        source="Ollama sent finish_reason \"\" on every content chunk (ollama/ollama#4357): not a finish",
        writes=script(*((at, chunk(d["choices"][0]["delta"], finish="")) for at, d in _TOKENS),
                      (0.155, _o({"content": ""}, "stop")), (0.155, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=150, output_tokens=3, itl_gaps=2, gap_ms=50, done_seen=True,
                    finish_reason="stop"),
    ),
    Case(
        name="ollama_empty_finish_then_drop",
        family="ollama", kinds=("finish", "end_of_stream"),
        source="finish_reason \"\" chunks (ollama/ollama#4357), then the body ends before a real finish "
               "reason and without [DONE]: dropped, \"\" did not finish the choice",
        writes=script(*((at, chunk(d["choices"][0]["delta"], finish="")) for at, d in _TOKENS)),
        truth=Truth(status="error", error_kind="stream_dropped", ttft_ms=50, e2e_ms=150, output_tokens=3,
                    itl_gaps=2, gap_ms=50, done_seen=False),
    ),
    Case(
        name="ollama_whole_tool_call_in_one_chunk",
        family="ollama", kinds=("output",),
        source="Ollama streams a tool call whole, in one chunk, then finish_reason tool_calls "
               "(ollama/ollama#5995, #7963); usage since stream_options support (v0.5.2)",
        writes=script((0.30, _o({"content": "", "tool_calls": [
                          {"id": "call_x1", "index": 0, "type": "function",
                           "function": {"name": "get_time", "arguments": "{\"tz\":\"UTC\"}"}}]})),
                      (0.305, _o({"content": ""}, "tool_calls")), (0.305, usage_chunk(18)), (0.305, DONE)),
        truth=Truth(ttft_ms=300, e2e_ms=300, output_tokens=18, tpot_ms=0.0, done_seen=True,
                    finish_reason="tool_calls", token_kinds=(("tool_call", 1),)),
    ),
    Case(
        name="ollama_reasoning_field",
        family="ollama", kinds=("output",),
        source="ollama.com's OpenAI endpoint streams thinking as delta.reasoning, the first one together "
               "with the role (decolua/9router#3601)",
        writes=script((0.05, _o({"content": "", "reasoning": "Okay"})), (0.10, _o({"reasoning": ", so"})),
                      (0.15, _o({"reasoning": " yes"})), (0.20, _o({"content": "Yes."})),
                      (0.205, _o({"content": ""}, "stop")), (0.205, usage_chunk(4)), (0.205, DONE)),
        truth=Truth(ttft_ms=50, e2e_ms=200, output_tokens=4, itl_gaps=3, gap_ms=50, done_seen=True,
                    finish_reason="stop", token_kinds=(("reasoning", 3), ("content", 1))),
    ),
)
